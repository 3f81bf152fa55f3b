//! One WAL shard: its file, its memtable, and the bookkeeping for group commit.
//!
//! Lock order (never taken the other way round): `rotation` → `state` → the engine's view
//! lock → the tombstone set (read) → a memtable's lock. Deletes take the view lock, then the
//! tombstone set (write, released) and only then memtable locks. `sync_lock` is never held
//! together with `state` for longer than it takes to clone the file handle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::{DbError, Result};
use crate::memtable::MemTable;
use crate::schema::SchemaDef;
use crate::staged::{StagedBatch, StagedSet};
use crate::wal::frame::{
    encode_checkpoints, read_frame, EventsDecoder, FrameBuf, FrameKind, RawRow,
};
use crate::wal::writer::{AppendError, WalWriter};

/// Mutable state of a shard, behind its lock.
#[derive(Debug)]
pub(crate) struct ShardState {
    pub wal: WalWriter,
    pub mem: Arc<MemTable>,
    pub events_since_sync: u64,
    pub bytes_since_sync: u64,
    /// Latest position of every source key ever checkpointed on this shard; written as a
    /// snapshot frame at the head of each new WAL so that rotation and gc never lose it.
    pub checkpoints: BTreeMap<String, u64>,
    /// Set when a write or fsync failed in a way that leaves the file state unknown.
    pub failed: Option<String>,
    /// Staged batches not yet published or retracted (see `staged.rs`).
    pub staged: StagedSet,
}

/// Outcome of writing one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub lsn: u64,
    pub need_sync: bool,
    pub need_rotate: bool,
}

/// A shard.
#[derive(Debug)]
pub(crate) struct Shard {
    pub index: usize,
    state: Mutex<ShardState>,
    /// Held for a whole rotation; holds the frozen memtable whose segment is still unwritten
    /// (after a failed phase 2), which must be finished before the next rotation.
    pub rotation: Mutex<Option<Arc<MemTable>>>,
    sync_lock: Mutex<()>,
    /// Sequence number of the last frame written (per process, starts at 0).
    pub written_lsn: AtomicU64,
    /// Every frame up to this sequence number is on stable storage.
    pub synced_lsn: AtomicU64,
    /// Checkpoints written but not yet known durable: (lsn, key, position).
    pending: Mutex<Vec<(u64, String, u64)>>,
}

/// Thresholds from the config that the write path consults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub sync_events: u64,
    pub sync_bytes: u64,
    pub max_events: u64,
    pub max_bytes: u64,
}

