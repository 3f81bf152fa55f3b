//! Engine configuration.

use std::path::PathBuf;

use crate::error::{DbError, Result};
use crate::schema::SchemaDef;

/// What to do with a WAL frame that fails its checksum or is cut short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalRecoveryMode {
    /// Keep every complete, valid frame before the first bad one and truncate the file there.
    /// This is what a crash mid-write leaves behind (a torn tail), so it is the default; what
    /// was discarded is logged and reported by `Engine::recovery_report`.
    #[default]
    TolerateCorruptTail,
    /// Refuse to open (`DbError::CorruptWal`) when any frame is bad or incomplete, leaving the
    /// files untouched for inspection.
    AbsoluteConsistency,
}

/// Configuration of an engine. `EngineConfig::new(dir)` gives the defaults; the derive macro's
/// `default_config` fills in the schema. Change settings with the `with_*` methods (or by
/// assigning fields): new settings can be added without breaking callers.
///
/// ```
/// let config = keplordb::EngineConfig::new("/tmp/events")
///     .with_wal_shard_count(8)
///     .with_wal_sync_every_events(1)
///     .with_query_threads(2);
/// assert_eq!(config.wal_shard_count, 8);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Directory holding the WAL, segments and schema file. Created if missing.
    pub data_dir: PathBuf,
    /// SchemaDef id recorded in every file; opening data of another id fails.
    pub schema_id: u8,
    /// Dim names, in column order. For `Engine<D, C, L>` an empty list means `dim_0..dim_D`.
    pub dim_names: Vec<String>,
    /// Counter names, in column order (empty: `counter_0..`).
    pub counter_names: Vec<String>,
    /// Label names, in column order (empty: `label_0..`).
    pub label_names: Vec<String>,
    /// Dim with a per-segment bloom filter and posting lists (the most selective dim).
    pub bloom_dim: Option<usize>,
    /// Dims keyed by the daily rollups; they also get posting lists.
    pub rollup_dims: Vec<usize>,
    /// Number of WAL shards (concurrent writers without contention). Default 4.
    pub wal_shard_count: usize,
    /// fsync a shard after this many events. 1 = every append; `u32::MAX` = never (the OS
    /// decides). Default 64.
    pub wal_sync_every_events: u32,
    /// fsync a shard after this many bytes. Default 256 KiB.
    pub wal_sync_bytes: u64,
    /// Rotate a shard's WAL into a segment once it holds this many events. Default 65,536.
    pub wal_max_events: u64,
    /// Rotate a shard's WAL once it is this large. Default 256 MiB.
    pub wal_max_bytes: u64,
    /// Most segments whose columns are mapped and decoded at once; the rest keep only their
    /// header, bloom filter and totals in memory. Default 1,024.
    pub mmap_cache_capacity: usize,
    /// Most bytes of memory the mapped segments' decoded columns and indexes hold at once
    /// (their decoded `ts`, metric, u32 and u16 columns, posting lists, ids, and the intern
    /// tables and status bitmaps once used). Past it the least recently used segments are
    /// dropped, as past `mmap_cache_capacity`, and decoded again when a query needs them; the
    /// segment just loaded is always kept, so one segment larger than the budget still
    /// answers. The mapped files themselves are not counted: their pages belong to the kernel's
    /// page cache. Default: a quarter of the memory this process may use (the smallest of the
    /// machine's memory and its control group's limits), at least 64 MiB; 512 MiB where no
    /// limit can be read ([`default_segment_cache_bytes`](crate::default_segment_cache_bytes)).
    pub segment_cache_bytes: u64,
    /// Days of data (counted back from the newest event) whose rollups are kept in memory;
    /// older days are answered by scanning segments. Default 7.
    pub rollup_replay_days: u32,
    /// Policy for bad WAL frames found on open.
    pub wal_recovery: WalRecoveryMode,
    /// Open without writing anything: no lock, no recovery writes, appends rejected.
    pub read_only: bool,
    /// Threads of the pool the engine builds for queries on first use (0: one per core).
    /// Ignored when `query_pool` is set. Default 0.
    pub query_threads: usize,
    /// A pool to run queries on instead of the engine's own, e.g. to share one among several
    /// engines. Queries never use rayon's global pool. Default none.
    pub query_pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

