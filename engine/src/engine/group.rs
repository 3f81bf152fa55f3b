//! Group-by and time series over the runtime-schema engine: validation, ranking and the
//! "others" row, over the query layer's exact sums (`query::group`).

use std::collections::BTreeMap;

use super::DynEngine;
use crate::error::{DbError, Result};
use crate::hash::FastMap;
use crate::query::group::{group_totals, series_totals};
use crate::query::{
    Bucket, DynAggregate, DynFilter, FilterRef, Group, GroupBy, GroupOrder, Groups, Series,
    SplitSeries,
};
use crate::segment::Totals;
use crate::time::NANOS_PER_DAY;

/// The narrowest time-series bucket: one second.
pub const MIN_BUCKET_NS: i64 = 1_000_000_000;
/// The widest time-series bucket: 1,000 days.
pub const MAX_BUCKET_NS: i64 = 1000 * NANOS_PER_DAY;

impl DynEngine {
    /// The aggregate per value of `by.dims` (one dim, or a pair) over the events matching
    /// `filter`: the `by.limit` largest groups by `by.order`, and the rest summed in `others`.
    /// Exact: every matching event is counted in exactly one group.
    pub fn group_by(&self, filter: &DynFilter, by: &GroupBy) -> Result<Groups> {
        self.check_filter(filter)?;
        self.group_by_ref(&filter.as_ref(), by)
    }

    /// The aggregate per bucket of `every_ns` nanoseconds (1 s to 1,000 days) over the events
    /// matching `filter`: the buckets holding events, in time order. Buckets start at multiples
    /// of their width since the epoch, so a day and its divisors are aligned to UTC days.
    pub fn time_series(&self, filter: &DynFilter, every_ns: i64) -> Result<Vec<Bucket>> {
        self.check_filter(filter)?;
        self.time_series_ref(&filter.as_ref(), every_ns)
    }

    /// A time series per group of the `by.limit` largest groups of `by.dims` (ranked over the
    /// whole range by `by.order`), and one for every other group summed.
    pub fn time_series_by(
        &self,
        filter: &DynFilter,
        every_ns: i64,
        by: &GroupBy,
    ) -> Result<SplitSeries> {
        self.check_filter(filter)?;
        self.time_series_by_ref(&filter.as_ref(), every_ns, by)
    }

    pub(crate) fn group_by_ref(&self, f: &FilterRef<'_>, by: &GroupBy) -> Result<Groups> {
        self.check_group_by(by)?;
        let groups = group_totals(&self.snapshot(), f, &by.dims, None)?;
        let nc = self.schema.counters.len();
        let (top, rest, total_groups) = rank(groups.into_iter().map(|((_, v), t)| (v, t)), by);
        Ok(Groups {
            groups: top
                .into_iter()
                .map(|(values, t)| Group {
                    values,
                    aggregate: DynAggregate::from_totals(t),
                })
                .collect(),
            others: (!rest.is_empty()).then(|| {
                let mut t = Totals::new(nc);
                for (_, x) in &rest {
                    t.merge(x);
                }
                DynAggregate::from_totals(t)
            }),
            total_groups,
        })
    }

    pub(crate) fn time_series_ref(&self, f: &FilterRef<'_>, every_ns: i64) -> Result<Vec<Bucket>> {
        check_every(every_ns)?;
        let buckets = series_totals(&self.snapshot(), f, every_ns)?;
        Ok(buckets_of(buckets))
    }

