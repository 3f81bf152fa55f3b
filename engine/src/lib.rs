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

#![warn(missing_docs)]

mod config;
mod derive;
mod engine;
mod error;
mod event;
mod fsutil;
pub mod hash;
mod le;
mod memtable;
mod query;
mod read;
mod schema;
mod segment;
mod shard;
mod staged;
mod tombstone;
mod typed;
mod view;
mod wal;

pub use config::{EngineConfig, WalRecoveryMode, MAX_SHARDS, MAX_WAL_BYTES, MAX_WAL_EVENTS};
pub use derive::{generate_id, Schema};
pub use engine::{AppendTicket, DynEngine, EngineStats, GcStats, RecoveryReport, SourceCheckpoint};
pub use error::{DbError, Result, SchemaSummary};
pub use event::{DynEvent, EventFlags, LogEvent, Row};
pub use keplordb_macros::Schema;
pub use query::{
    day_of, kernel_name, Aggregate, Cursor, DynAggregate, DynFilter, EventRef, QueryFilter,
    RollupKey, RollupValue, NANOS_PER_DAY,
};
pub use schema::{SchemaDef, MAX_COUNTERS, MAX_DIMS, MAX_LABELS, MAX_ROLLUP_DIMS, SCHEMA_FILE};
pub use typed::Engine;
pub use wal::frame::{MAX_LABEL_LEN, MAX_SOURCE_KEY_LEN, MAX_VALUE_LEN};
pub use wal::reader::DiscardedTail;
