//! What the engine tells about its sealed segments, for consumers that follow them one by one
//! (an archive, a replication job): [`DynEngine::segments`] lists them, and
//! [`DynEngine::gc_where`] lets such a consumer hold back the ones it has not handled yet.

use super::DynEngine;
use crate::view::SegRef;

/// A sealed segment, as [`DynEngine::segments`] lists it.
///
/// `id` names the file and changes when compaction rewrites it; `(generation, part_index)`
/// names the events it was sealed with and survives compaction, which only drops deleted rows.
/// A consumer that must see every event once keys its progress by the latter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment's id (its file name); unique within the data directory.
    pub id: u64,
    /// The rotation that sealed it.
    pub generation: u64,
    /// Its place among the parts that rotation wrote.
    pub part_index: u16,
    /// The oldest event's timestamp (ns).
    pub min_ts: i64,
    /// The newest event's timestamp (ns).
    pub max_ts: i64,
    /// Rows in the file, deleted ones included.
    pub rows: u64,
    /// Rows not deleted.
    pub live_rows: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

impl SegmentInfo {
    pub(crate) fn of(s: &SegRef) -> SegmentInfo {
        SegmentInfo {
            id: s.seg.id,
            generation: s.seg.generation,
            part_index: s.seg.part_index,
            min_ts: s.seg.min_ts,
            max_ts: s.seg.max_ts,
            rows: s.seg.rows as u64,
            live_rows: s.live_rows() as u64,
            bytes: s.seg.file_len,
        }
    }
}

impl DynEngine {
    /// The sealed segments, newest first (by newest event). Events still in memtables are in
    /// none of them.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.view().segments.iter().map(SegmentInfo::of).collect()
    }
}
