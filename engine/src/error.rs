//! The engine's error type.
//!
//! Every variant carries the context an operator needs to act on it: the file, the byte offset,
//! what was expected and what was found.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What a data directory, file or caller says about its schema; used to report mismatches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaSummary {
    /// The schema id (`#[keplordb(id = N)]`).
    pub schema_id: u8,
    /// Fingerprint of the column names and counts.
    pub fingerprint: u64,
    /// Column names, when the source records them (segment and WAL headers only carry the
    /// fingerprint).
    pub columns: Option<String>,
}

impl fmt::Display for SchemaSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schema id {}", self.schema_id)?;
        if let Some(columns) = &self.columns {
            write!(f, " [{columns}]")?;
        }
        write!(f, " (fingerprint {:016x})", self.fingerprint)
    }
}

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// An operating-system call on a file of the data directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the engine was doing, e.g. "fsync WAL".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The data directory (or one of its files) was written with another schema.
    #[error(
        "schema mismatch at {path}: the engine was opened with {expected}, but the data was \
         written with {found}; open it with the schema that wrote it or use another data_dir"
    )]
    SchemaMismatch {
        /// The schema the caller opened with.
        expected: SchemaSummary,
        /// The schema recorded on disk.
        found: SchemaSummary,
        /// The file that recorded it.
        path: PathBuf,
    },

    /// The configuration is not usable.
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        /// The offending field of `EngineConfig`.
        field: &'static str,
        /// What is wrong and what would be accepted.
        reason: String,
    },

    /// A Parquet export could not be written (cargo feature `parquet`); file-system failures
    /// are [`DbError::Io`].
    #[error("parquet export: {reason}")]
    Export {
        /// What failed.
        reason: String,
    },

    /// A query asked for something the schema or the engine does not have (a dim, a counter,
    /// a bucket width out of range).
    #[error("invalid query: {reason}")]
    InvalidQuery {
        /// What is wrong and what would be accepted.
        reason: String,
    },

    /// An event does not have the shape of the schema (runtime-schema API only; the typed API
    /// rules this out at compile time).
    #[error("event has {found} {column}, the schema has {expected}")]
    ArityMismatch {
        /// "dims", "counters" or "labels".
        column: &'static str,
        /// What the schema declares.
        expected: usize,
        /// What the event carried.
        found: usize,
    },

    /// A value is larger than the format allows.
    #[error("{column} is {len} bytes, the limit is {max} bytes")]
    ValueTooLarge {
        /// Which column or structure.
        column: String,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A WAL frame failed validation and the recovery mode does not allow dropping it.
    #[error(
        "corrupt WAL {path} at byte {offset}: {reason}; open with \
         WalRecoveryMode::TolerateCorruptTail to keep every frame before it"
    )]
    CorruptWal {
        /// The WAL file.
        path: PathBuf,
        /// Offset of the first bad frame.
        offset: u64,
        /// What failed.
        reason: String,
    },

    /// A segment file failed validation.
    #[error("corrupt segment {path}: {section}: {reason}")]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// The section or structure that failed.
        section: &'static str,
        /// What failed. When the damage is in the file itself, this starts with `at byte N:`,
        /// `N` being the offset from the start of the file of the first damaged byte or of the
        /// structure that failed its check.
        reason: String,
    },

    /// A file was written by a newer (or unknown) version of the format. Nothing was changed:
    /// open it with a build that reads that version.
    #[error("{path} uses format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },

    /// The schema file of a data directory does not parse.
    #[error("schema file {path} is invalid: {reason}")]
    CorruptSchemaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number where there is one.
        reason: String,
    },

    /// The data directory is in use by another engine in this or another process.
    #[error("data directory {path} is locked by another engine; only one writer may open it")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },

    /// A write was attempted on an engine opened read-only.
    #[error("engine is read-only: {op} is not allowed")]
    ReadOnly {
        /// The rejected operation.
        op: &'static str,
    },

    /// An earlier write or fsync of the tombstone log failed; deletes are refused until the
    /// engine is reopened.
    #[error(
        "the tombstone log is unusable after an earlier failure ({reason}); reopen the engine"
    )]
    TombstoneLogFailed {
        /// The earlier failure.
        reason: String,
    },

    /// A shard index outside `0..wal_shard_count`.
    #[error("shard {shard} does not exist, the engine has {shards} shards")]
    ShardOutOfRange {
        /// The requested shard.
        shard: usize,
        /// The number of shards.
        shards: usize,
    },

    /// A previous write or fsync on this shard failed; its state on disk is unknown until the
    /// engine is reopened (which recovers the WAL).
    #[error("shard {shard} is unusable after an earlier failure ({reason}); reopen the engine")]
    ShardFailed {
        /// The shard.
        shard: usize,
        /// The earlier failure.
        reason: String,
    },
}

impl DbError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DbError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A segment file damaged at byte `offset` (from the start of the file) of `section`.
    pub(crate) fn corrupt_segment(
        path: impl Into<PathBuf>,
        section: &'static str,
        offset: u64,
        reason: impl fmt::Display,
    ) -> Self {
        DbError::CorruptSegment {
            path: path.into(),
            section,
            reason: format!("at byte {offset}: {reason}"),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        DbError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Fills in the segment path of a corruption error raised below the segment level.
    pub(crate) fn with_path(mut self, path: &std::path::Path) -> DbError {
        if let DbError::CorruptSegment { path: p, .. } = &mut self {
            if p.as_os_str().is_empty() {
                *p = path.to_path_buf();
            }
        }
        self
    }

    /// True when the error came from the disk filling up (`ENOSPC`) or a quota (`EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Io { source, .. } => matches!(source.raw_os_error(), Some(28) | Some(122)),
            _ => false,
        }
    }
}
