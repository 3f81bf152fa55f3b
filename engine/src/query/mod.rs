//! The read path: filters, aggregates, newest-first pages, point lookups and rollups.
//!
//! Architecture invariant: this module reads storage (segments, memtables, the view) through
//! their public-in-crate accessors; nothing in `wal/` or `segment/` depends on it.

pub(crate) mod exec;
pub(crate) mod group;
pub(crate) mod kernels;
pub(crate) mod plan;
pub(crate) mod read;
pub(crate) mod recent;
pub(crate) mod rollup;
pub(crate) mod snapshot;

pub(crate) use exec::aggregate;
pub(crate) use recent::{get_event, recent};
pub(crate) use rollup::rollups;
pub(crate) use snapshot::{QueryPool, Snapshot};

use crate::event::{DynEvent, EventFlags, LogEvent};

/// A position in the newest-first order of events: `(ts_ns, id)`. A filter carrying a cursor
/// matches only events strictly after it in that order, i.e. with `(ts_ns, id)` smaller.
///
/// Build it from the last event of a page: `Cursor::from(&events[events.len() - 1])`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// Timestamp of the last event seen.
    pub ts_ns: i64,
    /// Id of the last event seen (breaks ties between events of one timestamp).
    pub id: String,
}

impl Cursor {
    /// A cursor at `(ts_ns, id)`.
    pub fn new(ts_ns: i64, id: impl Into<String>) -> Self {
        Cursor {
            ts_ns,
            id: id.into(),
        }
    }

    /// True when `(ts, id)` comes strictly after the cursor in newest-first order.
    #[inline]
    pub(crate) fn admits(&self, ts: i64, id: &str) -> bool {
        ts < self.ts_ns || (ts == self.ts_ns && id < self.id.as_str())
    }
}

impl<const D: usize, const C: usize, const L: usize> From<&EventRef<D, C, L>> for Cursor {
    fn from(e: &EventRef<D, C, L>) -> Self {
        Cursor {
            ts_ns: e.ts_ns,
            id: e.id.clone(),
        }
    }
}

impl From<&DynEvent> for Cursor {
    fn from(e: &DynEvent) -> Self {
        Cursor {
            ts_ns: e.ts_ns,
            id: e.id.clone(),
        }
    }
}

/// Which events a query reads. Every set field must match (AND).
#[derive(Clone, Debug)]
pub struct QueryFilter<const D: usize> {
    /// Equality on each dim (`None`: any value).
    pub dims: [Option<String>; D],
    /// Inclusive lower bound on `ts_ns`.
    pub from_ts_ns: Option<i64>,
    /// Exclusive upper bound on `ts_ns`.
    pub to_ts_ns: Option<i64>,
    /// Inclusive lower bound on `status`.
    pub status_min: Option<u16>,
    /// Exclusive upper bound on `status`.
    pub status_max: Option<u16>,
    /// Continue strictly after this event (newest-first order).
    pub cursor: Option<Cursor>,
}

impl<const D: usize> Default for QueryFilter<D> {
    fn default() -> Self {
        QueryFilter {
            dims: std::array::from_fn(|_| None),
            from_ts_ns: None,
            to_ts_ns: None,
            status_min: None,
            status_max: None,
            cursor: None,
        }
    }
}

impl<const D: usize> QueryFilter<D> {
    /// Matches everything.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn as_ref(&self) -> FilterRef<'_> {
        FilterRef {
            dims: &self.dims,
            from: self.from_ts_ns,
            to: self.to_ts_ns,
            status_min: self.status_min,
            status_max: self.status_max,
            cursor: self.cursor.as_ref(),
        }
    }
}

/// A filter for the runtime-schema engine; `dims` holds one entry per schema dim (or is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynFilter {
    /// Equality on each dim, in schema order (missing trailing entries mean "any").
    pub dims: Vec<Option<String>>,
    /// Inclusive lower bound on `ts_ns`.
    pub from_ts_ns: Option<i64>,
    /// Exclusive upper bound on `ts_ns`.
    pub to_ts_ns: Option<i64>,
    /// Inclusive lower bound on `status`.
    pub status_min: Option<u16>,
    /// Exclusive upper bound on `status`.
    pub status_max: Option<u16>,
    /// Continue strictly after this event.
    pub cursor: Option<Cursor>,
}

