//! `DynEngine`: the runtime-schema engine every other API is built on.

mod compact;
mod delete;
pub(crate) mod group;
mod open;
mod query;
mod rotate;
mod segments;
mod staged;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::EngineConfig;
use crate::error::{DbError, Result};
use crate::event::{DynEvent, Row};
use crate::fsutil;
use crate::query::read::{mem_event, seg_event};
use crate::query::QueryPool;
use crate::schema::SchemaDef;
use crate::segment::SegmentCache;
use crate::shard::{Limits, Shard};
use crate::staged::StagedSet;
use crate::tombstone::Tombstones;
use crate::view::View;
use crate::wal::frame::{encode_events, FrameBuf, FrameKind, IdSource};

pub use compact::CompactStats;
pub use group::{MAX_BUCKET_NS, MIN_BUCKET_NS};
pub use open::RecoveryReport;
pub use segments::SegmentInfo;

/// Identifies an append, to ask whether it has passed the fsync boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendTicket {
    /// Shard the batch was written to.
    pub shard: usize,
    /// Position of its frame in the shard's WAL (per process; starts at 1).
    pub lsn: u64,
}

/// A source position recorded in the same WAL frame as a batch, so that it becomes durable
/// exactly when the batch does (the basis of exactly-once ingestion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceCheckpoint<'a> {
    /// Source key, e.g. `"topic/partition"`. At most 1,024 bytes.
    pub source: &'a str,
    /// Position in the source, e.g. the Kafka offset of the batch's last message. Positions of a
    /// key must grow: the engine keeps the largest durable one.
    pub position: u64,
}

/// What `gc` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Events in them (not counting already-deleted events).
    pub events_deleted: u64,
}

/// Counters describing the engine's work since open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Events appended.
    pub events_appended: u64,
    /// WAL frames written.
    pub frames_written: u64,
    /// WAL fsyncs issued (group commit makes this lower than durable appends).
    pub fsyncs: u64,
    /// Total time spent in WAL fsyncs, in nanoseconds.
    pub fsync_nanos: u64,
    /// Completed rotations.
    pub rotations: u64,
    /// Rotations that failed and will be retried.
    pub rotation_failures: u64,
    /// Segments in the view.
    pub segments: usize,
    /// Segments whose columns are mapped.
    pub mapped_segments: usize,
    /// Bytes of memory the mapped segments' decoded columns and indexes hold (bounded by
    /// `segment_cache_bytes`, as of the last load).
    pub segment_cache_bytes: u64,
    /// Segments decoded again since open because the cache had dropped them: a figure that
    /// climbs with every query means the cache is smaller than the data queries touch.
    pub segment_reloads: u64,
    /// Events held in memtables (not yet in segments).
    pub memtable_events: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    frames: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    rotations: AtomicU64,
    rotation_failures: AtomicU64,
}

/// Ids for events appended without one: a per-open random prefix and a counter.
#[derive(Debug)]
struct IdGen {
    prefix: u64,
    next: AtomicU64,
}

impl IdSource for IdGen {
    fn next_id(&self, out: &mut String) {
        use std::fmt::Write;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = write!(out, "{:016x}-{n:x}", self.prefix);
    }
}

impl IdGen {
    fn new() -> IdGen {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = format!("{now}/{}", std::process::id());
        IdGen {
            prefix: crate::hash::hash64(seed.as_bytes()),
            next: AtomicU64::new(0),
        }
    }
}

/// The engine with a schema known at run time. `Engine<D, C, L>` is a thin typed layer over it.
///
/// `Send + Sync`: share it with an `Arc` and append from many threads.
#[derive(Debug)]
pub struct DynEngine {
    pub(crate) schema: Arc<SchemaDef>,
    config: EngineConfig,
    dir: PathBuf,
    shards: Vec<Shard>,
    next_shard: AtomicUsize,
    next_generation: AtomicU64,
    next_segment_id: AtomicU64,
    view: ArcSwap<View>,
    view_lock: Mutex<()>,
    pub(crate) cache: SegmentCache,
    tombstones: Tombstones,
    durable_checkpoints: Mutex<BTreeMap<String, u64>>,
    /// A read-only open's pending staged batches (it has no shards to hold them).
    staged_read_only: StagedSet,
    posting_dims: Vec<usize>,
    ids: IdGen,
    counters: Counters,
    report: RecoveryReport,
    limits: Limits,
    query_pool: QueryPool,
    _lock: Option<File>,
}

