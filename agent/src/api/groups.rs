//! `GET /v1/top` and `GET /v1/series`: the engine's group-by and time series, with the JSON
//! shapes that local answers and the fleet's merged answers share (`crate::fleet` merges them).

use std::collections::BTreeMap;

use keplordb::{Bucket, DynAggregate, DynEngine, GroupBy, GroupOrder, Series};
use serde::{Deserialize, Serialize};

use super::params::perr;
use super::{AggregateResponse, Cancel, Caps, Params, QueryError};

/// Groups a `top` answers when `limit` is not given.
pub const DEFAULT_TOP: usize = 10;

/// One group of a `top` answer: its dim values and exact sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJson {
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub aggregate: AggregateResponse,
}

/// `GET /v1/top`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopResponse {
    /// The grouped dims.
    pub by: Vec<String>,
    /// What ranks the groups: `count`, `metric`, `latency` or a counter's name.
    pub order: String,
    /// The largest groups, largest first (ties by values).
    pub groups: Vec<GroupJson>,
    /// Every other group summed.
    pub others: Option<AggregateResponse>,
    /// Groups that matched in all (over a fleet: the distinct groups its members returned).
    pub total_groups: usize,
    /// False when a fleet's merge could not be exact: some member had more groups than it
    /// returned, so a group's sums (and its rank) may miss that member's share.
    pub exact: bool,
}

/// One bucket of a time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketJson {
    /// Start of the bucket, nanoseconds since the epoch (UTC-aligned).
    pub start_ns: i64,
    #[serde(flatten)]
    pub aggregate: AggregateResponse,
}

/// One series of a split time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesJson {
    pub values: BTreeMap<String, String>,
    pub buckets: Vec<BucketJson>,
}

/// `GET /v1/series`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesResponse {
    /// Bucket width.
    pub every_ns: i64,
    /// Every matching event, per bucket (buckets with events, in time order).
    pub buckets: Vec<BucketJson>,
    /// With `by`: the grouped dims, the largest groups' series and the rest summed.
    pub by: Vec<String>,
    pub order: String,
    pub series: Vec<SeriesJson>,
    pub others: Option<Vec<BucketJson>>,
    pub total_groups: usize,
    /// As in [`TopResponse::exact`].
    pub exact: bool,
}

impl AggregateResponse {
    /// The answer shape of an engine aggregate; `names` are the schema's counters.
    pub fn of(a: DynAggregate, names: &[String]) -> AggregateResponse {
        AggregateResponse {
            event_count: a.event_count,
            metric: a.metric,
            counters: names.iter().cloned().zip(a.counters).collect(),
            latency_ms_sum: a.latency_ms_sum,
            latency_detail_ms_sum: a.latency_detail_ms_sum,
            min_ts_ns: a.min_ts_ns,
            max_ts_ns: a.max_ts_ns,
        }
    }
}

/// Bucket width of a series when `every` is not given: an hour.
pub const DEFAULT_EVERY_NS: i64 = 3_600_000_000_000;

/// The dims `p` groups by: `by`, or the schema's first dim.
fn by_names(engine: &DynEngine, p: &Params) -> Vec<String> {
    if p.by.is_empty() {
        engine.schema().dims.iter().take(1).cloned().collect()
    } else {
        p.by.clone()
    }
}

