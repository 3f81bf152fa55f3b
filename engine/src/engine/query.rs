//! The runtime-schema query API.

use super::DynEngine;
use crate::error::{DbError, Result};
use crate::event::DynEvent;
use crate::query::{DynAggregate, DynFilter, FilterRef, RollupKey, RollupValue};

impl DynEngine {
    fn check_filter(&self, f: &DynFilter) -> Result<()> {
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
        Ok(DynAggregate::from_totals(
            self.aggregate_ref(&filter.as_ref())?,
        ))
    }

    pub(crate) fn aggregate_filter(&self, f: &FilterRef<'_>) -> Result<DynAggregate> {
        Ok(DynAggregate::from_totals(self.aggregate_ref(f)?))
    }

    /// The newest `limit` events matching `filter`, newest first (ties broken by id,
    /// descending). Page on with `filter.cursor = Some(Cursor::from(last))`.
    pub fn query_recent(&self, filter: &DynFilter, limit: usize) -> Result<Vec<DynEvent>> {
        self.check_filter(filter)?;
        self.query_recent_ref(&filter.as_ref(), limit)
    }

    /// The event with id `id` (the newest, if several share it).
    pub fn get_event(&self, id: &str) -> Result<Option<DynEvent>> {
        self.get_event_as(id)
    }

    /// Rollup buckets of UTC days `from_day..=to_day` (see [`crate::day_of`]), with one
    /// optional equality filter per rollup dim (in `rollup_dims` order), sorted by key.
    pub fn query_rollups(
        &self,
        from_day: i64,
        to_day: i64,
        filters: &[Option<&str>],
    ) -> Result<Vec<(RollupKey, RollupValue)>> {
        self.query_rollups_dyn(from_day, to_day, filters)
    }
}