/// See [`DynEngine::shard_for`].
fn shard_for(group: &str, member: u64, shards: usize) -> usize {
    (crate::hash::hash64(group.as_bytes()).wrapping_add(member) % shards.max(1) as u64) as usize
}

thread_local! {
    static FRAME_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl DynEngine {
    /// Opens (creating if needed) the data directory described by `config`, recovering the WAL.
    pub fn open(config: EngineConfig) -> Result<DynEngine> {
        open::open(config)
    }

    /// Opens a data directory read-only, taking the schema from its `keplordb.schema` file.
    /// Nothing is written, not even recovery: the WAL is replayed into memory. Useful to inspect
    /// a stopped (or running) writer's data.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<DynEngine> {
        let dir = dir.as_ref();
        let schema = SchemaDef::read_from_dir(dir)?.ok_or_else(|| {
            DbError::io(
                "read schema file",
                dir.join(crate::schema::SCHEMA_FILE),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a keplordb data directory",
                ),
            )
        })?;
        let mut config = EngineConfig::new(dir);
        config.schema_id = schema.schema_id;
        config.dim_names = schema.dims;
        config.counter_names = schema.counters;
        config.label_names = schema.labels;
        config.bloom_dim = schema.bloom_dim;
        config.rollup_dims = schema.rollup_dims;
        config.read_only = true;
        open::open(config)
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaDef {
        &self.schema
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of WAL shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard for member `member` of a group of sources named `group` (e.g. a Kafka topic and
    /// one of its partitions), for [`append_batch_to`](Self::append_batch_to): stable across
    /// restarts and releases for a given shard count; consecutive members of one group land on
    /// consecutive shards, and groups start at shards spread by a stable hash of their name.
    pub fn shard_for(&self, group: &str, member: u64) -> usize {
        shard_for(group, member, self.shards.len())
    }

    /// What open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    fn writable(&self, op: &'static str) -> Result<()> {
        if self.config.read_only {
            return Err(DbError::ReadOnly { op });
        }
        Ok(())
    }

    pub(crate) fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    fn lock_view(&self) -> MutexGuard<'_, ()> {
        self.view_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one event (durable per `wal_sync_every_events` / `wal_sync_bytes`).
    pub fn append<R: Row>(&self, row: &R) -> Result<AppendTicket> {
        self.append_impl(std::slice::from_ref(row), None, None, false)
    }

    /// Appends one event and fsyncs before returning.
    pub fn append_durable<R: Row>(&self, row: &R) -> Result<AppendTicket> {
        self.append_impl(std::slice::from_ref(row), None, None, true)
    }

    /// Appends a batch as one WAL frame (all or nothing) on one shard.
    pub fn append_batch<R: Row>(&self, rows: &[R]) -> Result<AppendTicket> {
        self.append_impl(rows, None, None, false)
    }

    /// Appends a batch and fsyncs before returning.
    pub fn append_batch_durable<R: Row>(&self, rows: &[R]) -> Result<AppendTicket> {
        self.append_impl(rows, None, None, true)
    }

    /// Appends a batch to a chosen shard, optionally with a source checkpoint written in the
    /// same frame. The batch (and checkpoint) is durable once `is_durable(&ticket)` is true;
    /// `wait_durable` forces it.
    pub fn append_batch_to<R: Row>(
        &self,
        shard: usize,
        rows: &[R],
        checkpoint: Option<SourceCheckpoint<'_>>,
    ) -> Result<AppendTicket> {
        self.writable("append")?;
        if shard >= self.shards.len() {
            return Err(DbError::ShardOutOfRange {
                shard,
                shards: self.shards.len(),
            });
        }
        self.append_impl(rows, Some(shard), checkpoint, false)
    }

    fn append_impl<R: Row>(
        &self,
        rows: &[R],
        shard: Option<usize>,
        checkpoint: Option<SourceCheckpoint<'_>>,
        durable: bool,
    ) -> Result<AppendTicket> {
        self.writable("append")?;
        let buf = FRAME_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut frame = FrameBuf::with_buffer(buf, FrameKind::Events);
        let result = (|| {
            encode_events(
                &mut frame,
                &self.schema,
                rows,
                checkpoint.map(|c| (c.source, c.position)),
                &self.ids,
            )?;
            let bytes = frame.finish()?;
            self.write_frame(bytes, rows.len(), shard, durable)
        })();
        let mut buf = frame.into_buffer();
        if buf.capacity() <= 4 << 20 {
            buf.clear();
            FRAME_BUF.with(|b| *b.borrow_mut() = buf);
        }
        result
    }

    fn write_frame(
        &self,
        frame: &[u8],
        n: usize,
        shard: Option<usize>,
        durable: bool,
    ) -> Result<AppendTicket> {
        let (shard, mut st) = match shard {
            Some(i) => (&self.shards[i], self.shards[i].state()),
            None => self.claim_shard(),
        };
        let written = if self.tombstones.is_empty() {
            shard.write_events(&mut st, frame, &self.schema, self.limits, durable, &|_| {
                false
            })
        } else {
            let dead = self.tombstones.read();
            shard.write_events(&mut st, frame, &self.schema, self.limits, durable, &|id| {
                dead.contains(id)
            })
        }?;
        drop(st);
        self.counters.events.fetch_add(n as u64, Ordering::Relaxed);
        self.counters.frames.fetch_add(1, Ordering::Relaxed);
        let ticket = AppendTicket {
            shard: shard.index,
            lsn: written.lsn,
        };
        if written.need_sync {
            self.sync_shard(shard, written.lsn)?;
        }
        if written.need_rotate {
            // The append itself succeeded; a failed rotation is logged and retried later, never
            // reported as a failed append (the caller would retry and duplicate the batch).
            if let Err(e) = self.rotate(shard, false) {
                self.counters
                    .rotation_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(shard = shard.index, error = %e, "rotation failed; will retry");
            }
        }
        Ok(ticket)
    }

    /// Picks a shard with one `fetch_add`; if it is busy, tries the others once before waiting.
    fn claim_shard(&self) -> (&Shard, MutexGuard<'_, crate::shard::ShardState>) {
        let n = self.shards.len();
        let start = self.next_shard.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let s = &self.shards[(start + k) % n];
            if let Some(g) = s.try_state() {
                return (s, g);
            }
        }
        let s = &self.shards[start];
        (s, s.state())
    }

    fn sync_shard(&self, shard: &Shard, lsn: u64) -> Result<()> {
        let out = shard.sync_to(lsn)?;
        if out.fsynced {
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.counters
                .fsync_nanos
                .fetch_add(out.nanos, Ordering::Relaxed);
        }
        self.promote_checkpoints(shard);
        Ok(())
    }

    fn promote_checkpoints(&self, shard: &Shard) {
        let durable = shard.take_durable_checkpoints();
        if durable.is_empty() {
            return;
        }
        let mut map = self
            .durable_checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, p) in durable {
            let e = map.entry(k).or_insert(p);
            *e = (*e).max(p);
        }
    }

    /// True once the append identified by `ticket` is on stable storage.
    pub fn is_durable(&self, ticket: &AppendTicket) -> bool {
        self.shards
            .get(ticket.shard)
            .is_some_and(|s| s.synced_lsn.load(Ordering::Acquire) >= ticket.lsn)
    }

    /// Makes the append identified by `ticket` durable (an fsync unless one already covered it).
    pub fn wait_durable(&self, ticket: &AppendTicket) -> Result<()> {
        self.writable("wait_durable")?;
        let shard = self
            .shards
            .get(ticket.shard)
            .ok_or(DbError::ShardOutOfRange {
                shard: ticket.shard,
                shards: self.shards.len(),
            })?;
        self.sync_shard(shard, ticket.lsn)
    }

    /// The largest durable position of every source key: recovered on open from the WAL, then
    /// advanced as checkpointed batches pass the fsync boundary.
    pub fn durable_checkpoints(&self) -> BTreeMap<String, u64> {
        for s in &self.shards {
            self.promote_checkpoints(s);
        }
        self.durable_checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The largest durable position of one source key.
    pub fn durable_checkpoint(&self, source: &str) -> Option<u64> {
        self.durable_checkpoints().get(source).copied()
    }

    /// fsyncs every shard's WAL.
    pub fn sync(&self) -> Result<()> {
        self.writable("sync")?;
        for s in &self.shards {
            self.sync_shard(s, s.written_lsn.load(Ordering::Acquire))?;
        }
        Ok(())
    }

    /// Rotates every shard's WAL into segments (and fsyncs it). Returns the first error.
    pub fn flush(&self) -> Result<()> {
        self.writable("flush")?;
        let mut first = None;
        for s in &self.shards {
            if let Err(e) = self.rotate(s, true) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Deletes every segment whose newest event is older than `cutoff_ns`. Events still in the
    /// WAL are never collected.
    pub fn gc(&self, cutoff_ns: i64) -> Result<GcStats> {
        self.gc_where(cutoff_ns, |_| true)
    }

    /// [`gc`](Self::gc), but a segment older than `cutoff_ns` is deleted only when `may_drop`
    /// says so: a consumer that has not handled a segment yet (an archive) keeps it.
    pub fn gc_where(
        &self,
        cutoff_ns: i64,
        may_drop: impl Fn(&SegmentInfo) -> bool,
    ) -> Result<GcStats> {
        self.writable("gc")?;
        let _v = self.lock_view();
        let current = self.view.load_full();
        let (drop, keep): (Vec<_>, Vec<_>) = current
            .segments
            .iter()
            .cloned()
            .partition(|s| s.seg.max_ts < cutoff_ns && may_drop(&SegmentInfo::of(s)));
        if drop.is_empty() {
            return Ok(GcStats::default());
        }
        let mut next = (*current).clone();
        next.segments = keep;
        let mut rollups = (*next.rollups).clone();
        for s in &drop {
            if crate::time::day_of(s.seg.max_ts) >= rollups.floor {
                let data = s.seg.data(&self.schema, &self.cache)?;
                rollups.apply_segment(
                    &data,
                    s.deleted.as_deref(),
                    &self.schema.rollup_dims,
                    self.schema.counters.len(),
                    true,
                )?;
            }
        }
        next.rollups = Arc::new(rollups);
        self.view.store(Arc::new(next));
        let mut stats = GcStats::default();
        for s in &drop {
            fsutil::remove_if_exists(&s.seg.path)?;
            stats.segments_deleted += 1;
            stats.events_deleted += s.live_rows() as u64;
        }
        fsutil::sync_dir(&self.dir)?;
        Ok(stats)
    }

    /// Live events stored (segments and memtables, minus deleted).
    pub fn total_events(&self) -> u64 {
        let view = self.view();
        let segs: usize = view.segments.iter().map(|s| s.live_rows()).sum();
        let mems: usize = view.memtables.iter().map(|m| m.read().live_len()).sum();
        (segs + mems) as u64
    }

    /// Bytes on disk: segment files plus WAL files.
    pub fn total_bytes(&self) -> u64 {
        let view = self.view();
        let segs: u64 = view.segments.iter().map(|s| s.seg.file_len).sum();
        let wals: u64 = self.shards.iter().map(|s| s.state().wal.len).sum();
        segs + wals
    }

    /// Work counters since open.
    pub fn stats(&self) -> EngineStats {
        let view = self.view();
        let c = &self.counters;
        EngineStats {
            events_appended: c.events.load(Ordering::Relaxed),
            frames_written: c.frames.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_nanos: c.fsync_nanos.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            rotation_failures: c.rotation_failures.load(Ordering::Relaxed),
            segments: view.segments.len(),
            mapped_segments: self.cache.mapped(),
            segment_cache_bytes: self.cache.mapped_bytes(),
            segment_reloads: self.cache.reloads(),
            memtable_events: view.memtables.iter().map(|m| m.read().len() as u64).sum(),
        }
    }

    /// Calls `f` with every live event, segments first then memtables, in no particular order.
    /// A full scan: meant for export, inspection and tests, not for queries.
    pub fn scan_events(&self, mut f: impl FnMut(DynEvent)) -> Result<()> {
        let view = self.view();
        let (nc, nl) = (self.schema.counters.len(), self.schema.labels.len());
        for s in &view.segments {
            let data = s.seg.data(&self.schema, &self.cache)?;
            for row in 0..data.rows {
                if s.deleted.as_ref().is_some_and(|d| d.contains(row)) {
                    continue;
                }
                f(seg_event(&data, row, nc, nl).map_err(|e| e.with_path(&s.seg.path))?);
            }
        }
        for m in &view.memtables {
            let data = m.read();
            for row in 0..data.len() {
                if !data.is_deleted(row) {
                    f(mem_event(&data, row));
                }
            }
        }
        Ok(())
    }
}
