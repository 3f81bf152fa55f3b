//! Explicit compaction (issue 13): [`DynEngine::compact`] rewrites every version-1 segment, and
//! every segment with deleted rows, as a version-2 segment without the deleted rows. Nothing
//! else rewrites a segment: opening a version-1 directory leaves its segments as they are.
//!
//! Crash safety, like rotation: the new segment is written under a temporary name, fsynced,
//! renamed into place and the directory fsynced; it is published, and only then is the old file
//! unlinked (and the directory fsynced again). The new segment keeps the old one's generation,
//! part index and part count, so after a crash between the rename and the unlink an open finds
//! two segments of one (generation, part index) and keeps the newer one (the larger id; section
//! 8.3 of FORMAT.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::DynEngine;
use crate::error::{DbError, Result};
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::memtable::MemData;
use crate::segment::reader::SegmentData;
use crate::segment::writer::{encode_segment, plan_parts, write_segment_file, SegmentInput};
use crate::segment::Segment;
use crate::view::SegRef;
use crate::wal::frame::RawRow;

/// What `compact` rewrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Segments rewritten as version 2.
    pub segments_rewritten: usize,
    /// Segments deleted because every row in them was deleted.
    pub segments_deleted: usize,
    /// Deleted rows dropped from the files.
    pub rows_dropped: u64,
    /// Bytes of the old segment files.
    pub bytes_before: u64,
    /// Bytes of the segment files that replaced them.
    pub bytes_after: u64,
    /// Tombstones dropped from the log and the in-memory set: ids no segment and no memtable
    /// holds any more.
    pub tombstones_dropped: usize,
}

impl DynEngine {
    /// Rewrites version-1 segments and segments with deleted rows as version-2 segments that
    /// hold only their live rows. Holds the view lock throughout, so deletions, rotations'
    /// publication and `gc` wait for it; queries and appends do not.
    pub fn compact(&self) -> Result<CompactStats> {
        self.writable("compact")?;
        let _v = self.lock_view();
        let current = self.view.load_full();
        let mut stats = CompactStats::default();
        let mut next = (*current).clone();
        let mut retired = Vec::new();
        for (i, s) in current.segments.iter().enumerate() {
            let dead = s.deleted.as_ref().map_or(0, |d| d.count);
            if s.seg.version != 1 && dead == 0 {
                continue;
            }
            stats.rows_dropped += dead as u64;
            stats.bytes_before += s.seg.file_len;
            match self.rewrite(s)? {
                Some(seg) => {
                    stats.segments_rewritten += 1;
                    stats.bytes_after += seg.file_len;
                    let deleted = self.deleted_rows_of(&seg)?;
                    next.segments[i] = SegRef { seg, deleted };
                }
                None => stats.segments_deleted += 1,
            }
            retired.push(s.seg.clone());
        }
        if !retired.is_empty() {
            next.segments
                .retain(|s| !retired.iter().any(|r| Arc::ptr_eq(r, &s.seg)));
            next.sort();
            // The live rows are the same, so the rollups are too.
            self.view.store(Arc::new(next));
            for seg in &retired {
                remove_if_exists(&seg.path)?;
            }
            sync_dir(&self.dir)?;
        }
        stats.tombstones_dropped = self.drop_stale_tombstones()?;
        Ok(stats)
    }

    /// Drops the tombstones of ids that no segment and no memtable holds: their rows are gone
    /// from the files, so nothing is left for them to hide. Called with the view locked.
    fn drop_stale_tombstones(&self) -> Result<usize> {
        if self.tombstones.is_empty() {
            return Ok(0);
        }
        let view = self.view.load_full();
        let mut datas = Vec::new();
        for s in &view.segments {
            datas.push((s.seg.clone(), s.seg.data(&self.schema, &self.cache)?));
        }
        let held = |id: &str| {
            view.memtables
                .iter()
                .any(|m| m.read().rows_with_id(id).next().is_some())
                || datas.iter().any(|(seg, d)| {
                    seg.may_hold_id(id)
                        // A fault keeps the tombstone: dropping it could bring an event back.
                        && d.rows_with_id(id).map_or(true, |rows| !rows.is_empty())
                })
        };
        self.tombstones.retain(&self.dir, &self.schema, held)
    }

    /// Writes the live rows of `s` as a new segment; `None` when it has none.
    fn rewrite(&self, s: &SegRef) -> Result<Option<Arc<Segment>>> {
        let data = s.seg.data(&self.schema, &self.cache)?;
        let mem = self
            .live_rows(&data, s)
            .map_err(|e| e.with_path(&s.seg.path))?;
        let parts = plan_parts(&mem, &|_| false);
        let rows = match parts.as_slice() {
            [] => return Ok(None),
            [rows] => rows,
            _ => {
                return Err(DbError::ValueTooLarge {
                    column: format!("rows of {}", s.seg.path.display()),
                    len: parts.len(),
                    max: 1,
                })
            }
        };
        let input = SegmentInput {
            mem: &mem,
            schema: &self.schema,
            posting_dims: self.posting_dims.clone(),
            generation: s.seg.generation,
            shard: data.header.shard.get() as usize,
        };
        let bytes = encode_segment(&input, rows, s.seg.part_index, s.seg.part_count)?;
        let id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
        let path = write_segment_file(&self.dir, id, &bytes)?;
        Segment::open(path.clone(), id, &self.schema, &self.cache)
            .inspect_err(|_| {
                let _ = remove_if_exists(&path);
            })
            .map(Some)
    }

    /// The rows of `data` that `s` does not mark deleted, in a memtable image.
    fn live_rows(&self, data: &SegmentData, s: &SegRef) -> Result<MemData> {
        let intern = data.intern()?;
        let (nc, nl) = (self.schema.counters.len(), self.schema.labels.len());
        let mut mem = MemData::new(&self.schema);
        for r in 0..data.rows {
            if s.deleted.as_ref().is_some_and(|d| d.contains(r)) {
                continue;
            }
            mem.push(&RawRow {
                id: data.id(r)?,
                ts_ns: data.ts[r],
                metric: data.metric[r],
                latency_ms: data.latency()[r],
                latency_detail_ms: data.latency_detail()[r],
                status: data.status()[r],
                flags: data.flags()[r],
                counters: (0..nc).map(|c| data.counter(c)[r]).collect(),
                // Codes were checked against the dictionaries when they were decoded.
                dims: intern
                    .iter()
                    .enumerate()
                    .map(|(d, dict)| dict.value(data.dim(d)[r]).unwrap_or(""))
                    .collect(),
                labels: (0..nl).map(|l| data.label(l, r)).collect(),
            });
        }
        Ok(mem)
    }
}
