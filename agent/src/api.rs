//! The query API shared by the HTTP endpoints and the `query` CLI: parameters (parsed from a
//! query string, with errors that name the parameter), execution against an engine, and the
//! JSON response shapes documented in `agent/openapi.yaml`. Answers of several agents are
//! merged by `crate::fleet`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use keplordb::{Cursor, DynEngine, DynEvent, DynFilter, NANOS_PER_DAY};
use serde::{Deserialize, Serialize};

use crate::config::units::parse_duration;
use crate::mapping::parse_rfc3339;

/// A bad request parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamError {
    /// The parameter.
    pub parameter: String,
    /// What is wrong.
    pub error: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter `{}`: {}", self.parameter, self.error)
    }
}

fn perr(parameter: &str, error: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_string(),
        error: error.into(),
    }
}

/// Parsed query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `dim.<name>=<value>`: equality on dims.
    pub dims: BTreeMap<String, String>,
    pub from_ts_ns: Option<i64>,
    pub to_ts_ns: Option<i64>,
    pub status_min: Option<u16>,
    pub status_max: Option<u16>,
    pub limit: Option<usize>,
    pub cursor: Option<Cursor>,
    pub from_day: Option<i64>,
    pub to_day: Option<i64>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A time: RFC 3339, or integer nanoseconds since the epoch.
pub fn parse_time(name: &str, v: &str) -> Result<i64, ParamError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    parse_rfc3339(v).map_err(|e| perr(name, e))
}

/// A day: `YYYY-MM-DD` or the day number (days since 1970-01-01).
pub fn parse_day(name: &str, v: &str) -> Result<i64, ParamError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    parse_rfc3339(&format!("{v}T00:00:00Z"))
        .map(|ns| ns.div_euclid(NANOS_PER_DAY))
        .map_err(|_| {
            perr(
                name,
                format!("{v:?} is not a day like 2026-11-25 or a day number"),
            )
        })
}

/// Formats a cursor for the `cursor` parameter: `<ts_ns>:<id>`.
pub fn format_cursor(c: &Cursor) -> String {
    format!("{}:{}", c.ts_ns, c.id)
}

impl Params {
    /// Parses `key=value` pairs (already URL-decoded).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Params, ParamError> {
        let mut p = Params::default();
        for (k, v) in pairs {
            let u16p = |v: &str| {
                v.parse::<u16>()
                    .map_err(|_| perr(k, format!("{v:?} is not a status code (0-65535)")))
            };
            match k {
                "from" => p.from_ts_ns = Some(parse_time(k, v)?),
                "to" => p.to_ts_ns = Some(parse_time(k, v)?),
                "since" => {
                    let d = parse_duration(v).map_err(|e| perr(k, e))?;
                    // Durations reach 10^12 s, past the i64 nanoseconds since 1970: the
                    // earliest time there is.
                    let from = now_ns() as i128 - d.as_nanos() as i128;
                    p.from_ts_ns = Some(i64::try_from(from).unwrap_or(i64::MIN));
                }
                "status_min" => p.status_min = Some(u16p(v)?),
                "status_max" => p.status_max = Some(u16p(v)?),
                "limit" => {
                    p.limit = Some(v.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| perr(k, format!("{v:?} is not a positive number")))?)
                }
                "cursor" => {
                    let (ts, id) = v.split_once(':').ok_or_else(|| perr(k, "expected <ts_ns>:<id>, as returned in next_cursor"))?;
                    let ts = ts.parse().map_err(|_| perr(k, "expected <ts_ns>:<id>, as returned in next_cursor"))?;
                    p.cursor = Some(Cursor::new(ts, id));
                }
                "from_day" => p.from_day = Some(parse_day(k, v)?),
                "to_day" => p.to_day = Some(parse_day(k, v)?),
                _ => match k.strip_prefix("dim.") {
                    Some(name) if !name.is_empty() => {
                        p.dims.insert(name.to_string(), v.to_string());
                    }
                    _ => return Err(perr(k, "unknown parameter: use dim.<name>, from, to, since, status_min, status_max, limit, cursor, from_day, to_day (and, over HTTP, fleet)")),
                },
            }
        }
        Ok(p)
    }

    /// Back to `key=value` pairs (for the CLI's requests).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .dims
            .iter()
            .map(|(k, x)| (format!("dim.{k}"), x.clone()))
            .collect();
        let mut push = |k: &str, x: Option<String>| {
            if let Some(x) = x {
                v.push((k.to_string(), x));
            }
        };
        push("from", self.from_ts_ns.map(|x| x.to_string()));
        push("to", self.to_ts_ns.map(|x| x.to_string()));
        push("status_min", self.status_min.map(|x| x.to_string()));
        push("status_max", self.status_max.map(|x| x.to_string()));
        push("limit", self.limit.map(|x| x.to_string()));
        push("cursor", self.cursor.as_ref().map(format_cursor));
        push("from_day", self.from_day.map(|x| x.to_string()));
        push("to_day", self.to_day.map(|x| x.to_string()));
        v
    }

    fn filter(&self, engine: &DynEngine) -> Result<DynFilter, ParamError> {
        let schema = engine.schema();
        let mut dims = vec![None; schema.dims.len()];
        for (name, value) in &self.dims {
            let i = schema.dim_index(name).ok_or_else(|| {
                perr(
                    &format!("dim.{name}"),
                    format!(
                        "no dim called {name:?}; dims are: {}",
                        schema.dims.join(", ")
                    ),
                )
            })?;
            dims[i] = Some(value.clone());
        }
        Ok(DynFilter {
            dims,
            from_ts_ns: self.from_ts_ns,
            to_ts_ns: self.to_ts_ns,
            status_min: self.status_min,
            status_max: self.status_max,
            cursor: self.cursor.clone(),
        })
    }
}

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
        }
    }
}

