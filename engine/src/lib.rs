//! KeplorDB: an embeddable, columnar, append-only engine for time-ordered events.
//!
//! A library, not a server: open an [`Engine`] in your program, append events from many
//! threads, query them. No SQL, no network, no background threads.
//!
//! The typed [`Engine<D, C, L>`](Engine) stores [`LogEvent<D, C, L>`](LogEvent): `D` string
//! dims, `C` u32 counters, `L` string labels. It is a thin layer over [`DynEngine`], whose
//! schema is known only at run time (the Kafka agent uses it).
//!
//! See `ARCHITECTURE.md` for the design and `engine/FORMAT.md` for the on-disk formats.
//!
//! # Example
//!
//! The product page's example, run as a test: a schema declared once, typed appends, a typed
//! filter, exact aggregates, newest-first reads with typed getters.
//!
//! ```
//! use keplordb::{Engine, Schema};
//!
//! #[derive(Schema)]
//! #[keplordb(id = 1)]
//! pub struct AiCall {
//!     #[dim(bloom, rollup)]
//!     pub user: String,
//!     #[dim]
//!     pub model: String,
//!     #[counter]
//!     pub tokens: u32,
//! }
//!
//! # fn main() -> keplordb::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("keplordb-doc-{}", std::process::id()));
//! let engine: Engine<2, 1, 0> = Engine::open(AiCall::default_config(dir.clone()))?;
//! let ts_ns = 1_764_028_800_000_000_000;
//! engine.append(
//!     &AiCall::new(ts_ns)
//!         .user("alice")
//!         .model("gpt-4o")
//!         .tokens(1200)
//!         .metric(5_000_000)
//!         .status(200)
//!         .into_log_event(),
//! )?;
//! engine.append(&AiCall::new(ts_ns + 1).user("bob").model("o3").tokens(80).into_log_event())?;
//!
//! let t = engine.aggregate(&AiCall::filter().user("alice").into_filter())?;
//! assert_eq!((t.event_count, t.counters, t.metric), (1, [1200], 5_000_000));
//!
//! use AiCallFields as _; // the typed getters
//! let newest = engine.query_recent(&AiCall::filter().into_filter(), 10)?;
//! assert_eq!((newest[0].user(), newest[1].user()), ("bob", "alice"));
//! # drop(engine);
//! # std::fs::remove_dir_all(dir).unwrap();
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod config;
mod derive;
mod engine;
mod error;
mod event;
#[cfg(feature = "parquet")]
pub mod export;
mod fsutil;
mod hash;
mod le;
mod memory;
mod memtable;
mod query;
mod rollups;
mod schema;
mod segment;
mod shard;
mod staged;
#[cfg(test)]
mod testing;
mod time;
mod tombstone;
mod typed;
mod view;
mod wal;

pub use config::{EngineConfig, WalRecoveryMode, MAX_SHARDS, MAX_WAL_BYTES, MAX_WAL_EVENTS};
pub use derive::{generate_id, Schema};
pub use engine::{
    AppendTicket, CompactStats, DynEngine, EngineStats, GcStats, RecoveryReport, SegmentInfo,
    SourceCheckpoint,
};
pub use engine::{MAX_BUCKET_NS, MIN_BUCKET_NS};
pub use error::{DbError, Result, SchemaSummary};
pub use event::{DynEvent, EventFlags, LogEvent, Row};
pub use keplordb_macros::Schema;
pub use memory::default_segment_cache_bytes;
pub use query::{
    Aggregate, Bucket, Cursor, DynAggregate, DynFilter, EventRef, Group, GroupBy, GroupOrder,
    Groups, QueryFilter, RollupKey, RollupValue, Series, SplitSeries,
};
pub use schema::{SchemaDef, MAX_COUNTERS, MAX_DIMS, MAX_LABELS, MAX_ROLLUP_DIMS, SCHEMA_FILE};
pub use time::{date_of_day, day_of, NANOS_PER_DAY};
pub use typed::Engine;
pub use wal::frame::{MAX_LABEL_LEN, MAX_SOURCE_KEY_LEN, MAX_VALUE_LEN};
pub use wal::reader::DiscardedTail;

/// For the benchmarks and diagnostics, not part of the API: may change in any release.
#[doc(hidden)]
pub mod diagnostics {
    /// Name of the aggregation kernel set in use (`"avx2"` or `"scalar"`).
    pub fn kernel_name() -> &'static str {
        crate::query::kernels::kernel_name()
    }

    /// The bytes of the segment file at `path` by part: `"header"`, then each section by name
    /// (its padding to the 64-byte alignment counted with it), from the header's section table.
    /// The header is checked (magic, version, checksum); the sections are not.
    pub fn segment_sections(path: &std::path::Path) -> crate::Result<Vec<(&'static str, u64)>> {
        crate::segment::section_sizes(path)
    }
}
