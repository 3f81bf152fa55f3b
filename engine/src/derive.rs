//! What `#[derive(Schema)]` implements: the [`Schema`] trait, describing a typed schema to
//! generic code and building its engine configuration.

use std::path::PathBuf;

use crate::config::EngineConfig;

/// A schema declared with `#[derive(Schema)]`. The derive also generates, on the struct, a
/// builder (`new`), a filter builder (`filter`), `default_config`, `open`, the column counts as
/// associated consts, a type alias `<Name>Engine`, and a `<Name>Fields` trait with named
/// getters for `EventRef` and `LogEvent`.
pub trait Schema {
    /// Schema id recorded in every file of the data directory.
    const SCHEMA_ID: u8;
    /// Dim names, in column order.
    const DIM_NAMES: &'static [&'static str];
    /// Counter names, in column order.
    const COUNTER_NAMES: &'static [&'static str];
    /// Label names, in column order.
    const LABEL_NAMES: &'static [&'static str];
    /// Index of the `#[dim(bloom)]` dim.
    const BLOOM_DIM: Option<usize>;
    /// Indexes of the `#[dim(rollup)]` dims.
    const ROLLUP_DIMS: &'static [usize];

    /// Engine configuration with this schema's id, names, bloom and rollup dims, and every
    /// other setting at its default.
    fn schema_config(data_dir: PathBuf) -> EngineConfig {
        let mut c = EngineConfig::new(data_dir).with_columns(
            Self::DIM_NAMES.iter().copied(),
            Self::COUNTER_NAMES.iter().copied(),
            Self::LABEL_NAMES.iter().copied(),
        );
        c.schema_id = Self::SCHEMA_ID;
        c.bloom_dim = Self::BLOOM_DIM;
        c.rollup_dims = Self::ROLLUP_DIMS.to_vec();
        c
    }
}

/// Generates a unique id for an event built without one: 32 hex digits from the clock, the
/// process and a counter, so ids from different processes and restarts do not collide.
#[doc(hidden)]
pub fn generate_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        crate::hash::hash64(format!("{now}/{}/{:p}", std::process::id(), &COUNTER).as_bytes())
    });
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
