//! The naive model of group-by and time series, for `model.rs`: the matching events grouped
//! with a `BTreeMap`, summed with `i128`, ranked by a full sort.

use std::collections::BTreeMap;

use keplordb::{
    Bucket, DynAggregate, Group, GroupBy, GroupOrder, Groups, LogEvent, Series, SplitSeries,
};

type Ev = LogEvent<3, 2, 1>;

/// The exact sums of `hits`, as the engine reports them.
pub fn aggregate(hits: &[&Ev]) -> DynAggregate {
    let metric: i128 = hits.iter().map(|e| e.metric as i128).sum();
    let sum = |f: &dyn Fn(&Ev) -> u64| hits.iter().map(|e| f(e)).sum::<u64>();
    DynAggregate {
        event_count: hits.len() as u64,
        metric: metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        counters: vec![
            sum(&|e| e.counters[0] as u64),
            sum(&|e| e.counters[1] as u64),
        ],
        latency_ms_sum: sum(&|e| e.latency_ms as u64),
        latency_detail_ms_sum: sum(&|e| e.latency_detail_ms as u64),
        min_ts_ns: hits.iter().map(|e| e.ts_ns).min(),
        max_ts_ns: hits.iter().map(|e| e.ts_ns).max(),
    }
}

/// What `order` ranks a group of `hits` by (unclamped, as the engine ranks).
fn rank_key(hits: &[&Ev], order: GroupOrder) -> i128 {
    match order {
        GroupOrder::Count => hits.len() as i128,
        GroupOrder::Metric => hits.iter().map(|e| e.metric as i128).sum(),
        GroupOrder::Counter(c) => hits.iter().map(|e| e.counters[c] as i128).sum(),
        GroupOrder::Latency => hits.iter().map(|e| e.latency_ms as i128).sum(),
    }
}

/// `hits` by group: the largest `by.limit` (ranked), then the rest.
#[allow(clippy::type_complexity)]
fn ranked<'a>(hits: &[&'a Ev], by: &GroupBy) -> (Vec<(Vec<String>, Vec<&'a Ev>)>, usize) {
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in hits {
        let key = by.dims.iter().map(|&d| e.dims[d].clone()).collect();
        groups.entry(key).or_default().push(e);
    }
    let mut all: Vec<(Vec<String>, Vec<&Ev>)> = groups.into_iter().collect();
    all.sort_by(|a, b| {
        rank_key(&b.1, by.order)
            .cmp(&rank_key(&a.1, by.order))
            .then_with(|| a.0.cmp(&b.0))
    });
    let total = all.len();
    (all, total)
}

/// The group-by the engine must answer.
pub fn groups(hits: &[&Ev], by: &GroupBy) -> Groups {
    let (mut all, total_groups) = ranked(hits, by);
    let rest = all.split_off(by.limit.min(total_groups));
    let rest: Vec<&Ev> = rest.into_iter().flat_map(|(_, v)| v).collect();
    Groups {
        groups: all
            .into_iter()
            .map(|(values, v)| Group {
                values,
                aggregate: aggregate(&v),
            })
            .collect(),
        others: (!rest.is_empty()).then(|| aggregate(&rest)),
        total_groups,
    }
}

/// The time series the engine must answer: the buckets of `every_ns` holding events.
pub fn series(hits: &[&Ev], every_ns: i64) -> Vec<Bucket> {
    let mut buckets: BTreeMap<i64, Vec<&Ev>> = BTreeMap::new();
    for e in hits {
        buckets
            .entry(e.ts_ns.div_euclid(every_ns) * every_ns)
            .or_default()
            .push(e);
    }
    buckets
        .into_iter()
        .map(|(start_ns, v)| Bucket {
            start_ns,
            aggregate: aggregate(&v),
        })
        .collect()
}

/// The split time series the engine must answer.
pub fn split_series(hits: &[&Ev], every_ns: i64, by: &GroupBy) -> SplitSeries {
    let (mut all, total_groups) = ranked(hits, by);
    let rest = all.split_off(by.limit.min(total_groups));
    let rest: Vec<&Ev> = rest.into_iter().flat_map(|(_, v)| v).collect();
    SplitSeries {
        series: all
            .into_iter()
            .map(|(values, v)| Series {
                values,
                buckets: series(&v, every_ns),
            })
            .collect(),
        others: (!rest.is_empty()).then(|| series(&rest, every_ns)),
        total_groups,
    }
}
