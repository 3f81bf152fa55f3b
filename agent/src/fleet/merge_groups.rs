//! Merging the members' group-by (`/v1/top`) and time-series (`/v1/series`) answers.
//!
//! Each member ranks its own groups; the fleet sums every group across members and ranks the
//! sums again. That is exact when every member returned all its groups (none had an `others`
//! row): the members were asked for more groups than the caller wants (`Fleet::top`), so small
//! group sets merge complete. Otherwise a group's sums may miss the share of a member that did
//! not rank it high enough, and the answer says `exact: false`.

use std::collections::BTreeMap;

use crate::api::{
    AggregateResponse, BucketJson, GroupJson, SeriesJson, SeriesResponse, TopResponse,
};

/// The value `order` ranks an aggregate by.
fn rank_key(a: &AggregateResponse, order: &str) -> i128 {
    match order {
        "count" => a.event_count as i128,
        "metric" => a.metric as i128,
        "latency" => a.latency_ms_sum as i128,
        counter => a.counters.get(counter).copied().unwrap_or(0) as i128,
    }
}

/// A group's values in `by` order (the engine breaks ties by them in that order).
fn ordered(by: &[String], values: &BTreeMap<String, String>) -> Vec<String> {
    by.iter()
        .map(|d| values.get(d).cloned().unwrap_or_default())
        .collect()
}

/// Ranks `groups` (values → sums) by `order`, largest first, ties by values in `by` order.
fn rank(
    groups: BTreeMap<BTreeMap<String, String>, AggregateResponse>,
    by: &[String],
    order: &str,
) -> Vec<(BTreeMap<String, String>, AggregateResponse)> {
    let mut all: Vec<_> = groups.into_iter().collect();
    all.sort_by(|(va, a), (vb, b)| {
        rank_key(b, order)
            .cmp(&rank_key(a, order))
            .then_with(|| ordered(by, va).cmp(&ordered(by, vb)))
    });
    all
}

/// Merges `top` answers into the `limit` largest groups of the fleet.
pub fn merge_top(parts: Vec<TopResponse>, limit: usize) -> TopResponse {
    let Some(first) = parts.first() else {
        return TopResponse {
            exact: true,
            ..TopResponse::default()
        };
    };
    let (by, order) = (first.by.clone(), first.order.clone());
    let exact = parts.iter().all(|p| p.exact && p.others.is_none());
    let mut groups: BTreeMap<BTreeMap<String, String>, AggregateResponse> = BTreeMap::new();
    let mut others: Option<AggregateResponse> = None;
    for p in parts {
        for g in p.groups {
            groups.entry(g.values).or_default().merge(&g.aggregate);
        }
        if let Some(o) = p.others {
            others
                .get_or_insert_with(AggregateResponse::default)
                .merge(&o);
        }
    }
    let total_groups = groups.len();
    let mut ranked = rank(groups, &by, &order);
    for (_, a) in ranked.split_off(limit.min(ranked.len())) {
        others
            .get_or_insert_with(AggregateResponse::default)
            .merge(&a);
    }
    TopResponse {
        by,
        order,
        groups: ranked
            .into_iter()
            .map(|(values, aggregate)| GroupJson { values, aggregate })
            .collect(),
        others,
        total_groups,
        exact,
    }
}

/// Buckets summed by start.
fn sum_buckets(into: &mut BTreeMap<i64, AggregateResponse>, buckets: Vec<BucketJson>) {
    for b in buckets {
        into.entry(b.start_ns).or_default().merge(&b.aggregate);
    }
}

fn bucket_list(buckets: BTreeMap<i64, AggregateResponse>) -> Vec<BucketJson> {
    buckets
        .into_iter()
        .map(|(start_ns, aggregate)| BucketJson {
            start_ns,
            aggregate,
        })
        .collect()
}

