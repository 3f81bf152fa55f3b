//! Recovery of each shard's WALs: unfinished rotations completed, active WALs replayed and kept
//! or converted to segments, the WALs of removed shards emptied into shard 0's checkpoints.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::replay::{merge_checkpoint, replay};
use super::scan::ShardWals;
use super::RecoveryReport;
use crate::config::WalRecoveryMode;
use crate::engine::rotate::{append_snapshot, append_staged};
use crate::engine::DynEngine;
use crate::error::{DbError, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::memtable::MemTable;
use crate::segment::Segment;
use crate::shard::{Shard, ShardState};
use crate::staged::StagedSet;
use crate::wal::reader::{WalImage, WalRead};
use crate::wal::writer::WalWriter;
use crate::wal::{active_name, new_name, WAL_VERSION};

/// What recovery hands to the engine.
pub(super) struct Recovered {
    /// The verified segments, with the ones recovery wrote.
    pub segments: Vec<Arc<Segment>>,
    /// Every shard's memtable, and (read-only) the replayed events of WALs no shard keeps.
    pub memtables: Vec<Arc<MemTable>>,
    /// One per configured shard when writable; none when read-only.
    pub shards: Vec<Shard>,
    /// The largest position of every source key, over all WALs.
    pub checkpoints: BTreeMap<String, u64>,
    /// Read-only: the pending staged batches, which no shard holds (none when writable).
    pub staged_read_only: StagedSet,
    pub report: RecoveryReport,
}

/// Recovery's state across shards.
pub(super) struct Recovery<'e> {
    engine: &'e DynEngine,
    writable: bool,
    mode: WalRecoveryMode,
    shard_count: usize,
    report: RecoveryReport,
    segments: Vec<Arc<Segment>>,
    memtables: Vec<Arc<MemTable>>,
    all_checkpoints: BTreeMap<String, u64>,
    /// Checkpoints and staged batches of removed shards, waiting for shard 0.
    inherited: BTreeMap<String, u64>,
    inherited_staged: StagedSet,
    /// Read-only: every shard's pending staged batches.
    staged_read_only: StagedSet,
    shards: Vec<Option<Shard>>,
    /// WALs whose contents live on elsewhere, removed once every shard is recovered.
    to_unlink: Vec<PathBuf>,
}

/// What one shard's WALs hold beyond events.
#[derive(Default)]
struct ShardLog {
    cps: BTreeMap<String, u64>,
    staged: StagedSet,
    /// A WAL holding some of these is to be unlinked: they must be written again.
    rewrote: bool,
}

/// The WAL and memtable a shard goes on with.
type Kept = (WalWriter, Arc<MemTable>);

