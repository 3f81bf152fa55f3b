//! Rotation: a shard's WAL becomes segment files in three crash-safe phases.
//!
//! 1. fsync the WAL; prepare the next WAL as `shard-N.wal.new` (header and a snapshot of the
//!    shard's checkpoints, fsynced); rename `shard-N.wal` to `shard-N.wal.rotating` and the new
//!    file to `shard-N.wal`; fsync the directory. Appends resume on the new WAL at once.
//! 2. Write the frozen memtable as one or more segments (temp name, fsync, rename, fsync dir)
//!    and publish them in place of the memtable.
//! 3. Unlink `shard-N.wal.rotating`; fsync the directory.
//!
//! A crash after phase 1 leaves the `.rotating` file, which open turns into segments unless
//! every part of its generation already exists.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, TryLockError};

use super::DynEngine;
use crate::error::{DbError, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::memtable::MemTable;
use crate::segment::writer::{encode_segment, plan_parts, write_segment_file, SegmentInput};
use crate::segment::Segment;
use crate::shard::Shard;
use crate::staged::StagedSet;
use crate::view::{DeletedRows, SegRef};
use crate::wal::frame::{encode_checkpoints, FrameBuf, FrameKind};
use crate::wal::writer::{AppendError, WalWriter};
use crate::wal::{active_name, new_name, rotating_name, WalHeader};

impl DynEngine {
    /// Rotates `shard`. With `wait == false` (inline, from an append) it returns at once if
    /// another thread is already rotating the shard.
    pub(super) fn rotate(&self, shard: &Shard, wait: bool) -> Result<()> {
        let mut pending: MutexGuard<'_, Option<Arc<MemTable>>> = if wait {
            shard.rotation.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            match shard.rotation.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return Ok(()),
            }
        };
        if let Some(frozen) = pending.clone() {
            self.finish_rotation(shard, &frozen, &mut pending)?;
        }
        let Some(frozen) = self.begin_rotation(shard)? else {
            return Ok(());
        };
        *pending = Some(frozen.clone());
        self.finish_rotation(shard, &frozen, &mut pending)
    }

    /// Phase 1. Returns the frozen memtable, or `None` if the WAL holds no events.
    fn begin_rotation(&self, shard: &Shard) -> Result<Option<Arc<MemTable>>> {
        let mut st = shard.state();
        if let Some(reason) = &st.failed {
            return Err(DbError::ShardFailed {
                shard: shard.index,
                reason: reason.clone(),
            });
        }
        if st.mem.read().len() == 0 {
            return Ok(None);
        }
        if let Err(e) = st.wal.sync() {
            st.failed = Some(e.to_string());
            return Err(e);
        }
        let upto = shard.written_lsn.load(Ordering::Acquire);
        let i = shard.index;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let new_path = self.dir.join(new_name(i));
        let active = self.dir.join(active_name(i));
        let rotating = self.dir.join(rotating_name(i));
        let mut next = match self.create_wal(&new_path, i, generation, &st.checkpoints, &st.staged)
        {
            Ok(w) => w,
            Err(e) => {
                let _ = remove_if_exists(&new_path);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&active, &rotating) {
            let _ = remove_if_exists(&new_path);
            return Err(DbError::io("rename WAL for rotation", &active, e));
        }
        if let Err(e) = std::fs::rename(&new_path, &active) {
            let err = DbError::io("install new WAL", &active, e);
            if std::fs::rename(&rotating, &active).is_err() {
                st.failed = Some(err.to_string());
            }
            return Err(err);
        }
        if let Err(e) = sync_dir(&self.dir) {
            st.failed = Some(e.to_string());
            return Err(e);
        }
        next.path = active;
        let fresh = Arc::new(MemTable::new(i, generation, &self.schema));
        let frozen = std::mem::replace(&mut st.mem, fresh.clone());
        st.wal = next;
        st.events_since_sync = 0;
        st.bytes_since_sync = 0;
        {
            let _v = self.lock_view();
            let mut view = (**self.view.load()).clone();
            view.memtables.push(fresh);
            self.view.store(Arc::new(view));
        }
        shard.synced_lsn.fetch_max(upto, Ordering::AcqRel);
        drop(st);
        self.promote_checkpoints(shard);
        Ok(Some(frozen))
    }

    /// Creates a WAL file with a checkpoint snapshot frame and a copy of every pending staged
    /// batch, fsynced.
    pub(super) fn create_wal(
        &self,
        path: &std::path::Path,
        shard: usize,
        generation: u64,
        checkpoints: &std::collections::BTreeMap<String, u64>,
        staged: &StagedSet,
    ) -> Result<WalWriter> {
        let header = WalHeader {
            version: crate::wal::WAL_VERSION,
            shard: shard as u16,
            generation,
            schema_id: self.schema.schema_id,
            fingerprint: self.schema.fingerprint(),
        };
        let mut w = WalWriter::create(path, header)?;
        if !checkpoints.is_empty() {
            append_snapshot(&mut w, checkpoints)?;
        }
        append_staged(&mut w, staged)?;
        w.sync()?;
        Ok(w)
    }

    /// Phases 2 and 3. Once the segments are published the rotation is done as far as a retry
    /// is concerned (`pending` is cleared): a failed unlink leaves a `.rotating` file whose
    /// generation is complete, which the next rotation's rename replaces and open discards.
    fn finish_rotation(
        &self,
        shard: &Shard,
        frozen: &Arc<MemTable>,
        pending: &mut Option<Arc<MemTable>>,
    ) -> Result<()> {
        let segments = self.write_segments(frozen)?;
        if let Err(e) = self.publish_segments(&segments, Some(frozen)) {
            // Not published: the files must not outlive this attempt (a retry writes new ones).
            for s in &segments {
                let _ = remove_if_exists(&s.path);
            }
            return Err(e);
        }
        *pending = None;
        remove_if_exists(&self.dir.join(rotating_name(shard.index)))?;
        sync_dir(&self.dir)?;
        self.counters.rotations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes a frozen memtable as segments. On failure, removes the parts it wrote.
    pub(super) fn write_segments(&self, frozen: &MemTable) -> Result<Vec<Arc<Segment>>> {
        let mem = frozen.read();
        let parts = if self.tombstones.is_empty() {
            plan_parts(&mem, &|_| false)
        } else {
            let dead = self.tombstones.read();
            plan_parts(&mem, &|id| dead.contains(id))
        };
        let input = SegmentInput {
            mem: &mem,
            schema: &self.schema,
            posting_dims: self.posting_dims.clone(),
            generation: frozen.generation,
            shard: frozen.shard,
        };
        let part_count = u16::try_from(parts.len()).map_err(|_| DbError::ValueTooLarge {
            column: "segments from one WAL".into(),
            len: parts.len(),
            max: u16::MAX as usize,
        })?;
        let mut out: Vec<Arc<Segment>> = Vec::with_capacity(parts.len());
        for (i, rows) in parts.iter().enumerate() {
            let id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
            let written = encode_segment(&input, rows, i as u16, part_count).and_then(|bytes| {
                let path = write_segment_file(&self.dir, id, &bytes)?;
                Segment::open(path.clone(), id, &self.schema, &self.cache).inspect_err(|_| {
                    // Renamed into place but not usable: remove it with the other parts.
                    let _ = remove_if_exists(&path);
                })
            });
            match written {
                Ok(s) => out.push(s),
                Err(e) => {
                    for s in &out {
                        let _ = remove_if_exists(&s.path);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Publishes new segments (replacing `frozen` if given), hiding rows deleted meanwhile.
    pub(super) fn publish_segments(
        &self,
        segments: &[Arc<Segment>],
        frozen: Option<&Arc<MemTable>>,
    ) -> Result<()> {
        let _v = self.lock_view();
        let mut view = (**self.view.load()).clone();
        if let Some(m) = frozen {
            view.memtables.retain(|x| !Arc::ptr_eq(x, m));
        }
        let mut rollups = (*view.rollups).clone();
        for s in segments {
            let deleted = self.deleted_rows_of(s)?;
            let data = s.data(&self.schema, &self.cache)?;
            rollups.apply_segment(
                &data,
                deleted.as_deref(),
                &self.schema.rollup_dims,
                self.schema.counters.len(),
                false,
            )?;
            view.segments.push(SegRef {
                seg: s.clone(),
                deleted,
            });
        }
        if let Some(day) = view.newest_day() {
            rollups.advance_floor(day, self.config.rollup_replay_days);
        }
        view.rollups = Arc::new(rollups);
        view.sort();
        self.view.store(Arc::new(view));
        Ok(())
    }

    /// Rows of `seg` whose id is tombstoned.
    pub(super) fn deleted_rows_of(&self, seg: &Segment) -> Result<Option<Arc<DeletedRows>>> {
        if self.tombstones.is_empty() {
            return Ok(None);
        }
        let data = seg.data(&self.schema, &self.cache)?;
        let dead = self.tombstones.read();
        let mut rows = DeletedRows::default();
        if dead.len() < data.rows {
            for id in dead.iter().filter(|id| seg.may_hold_id(id)) {
                for r in data.rows_with_id(id)? {
                    rows.insert(r);
                }
            }
        } else {
            let ids = data.ids()?;
            for r in 0..data.rows {
                if dead.contains(ids.id(r)) {
                    rows.insert(r);
                }
            }
        }
        Ok((rows.count > 0).then(|| Arc::new(rows)))
    }
}

/// Appends a copy of every pending staged batch.
pub(super) fn append_staged(w: &mut WalWriter, staged: &StagedSet) -> Result<()> {
    for b in staged.iter() {
        match w.append(&b.frame) {
            Ok(()) => {}
            Err(AppendError::RolledBack(e)) | Err(AppendError::Poisoned(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Appends a checkpoint snapshot frame.
pub(super) fn append_snapshot(
    w: &mut WalWriter,
    checkpoints: &std::collections::BTreeMap<String, u64>,
) -> Result<()> {
    let mut frame = FrameBuf::new(FrameKind::Checkpoints);
    encode_checkpoints(
        &mut frame,
        checkpoints.iter().map(|(k, v)| (k.as_str(), *v)),
    );
    match w.append(frame.finish()?) {
        Ok(()) => Ok(()),
        Err(AppendError::RolledBack(e)) | Err(AppendError::Poisoned(e)) => Err(e),
    }
}