/// Merges `series` answers: the total summed per bucket, and with `by` the `limit` largest
/// groups of the fleet (ranked over the whole range) and the rest summed per bucket.
pub fn merge_series(parts: Vec<SeriesResponse>, limit: usize) -> SeriesResponse {
    let Some(first) = parts.first() else {
        return SeriesResponse {
            exact: true,
            ..SeriesResponse::default()
        };
    };
    let (every_ns, by, order) = (first.every_ns, first.by.clone(), first.order.clone());
    let exact = parts.iter().all(|p| p.exact && p.others.is_none());
    let mut total = BTreeMap::new();
    let mut series: BTreeMap<BTreeMap<String, String>, BTreeMap<i64, AggregateResponse>> =
        BTreeMap::new();
    let mut others: Option<BTreeMap<i64, AggregateResponse>> = None;
    for p in parts {
        sum_buckets(&mut total, p.buckets);
        for s in p.series {
            sum_buckets(series.entry(s.values).or_default(), s.buckets);
        }
        if let Some(o) = p.others {
            sum_buckets(others.get_or_insert_with(BTreeMap::new), o);
        }
    }
    let total_groups = series.len();
    let whole: BTreeMap<_, _> = series
        .iter()
        .map(|(values, buckets)| {
            let mut sum = AggregateResponse::default();
            for a in buckets.values() {
                sum.merge(a);
            }
            (values.clone(), sum)
        })
        .collect();
    let mut ranked = rank(whole, &by, &order);
    for (values, _) in ranked.split_off(limit.min(ranked.len())) {
        let buckets = series.remove(&values).unwrap_or_default();
        let o = others.get_or_insert_with(BTreeMap::new);
        for (start, a) in buckets {
            o.entry(start).or_default().merge(&a);
        }
    }
    SeriesResponse {
        every_ns,
        buckets: bucket_list(total),
        by,
        order,
        series: ranked
            .into_iter()
            .map(|(values, _)| SeriesJson {
                buckets: bucket_list(series.remove(&values).unwrap_or_default()),
                values,
            })
            .collect(),
        others: others.map(bucket_list),
        total_groups,
        exact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(count: u64, metric: i64) -> AggregateResponse {
        AggregateResponse {
            event_count: count,
            metric,
            ..AggregateResponse::default()
        }
    }

    fn group(model: &str, count: u64, metric: i64) -> GroupJson {
        GroupJson {
            values: [("model".to_string(), model.to_string())].into(),
            aggregate: agg(count, metric),
        }
    }

    fn top(groups: Vec<GroupJson>, others: Option<AggregateResponse>) -> TopResponse {
        TopResponse {
            by: vec!["model".into()],
            order: "metric".into(),
            total_groups: groups.len() + usize::from(others.is_some()),
            groups,
            others,
            exact: true,
        }
    }

    #[test]
    fn complete_members_merge_into_the_exact_ranking() {
        // a leads on the first member, b on the second; summed, c wins.
        let m1 = top(vec![group("a", 1, 50), group("c", 1, 40)], None);
        let m2 = top(vec![group("b", 1, 60), group("c", 2, 30)], None);
        let merged = merge_top(vec![m1, m2], 2);
        let names: Vec<&str> = merged
            .groups
            .iter()
            .map(|g| g.values["model"].as_str())
            .collect();
        assert_eq!(names, ["c", "b"]);
        assert_eq!(merged.groups[0].aggregate, agg(3, 70));
        assert_eq!(merged.others, Some(agg(1, 50)));
        assert_eq!((merged.total_groups, merged.exact), (3, true));
    }

    #[test]
    fn a_member_with_an_others_row_makes_the_merge_inexact() {
        let m1 = top(vec![group("a", 1, 50)], Some(agg(5, 10)));
        let m2 = top(vec![group("a", 1, 5)], None);
        let merged = merge_top(vec![m1, m2], 5);
        assert!(!merged.exact);
        assert_eq!(merged.groups[0].aggregate, agg(2, 55));
        assert_eq!(merged.others, Some(agg(5, 10)));
    }

    #[test]
    fn series_sum_per_bucket_and_rank_groups_over_the_range() {
        let bucket = |start_ns, count, metric| BucketJson {
            start_ns,
            aggregate: agg(count, metric),
        };
        let member = |series: Vec<(&str, Vec<BucketJson>)>| SeriesResponse {
            every_ns: 60,
            buckets: vec![bucket(0, 2, 2), bucket(60, 1, 1)],
            by: vec!["model".into()],
            order: "count".into(),
            total_groups: series.len(),
            series: series
                .into_iter()
                .map(|(m, buckets)| SeriesJson {
                    values: [("model".to_string(), m.to_string())].into(),
                    buckets,
                })
                .collect(),
            others: None,
            exact: true,
        };
        let m1 = member(vec![
            ("a", vec![bucket(0, 2, 2)]),
            ("b", vec![bucket(60, 1, 1)]),
        ]);
        let m2 = member(vec![("b", vec![bucket(0, 1, 1), bucket(60, 1, 1)])]);
        let merged = merge_series(vec![m1, m2], 1);
        assert_eq!(merged.buckets, vec![bucket(0, 4, 4), bucket(60, 2, 2)]);
        assert_eq!(merged.series.len(), 1);
        assert_eq!(merged.series[0].values["model"], "b");
        assert_eq!(
            merged.series[0].buckets,
            vec![bucket(0, 1, 1), bucket(60, 2, 2)]
        );
        assert_eq!(merged.others, Some(vec![bucket(0, 2, 2)]));
        assert!(merged.exact);
    }
}
