//! The query API shared by the HTTP endpoints and the `query` CLI: parameters (parsed from a
//! query string, with errors that name the parameter), execution against an engine, and the
//! JSON response shapes documented in `agent/openapi.yaml`. Answers of several agents are
//! merged by `crate::fleet`.

mod bounds;
mod groups;
mod params;

use std::collections::BTreeMap;

use keplordb::{Cursor, DynEngine, DynEvent, NANOS_PER_DAY};
use serde::{Deserialize, Serialize};

pub use bounds::{json_len, Cancel, Caps};
pub use groups::{
    series, top, BucketJson, GroupJson, SeriesJson, SeriesResponse, TopResponse, DEFAULT_TOP,
};
pub use params::{
    format_cursor, parse_day, parse_since, parse_time, ParamError, Params, MAX_DAY, MIN_DAY,
};
use params::{now_ns, perr};

/// `GET /v1/aggregate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateResponse {
    pub event_count: u64,
    pub metric: i64,
    pub counters: BTreeMap<String, u64>,
    pub latency_ms_sum: u64,
    pub latency_detail_ms_sum: u64,
    pub min_ts_ns: Option<i64>,
    pub max_ts_ns: Option<i64>,
}

impl AggregateResponse {
    /// Sums another agent's partial result into this one.
    pub fn merge(&mut self, o: &AggregateResponse) {
        self.event_count += o.event_count;
        self.metric = self.metric.saturating_add(o.metric);
        for (k, v) in &o.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        self.latency_ms_sum += o.latency_ms_sum;
        self.latency_detail_ms_sum += o.latency_detail_ms_sum;
        self.min_ts_ns = min_opt(self.min_ts_ns, o.min_ts_ns);
        self.max_ts_ns = self.max_ts_ns.max(o.max_ts_ns);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One event in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    pub id: String,
    pub ts_ns: i64,
    pub metric: i64,
    pub latency_ms: u32,
    pub latency_detail_ms: u32,
    pub status: u16,
    pub flags: u16,
    pub dims: BTreeMap<String, String>,
    pub counters: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
}

impl EventJson {
    fn new(e: DynEvent, engine: &DynEngine) -> EventJson {
        let s = engine.schema();
        EventJson {
            id: e.id,
            ts_ns: e.ts_ns,
            metric: e.metric,
            latency_ms: e.latency_ms,
            latency_detail_ms: e.latency_detail_ms,
            status: e.status,
            flags: e.flags.0,
            dims: s.dims.iter().cloned().zip(e.dims).collect(),
            counters: s.counters.iter().cloned().zip(e.counters).collect(),
            labels: s.labels.iter().cloned().zip(e.labels).collect(),
        }
    }

    /// The cursor continuing after this event.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.ts_ns, self.id.clone())
    }
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResponse {
    pub events: Vec<EventJson>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One rollup bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupBucket {
    pub day: i64,
    pub dims: BTreeMap<String, String>,
    pub event_count: u64,
    pub metric: i64,
    pub counters: BTreeMap<String, u64>,
}

/// `GET /v1/rollups`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupsResponse {
    pub buckets: Vec<RollupBucket>,
}

/// Errors of query execution.
#[derive(Debug)]
pub enum QueryError {
    Param(ParamError),
    Engine(keplordb::DbError),
    /// The answer would pass a cap of [`Caps`]; the message names the cap and what to narrow.
    TooLarge(String),
    /// Stopped at a check after [`Cancel::cancel`].
    Cancelled,
}

impl From<ParamError> for QueryError {
    fn from(e: ParamError) -> Self {
        QueryError::Param(e)
    }
}
impl From<keplordb::DbError> for QueryError {
    fn from(e: keplordb::DbError) -> Self {
        QueryError::Engine(e)
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Param(p) => p.fmt(f),
            QueryError::Engine(e) => e.fmt(f),
            QueryError::TooLarge(m) => f.write_str(m),
            QueryError::Cancelled => f.write_str("the query was cancelled"),
        }
    }
}

pub fn aggregate(engine: &DynEngine, p: &Params) -> Result<AggregateResponse, QueryError> {
    let a = engine.aggregate(&p.filter(engine)?)?;
    Ok(AggregateResponse::of(a, &engine.schema().counters))
}

/// The page size of `p`: its `limit`, else 100 (capped at `max_limit`); above `max_limit` is an
/// error naming `limit`.
pub fn page_limit(p: &Params, max_limit: usize) -> Result<usize, ParamError> {
    let limit = p.limit.unwrap_or(100.min(max_limit));
    if limit > max_limit {
        return Err(perr(
            "limit",
            format!("{limit} is above the maximum of {max_limit}"),
        ));
    }
    Ok(limit)
}

/// The first chunk of a page: small, since nothing is known yet of the events' sizes.
const FIRST_CHUNK: usize = 16;