    pub(crate) fn time_series_by_ref(
        &self,
        f: &FilterRef<'_>,
        every_ns: i64,
        by: &GroupBy,
    ) -> Result<SplitSeries> {
        check_every(every_ns)?;
        self.check_group_by(by)?;
        let nc = self.schema.counters.len();
        let cells = group_totals(&self.snapshot(), f, &by.dims, Some(every_ns))?;
        // Each group's sums over the whole range rank it; its buckets are its series.
        let mut whole: FastMap<Vec<String>, Totals> = FastMap::default();
        let mut series: FastMap<Vec<String>, BTreeMap<i64, Totals>> = FastMap::default();
        for ((bucket, values), t) in cells {
            whole
                .entry(values.clone())
                .or_insert_with(|| Totals::new(nc))
                .merge(&t);
            series.entry(values).or_default().insert(bucket, t);
        }
        let (top, rest, total_groups) = rank(whole.into_iter(), by);
        let mut take = |values: &Vec<String>| series.remove(values).unwrap_or_default();
        let top: Vec<Series> = top
            .into_iter()
            .map(|(values, _)| Series {
                buckets: buckets_of(take(&values)),
                values,
            })
            .collect();
        let others = (!rest.is_empty()).then(|| {
            let mut sum: BTreeMap<i64, Totals> = BTreeMap::new();
            for (values, _) in &rest {
                for (bucket, t) in take(values) {
                    sum.entry(bucket)
                        .or_insert_with(|| Totals::new(nc))
                        .merge(&t);
                }
            }
            buckets_of(sum)
        });
        Ok(SplitSeries {
            series: top,
            others,
            total_groups,
        })
    }

    /// One or two distinct dims of the schema, and a counter it has.
    fn check_group_by(&self, by: &GroupBy) -> Result<()> {
        let dims = self.schema.dims.len();
        let bad = |reason: String| Err(DbError::InvalidQuery { reason });
        if by.dims.is_empty() || by.dims.len() > 2 {
            return bad(format!("group by 1 or 2 dims, not {}", by.dims.len()));
        }
        if let Some(d) = by.dims.iter().find(|&&d| d >= dims) {
            return bad(format!("dim {d} is not one of the schema's {dims} dims"));
        }
        if by.dims.len() == 2 && by.dims[0] == by.dims[1] {
            return bad(format!("dim {} is grouped twice", by.dims[0]));
        }
        let counters = self.schema.counters.len();
        if let GroupOrder::Counter(c) = by.order {
            if c >= counters {
                return bad(format!(
                    "counter {c} is not one of the schema's {counters} counters"
                ));
            }
        }
        Ok(())
    }
}

/// A bucket width the engine accepts.
fn check_every(every_ns: i64) -> Result<()> {
    if !(MIN_BUCKET_NS..=MAX_BUCKET_NS).contains(&every_ns) {
        return Err(DbError::InvalidQuery {
            reason: format!(
                "a bucket of {every_ns} ns is outside 1 s ({MIN_BUCKET_NS} ns) to 1,000 days \
                 ({MAX_BUCKET_NS} ns)"
            ),
        });
    }
    Ok(())
}

/// The value `order` ranks a group by.
fn rank_key(t: &Totals, order: GroupOrder) -> i128 {
    match order {
        GroupOrder::Count => t.count as i128,
        GroupOrder::Metric => t.metric,
        GroupOrder::Counter(c) => t.counters.get(c).copied().unwrap_or(0) as i128,
        GroupOrder::Latency => t.latency as i128,
    }
}

/// The `by.limit` largest groups, largest first (ties by values), the rest, and how many there
/// were.
#[allow(clippy::type_complexity)]
fn rank(
    groups: impl Iterator<Item = (Vec<String>, Totals)>,
    by: &GroupBy,
) -> (
    Vec<(Vec<String>, Totals)>,
    Vec<(Vec<String>, Totals)>,
    usize,
) {
    let mut all: Vec<(Vec<String>, Totals)> = groups.collect();
    let total = all.len();
    let order = by.order;
    let cmp = |a: &(Vec<String>, Totals), b: &(Vec<String>, Totals)| {
        rank_key(&b.1, order)
            .cmp(&rank_key(&a.1, order))
            .then_with(|| a.0.cmp(&b.0))
    };
    if by.limit < total {
        all.select_nth_unstable_by(by.limit, cmp);
    }
    let rest = all.split_off(by.limit.min(total));
    all.sort_unstable_by(cmp);
    (all, rest, total)
}

/// Buckets in time order, as the API returns them.
fn buckets_of(buckets: BTreeMap<i64, Totals>) -> Vec<Bucket> {
    buckets
        .into_iter()
        .map(|(start_ns, t)| Bucket {
            start_ns,
            aggregate: DynAggregate::from_totals(t),
        })
        .collect()
}