impl DynFilter {
    pub(crate) fn as_ref(&self) -> FilterRef<'_> {
        FilterRef {
            dims: &self.dims,
            from: self.from_ts_ns,
            to: self.to_ts_ns,
            status_min: self.status_min,
            status_max: self.status_max,
            cursor: self.cursor.as_ref(),
        }
    }
}

/// A borrowed filter, the form the executor takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FilterRef<'a> {
    pub dims: &'a [Option<String>],
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub status_min: Option<u16>,
    pub status_max: Option<u16>,
    pub cursor: Option<&'a Cursor>,
}

impl FilterRef<'_> {
    /// Equality filters as (dim, value).
    pub(crate) fn dim_filters(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.dims
            .iter()
            .enumerate()
            .filter_map(|(d, v)| v.as_deref().map(|v| (d, v)))
    }

    /// Status range as inclusive bounds; `None` when unrestricted. Check `matches_nothing`
    /// first: an empty range has no inclusive form.
    pub(crate) fn status_range(&self) -> Option<(u16, u16)> {
        if self.status_min.is_none() && self.status_max.is_none() {
            return None;
        }
        let hi = self.status_max.map_or(u16::MAX, |m| m.saturating_sub(1));
        Some((self.status_min.unwrap_or(0), hi))
    }

    /// True when the bounds exclude everything (an empty time or status range).
    pub(crate) fn matches_nothing(&self) -> bool {
        self.from.zip(self.to).is_some_and(|(a, b)| a >= b)
            || self.status_max == Some(0)
            || self
                .status_min
                .zip(self.status_max)
                .is_some_and(|(a, b)| a >= b)
    }

    /// True when `ts` is inside the time bounds.
    #[inline]
    pub(crate) fn ts_ok(&self, ts: i64) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts < t)
    }
}

/// Exact sums over the matching events of a typed engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate<const C: usize> {
    /// Matching events.
    pub event_count: u64,
    /// Sum of `metric`, saturating at the i64 range.
    pub metric: i64,
    /// Sum of each counter.
    pub counters: [u64; C],
    /// Sum of `latency_ms`.
    pub latency_ms_sum: u64,
    /// Sum of `latency_detail_ms`.
    pub latency_detail_ms_sum: u64,
    /// Oldest matching timestamp.
    pub min_ts_ns: Option<i64>,
    /// Newest matching timestamp.
    pub max_ts_ns: Option<i64>,
}

/// Exact sums over the matching events of the runtime-schema engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynAggregate {
    /// Matching events.
    pub event_count: u64,
    /// Sum of `metric`, saturating at the i64 range.
    pub metric: i64,
    /// Sum of each counter, in schema order.
    pub counters: Vec<u64>,
    /// Sum of `latency_ms`.
    pub latency_ms_sum: u64,
    /// Sum of `latency_detail_ms`.
    pub latency_detail_ms_sum: u64,
    /// Oldest matching timestamp.
    pub min_ts_ns: Option<i64>,
    /// Newest matching timestamp.
    pub max_ts_ns: Option<i64>,
}

impl DynAggregate {
    pub(crate) fn from_totals(t: crate::segment::Totals) -> Self {
        DynAggregate {
            event_count: t.count,
            metric: t.metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            counters: t.counters,
            latency_ms_sum: t.latency,
            latency_detail_ms_sum: t.latency_detail,
            min_ts_ns: (t.count > 0).then_some(t.min_ts),
            max_ts_ns: (t.count > 0).then_some(t.max_ts),
        }
    }

    /// The typed form (`C` must be the schema's counter count).
    pub(crate) fn typed<const C: usize>(self) -> Aggregate<C> {
        let mut counters = [0u64; C];
        for (a, b) in counters.iter_mut().zip(self.counters) {
            *a = b;
        }
        Aggregate {
            event_count: self.event_count,
            metric: self.metric,
            counters,
            latency_ms_sum: self.latency_ms_sum,
            latency_detail_ms_sum: self.latency_detail_ms_sum,
            min_ts_ns: self.min_ts_ns,
            max_ts_ns: self.max_ts_ns,
        }
    }
}

