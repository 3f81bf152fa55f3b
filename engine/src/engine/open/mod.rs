//! Opening a data directory: verification first (nothing is written until every file has been
//! checked against the schema), then recovery of WALs and unfinished rotations.

mod replay;
mod scan;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use self::replay::replay;
use self::scan::{load_segments, newest_generation, read_wals, validate_wals, DirFiles, ShardWals};
use super::{Counters, DynEngine, IdGen};
use crate::config::{EngineConfig, WalRecoveryMode};
use crate::error::{DbError, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::memtable::MemTable;
use crate::query::QueryPool;
use crate::rollups::RollupStore;
use crate::schema::{SchemaDef, SCHEMA_FILE};
use crate::segment::{Segment, SegmentCache};
use crate::shard::{Limits, Shard, ShardState};
use crate::staged::StagedSet;
use crate::time::day_of;
use crate::tombstone::Tombstones;
use crate::view::{SegRef, View};
use crate::wal::reader::{DiscardedTail, WalRead};
use crate::wal::writer::WalWriter;
use crate::wal::{active_name, new_name, WAL_VERSION};

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
    let cache = SegmentCache::new(config.mmap_cache_capacity);
    let mut report = RecoveryReport::default();
    let mut segments = load_segments(files.segments, &schema, &cache, &mut report)?;
    let mut images = read_wals(&files.wals, &schema, mode)?;
    if mode == WalRecoveryMode::AbsoluteConsistency {
        validate_wals(&images, &schema)?;
    }
    let tombstones = Tombstones::load(&dir, &schema, mode, writable, &mut report.discarded)?;
    let next_generation = newest_generation(&segments, &images);
    let max_seg_id = files.max_segment_id;
    let shard_count = config.wal_shard_count;
    let posting_dims = posting_dims(&schema);
    let limits = limits(&config);
    let mut engine = DynEngine {
        schema: schema.clone(),
        dir: dir.clone(),
        shards: Vec::new(),
        next_shard: AtomicUsize::new(0),
        next_generation: AtomicU64::new(next_generation + 1),
        next_segment_id: AtomicU64::new(max_seg_id + 1),
        view: ArcSwap::from_pointee(View::default()),
        view_lock: Mutex::new(()),
        cache,
        tombstones,
        durable_checkpoints: Mutex::new(BTreeMap::new()),
        posting_dims,
        ids: IdGen::new(),
        counters: Counters::default(),
        report: RecoveryReport::default(),
        limits,
        query_pool: QueryPool::new(config.query_pool.clone(), config.query_threads),
        _lock: lock,
        config,
    };

    // From here on the directory is modified (unless read-only).
    if writable {
        if schema_file.is_none() {
            schema.write_to_dir(&dir)?;
        }
        for p in &files.tmp {
            remove_if_exists(p)?;
        }
        for f in files.wals.values() {
            if let Some(p) = &f.new {
                // A prepared next WAL only holds a checkpoint snapshot, which the rotating WAL
                // it was meant to replace also holds.
                remove_if_exists(p)?;
            }
        }
    }

    let mut memtables: Vec<Arc<MemTable>> = Vec::new();
    let mut all_checkpoints: BTreeMap<String, u64> = BTreeMap::new();
    let mut inherited: BTreeMap<String, u64> = BTreeMap::new();
    let mut inherited_staged = StagedSet::default();
    let mut shards: Vec<Option<Shard>> = (0..shard_count).map(|_| None).collect();
    let mut to_unlink = Vec::new();

    // Shards beyond the configured count (the count was lowered) are processed first: their
    // events become segments and their checkpoints move to shard 0.
    let order: Vec<usize> = {
        let mut extra: Vec<usize> = images
            .keys()
            .copied()
            .filter(|&s| s >= shard_count)
            .collect();
        extra.extend(0..shard_count);
        extra
    };
    for i in order {
        let ShardWals { active, rotating } = images.remove(&i).unwrap_or(ShardWals {
            active: None,
            rotating: None,
        });
        let mut cps: BTreeMap<String, u64> = BTreeMap::new();
        let mut staged = StagedSet::default();
        let mut rewrote = false;

        if let Some(read) = rotating {
            match read {
                WalRead::Image(mut img) => {
                    let mem = replay(
                        &mut img,
                        &schema,
                        &engine.tombstones,
                        (&mut cps, &mut staged),
                        &mut report,
                        mode,
                    )?;
                    let generation = img.header.generation;
                    let complete = complete_generation(&segments, generation);
                    if complete {
                        report.rotations_already_done += 1;
                    } else if writable {
                        rewrite_generation(&engine, &mut segments, &mem, generation)?;
                        report.rotations_completed += 1;
                    } else {
                        // Read-only: serve the WAL, not the incomplete parts.
                        segments.retain(|s| s.generation != generation);
                        if mem.read().len() > 0 {
                            memtables.push(Arc::new(mem));
                        }
                    }
                    to_unlink.push(img.path.clone());
                    rewrote = true;
                }
                WalRead::BadHeader { path, reason, .. } => {
                    set_aside(&path, &reason, writable, &mut report)?;
                }
            }
        }

        let mut state_wal = None;
        let mut state_mem = None;
        match active {
            Some(WalRead::Image(mut img)) => {
                let mem = replay(
                    &mut img,
                    &schema,
                    &engine.tombstones,
                    (&mut cps, &mut staged),
                    &mut report,
                    mode,
                )?;
                if writable && i < shard_count && img.header.version == WAL_VERSION {
                    state_wal = Some(WalWriter::open_at(&img.path, img.valid_len)?);
                    state_mem = Some(Arc::new(mem));
                } else if writable {
                    // A shard that no longer exists, or a WAL of an older version (appends go
                    // to a new file of the current one): its events go to segments now, unless
                    // a crash after an earlier conversion left the file behind (same
                    // generation).
                    let generation = img.header.generation;
                    if !complete_generation(&segments, generation) && mem.read().len() > 0 {
                        rewrite_generation(&engine, &mut segments, &mem, generation)?;
                    }
                    if i >= shard_count {
                        to_unlink.push(img.path.clone());
                    }
                    // else: an older version's WAL, replaced below by renaming the new WAL
                    // over it (a crash before that converts it again: same generation).
                } else if mem.read().len() > 0 {
                    memtables.push(Arc::new(mem));
                }
            }
            Some(WalRead::BadHeader { path, reason, .. }) => {
                set_aside(&path, &reason, writable, &mut report)?;
            }
            None => {}
        }

        for (k, p) in &cps {
            let e = all_checkpoints.entry(k.clone()).or_insert(*p);
            *e = (*e).max(*p);
        }
        if i >= shard_count {
            for (k, p) in cps {
                let e = inherited.entry(k).or_insert(p);
                *e = (*e).max(p);
            }
            inherited_staged.absorb(staged);
            continue;
        }
        if !writable {
            continue;
        }
        if i == 0 {
            for (k, p) in std::mem::take(&mut inherited) {
                let e = cps.entry(k).or_insert(p);
                *e = (*e).max(p);
                rewrote = true;
            }
            if !inherited_staged.is_empty() {
                staged.absorb(std::mem::take(&mut inherited_staged));
                rewrote = true;
            }
        }
        report.staged_pending += staged.iter().count();
        let (wal, mem) = match (state_wal, state_mem) {
            (Some(mut w), Some(m)) => {
                if rewrote && !(cps.is_empty() && staged.is_empty()) {
                    // The checkpoints and pending staged batches of the rotating (or removed)
                    // WAL must live on in the active one before that file is unlinked.
                    if !cps.is_empty() {
                        super::rotate::append_snapshot(&mut w, &cps)?;
                    }
                    super::rotate::append_staged(&mut w, &staged)?;
                    w.sync()?;
                }
                (w, m)
            }
            _ => {
                let generation = engine
                    .next_generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Prepared under the `.new` name and renamed, so a crash never leaves a
                // half-written header under the active name.
                let new = dir.join(new_name(i));
                let path = dir.join(active_name(i));
                let mut w = engine.create_wal(&new, i, generation, &cps, &staged)?;
                fs::rename(&new, &path).map_err(|e| DbError::io("install new WAL", &path, e))?;
                sync_dir(&dir)?;
                w.path = path;
                (w, Arc::new(MemTable::new(i, generation, &schema)))
            }
        };
        memtables.push(mem.clone());
        shards[i] = Some(Shard::new(
            i,
            ShardState {
                wal,
                mem,
                events_since_sync: 0,
                bytes_since_sync: 0,
                checkpoints: cps,
                failed: None,
                staged,
            },
        ));
    }
    if writable {
        for p in &to_unlink {
            remove_if_exists(p)?;
        }
        if !to_unlink.is_empty() {
            sync_dir(&dir)?;
        }
        // Shard 0 may have been processed before checkpoints of removed shards existed only if
        // there were none; `inherited` is empty here in every other case.
        debug_assert!(inherited.is_empty());
    }

    engine.shards = shards.into_iter().flatten().collect();
    if writable && engine.shards.len() != shard_count {
        return Err(DbError::config(
            "wal_shard_count",
            "internal: a shard was not initialised",
        ));
    }
    let mut view = View {
        segments: segments
            .iter()
            .map(|s| {
                Ok(SegRef {
                    seg: s.clone(),
                    deleted: engine.deleted_rows_of(s)?,
                })
            })
            .collect::<Result<_>>()?,
        memtables,
        rollups: Default::default(),
    };
    view.sort();
    let mut rollups = RollupStore::default();
    if let Some(day) = view.newest_day() {
        rollups.advance_floor(day, engine.config.rollup_replay_days);
    }
    for s in &view.segments {
        if day_of(s.seg.max_ts) >= rollups.floor {
            let data = s.seg.data(&schema, &engine.cache)?;
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
    view.rollups = Arc::new(rollups);
    engine.view.store(Arc::new(view));
    *engine
        .durable_checkpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = all_checkpoints;
    for d in &report.discarded {
        tracing::warn!(path = %d.path.display(), offset = d.offset, bytes = d.bytes, reason = %d.reason, "WAL tail discarded during recovery");
    }
    engine.report = report;
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

/// Writes `mem` (the events of WAL `generation`) as segments, first removing any parts of that
/// generation an interrupted run left behind.
fn rewrite_generation(
    engine: &DynEngine,
    segments: &mut Vec<Arc<Segment>>,
    mem: &MemTable,
    generation: u64,
) -> Result<()> {
    for s in segments.iter().filter(|s| s.generation == generation) {
        remove_if_exists(&s.path)?;
    }
    segments.retain(|s| s.generation != generation);
    segments.extend(engine.write_segments(mem)?);
    Ok(())
}

/// True when every part of `generation` is among `segments`.
fn complete_generation(segments: &[Arc<Segment>], generation: u64) -> bool {
    let parts: Vec<&Arc<Segment>> = segments
        .iter()
        .filter(|s| s.generation == generation)
        .collect();
    let Some(first) = parts.first() else {
        return false;
    };
    let count = first.part_count as usize;
    let indexes: HashSet<u16> = parts.iter().map(|s| s.part_index).collect();
    parts
        .iter()
        .all(|s| s.part_count as usize == count && (s.part_index as usize) < count)
        && indexes.len() == count
        && parts.len() == count
}

/// A WAL whose header cannot be read: renamed aside (kept for inspection) and reported.
fn set_aside(path: &Path, reason: &str, writable: bool, report: &mut RecoveryReport) -> Result<()> {
    tracing::error!(path = %path.display(), reason, "WAL header unreadable; file set aside");
    if writable {
        let mut aside = path.as_os_str().to_owned();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        aside.push(format!(".{stamp}.corrupt"));
        fs::rename(path, &aside).map_err(|e| DbError::io("set aside corrupt WAL", path, e))?;
    }
    report.corrupt_wals.push(path.to_path_buf());
    Ok(())
}

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
