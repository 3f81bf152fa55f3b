//! Opening a data directory: verification first (nothing is written until every file has been
//! checked against the schema), then recovery of WALs and unfinished rotations.
//!
//! `open` runs the phases in order: `scan.rs` (classify the files, verify segments, read WALs),
//! `recover.rs` (each shard's WALs, with `replay.rs` applying their frames), then the view and
//! the rollup store are built here.

mod recover;
mod replay;
mod scan;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use self::recover::{Recovered, Recovery};
use self::scan::{
    load_segments, newest_generation, read_wals, split_superseded, validate_wals, DirFiles,
    WalFiles,
};
use super::{Counters, DynEngine, IdGen};
use crate::config::{EngineConfig, WalRecoveryMode};
use crate::error::{DbError, Result};
use crate::fsutil::remove_if_exists;
use crate::memtable::MemTable;
use crate::query::QueryPool;
use crate::rollups::RollupStore;
use crate::schema::{SchemaDef, SCHEMA_FILE};
use crate::segment::{Segment, SegmentCache};
use crate::shard::Limits;
use crate::staged::StagedSet;
use crate::time::day_of;
use crate::tombstone::Tombstones;
use crate::view::{SegRef, View};
use crate::wal::reader::DiscardedTail;

/// What `open` found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// WAL frames replayed into memtables (or into segments, for unfinished rotations).
    pub frames_replayed: u64,
    /// Events in those frames.
    pub events_replayed: u64,
    /// WAL tails dropped under `WalRecoveryMode::TolerateCorruptTail`.
    pub discarded: Vec<DiscardedTail>,
    /// Segments replaced by a newer segment of the same generation and part (a compaction
    /// that crashed before unlinking them): kept out of queries, and deleted by a writable
    /// open.
    pub superseded_segments: Vec<PathBuf>,
    /// Segment files that failed verification; they are left on disk and kept out of queries.
    pub corrupt_segments: Vec<(PathBuf, String)>,
    /// WAL files whose header was unreadable, renamed to `*.corrupt` and skipped.
    pub corrupt_wals: Vec<PathBuf>,
    /// Unfinished rotations completed (segments written from a `.rotating` WAL).
    pub rotations_completed: usize,
    /// Unfinished rotations whose segments already existed (the `.rotating` file was dropped).
    pub rotations_already_done: usize,
    /// Staged batches still pending (neither published nor retracted), kept invisible.
    pub staged_pending: usize,
}

const LOCK_FILE: &str = "LOCK";

/// Opens the directory of `config`: checks, then recovers (see the module doc).
pub(super) fn open(config: EngineConfig) -> Result<DynEngine> {
    config.validate()?;
    let schema = Arc::new(config.schema());
    let dir = config.data_dir.clone();
    let writable = !config.read_only;
    let mode = config.wal_recovery;
    let lock = if writable {
        Some(lock_dir(&dir)?)
    } else {
        None
    };
    // The schema file is checked first: it names the columns, so its error is the clearest.
    let schema_file = check_schema_file(&dir, &schema)?;
    let files = DirFiles::list(&dir)?;

    // Everything is read and verified before anything is written.
    let cache = SegmentCache::new(config.mmap_cache_capacity, config.segment_cache_bytes);
    let mut report = RecoveryReport::default();
    let segments = load_segments(files.segments, &schema, &cache, &mut report)?;
    let (segments, superseded) = split_superseded(segments);
    report.superseded_segments = superseded.iter().map(|s| s.path.clone()).collect();
    let wals = read_wals(&files.wals, &schema, mode)?;
    if mode == WalRecoveryMode::AbsoluteConsistency {
        validate_wals(&wals, &schema)?;
    }
    let tombstones = Tombstones::load(&dir, &schema, mode, writable, &mut report.discarded)?;
    let next_generation = newest_generation(&segments, &wals) + 1;
    let next_segment_id = files.max_segment_id + 1;
    let parts = Parts {
        schema,
        lock,
        cache,
        tombstones,
        next_generation,
        next_segment_id,
    };
    let mut engine = new_engine(config, parts);

    // From here on the directory is modified (unless read-only).
    if writable {
        prepare_dir(&engine, schema_file.is_none(), &files.tmp, &files.wals)?;
        for s in &superseded {
            remove_if_exists(&s.path)?;
        }
        if !superseded.is_empty() {
            crate::fsutil::sync_dir(&dir)?;
        }
    }
    let recovered = Recovery::new(&engine, segments, report).run(wals)?;
    install(&mut engine, recovered)?;
    Ok(engine)
}

