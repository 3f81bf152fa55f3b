//! The runtime-schema query API: thin calls into the query layer over a snapshot.

use super::DynEngine;
use crate::error::{DbError, Result};
use crate::event::DynEvent;
use crate::query::{self, DynAggregate, DynFilter, RollupKey, RollupValue, Snapshot};

impl DynEngine {
    /// What a query reads now: the current view, schema, segment cache and query pool.
    pub(crate) fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            view: self.view.load_full(),
            schema: &self.schema,
            cache: &self.cache,
            pool: &self.query_pool,
        }
    }

    pub(super) fn check_filter(&self, f: &DynFilter) -> Result<()> {
        if f.dims.len() > self.schema.dims.len() {
            return Err(DbError::ArityMismatch {
                column: "filter dims",
                expected: self.schema.dims.len(),
                found: f.dims.len(),
            });
        }
        Ok(())
    }

    /// Exact sums over the events matching `filter`.
    pub fn aggregate(&self, filter: &DynFilter) -> Result<DynAggregate> {
        self.check_filter(filter)?;
        let totals = query::aggregate(&self.snapshot(), &filter.as_ref())?;
        Ok(DynAggregate::from_totals(totals))
    }

    /// The newest `limit` events matching `filter`, newest first (ties broken by id,
    /// descending). Page on with `filter.cursor = Some(Cursor::from(last))`.
    pub fn query_recent(&self, filter: &DynFilter, limit: usize) -> Result<Vec<DynEvent>> {
        self.check_filter(filter)?;
        query::recent(&self.snapshot(), &filter.as_ref(), limit)
    }

    /// The event with id `id` (the newest, if several share it).
    pub fn get_event(&self, id: &str) -> Result<Option<DynEvent>> {
        query::get_event(&self.snapshot(), id)
    }

    /// Rollup buckets of UTC days `from_day..=to_day` (see [`crate::day_of`]), with one
    /// optional equality filter per rollup dim (in `rollup_dims` order), sorted by key.
    pub fn query_rollups(
        &self,
        from_day: i64,
        to_day: i64,
        filters: &[Option<&str>],
    ) -> Result<Vec<(RollupKey, RollupValue)>> {
        query::rollups(&self.snapshot(), from_day, to_day, filters)
    }
}