pub fn aggregate(engine: &DynEngine, p: &Params) -> Result<AggregateResponse, QueryError> {
    let a = engine.aggregate(&p.filter(engine)?)?;
    let names = &engine.schema().counters;
    Ok(AggregateResponse {
        event_count: a.event_count,
        metric: a.metric,
        counters: names.iter().cloned().zip(a.counters).collect(),
        latency_ms_sum: a.latency_ms_sum,
        latency_detail_ms_sum: a.latency_detail_ms_sum,
        min_ts_ns: a.min_ts_ns,
        max_ts_ns: a.max_ts_ns,
    })
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

pub fn events(
    engine: &DynEngine,
    p: &Params,
    max_limit: usize,
) -> Result<EventsResponse, QueryError> {
    let limit = page_limit(p, max_limit)?;
    let events: Vec<EventJson> = engine
        .query_recent(&p.filter(engine)?, limit)?
        .into_iter()
        .map(|e| EventJson::new(e, engine))
        .collect();
    let next_cursor = (events.len() == limit)
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

pub fn rollups(engine: &DynEngine, p: &Params) -> Result<RollupsResponse, QueryError> {
    let schema = engine.schema();
    let today = now_ns().div_euclid(NANOS_PER_DAY);
    let to = p.to_day.unwrap_or(today);
    let from = p.from_day.unwrap_or(to);
    if from > to {
        return Err(perr("from_day", "from_day is after to_day").into());
    }
    if to.abs_diff(from) > 3660 {
        return Err(perr("from_day", "at most 3660 days per request").into());
    }
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
    let buckets = engine
        .query_rollups(from, to, &filters)?
        .into_iter()
        .map(|(k, v)| RollupBucket {
            day: k.day,
            dims: rollup_names
                .iter()
                .map(|n| n.to_string())
                .zip(k.dims)
                .collect(),
            event_count: v.event_count,
            metric: v.metric,
            counters: schema.counters.iter().cloned().zip(v.counters).collect(),
        })
        .collect();
    Ok(RollupsResponse { buckets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_name_errors() {
        let p = Params::parse([
            ("dim.user", "alice"),
            ("from", "2026-11-25T00:00:00Z"),
            ("limit", "5"),
            ("cursor", "17:a:b"),
        ])
        .unwrap();
        assert_eq!(p.dims["user"], "alice");
        assert_eq!(p.from_ts_ns, Some(20_782 * NANOS_PER_DAY));
        assert_eq!(p.cursor, Some(Cursor::new(17, "a:b")));
        assert_eq!(
            Params::parse(p.to_pairs().iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap(),
            p
        );
        for (k, v) in [
            ("from", "yesterday"),
            ("limit", "0"),
            ("limit", "-3"),
            ("status_min", "70000"),
            ("cursor", "x"),
            ("bogus", "1"),
            ("since", "10"),
            ("from_day", "2026-13-01"),
        ] {
            let e = Params::parse([(k, v)]).unwrap_err();
            assert_eq!(e.parameter, k, "{k}={v}: {e}");
        }
        assert_eq!(parse_day("d", "2026-11-25").unwrap(), 20_782);
    }

    /// Fuzz target `query_params` (`since=10000000000s`): 10^19 ns is past `i64::MAX`; the
    /// cast wrapped and `now - wrapped` overflowed (a panic with overflow checks, a time in
    /// the future without). Longer still, the wrapped value hid the error entirely.
    #[test]
    fn since_further_back_than_the_i64_nanoseconds_is_not_an_overflow() {
        let before = now_ns() as i128;
        let p = Params::parse([("since", "10000000000s")]).unwrap();
        let after = now_ns() as i128;
        let from = p.from_ts_ns.unwrap() as i128;
        assert!((before - 10i128.pow(19)..=after - 10i128.pow(19)).contains(&from));
        let p = Params::parse([("since", "1000000000000s")]).unwrap();
        assert_eq!(p.from_ts_ns, Some(i64::MIN));
    }

    /// Fuzz target `query_params` (`/v1/rollups?from_day=-9223372036854775808`): `to - from`
    /// overflowed (a panic with overflow checks; without, a wrapped difference passed the
    /// 3,660-day limit).
    #[test]
    fn rollup_days_too_far_apart_are_refused_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let config = keplordb::EngineConfig::new(dir.path()).with_columns(
            ["user"],
            ["tokens"],
            Vec::<&str>::new(),
        );
        let engine = DynEngine::open(config).unwrap();
        for (from, to) in [
            (i64::MIN, 0),
            (-1, i64::MAX),
            (i64::MIN, i64::MAX),
            (0, 3661),
        ] {
            let p = Params {
                from_day: Some(from),
                to_day: Some(to),
                ..Params::default()
            };
            match rollups(&engine, &p) {
                Err(QueryError::Param(e)) => {
                    assert_eq!(e.parameter, "from_day", "{from}..={to}: {e}");
                    assert!(e.error.contains("at most 3660 days"), "{from}..={to}: {e}");
                }
                other => panic!("{from}..={to}: {other:?}"),
            }
        }
        let p = Params {
            from_day: Some(0),
            to_day: Some(3660),
            ..Params::default()
        };
        assert!(rollups(&engine, &p).unwrap().buckets.is_empty());
    }
}