impl<'e> Recovery<'e> {
    pub(super) fn new(
        engine: &'e DynEngine,
        segments: Vec<Arc<Segment>>,
        report: RecoveryReport,
    ) -> Recovery<'e> {
        let shard_count = engine.config.wal_shard_count;
        Recovery {
            engine,
            writable: !engine.config.read_only,
            mode: engine.config.wal_recovery,
            shard_count,
            report,
            segments,
            memtables: Vec::new(),
            all_checkpoints: BTreeMap::new(),
            inherited: BTreeMap::new(),
            inherited_staged: StagedSet::default(),
            staged_read_only: StagedSet::default(),
            shards: (0..shard_count).map(|_| None).collect(),
            to_unlink: Vec::new(),
        }
    }

    /// Recovers every shard, then removes the WALs whose contents live on elsewhere.
    pub(super) fn run(mut self, mut wals: BTreeMap<usize, ShardWals>) -> Result<Recovered> {
        // Shards beyond the configured count (the count was lowered) are processed first: their
        // events become segments and their checkpoints move to shard 0.
        let extra: Vec<usize> = wals
            .keys()
            .copied()
            .filter(|&s| s >= self.shard_count)
            .collect();
        for i in extra.into_iter().chain(0..self.shard_count) {
            let found = wals.remove(&i).unwrap_or(ShardWals {
                active: None,
                rotating: None,
            });
            self.recover_shard(i, found)?;
        }
        if !self.writable {
            // Removed shards' batches: shard 0 would take them over.
            let inherited = std::mem::take(&mut self.inherited_staged);
            self.staged_read_only.absorb(inherited);
        }
        self.unlink_replaced()?;
        Ok(Recovered {
            segments: self.segments,
            memtables: self.memtables,
            shards: self.shards.into_iter().flatten().collect(),
            checkpoints: self.all_checkpoints,
            staged_read_only: self.staged_read_only,
            report: self.report,
        })
    }

    /// Recovers shard `i` from its WALs: the rotating one first, then the active one.
    fn recover_shard(&mut self, i: usize, wals: ShardWals) -> Result<()> {
        let mut log = ShardLog::default();
        if let Some(read) = wals.rotating {
            self.recover_rotating(read, &mut log)?;
        }
        let kept = match wals.active {
            Some(read) => self.recover_active(i, read, &mut log)?,
            None => None,
        };
        for (k, p) in &log.cps {
            merge_checkpoint(&mut self.all_checkpoints, k.clone(), *p);
        }
        if i >= self.shard_count {
            self.inherit(log);
            return Ok(());
        }
        if !self.writable {
            // No shard to hold them, but `staged_positions` still reports them.
            self.staged_read_only.absorb(log.staged);
            return Ok(());
        }
        if i == 0 {
            self.take_inherited(&mut log);
        }
        self.report.staged_pending += log.staged.iter().count();
        let (wal, mem) = match kept {
            Some((w, m)) => (rewrite_log(w, &log)?, m),
            None => self.fresh_wal(i, &log)?,
        };
        self.memtables.push(mem.clone());
        self.shards[i] = Some(Shard::new(
            i,
            ShardState {
                wal,
                mem,
                events_since_sync: 0,
                bytes_since_sync: 0,
                checkpoints: log.cps,
                failed: None,
                staged: log.staged,
            },
        ));
        Ok(())
    }

    /// A `.rotating` WAL is an interrupted rotation: its segments are completed (or found
    /// complete), or, read-only, its events are served from memory. Its file is unlinked.
    fn recover_rotating(&mut self, read: WalRead, log: &mut ShardLog) -> Result<()> {
        let Some(mut img) = self.readable(read)? else {
            return Ok(());
        };
        let mem = self.replay(&mut img, log)?;
        let generation = img.header.generation;
        if complete_generation(&self.segments, generation) {
            self.report.rotations_already_done += 1;
        } else if self.writable {
            self.rewrite_generation(&mem, generation)?;
            self.report.rotations_completed += 1;
        } else {
            // Read-only: serve the WAL, not the incomplete parts.
            self.segments.retain(|s| s.generation != generation);
            self.serve(mem);
        }
        self.to_unlink.push(img.path.clone());
        log.rewrote = true;
        Ok(())
    }

    /// Replays shard `i`'s active WAL. Returns it with its memtable when the shard keeps
    /// appending to it; otherwise its events go to segments (or, read-only, are served from
    /// memory).
    fn recover_active(
        &mut self,
        i: usize,
        read: WalRead,
        log: &mut ShardLog,
    ) -> Result<Option<Kept>> {
        let Some(mut img) = self.readable(read)? else {
            return Ok(None);
        };
        let mem = self.replay(&mut img, log)?;
        if self.writable && i < self.shard_count && img.header.version == WAL_VERSION {
            let w = WalWriter::open_at(&img.path, img.valid_len)?;
            return Ok(Some((w, Arc::new(mem))));
        }
        if self.writable {
            // A shard that no longer exists, or a WAL of an older version (appends go to a new
            // file of the current one): its events go to segments now, unless a crash after an
            // earlier conversion left the file behind (same generation).
            let generation = img.header.generation;
            if !complete_generation(&self.segments, generation) && mem.read().len() > 0 {
                self.rewrite_generation(&mem, generation)?;
            }
            if i >= self.shard_count {
                self.to_unlink.push(img.path.clone());
            }
            // else: an older version's WAL, replaced below by renaming the new WAL over it (a
            // crash before that converts it again: same generation).
        } else {
            self.serve(mem);
        }
        Ok(None)
    }

    /// The image of a readable WAL; a WAL whose header is unreadable is set aside.
    fn readable(&mut self, read: WalRead) -> Result<Option<WalImage>> {
        match read {
            WalRead::Image(img) => Ok(Some(img)),
            WalRead::BadHeader { path, reason, .. } => {
                set_aside(&path, &reason, self.writable, &mut self.report)?;
                Ok(None)
            }
        }
    }

    /// Replays `img` into a new memtable, its checkpoints and staged batches into `log`.
    fn replay(&mut self, img: &mut WalImage, log: &mut ShardLog) -> Result<MemTable> {
        replay(
            img,
            &self.engine.schema,
            &self.engine.tombstones,
            (&mut log.cps, &mut log.staged),
            &mut self.report,
            self.mode,
        )
    }

    /// Read-only: queries see the events of a WAL no shard keeps from its memtable.
    fn serve(&mut self, mem: MemTable) {
        if mem.read().len() > 0 {
            self.memtables.push(Arc::new(mem));
        }
    }

    /// A removed shard's checkpoints and staged batches wait for shard 0.
    fn inherit(&mut self, log: ShardLog) {
        for (k, p) in log.cps {
            merge_checkpoint(&mut self.inherited, k, p);
        }
        self.inherited_staged.absorb(log.staged);
    }

    /// Shard 0 takes over what removed shards left.
    fn take_inherited(&mut self, log: &mut ShardLog) {
        for (k, p) in std::mem::take(&mut self.inherited) {
            merge_checkpoint(&mut log.cps, k, p);
            log.rewrote = true;
        }
        if !self.inherited_staged.is_empty() {
            log.staged
                .absorb(std::mem::take(&mut self.inherited_staged));
            log.rewrote = true;
        }
    }

    /// A new active WAL for shard `i`, holding `log`'s checkpoints and staged batches, with an
    /// empty memtable.
    fn fresh_wal(&self, i: usize, log: &ShardLog) -> Result<Kept> {
        let engine = self.engine;
        let generation = engine.next_generation.fetch_add(1, Ordering::Relaxed);
        // Prepared under the `.new` name and renamed, so a crash never leaves a half-written
        // header under the active name.
        let new = engine.dir.join(new_name(i));
        let path = engine.dir.join(active_name(i));
        let mut w = engine.create_wal(&new, i, generation, &log.cps, &log.staged)?;
        fs::rename(&new, &path).map_err(|e| DbError::io("install new WAL", &path, e))?;
        sync_dir(&engine.dir)?;
        w.path = path;
        Ok((w, Arc::new(MemTable::new(i, generation, &engine.schema))))
    }

    /// Writes `mem` (the events of WAL `generation`) as segments, first removing any parts of
    /// that generation an interrupted run left behind.
    fn rewrite_generation(&mut self, mem: &MemTable, generation: u64) -> Result<()> {
        for s in self.segments.iter().filter(|s| s.generation == generation) {
            remove_if_exists(&s.path)?;
        }
        self.segments.retain(|s| s.generation != generation);
        self.segments.extend(self.engine.write_segments(mem)?);
        Ok(())
    }

    /// Removes the WALs whose contents now live in segments or in another WAL.
    fn unlink_replaced(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        for p in &self.to_unlink {
            remove_if_exists(p)?;
        }
        if !self.to_unlink.is_empty() {
            sync_dir(&self.engine.dir)?;
        }
        // Shard 0 may have been processed before checkpoints of removed shards existed only if
        // there were none; `inherited` is empty here in every other case.
        debug_assert!(self.inherited.is_empty());
        Ok(())
    }
}

/// A kept WAL also gets the checkpoints and pending staged batches of the rotating (or
/// removed) WAL: they must live on in it before that file is unlinked.
fn rewrite_log(mut w: WalWriter, log: &ShardLog) -> Result<WalWriter> {
    if log.rewrote && !(log.cps.is_empty() && log.staged.is_empty()) {
        if !log.cps.is_empty() {
            append_snapshot(&mut w, &log.cps)?;
        }
        append_staged(&mut w, &log.staged)?;
        w.sync()?;
    }
    Ok(w)
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