/// The group-by `p` asks for: `by` (one or two dim names; default the schema's first dim),
/// `order` (default `count`) and `limit` (default [`DEFAULT_TOP`], at most `caps.max_limit`).
fn group_by(
    engine: &DynEngine,
    p: &Params,
    by: &[String],
    caps: &Caps,
) -> Result<GroupBy, QueryError> {
    let schema = engine.schema();
    let dims = by
        .iter()
        .map(|name| {
            schema.dim_index(name).ok_or_else(|| {
                perr(
                    "by",
                    format!(
                        "no dim called {name:?}; dims are: {}",
                        schema.dims.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if dims.is_empty() {
        return Err(perr("by", "the schema has no dim to group by").into());
    }
    if dims.len() == 2 && dims[0] == dims[1] {
        return Err(perr("by", format!("{:?} is given twice", by[0])).into());
    }
    let order = match p.order.as_deref().unwrap_or("count") {
        "count" => GroupOrder::Count,
        "metric" => GroupOrder::Metric,
        "latency" => GroupOrder::Latency,
        name => match schema.counters.iter().position(|c| c == name) {
            Some(i) => GroupOrder::Counter(i),
            None => {
                return Err(perr(
                    "order",
                    format!(
                        "{name:?}: use count, metric, latency or a counter ({})",
                        schema.counters.join(", ")
                    ),
                )
                .into())
            }
        },
    };
    let limit = p.limit.unwrap_or(DEFAULT_TOP.min(caps.max_limit));
    if limit > caps.max_limit {
        return Err(perr(
            "limit",
            format!("{limit} is above the maximum of {}", caps.max_limit),
        )
        .into());
    }
    Ok(GroupBy { dims, order, limit })
}

/// The values of `by`'s dims, keyed by name.
fn named(by: &[String], values: Vec<String>) -> BTreeMap<String, String> {
    by.iter().cloned().zip(values).collect()
}

/// The order's name as `order` spells it.
fn order_name(p: &Params) -> String {
    p.order.clone().unwrap_or_else(|| "count".into())
}

pub fn top(engine: &DynEngine, p: &Params, caps: &Caps) -> Result<TopResponse, QueryError> {
    let names_by = by_names(engine, p);
    let by = group_by(engine, p, &names_by, caps)?;
    let groups = engine.group_by(&p.filter(engine)?, &by)?;
    let names = &engine.schema().counters;
    Ok(TopResponse {
        order: order_name(p),
        groups: groups
            .groups
            .into_iter()
            .map(|g| GroupJson {
                values: named(&names_by, g.values),
                aggregate: AggregateResponse::of(g.aggregate, names),
            })
            .collect(),
        others: groups.others.map(|a| AggregateResponse::of(a, names)),
        total_groups: groups.total_groups,
        exact: true,
        by: names_by,
    })
}

/// Buckets in the answer's shape.
fn buckets_json(buckets: Vec<Bucket>, names: &[String]) -> Vec<BucketJson> {
    buckets
        .into_iter()
        .map(|b| BucketJson {
            start_ns: b.start_ns,
            aggregate: AggregateResponse::of(b.aggregate, names),
        })
        .collect()
}

/// The time series `p` asks for (`every`, default an hour), split by `by` when given. More
/// buckets in all than `caps.max_rollup_buckets` is [`QueryError::TooLarge`].
pub fn series(
    engine: &DynEngine,
    p: &Params,
    caps: &Caps,
    cancel: &Cancel,
) -> Result<SeriesResponse, QueryError> {
    let every = p.every_ns.unwrap_or(DEFAULT_EVERY_NS);
    if let Some(limit) = p.limit.filter(|&l| l > caps.max_limit) {
        return Err(perr(
            "limit",
            format!("{limit} is above the maximum of {}", caps.max_limit),
        )
        .into());
    }
    let filter = p.filter(engine)?;
    let names = &engine.schema().counters;
    let by = (!p.by.is_empty())
        .then(|| group_by(engine, p, &p.by, caps))
        .transpose()?;
    let total = engine.time_series(&filter, every)?;
    let mut answer = SeriesResponse {
        every_ns: every,
        buckets: buckets_json(total, names),
        exact: true,
        ..SeriesResponse::default()
    };
    check_buckets(answer.buckets.len(), caps)?;
    let Some(by) = by else {
        return Ok(answer);
    };
    cancel.check()?;
    let split = engine.time_series_by(&filter, every, &by)?;
    let count: usize = split.series.iter().map(|s| s.buckets.len()).sum::<usize>()
        + split.others.as_ref().map_or(0, Vec::len)
        + answer.buckets.len();
    check_buckets(count, caps)?;
    answer.by = p.by.clone();
    answer.order = order_name(p);
    answer.series = split
        .series
        .into_iter()
        .map(|Series { values, buckets }| SeriesJson {
            values: named(&p.by, values),
            buckets: buckets_json(buckets, names),
        })
        .collect();
    answer.others = split.others.map(|b| buckets_json(b, names));
    answer.total_groups = split.total_groups;
    Ok(answer)
}

/// `count` buckets fit the cap.
fn check_buckets(count: usize, caps: &Caps) -> Result<(), QueryError> {
    if count > caps.max_rollup_buckets {
        return Err(QueryError::TooLarge(format!(
            "more than {} buckets (http.max_rollup_buckets): ask for a wider every, a shorter time range (since, from, to) or fewer groups (limit)",
            caps.max_rollup_buckets
        )));
    }
    Ok(())
}
