//! The `[engine]` section: where and how the store keeps its data.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::raw::{Quantity, RawEngine};
use super::{duration, err, ser_opt_duration, size, ConfigError};

/// Storage settings.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSettings {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub sync_interval: u32,
    pub max_segment_events: u64,
    #[serde(serialize_with = "ser_opt_duration")]
    pub retention: Option<Duration>,
    /// Bytes of decoded segment columns kept in memory (`segment_cache_bytes`).
    pub segment_cache: u64,
}

/// Resolves `[engine]`; relative paths resolve with `path_of`.
pub(super) fn resolve(
    e: RawEngine,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<EngineSettings, ConfigError> {
    let engine = EngineSettings {
        data_dir: path_of(e.data_dir.as_deref().unwrap_or("keplor-data")),
        shards: e.shards.unwrap_or(4) as usize,
        sync_interval: u32::try_from(e.sync_interval.unwrap_or(u32::MAX as u64))
            .map_err(|_| err("engine.sync_interval", "at most 4294967295"))?,
        max_segment_events: e.max_segment_events.unwrap_or(262_144),
        retention: match e.retention {
            None => None,
            Some(Quantity::Text(t)) if t == "none" => None,
            q => Some(duration("engine.retention", q, Duration::ZERO)?),
        },
        segment_cache: size(
            "engine.segment_cache",
            e.segment_cache,
            keplordb::default_segment_cache_bytes(),
        )?,
    };
    if engine.segment_cache < 1 << 20 {
        return Err(err(
            "engine.segment_cache",
            format!("{} bytes is below the least, 1MiB", engine.segment_cache),
        ));
    }
    if engine.shards == 0 || engine.shards > keplordb::MAX_SHARDS {
        return Err(err(
            "engine.shards",
            format!(
                "{} is out of range 1..={}",
                engine.shards,
                keplordb::MAX_SHARDS
            ),
        ));
    }
    Ok(engine)
}