/// A page of the newest events after `p.cursor`: at most `limit`, and at most
/// `caps.max_page_bytes` of events' JSON (at least one event). Fetched in chunks with a
/// `cancel` check before each, so that memory stays near the byte budget even when labels are
/// large. `next_cursor` is set when the page is full or was cut by the byte budget.
pub fn events(
    engine: &DynEngine,
    p: &Params,
    caps: &Caps,
    cancel: &Cancel,
) -> Result<EventsResponse, QueryError> {
    let limit = page_limit(p, caps.max_limit)?;
    let mut filter = p.filter(engine)?;
    let mut events: Vec<EventJson> = Vec::new();
    let (mut bytes, mut largest) = (0usize, 0usize);
    let mut want = limit.min(FIRST_CHUNK);
    let cut = 'fill: loop {
        cancel.check()?;
        let chunk = engine.query_recent(&filter, want)?;
        let last = chunk.len() < want;
        for e in chunk {
            let e = EventJson::new(e, engine);
            let size = bounds::json_len(&e);
            if !events.is_empty() && bytes.saturating_add(size) > caps.max_page_bytes {
                break 'fill true;
            }
            bytes += size;
            largest = largest.max(size);
            events.push(e);
        }
        if last || events.len() == limit {
            break false;
        }
        filter.cursor = events.last().map(EventJson::cursor);
        // As many more as fit the rest of the budget at the largest size seen.
        let room = caps.max_page_bytes.saturating_sub(bytes) / largest.max(1);
        want = room.clamp(1, limit - events.len());
    };
    let next_cursor = (cut || events.len() == limit)
        .then(|| events.last().map(|e| format_cursor(&e.cursor())))
        .flatten();
    Ok(EventsResponse {
        events,
        next_cursor,
    })
}

pub fn get(engine: &DynEngine, id: &str) -> Result<Option<EventJson>, QueryError> {
    Ok(engine.get_event(id)?.map(|e| EventJson::new(e, engine)))
}

/// Days asked of the engine per call of a rollups answer, at least: a `cancel` check and the
/// bucket cap are looked at between calls.
const MIN_WINDOW_DAYS: i64 = 32;
/// Calls a rollups answer is split into, at most.
const MAX_WINDOWS: i64 = 64;

/// The rollup buckets of days `from_day..=to_day` (default: today; `from_day` after `to_day`:
/// none), asked in day windows with a `cancel` check before each. More than
/// `caps.max_rollup_buckets` buckets is [`QueryError::TooLarge`], found out window by window
/// rather than after building the whole answer.
pub fn rollups(
    engine: &DynEngine,
    p: &Params,
    caps: &Caps,
    cancel: &Cancel,
) -> Result<RollupsResponse, QueryError> {
    let schema = engine.schema();
    let today = now_ns().div_euclid(NANOS_PER_DAY);
    let to = p.to_day.unwrap_or(today);
    let from = p.from_day.unwrap_or(to);
    let rollup_names: Vec<&str> = schema
        .rollup_dims
        .iter()
        .map(|&i| schema.dims[i].as_str())
        .collect();
    let mut filters: Vec<Option<&str>> = vec![None; rollup_names.len()];
    for (name, value) in &p.dims {
        let i = rollup_names.iter().position(|n| n == name).ok_or_else(|| {
            perr(
                &format!("dim.{name}"),
                format!(
                    "rollups are keyed by {}; {name:?} is not one of them",
                    rollup_names.join(", ")
                ),
            )
        })?;
        filters[i] = Some(value);
    }
    // Days are within MIN_DAY..=MAX_DAY (params.rs): no arithmetic here can overflow.
    let window = ((to - from + 1) / MAX_WINDOWS).max(MIN_WINDOW_DAYS);
    let mut buckets = Vec::new();
    let mut day = from;
    while day <= to {
        cancel.check()?;
        let end = (day + window - 1).min(to);
        let got = engine.query_rollups(day, end, &filters)?;
        if buckets.len() + got.len() > caps.max_rollup_buckets {
            return Err(QueryError::TooLarge(format!(
                "more than {} rollup buckets (http.max_rollup_buckets): ask for fewer days (from_day, to_day) or filter on a rollup dim ({})",
                caps.max_rollup_buckets,
                rollup_names
                    .iter()
                    .map(|n| format!("dim.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        buckets.extend(got.into_iter().map(|(k, v)| {
            RollupBucket {
                day: k.day,
                dims: rollup_names
                    .iter()
                    .map(|n| n.to_string())
                    .zip(k.dims)
                    .collect(),
                event_count: v.event_count,
                metric: v.metric,
                counters: schema.counters.iter().cloned().zip(v.counters).collect(),
            }
        }));
        day = end + 1;
    }
    Ok(RollupsResponse { buckets })
}

#[cfg(test)]
mod tests;