/// Largest `wal_max_events`: keeps every segment section below 4 GiB.
pub const MAX_WAL_EVENTS: u64 = 4 << 20;
/// Largest `wal_max_bytes`.
pub const MAX_WAL_BYTES: u64 = 2 << 30;
/// Largest `wal_shard_count`.
pub const MAX_SHARDS: usize = 1024;

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            schema_id: 0,
            dim_names: Vec::new(),
            counter_names: Vec::new(),
            label_names: Vec::new(),
            bloom_dim: None,
            rollup_dims: Vec::new(),
            wal_shard_count: 4,
            wal_sync_every_events: 64,
            wal_sync_bytes: 256 * 1024,
            wal_max_events: 65_536,
            wal_max_bytes: 256 << 20,
            mmap_cache_capacity: 1024,
            segment_cache_bytes: crate::memory::default_segment_cache_bytes(),
            rollup_replay_days: 7,
            wal_recovery: WalRecoveryMode::default(),
            read_only: false,
            query_threads: 0,
            query_pool: None,
        }
    }

    /// Sets the column names (builder style).
    #[must_use]
    pub fn with_columns<S: Into<String>>(
        mut self,
        dims: impl IntoIterator<Item = S>,
        counters: impl IntoIterator<Item = S>,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        self.dim_names = dims.into_iter().map(Into::into).collect();
        self.counter_names = counters.into_iter().map(Into::into).collect();
        self.label_names = labels.into_iter().map(Into::into).collect();
        self
    }

    /// SchemaDef id recorded in every file. See the field.
    #[must_use]
    pub fn with_schema_id(mut self, schema_id: u8) -> Self {
        self.schema_id = schema_id;
        self
    }

    /// The dim with a per-segment bloom filter and posting lists. See the field.
    #[must_use]
    pub fn with_bloom_dim(mut self, bloom_dim: Option<usize>) -> Self {
        self.bloom_dim = bloom_dim;
        self
    }

    /// The dims keyed by the daily rollups. See the field.
    #[must_use]
    pub fn with_rollup_dims(mut self, rollup_dims: Vec<usize>) -> Self {
        self.rollup_dims = rollup_dims;
        self
    }

    /// Number of WAL shards. See the field.
    #[must_use]
    pub fn with_wal_shard_count(mut self, wal_shard_count: usize) -> Self {
        self.wal_shard_count = wal_shard_count;
        self
    }

    /// fsync a shard after this many events. See the field.
    #[must_use]
    pub fn with_wal_sync_every_events(mut self, wal_sync_every_events: u32) -> Self {
        self.wal_sync_every_events = wal_sync_every_events;
        self
    }

    /// fsync a shard after this many bytes. See the field.
    #[must_use]
    pub fn with_wal_sync_bytes(mut self, wal_sync_bytes: u64) -> Self {
        self.wal_sync_bytes = wal_sync_bytes;
        self
    }

    /// Rotate a shard's WAL once it holds this many events. See the field.
    #[must_use]
    pub fn with_wal_max_events(mut self, wal_max_events: u64) -> Self {
        self.wal_max_events = wal_max_events;
        self
    }

    /// Rotate a shard's WAL once it is this large. See the field.
    #[must_use]
    pub fn with_wal_max_bytes(mut self, wal_max_bytes: u64) -> Self {
        self.wal_max_bytes = wal_max_bytes;
        self
    }

    /// Most segments mapped and decoded at once. See the field.
    #[must_use]
    pub fn with_mmap_cache_capacity(mut self, mmap_cache_capacity: usize) -> Self {
        self.mmap_cache_capacity = mmap_cache_capacity;
        self
    }

    /// Most bytes of decoded segment columns in memory at once. See the field.
    #[must_use]
    pub fn with_segment_cache_bytes(mut self, segment_cache_bytes: u64) -> Self {
        self.segment_cache_bytes = segment_cache_bytes;
        self
    }

    /// Days of rollups kept in memory. See the field.
    #[must_use]
    pub fn with_rollup_replay_days(mut self, rollup_replay_days: u32) -> Self {
        self.rollup_replay_days = rollup_replay_days;
        self
    }

    /// Policy for bad WAL frames found on open. See the field.
    #[must_use]
    pub fn with_wal_recovery(mut self, wal_recovery: WalRecoveryMode) -> Self {
        self.wal_recovery = wal_recovery;
        self
    }

    /// Open without writing anything. See the field.
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Threads of the engine's query pool (0: one per core). See the field.
    #[must_use]
    pub fn with_query_threads(mut self, query_threads: usize) -> Self {
        self.query_threads = query_threads;
        self
    }

    /// Runs queries on `pool` instead of a pool of the engine's own.
    #[must_use]
    pub fn with_query_pool(mut self, pool: std::sync::Arc<rayon::ThreadPool>) -> Self {
        self.query_pool = Some(pool);
        self
    }

    /// The runtime schema this config describes.
    pub fn schema(&self) -> SchemaDef {
        SchemaDef {
            schema_id: self.schema_id,
            dims: self.dim_names.clone(),
            counters: self.counter_names.clone(),
            labels: self.label_names.clone(),
            bloom_dim: self.bloom_dim,
            rollup_dims: self.rollup_dims.clone(),
        }
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<()> {
        self.schema().validate()?;
        if self.wal_shard_count == 0 || self.wal_shard_count > MAX_SHARDS {
            return Err(DbError::config(
                "wal_shard_count",
                format!(
                    "{} shards requested, use 1 to {MAX_SHARDS}",
                    self.wal_shard_count
                ),
            ));
        }
        if self.wal_sync_every_events == 0 {
            return Err(DbError::config(
                "wal_sync_every_events",
                "0 is not a sync interval: use 1 to fsync every append or u32::MAX to never fsync",
            ));
        }
        if self.wal_sync_bytes == 0 {
            return Err(DbError::config("wal_sync_bytes", "must be at least 1"));
        }
        if self.wal_max_events == 0 || self.wal_max_events > MAX_WAL_EVENTS {
            return Err(DbError::config(
                "wal_max_events",
                format!(
                    "{} is out of range 1..={MAX_WAL_EVENTS}",
                    self.wal_max_events
                ),
            ));
        }
        if self.wal_max_bytes < 4096 || self.wal_max_bytes > MAX_WAL_BYTES {
            return Err(DbError::config(
                "wal_max_bytes",
                format!(
                    "{} is out of range 4096..={MAX_WAL_BYTES}",
                    self.wal_max_bytes
                ),
            ));
        }
        if self.mmap_cache_capacity == 0 {
            return Err(DbError::config("mmap_cache_capacity", "must be at least 1"));
        }
        if self.segment_cache_bytes == 0 {
            return Err(DbError::config("segment_cache_bytes", "must be at least 1"));
        }
        Ok(())
    }
}