/// How the groups of a group-by are ranked: by the largest sum first, ties by their values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupOrder {
    /// Matching events.
    #[default]
    Count,
    /// Sum of `metric`.
    Metric,
    /// Sum of the counter at this index (schema order).
    Counter(usize),
    /// Sum of `latency_ms`.
    Latency,
}

/// A group-by: the aggregate per value of one dim (or per pair of values of two dims), the
/// `limit` largest by `order`, and the rest summed in one "others" row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// One or two dims (schema indices).
    pub dims: Vec<usize>,
    /// What ranks the groups.
    pub order: GroupOrder,
    /// Most groups returned; `usize::MAX` returns every group (exact merging across stores).
    pub limit: usize,
}

impl GroupBy {
    /// The `limit` largest values of `dim` by `order`.
    pub fn new(dim: usize, order: GroupOrder, limit: usize) -> Self {
        GroupBy {
            dims: vec![dim],
            order,
            limit,
        }
    }
}

/// One group: its dim values (in `GroupBy::dims` order) and their exact sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The values of the grouped dims.
    pub values: Vec<String>,
    /// Their exact sums.
    pub aggregate: DynAggregate,
}

/// The answer of a group-by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    /// The largest groups, largest first (ties by values, ascending).
    pub groups: Vec<Group>,
    /// Every other group summed (exact), when there are more than `limit`.
    pub others: Option<DynAggregate>,
    /// How many groups matched in all.
    pub total_groups: usize,
}

/// One bucket of a time series: its start (UTC-aligned, a multiple of the width since the
/// epoch) and the exact sums of its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket, nanoseconds since the epoch.
    pub start_ns: i64,
    /// Exact sums of the bucket's matching events.
    pub aggregate: DynAggregate,
}

/// One series of a split time series: the values of its group, and its buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// The values of the grouped dims.
    pub values: Vec<String>,
    /// Buckets with events, in time order.
    pub buckets: Vec<Bucket>,
}

/// A time series split by the largest groups of a dim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitSeries {
    /// One series per group, largest group first (ranked over the whole range).
    pub series: Vec<Series>,
    /// Every other group summed per bucket, when there are more groups than the limit.
    pub others: Option<Vec<Bucket>>,
    /// How many groups matched in all.
    pub total_groups: usize,
}

/// An event read back by a query. Same fields as [`LogEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRef<const D: usize, const C: usize, const L: usize> {
    /// Event id.
    pub id: String,
    /// Timestamp in nanoseconds.
    pub ts_ns: i64,
    /// Primary metric.
    pub metric: i64,
    /// Counters.
    pub counters: [u32; C],
    /// Latency in milliseconds.
    pub latency_ms: u32,
    /// Detailed latency in milliseconds.
    pub latency_detail_ms: u32,
    /// Status code.
    pub status: u16,
    /// Flags.
    pub flags: EventFlags,
    /// Dims.
    pub dims: [String; D],
    /// Labels.
    pub labels: [String; L],
}

impl<const D: usize, const C: usize, const L: usize> EventRef<D, C, L> {
    /// The event as a `LogEvent` (e.g. to append it elsewhere).
    pub fn into_log_event(self) -> LogEvent<D, C, L> {
        LogEvent {
            id: self.id,
            ts_ns: self.ts_ns,
            metric: self.metric,
            counters: self.counters,
            latency_ms: self.latency_ms,
            latency_detail_ms: self.latency_detail_ms,
            status: self.status,
            flags: self.flags,
            dims: self.dims,
            labels: self.labels,
        }
    }
}

impl<const D: usize, const C: usize, const L: usize> From<EventRef<D, C, L>> for LogEvent<D, C, L> {
    fn from(e: EventRef<D, C, L>) -> Self {
        e.into_log_event()
    }
}

/// Key of a daily rollup bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// UTC day: `ts_ns.div_euclid(86_400 * 10^9)`.
    pub day: i64,
    /// Values of the rollup dims, in `rollup_dims` order.
    pub dims: Vec<String>,
}

/// Sums of one rollup bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollupValue {
    /// Events in the bucket.
    pub event_count: u64,
    /// Sum of `metric`, saturating.
    pub metric: i64,
    /// Sum of each counter.
    pub counters: Vec<u64>,
}
