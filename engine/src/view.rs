//! The read view: which segments and memtables a query sees, swapped atomically.
//!
//! Writers publish a new `View` (under the engine's view lock) when a rotation starts (a new
//! memtable appears beside the frozen one), when it ends (the frozen memtable is replaced by
//! its segments), on gc and on delete. Readers load the current view without locking and keep
//! it for the whole query, so they see every event exactly once.

use std::sync::Arc;

use crate::memtable::MemTable;
use crate::rollups::RollupStore;
use crate::segment::Segment;

/// Rows of a segment hidden by tombstones.
#[derive(Debug, Default)]
pub(crate) struct DeletedRows {
    pub words: Vec<u64>,
    pub count: usize,
}

impl DeletedRows {
    #[inline]
    pub(crate) fn contains(&self, row: usize) -> bool {
        self.words
            .get(row / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, row: usize) -> bool {
        let w = row / 64;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let bit = 1 << (row % 64);
        if self.words[w] & bit != 0 {
            return false;
        }
        self.words[w] |= bit;
        self.count += 1;
        true
    }
}

/// A segment as a query sees it.
#[derive(Debug, Clone)]
pub(crate) struct SegRef {
    pub seg: Arc<Segment>,
    pub deleted: Option<Arc<DeletedRows>>,
}

impl SegRef {
    pub(crate) fn live_rows(&self) -> usize {
        self.seg.rows - self.deleted.as_ref().map_or(0, |d| d.count)
    }
}

/// Everything a query reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// Sorted by max_ts, newest first.
    pub segments: Vec<SegRef>,
    pub memtables: Vec<Arc<MemTable>>,
    /// Rollups of the segments' rows (recent days).
    pub rollups: Arc<RollupStore>,
}

impl View {
    /// Newest day with data in the view, if any.
    pub(crate) fn newest_day(&self) -> Option<i64> {
        let segs = self.segments.iter().map(|s| s.seg.max_ts);
        let mems = self
            .memtables
            .iter()
            .filter_map(|m| m.read().chunk_max_ts.iter().copied().max());
        segs.chain(mems).max().map(crate::time::day_of)
    }

    pub(crate) fn sort(&mut self) {
        self.segments.sort_by(|a, b| {
            b.seg
                .max_ts
                .cmp(&a.seg.max_ts)
                .then(b.seg.id.cmp(&a.seg.id))
        });
    }
}