/// Creates the data directory if needed and takes its lock (held as long as the engine).
fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| DbError::io("create data directory", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| DbError::io("open lock file", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(DbError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(DbError::io("lock data directory", &path, e)),
    }
}

/// Reads the directory's schema file, if there is one, and checks that it describes `schema`.
fn check_schema_file(dir: &Path, schema: &SchemaDef) -> Result<Option<SchemaDef>> {
    let found = SchemaDef::read_from_dir(dir)?;
    if let Some(found) = &found {
        if found.schema_id != schema.schema_id || found.fingerprint() != schema.fingerprint() {
            return Err(DbError::SchemaMismatch {
                expected: schema.summary(),
                found: found.summary(),
                path: dir.join(SCHEMA_FILE),
            });
        }
    }
    Ok(found)
}

/// What the engine is built from, besides its configuration.
struct Parts {
    schema: Arc<SchemaDef>,
    lock: Option<File>,
    cache: SegmentCache,
    tombstones: Tombstones,
    next_generation: u64,
    next_segment_id: u64,
}

/// The engine before recovery: no shards, an empty view.
fn new_engine(config: EngineConfig, parts: Parts) -> DynEngine {
    DynEngine {
        dir: config.data_dir.clone(),
        schema: parts.schema.clone(),
        shards: Vec::new(),
        next_shard: AtomicUsize::new(0),
        next_generation: AtomicU64::new(parts.next_generation),
        next_segment_id: AtomicU64::new(parts.next_segment_id),
        view: ArcSwap::from_pointee(View::default()),
        view_lock: Mutex::new(()),
        cache: parts.cache,
        tombstones: parts.tombstones,
        durable_checkpoints: Mutex::new(BTreeMap::new()),
        staged_read_only: StagedSet::default(),
        posting_dims: posting_dims(&parts.schema),
        ids: IdGen::new(),
        counters: Counters::default(),
        report: RecoveryReport::default(),
        limits: limits(&config),
        query_pool: QueryPool::new(config.query_pool.clone(), config.query_threads),
        _lock: parts.lock,
        config,
    }
}

/// The first writes of a writable open: the schema file if there was none, and the removal of
/// temporary files and of prepared next WALs.
fn prepare_dir(
    engine: &DynEngine,
    write_schema: bool,
    tmp: &[PathBuf],
    wals: &BTreeMap<usize, WalFiles>,
) -> Result<()> {
    if write_schema {
        engine.schema.write_to_dir(&engine.dir)?;
    }
    for p in tmp {
        remove_if_exists(p)?;
    }
    for f in wals.values() {
        if let Some(p) = &f.new {
            // A prepared next WAL only holds a checkpoint snapshot, which the rotating WAL
            // it was meant to replace also holds.
            remove_if_exists(p)?;
        }
    }
    Ok(())
}

/// Gives the engine what recovery found: its shards, its view (with the rollup store), the
/// durable checkpoints and the report.
fn install(engine: &mut DynEngine, recovered: Recovered) -> Result<()> {
    engine.shards = recovered.shards;
    if !engine.config.read_only && engine.shards.len() != engine.config.wal_shard_count {
        return Err(DbError::config(
            "wal_shard_count",
            "internal: a shard was not initialised",
        ));
    }
    let view = build_view(engine, &recovered.segments, recovered.memtables)?;
    engine.view.store(Arc::new(view));
    *engine
        .durable_checkpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = recovered.checkpoints;
    engine.staged_read_only = recovered.staged_read_only;
    let report = recovered.report;
    for d in &report.discarded {
        tracing::warn!(path = %d.path.display(), offset = d.offset, bytes = d.bytes, reason = %d.reason, "WAL tail discarded during recovery");
    }
    engine.report = report;
    Ok(())
}

/// The view of `segments` (with their deleted rows) and `memtables`, sorted, with its rollup
/// store.
fn build_view(
    engine: &DynEngine,
    segments: &[Arc<Segment>],
    memtables: Vec<Arc<MemTable>>,
) -> Result<View> {
    let segments = segments
        .iter()
        .map(|s| {
            Ok(SegRef {
                seg: s.clone(),
                deleted: engine.deleted_rows_of(s)?,
            })
        })
        .collect::<Result<_>>()?;
    let mut view = View {
        segments,
        memtables,
        rollups: Default::default(),
    };
    view.sort();
    view.rollups = Arc::new(rollup_store(engine, &view)?);
    Ok(view)
}

/// The rollups of the view's segments for the `rollup_replay_days` days ending at the view's
/// newest day; older days are scanned when queried.
fn rollup_store(engine: &DynEngine, view: &View) -> Result<RollupStore> {
    let schema = &engine.schema;
    let mut rollups = RollupStore::default();
    if let Some(day) = view.newest_day() {
        rollups.advance_floor(day, engine.config.rollup_replay_days);
    }
    for s in &view.segments {
        if day_of(s.seg.max_ts) >= rollups.floor {
            let data = s.seg.data(schema, &engine.cache)?;
            rollups
                .apply_segment(
                    &data,
                    s.deleted.as_deref(),
                    &schema.rollup_dims,
                    schema.counters.len(),
                    false,
                )
                .map_err(|e| e.with_path(&s.seg.path))?;
        }
    }
    Ok(rollups)
}

/// The dims with posting lists: the bloom dim and the rollup dims.
fn posting_dims(schema: &SchemaDef) -> Vec<usize> {
    let mut dims: Vec<usize> = schema
        .bloom_dim
        .into_iter()
        .chain(schema.rollup_dims.iter().copied())
        .collect();
    dims.sort_unstable();
    dims.dedup();
    dims
}

/// The shards' sync and rotation thresholds (`wal_sync_every_events = u32::MAX` turns off
/// syncing by count and by size).
fn limits(c: &EngineConfig) -> Limits {
    let never = c.wal_sync_every_events == u32::MAX;
    Limits {
        sync_events: if never {
            u64::MAX
        } else {
            c.wal_sync_every_events as u64
        },
        sync_bytes: if never { u64::MAX } else { c.wal_sync_bytes },
        max_events: c.wal_max_events,
        max_bytes: c.wal_max_bytes,
    }
}
