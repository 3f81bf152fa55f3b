//! Deletes: durable tombstones applied to memtables, segments and rollups.

use std::sync::Arc;

use super::DynEngine;
use crate::error::Result;
use crate::view::DeletedRows;

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
        let mut found: Vec<&str> = Vec::new();
        for &id in ids {
            if found.contains(&id) || self.tombstones.contains(id) {
                continue;
            }
            let in_mem = view.memtables.iter().any(|m| {
                let d = m.read();
                let live = d.rows_with_id(id).any(|r| !d.is_deleted(r));
                live
            });
            let in_seg = || -> Result<bool> {
                for s in &view.segments {
                    let data = s.seg.data(&self.schema, &self.cache)?;
                    if data
                        .rows_with_id(id)
                        .into_iter()
                        .any(|r| !s.deleted.as_ref().is_some_and(|d| d.contains(r)))
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            };
            if in_mem || in_seg()? {
                found.push(id);
            }
        }
        if found.is_empty() {
            return Ok(0);
        }
        self.tombstones.record(&self.dir, &self.schema, &found)?;
        for m in &view.memtables {
            let mut d = m.write();
            for id in &found {
                let rows: Vec<usize> = d.rows_with_id(id).collect();
                for r in rows {
                    d.mark_deleted(r);
                }
            }
        }
        let mut next = (*view).clone();
        let mut rollups = (*next.rollups).clone();
        for s in next.segments.iter_mut() {
            let data = s.seg.data(&self.schema, &self.cache)?;
            let mut newly = Vec::new();
            for id in &found {
                for r in data.rows_with_id(id) {
                    if !s.deleted.as_ref().is_some_and(|d| d.contains(r)) {
                        newly.push(r);
                    }
                }
            }
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
        self.view.store(Arc::new(next));
        Ok(found.len())
    }
}