/// What a sync did, for stats.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SyncOutcome {
    pub fsynced: bool,
    pub nanos: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shard {
    pub(crate) fn new(index: usize, state: ShardState) -> Shard {
        Shard {
            index,
            state: Mutex::new(state),
            rotation: Mutex::new(None),
            sync_lock: Mutex::new(()),
            written_lsn: AtomicU64::new(0),
            synced_lsn: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ShardState> {
        lock(&self.state)
    }

    pub(crate) fn try_state(&self) -> Option<MutexGuard<'_, ShardState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Writes an events frame (already encoded) and applies it to the memtable.
    pub(crate) fn write_events(
        &self,
        st: &mut ShardState,
        frame: &[u8],
        schema: &SchemaDef,
        limits: Limits,
        durable: bool,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<Written> {
        let lsn = self.append_frame(st, frame)?;
        // The memtable is fed by decoding the very bytes just written, so it always agrees
        // with what a replay of the WAL would produce.
        let n = self.apply_events(st, frame, lsn, schema, is_dead)?;
        Ok(self.account(st, n, frame.len(), limits, durable, lsn))
    }

    /// Writes a staged frame (already encoded, with its checkpoint) and holds it back from the
    /// memtable until it is published.
    pub(crate) fn write_staged(
        &self,
        st: &mut ShardState,
        frame: &[u8],
        limits: Limits,
        durable: bool,
    ) -> Result<Written> {
        let batch = StagedBatch::from_frame(frame).map_err(|why| self.fail(st, why))?;
        let lsn = self.append_frame(st, frame)?;
        st.staged.insert(batch);
        Ok(self.account(st, 0, frame.len(), limits, durable, lsn))
    }

    /// Publishes the staged batches of `source` up to `up_to`: a `Publish` frame, then their
    /// rows join the memtable and their checkpoints count. Returns how many batches.
    pub(crate) fn publish(
        &self,
        st: &mut ShardState,
        source: &str,
        up_to: u64,
        schema: &SchemaDef,
        limits: Limits,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<(usize, Option<Written>)> {
        if !st.staged.has_up_to(source, up_to) {
            return Ok((0, None));
        }
        let lsn = self.append_decision(st, FrameKind::Publish, source, up_to)?;
        let batches = st.staged.take_up_to(source, up_to);
        let mut rows = 0;
        for b in &batches {
            rows += self.apply_events(st, &b.frame, lsn, schema, is_dead)?;
        }
        let written = self.account(st, rows, 0, limits, false, lsn);
        Ok((batches.len(), Some(written)))
    }

    /// Drops the staged batches of `source` at or above `from` (a `Retract` frame). Returns
    /// how many batches.
    pub(crate) fn retract(&self, st: &mut ShardState, source: &str, from: u64) -> Result<usize> {
        if !st.staged.has_from(source, from) {
            return Ok(0);
        }
        self.append_decision(st, FrameKind::Retract, source, from)?;
        Ok(st.staged.retract_from(source, from))
    }

    fn append_decision(
        &self,
        st: &mut ShardState,
        kind: FrameKind,
        source: &str,
        position: u64,
    ) -> Result<u64> {
        let mut frame = FrameBuf::new(kind);
        encode_checkpoints(&mut frame, std::iter::once((source, position)));
        self.append_frame(st, frame.finish()?)
    }

    /// Appends one frame to the WAL; returns its sequence number.
    fn append_frame(&self, st: &mut ShardState, frame: &[u8]) -> Result<u64> {
        if let Some(reason) = &st.failed {
            return Err(DbError::ShardFailed {
                shard: self.index,
                reason: reason.clone(),
            });
        }
        match st.wal.append(frame) {
            Ok(()) => {}
            Err(AppendError::RolledBack(e)) => return Err(e),
            Err(AppendError::Poisoned(e)) => {
                st.failed = Some(e.to_string());
                return Err(e);
            }
        }
        let lsn = self.written_lsn.load(Ordering::Relaxed) + 1;
        self.written_lsn.store(lsn, Ordering::Release);
        Ok(lsn)
    }

    /// Decodes an events (or staged) frame into the memtable; its checkpoint counts once the
    /// frame `lsn` is durable. Returns the number of events.
    fn apply_events(
        &self,
        st: &mut ShardState,
        frame: &[u8],
        lsn: u64,
        schema: &SchemaDef,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<usize> {
        let applied = read_frame(frame)
            .map_err(|e| e.to_string())
            .and_then(|(raw, _)| {
                debug_assert!(matches!(raw.kind, FrameKind::Events | FrameKind::Staged));
                let dec = EventsDecoder::new(&raw, schema)?;
                let checkpoint = dec.checkpoint;
                let mut scratch = RawRow::default();
                let n = st.mem.write().push_frame(dec, &mut scratch, is_dead)?;
                Ok((n, checkpoint))
            });
        // Only a bug can fail here: the frame was encoded by this process.
        let (n, checkpoint) =
            applied.map_err(|why| self.fail(st, format!("frame does not decode: {why}")))?;
        if let Some((key, pos)) = checkpoint {
            let e = st.checkpoints.entry(key.to_string()).or_insert(pos);
            *e = (*e).max(pos);
            lock(&self.pending).push((lsn, key.to_string(), pos));
        }
        Ok(n)
    }

    /// Marks the shard failed and returns the error that says so.
    fn fail(&self, st: &mut ShardState, reason: String) -> DbError {
        st.failed = Some(reason.clone());
        DbError::ShardFailed {
            shard: self.index,
            reason,
        }
    }

    /// Sync and rotation thresholds after `events` events in `bytes` bytes were written.
    fn account(
        &self,
        st: &mut ShardState,
        n: usize,
        bytes: usize,
        limits: Limits,
        durable: bool,
        lsn: u64,
    ) -> Written {
        st.events_since_sync += n as u64;
        st.bytes_since_sync += bytes as u64;
        let need_sync = durable
            || st.events_since_sync >= limits.sync_events
            || st.bytes_since_sync >= limits.sync_bytes;
        if need_sync {
            st.events_since_sync = 0;
            st.bytes_since_sync = 0;
        }
        let need_rotate =
            st.mem.read().len() as u64 >= limits.max_events || st.wal.len >= limits.max_bytes;
        Written {
            lsn,
            need_sync,
            need_rotate,
        }
    }

    /// Makes every frame up to `lsn` durable. Group commit: a caller whose frame was covered by
    /// another caller's fsync returns without one of its own.
    pub(crate) fn sync_to(&self, lsn: u64) -> Result<SyncOutcome> {
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(SyncOutcome::default());
        }
        let _g = lock(&self.sync_lock);
        if self.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(SyncOutcome::default());
        }
        let (file, path, upto) = {
            let st = self.state();
            if let Some(reason) = &st.failed {
                return Err(DbError::ShardFailed {
                    shard: self.index,
                    reason: reason.clone(),
                });
            }
            (
                st.wal.file.clone(),
                st.wal.path.clone(),
                self.written_lsn.load(Ordering::Acquire),
            )
        };
        let start = Instant::now();
        if let Err(e) = file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: the file's
            // contents are unknown, so the shard stops accepting writes until reopened.
            let err = DbError::io("fsync WAL", path, e);
            self.state().failed = Some(err.to_string());
            return Err(err);
        }
        let nanos = start.elapsed().as_nanos() as u64;
        self.synced_lsn.fetch_max(upto, Ordering::AcqRel);
        Ok(SyncOutcome {
            fsynced: true,
            nanos,
        })
    }

    /// Removes and returns the checkpoints whose frames are now durable.
    pub(crate) fn take_durable_checkpoints(&self) -> Vec<(String, u64)> {
        let synced = self.synced_lsn.load(Ordering::Acquire);
        let mut pending = lock(&self.pending);
        let n = pending
            .iter()
            .take_while(|(lsn, _, _)| *lsn <= synced)
            .count();
        pending.drain(..n).map(|(_, k, p)| (k, p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{events, schema};
    use crate::wal::frame::{encode_events, IdSource};
    use crate::wal::reader::{read_wal, WalRead};
    use crate::wal::{WalHeader, WAL_VERSION};

    struct NoIds;
    impl IdSource for NoIds {
        fn next_id(&self, out: &mut String) {
            out.push_str("generated");
        }
    }

    const LIMITS: Limits = Limits {
        sync_events: 100,
        sync_bytes: 1 << 30,
        max_events: 250,
        max_bytes: 1 << 30,
    };

    fn shard(dir: &std::path::Path) -> Shard {
        let s = schema();
        let header = WalHeader {
            version: WAL_VERSION,
            shard: 0,
            generation: 1,
            schema_id: s.schema_id,
            fingerprint: s.fingerprint(),
        };
        let wal = WalWriter::create(&dir.join("shard-000.wal"), header).unwrap();
        Shard::new(
            0,
            ShardState {
                wal,
                mem: Arc::new(MemTable::new(0, 1, &s)),
                events_since_sync: 0,
                bytes_since_sync: 0,
                checkpoints: BTreeMap::new(),
                failed: None,
                staged: Default::default(),
            },
        )
    }

    fn frame(range: std::ops::Range<u64>, checkpoint: Option<(&str, u64)>) -> Vec<u8> {
        let mut f = FrameBuf::new(FrameKind::Events);
        encode_events(&mut f, &schema(), &events(range), checkpoint, &NoIds).unwrap();
        f.finish().unwrap().to_vec()
    }

    #[test]
    fn writes_reach_the_wal_and_the_memtable_and_ask_for_sync_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shard(dir.path());
        let s = schema();
        let mut st = sh.state();
        let w = sh
            .write_events(&mut st, &frame(0..60, None), &s, LIMITS, false, &|_| false)
            .unwrap();
        assert_eq!((w.lsn, w.need_sync, w.need_rotate), (1, false, false));
        let w = sh
            .write_events(&mut st, &frame(60..120, None), &s, LIMITS, false, &|_| {
                false
            })
            .unwrap();
        assert_eq!(
            (w.lsn, w.need_sync, w.need_rotate),
            (2, true, false),
            "100 events since the last sync"
        );
        let w = sh
            .write_events(&mut st, &frame(120..130, None), &s, LIMITS, true, &|_| {
                false
            })
            .unwrap();
        assert!(w.need_sync, "asked for durability");
        let w = sh
            .write_events(&mut st, &frame(130..260, None), &s, LIMITS, false, &|id| {
                id == "e200"
            })
            .unwrap();
        assert!(w.need_rotate, "250 events in the memtable");
        let mem = st.mem.read();
        assert_eq!(mem.len(), 260);
        assert!(
            mem.is_deleted(200) && !mem.is_deleted(199),
            "dead ids are hidden on arrival"
        );
        drop(mem);
        let path = st.wal.path.clone();
        drop(st);
        match read_wal(
            &path,
            &s,
            crate::config::WalRecoveryMode::AbsoluteConsistency,
        )
        .unwrap()
        {
            WalRead::Image(img) => assert_eq!(img.frames().count(), 4),
            WalRead::BadHeader { reason, .. } => panic!("{reason}"),
        }
    }

    #[test]
    fn checkpoints_count_once_their_frame_is_synced_and_group_commit_covers_earlier_frames() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shard(dir.path());
        let s = schema();
        let lsns: Vec<u64> = (0..3u64)
            .map(|k| {
                let mut st = sh.state();
                let f = frame(k * 10..k * 10 + 10, Some(("in/0", k * 10 + 9)));
                sh.write_events(&mut st, &f, &s, LIMITS, false, &|_| false)
                    .unwrap()
                    .lsn
            })
            .collect();
        assert_eq!(lsns, [1, 2, 3]);
        assert!(
            sh.take_durable_checkpoints().is_empty(),
            "nothing synced yet"
        );
        assert_eq!(
            sh.state().checkpoints["in/0"],
            29,
            "the latest position is known at once"
        );
        let out = sh.sync_to(2).unwrap();
        assert!(out.fsynced);
        // One fsync made every frame written so far durable.
        assert_eq!(sh.synced_lsn.load(Ordering::Acquire), 3);
        assert!(
            !sh.sync_to(3).unwrap().fsynced,
            "covered by the earlier fsync"
        );
        assert_eq!(
            sh.take_durable_checkpoints(),
            [
                ("in/0".to_string(), 9),
                ("in/0".to_string(), 19),
                ("in/0".to_string(), 29)
            ]
        );
        assert!(sh.take_durable_checkpoints().is_empty(), "taken once");
    }

    #[test]
    fn a_failed_shard_refuses_writes_and_syncs_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shard(dir.path());
        let s = schema();
        sh.state().failed = Some("disk went away".into());
        let err = sh
            .write_events(
                &mut sh.state(),
                &frame(0..5, None),
                &s,
                LIMITS,
                false,
                &|_| false,
            )
            .unwrap_err();
        assert!(
            matches!(&err, DbError::ShardFailed { shard: 0, reason } if reason == "disk went away"),
            "{err}"
        );
        sh.written_lsn.store(1, Ordering::Release);
        assert!(matches!(sh.sync_to(1), Err(DbError::ShardFailed { .. })));
    }
}
