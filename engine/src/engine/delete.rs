//! Deletes: durable tombstones applied to memtables, segments and rollups.

use std::sync::Arc;

use super::DynEngine;
use crate::error::Result;
use crate::segment::reader::SegmentData;
use crate::view::{DeletedRows, SegRef, View};

impl DynEngine {
    /// Deletes every event with id `id`. Returns false when no live event has it.
    pub fn delete_event(&self, id: &str) -> Result<bool> {
        Ok(self.delete_events(&[id])? > 0)
    }

    /// Deletes every event carrying one of `ids`, durably (fsynced before return). Returns how
    /// many of the ids matched a live event. A deleted id stays deleted: events appended later
    /// with the same id are hidden too.
    pub fn delete_events(&self, ids: &[&str]) -> Result<usize> {
        self.writable("delete")?;
        let _v = self.lock_view();
        let view = self.view.load_full();
        let found = self.live_ids(&view, ids)?;
        if found.is_empty() {
            return Ok(0);
        }
        self.tombstones.record(&self.dir, &self.schema, &found)?;
        mark_in_memtables(&view, &found);
        let next = self.mark_in_segments(&view, &found)?;
        self.view.store(Arc::new(next));
        Ok(found.len())
    }

    /// The distinct `ids` that are not tombstoned and name a live event of `view`.
    fn live_ids<'i>(&self, view: &View, ids: &[&'i str]) -> Result<Vec<&'i str>> {
        let mut found: Vec<&str> = Vec::new();
        for &id in ids {
            if found.contains(&id) || self.tombstones.contains(id) {
                continue;
            }
            if live_in_memtables(view, id) || self.live_in_segments(view, id)? {
                found.push(id);
            }
        }
        Ok(found)
    }

    /// True when a segment of `view` has a live event with id `id`.
    fn live_in_segments(&self, view: &View, id: &str) -> Result<bool> {
        for s in view.segments.iter().filter(|s| s.seg.may_hold_id(id)) {
            let data = s.seg.data(&self.schema, &self.cache)?;
            if data
                .rows_with_id(id)?
                .into_iter()
                .any(|r| !s.deleted.as_ref().is_some_and(|d| d.contains(r)))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `view` with the rows of `found` deleted in its segments: new deleted-row sets, and the
    /// rollup store less those rows.
    fn mark_in_segments(&self, view: &View, found: &[&str]) -> Result<View> {
        let mut next = view.clone();
        let mut rollups = (*next.rollups).clone();
        for s in next.segments.iter_mut() {
            let data = s.seg.data(&self.schema, &self.cache)?;
            let newly = newly_deleted(s, &data, found)?;
            if newly.is_empty() {
                continue;
            }
            let mut rows = DeletedRows {
                words: s
                    .deleted
                    .as_ref()
                    .map(|d| d.words.clone())
                    .unwrap_or_default(),
                count: s.deleted.as_ref().map_or(0, |d| d.count),
            };
            for &r in &newly {
                rows.insert(r);
            }
            rollups.apply_rows(
                &data,
                &self.schema.rollup_dims,
                self.schema.counters.len(),
                newly.into_iter(),
                true,
            )?;
            s.deleted = Some(Arc::new(rows));
        }
        next.rollups = Arc::new(rollups);
        Ok(next)
    }
}

/// True when a memtable of `view` has a live event with id `id`.
fn live_in_memtables(view: &View, id: &str) -> bool {
    view.memtables.iter().any(|m| {
        let d = m.read();
        let live = d.rows_with_id(id).any(|r| !d.is_deleted(r));
        live
    })
}

/// Marks the rows of `found` deleted in the memtables of `view`.
fn mark_in_memtables(view: &View, found: &[&str]) {
    for m in &view.memtables {
        let mut d = m.write();
        for id in found {
            let rows: Vec<usize> = d.rows_with_id(id).collect();
            for r in rows {
                d.mark_deleted(r);
            }
        }
    }
}

/// The rows of segment `s` (its `data`) with an id of `found` that are not deleted yet.
fn newly_deleted(s: &SegRef, data: &SegmentData, found: &[&str]) -> Result<Vec<usize>> {
    let mut newly = Vec::new();
    for id in found {
        for r in data.rows_with_id(id)? {
            if !s.deleted.as_ref().is_some_and(|d| d.contains(r)) {
                newly.push(r);
            }
        }
    }
    Ok(newly)
}
