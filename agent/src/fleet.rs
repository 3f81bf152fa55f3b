//! Fan-out over a fleet of agents (the members of one consumer group, each holding the
//! partitions it consumed): every endpoint is asked at once, each exchange bounded by a connect
//! and a read timeout, and the answers are merged as if one store had answered. Who answered,
//! who did not and why travels with the merged answer ([`Completeness`]), so a caller can tell
//! a whole answer from a partial one. Used by the `query` CLI (`--endpoint`, `--endpoints-dns`)
//! and by the HTTP API's `fleet=true` (`http.rs`, configured by `[fleet]`).
//!
//! Merge rules:
//! - aggregates: summed ([`AggregateResponse::merge`]);
//! - rollups: buckets summed per (day, dims);
//! - newest-first pages: the union, sorted by (ts desc, id desc) as the engine orders them,
//!   cut to `limit`, with `next_cursor` from the last kept event when the page is full. Every
//!   member answered the newest `limit` events after the same cursor, so the fleet's newest
//!   `limit` are among them and the cursor is valid for every member;
//! - point look-up: the answer of any member that has the event (the newest copy if several do).
//!
//! An endpoint that rejects the query's parameters (HTTP 400) makes the whole query a usage
//! error, not a partial answer: every member runs the same code on the same schema.
//!
//! A member whose pod is gone vanishes from its headless service's DNS records instead of
//! failing to answer: with an expected member count ([`Fleet::expect_members`]; `--expect-members`,
//! `fleet.expected_members`), finding fewer distinct endpoints makes every answer partial, with a
//! [`FailureKind::NotResolved`] entry in `missing`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{
    AggregateResponse, EventJson, EventsResponse, Params, RollupBucket, RollupsResponse,
};
use crate::config::units::fmt_duration;
use crate::config::FleetSettings;

/// Endpoints asked at once; a larger fleet is asked in waves of this many, so a query takes at
/// most `ceil(endpoints / MAX_PARALLEL) * (connect_timeout + timeout)`.
pub const MAX_PARALLEL: usize = 64;

/// Largest answer read from one endpoint (a page of big labels can pass ureq's 10 MB default).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// Why one endpoint did not answer (a bounded set, for scripts and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Nothing listens there: the connection was refused.
    Refused,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// Connected, but no complete answer within the read timeout.
    Timeout,
    /// Any other network failure (unknown host, unreachable network, reset connection).
    Network,
    /// The endpoint answered with an HTTP error status (other than 400).
    Http,
    /// The endpoint answered 200 with a body that is not the expected JSON.
    BadResponse,
    /// Fewer distinct endpoints were found (resolved and listed) than members are expected:
    /// some member is not even asked. Its `endpoint` names the DNS target (or `fleet`).
    NotResolved,
}

/// An endpoint that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub endpoint: String,
    pub kind: FailureKind,
    /// What happened, e.g. `connection refused`, `HTTP 503: query timed out`.
    pub error: String,
}

/// How complete a merged answer is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// True when some endpoint did not answer: the figures cover only those that did.
    pub partial: bool,
    /// How many endpoints were asked.
    pub endpoints: usize,
    /// The endpoints that answered.
    pub answered: Vec<String>,
    /// The endpoints that did not, and why; plus, when fewer endpoints were found than members
    /// are expected, one [`FailureKind::NotResolved`] entry for those never asked.
    pub missing: Vec<Missing>,
}

/// A merged answer and how complete it is, serialized flat: the answer's own fields, then
/// `partial`, `endpoints`, `answered` and `missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer<T> {
    #[serde(flatten)]
    pub value: T,
    #[serde(flatten)]
    pub completeness: Completeness,
}

/// Why a fan-out gave no answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetError {
    /// The endpoint list is empty.
    NoEndpoints,
    /// An endpoint is not `http://host:port`.
    BadEndpoint(String),
    /// A DNS name did not resolve to any address.
    Resolve { target: String, error: String },
    /// An endpoint rejected the query (HTTP 400): the query is wrong for the whole fleet.
    BadRequest {
        endpoint: String,
        parameter: Option<String>,
        error: String,
    },
    /// No endpoint answered; every failure is listed.
    NoneAnswered(Completeness),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::NoEndpoints => write!(f, "no endpoint to ask"),
            FleetError::BadEndpoint(e) => write!(
                f,
                "endpoint {e:?} is not like http://host:port (plain HTTP only)"
            ),
            FleetError::Resolve { target, error } => {
                write!(f, "cannot resolve {target} into endpoints: {error}")
            }
            FleetError::BadRequest {
                endpoint,
                parameter: Some(p),
                error,
            } => write!(f, "parameter `{p}`: {error} (answered by {endpoint})"),
            FleetError::BadRequest {
                endpoint,
                parameter: None,
                error,
            } => write!(f, "{endpoint} rejected the query: {error}"),
            FleetError::NoneAnswered(c) => {
                write!(f, "none of the {} endpoints answered", c.endpoints)?;
                for m in &c.missing {
                    write!(f, "; {}: {}", m.endpoint, m.error)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FleetError {}

/// `HOST:PORT` whose every A/AAAA record is one fleet member (a StatefulSet's headless service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
}

impl DnsTarget {
    /// Parses `keplor-agent.ns.svc:8686` (an IPv6 literal goes in brackets: `[::1]:8686`).
    pub fn parse(s: &str) -> Result<DnsTarget, String> {
        let bad = || format!("{s:?} is not HOST:PORT, e.g. keplor-agent.ns.svc:8686");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(bad)?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(DnsTarget {
            host: host.to_string(),
            port,
        })
    }

    /// Every address the name resolves to now, as `http://IP:PORT`, without duplicates.
    pub fn resolve(&self) -> Result<Vec<String>, FleetError> {
        let failed = |error: String| FleetError::Resolve {
            target: self.to_string(),
            error,
        };
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| failed(e.to_string()))?;
        let mut out: Vec<String> = Vec::new();
        for a in addrs {
            let url = format!("http://{a}");
            if !out.contains(&url) {
                out.push(url);
            }
        }
        if out.is_empty() {
            return Err(failed("no A or AAAA record".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where the members of a fleet come from, to name a shortfall: the DNS target when there is
/// exactly one, else `fleet`.
pub fn members_source(dns: &[DnsTarget]) -> String {
    match dns {
        [one] => one.to_string(),
        _ => "fleet".to_string(),
    }
}

/// How many members a fleet should have, and where they come from (see [`members_source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    members: usize,
    source: String,
}

/// What one endpoint said.
#[derive(Debug)]
enum Reply<T> {
    Answer(T),
    /// 404 on a point look-up: this member does not have the event.
    NotFound,
    BadRequest {
        parameter: Option<String>,
        error: String,
    },
    Failed(FailureKind, String),
}

/// The endpoints to ask and how to ask them.
#[derive(Debug)]
pub struct Fleet {
    endpoints: Vec<String>,
    token: Option<String>,
    http: ureq::Agent,
    connect_timeout: Duration,
    timeout: Duration,
    expected: Option<Expected>,
}

impl Fleet {
    /// Endpoints are `http://host:port` (a trailing `/` is dropped, duplicates are asked once).
    /// `connect_timeout` bounds each connection; `timeout` bounds the wait for each answer once
    /// connected, so an endpoint takes at most their sum.
    pub fn new(
        endpoints: impl IntoIterator<Item = String>,
        token: Option<String>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Fleet, FleetError> {
        let mut unique: Vec<String> = Vec::new();
        for e in endpoints {
            let e = e.trim().trim_end_matches('/').to_string();
            if e.strip_prefix("http://").is_none_or(str::is_empty) {
                return Err(FleetError::BadEndpoint(e));
            }
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        if unique.is_empty() {
            return Err(FleetError::NoEndpoints);
        }
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(connect_timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .timeout_global(Some(connect_timeout + timeout))
            .build()
            .into();
        Ok(Fleet {
            endpoints: unique,
            token,
            http,
            connect_timeout,
            timeout,
            expected: None,
        })
    }

    /// Expects `members` distinct endpoints (at least): with fewer, every answer is partial and
    /// `missing` gains a [`FailureKind::NotResolved`] entry named `source` (the DNS target the
    /// members come from, or `fleet`: see [`members_source`]). More is fine.
    pub fn expect_members(mut self, members: usize, source: impl Into<String>) -> Fleet {
        self.expected = Some(Expected {
            members,
            source: source.into(),
        });
        self
    }

    /// The members expected but not found, if any.
    fn shortfall(&self) -> Option<Missing> {
        let e = self.expected.as_ref()?;
        let found = self.endpoints.len();
        (found < e.members).then(|| Missing {
            endpoint: e.source.clone(),
            kind: FailureKind::NotResolved,
            error: format!("{} members expected, {found} found", e.members),
        })
    }

    /// The fleet of a `[fleet]` section: its endpoints plus what its DNS name resolves to now,
    /// expecting `expected_members` of them when set.
    pub fn from_settings(s: &FleetSettings) -> Result<Fleet, FleetError> {
        let mut endpoints = s.endpoints.clone();
        if let Some(target) = &s.endpoints_dns {
            endpoints.extend(target.resolve()?);
        }
        let fleet = Fleet::new(endpoints, s.token.clone(), s.connect_timeout, s.timeout)?;
        Ok(match s.expected_members {
            Some(n) => {
                let source = members_source(s.endpoints_dns.as_slice());
                fleet.expect_members(n, source)
            }
            None => fleet,
        })
    }

    /// The endpoints asked, deduplicated, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// `GET /v1/partitions` on every member: what each sink holds now.
    pub fn holdings(&self) -> Result<Answer<Vec<crate::ownership::Holdings>>, FleetError> {
        let (value, completeness) = self.ask("/v1/partitions", &[], false)?;
        Ok(Answer {
            value,
            completeness,
        })
    }

    /// `GET /v1/aggregate` on every member, summed.
    pub fn aggregate(&self, p: &Params) -> Result<Answer<AggregateResponse>, FleetError> {
        let (parts, completeness) = self.ask("/v1/aggregate", &p.to_pairs(), false)?;
        Ok(Answer {
            value: merge_aggregates(parts),
            completeness,
        })
    }

    /// `GET /v1/events` on every member with the same `limit` and cursor, merged newest first.
    pub fn events(&self, p: &Params, limit: usize) -> Result<Answer<EventsResponse>, FleetError> {
        let mut p = p.clone();
        p.limit = Some(limit);
        let (parts, completeness) = self.ask("/v1/events", &p.to_pairs(), false)?;
        Ok(Answer {
            value: merge_pages(parts, limit),
            completeness,
        })
    }

    /// `GET /v1/events/{id}` on every member: the event if any member that answered has it.
    pub fn get(&self, id: &str) -> Result<Answer<Option<EventJson>>, FleetError> {
        let path = format!("/v1/events/{}", encode_path_segment(id));
        let (parts, completeness) = self.ask(&path, &[], true)?;
        Ok(Answer {
            value: pick_event(parts),
            completeness,
        })
    }

    /// `GET /v1/rollups` on every member, buckets summed per (day, dims).
    pub fn rollups(&self, p: &Params) -> Result<Answer<RollupsResponse>, FleetError> {
        let (parts, completeness) = self.ask("/v1/rollups", &p.to_pairs(), false)?;
        Ok(Answer {
            value: merge_rollups(parts),
            completeness,
        })
    }

    /// Asks every endpoint; the answers (404s on a look-up left out) and who answered.
    fn ask<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        pairs: &[(String, String)],
        lookup: bool,
    ) -> Result<(Vec<T>, Completeness), FleetError> {
        let replies = self.fan_out(|endpoint| self.call(endpoint, path, pairs, lookup));
        let mut answers = Vec::new();
        let mut c = Completeness {
            endpoints: self.endpoints.len(),
            ..Completeness::default()
        };
        for (endpoint, reply) in self.endpoints.iter().zip(replies) {
            match reply {
                Reply::Answer(v) => {
                    answers.push(v);
                    c.answered.push(endpoint.clone());
                }
                Reply::NotFound => c.answered.push(endpoint.clone()),
                Reply::BadRequest { parameter, error } => {
                    return Err(FleetError::BadRequest {
                        endpoint: endpoint.clone(),
                        parameter,
                        error,
                    })
                }
                Reply::Failed(kind, error) => c.missing.push(Missing {
                    endpoint: endpoint.clone(),
                    kind,
                    error,
                }),
            }
        }
        c.missing.extend(self.shortfall());
        if c.answered.is_empty() {
            c.partial = true;
            return Err(FleetError::NoneAnswered(c));
        }
        c.partial = !c.missing.is_empty();
        Ok((answers, c))
    }

    /// Runs `f` for every endpoint, up to [`MAX_PARALLEL`] at once; replies in endpoint order.
    fn fan_out<T: Send>(&self, f: impl Fn(&str) -> Reply<T> + Sync) -> Vec<Reply<T>> {
        let mut out = Vec::with_capacity(self.endpoints.len());
        for wave in self.endpoints.chunks(MAX_PARALLEL) {
            std::thread::scope(|s| {
                let handles: Vec<_> = wave
                    .iter()
                    .map(|endpoint| s.spawn(|| f(endpoint)))
                    .collect();
                for h in handles {
                    out.push(h.join().unwrap_or_else(|_| {
                        Reply::Failed(FailureKind::Network, "the request thread panicked".into())
                    }));
                }
            });
        }
        out
    }

    /// One exchange with one endpoint.
    fn call<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        pairs: &[(String, String)],
        lookup: bool,
    ) -> Reply<T> {
        let mut req = self.http.get(format!("{endpoint}{path}"));
        for (k, v) in pairs {
            req = req.query(k, v);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => return self.failed(&e),
        };
        let status = resp.status().as_u16();
        match resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
        {
            Ok(body) => decode_reply(status, &body, lookup),
            Err(e) => self.failed(&e),
        }
    }

    fn failed<T>(&self, e: &ureq::Error) -> Reply<T> {
        let (kind, error) = classify(e, self.connect_timeout, self.timeout);
        Reply::Failed(kind, error)
    }
}

/// Names a transport failure.
fn classify(e: &ureq::Error, connect: Duration, read: Duration) -> (FailureKind, String) {
    match e {
        ureq::Error::Timeout(ureq::Timeout::Connect) => (
            FailureKind::ConnectTimeout,
            format!("no connection within {}", fmt_duration(connect)),
        ),
        ureq::Error::Timeout(_) => (
            FailureKind::Timeout,
            format!("connected, but no answer within {}", fmt_duration(read)),
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (FailureKind::Refused, "connection refused".into())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            (FailureKind::Timeout, io.to_string())
        }
        ureq::Error::HostNotFound => (FailureKind::Network, "host not found".into()),
        ureq::Error::BodyExceedsLimit(_) => (
            FailureKind::BadResponse,
            format!("answer larger than {MAX_ANSWER_BYTES} bytes: ask for fewer events"),
        ),
        other => (FailureKind::Network, other.to_string()),
    }
}

/// What a status and body mean. Error bodies are the API's `{"error", "parameter"}` JSON; any
/// other body is quoted as it is.
fn decode_reply<T: DeserializeOwned>(status: u16, body: &str, lookup: bool) -> Reply<T> {
    match status {
        200 => match serde_json::from_str(body) {
            Ok(v) => Reply::Answer(v),
            Err(e) => Reply::Failed(
                FailureKind::BadResponse,
                format!("not the expected JSON: {e}"),
            ),
        },
        404 if lookup => Reply::NotFound,
        _ => {
            let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
            let field = |k: &str| {
                v.as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
            };
            let error = field("error").unwrap_or_else(|| body.trim().to_string());
            if status == 400 {
                Reply::BadRequest {
                    parameter: field("parameter"),
                    error,
                }
            } else {
                Reply::Failed(FailureKind::Http, format!("HTTP {status}: {error}"))
            }
        }
    }
}

/// Percent-encodes one path segment (an event id may hold `/`).
pub fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sums partial aggregates.
pub fn merge_aggregates(parts: impl IntoIterator<Item = AggregateResponse>) -> AggregateResponse {
    let mut total = AggregateResponse::default();
    for p in parts {
        total.merge(&p);
    }
    total
}

/// Merges newest-first pages that answered the same cursor with the same `limit`.
pub fn merge_pages(
    parts: impl IntoIterator<Item = EventsResponse>,
    limit: usize,
) -> EventsResponse {
    let mut all: Vec<EventJson> = parts.into_iter().flat_map(|p| p.events).collect();
    all.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
    // One event stored twice (a partition replayed by its new owner) is shown once.
    all.dedup_by(|a, b| a.id == b.id && a.ts_ns == b.ts_ns);
    all.truncate(limit);
    let next_cursor = (all.len() == limit)
        .then(|| all.last().map(|e| crate::api::format_cursor(&e.cursor())))
        .flatten();
    EventsResponse {
        events: all,
        next_cursor,
    }
}

/// Sums rollup buckets per (day, dims), in (day, dims) order.
pub fn merge_rollups(parts: impl IntoIterator<Item = RollupsResponse>) -> RollupsResponse {
    let mut merged: BTreeMap<(i64, BTreeMap<String, String>), RollupBucket> = BTreeMap::new();
    for b in parts.into_iter().flat_map(|p| p.buckets) {
        match merged.get_mut(&(b.day, b.dims.clone())) {
            Some(m) => {
                m.event_count += b.event_count;
                m.metric = m.metric.saturating_add(b.metric);
                for (k, v) in b.counters {
                    *m.counters.entry(k).or_default() += v;
                }
            }
            None => {
                merged.insert((b.day, b.dims.clone()), b);
            }
        }
    }
    RollupsResponse {
        buckets: merged.into_values().collect(),
    }
}

/// The event found by any member; the newest copy (then the greatest id) if several have one.
pub fn pick_event(parts: impl IntoIterator<Item = EventJson>) -> Option<EventJson> {
    parts
        .into_iter()
        .max_by(|a, b| (a.ts_ns, &a.id).cmp(&(b.ts_ns, &b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, ts: i64) -> EventJson {
        EventJson {
            id: id.into(),
            ts_ns: ts,
            metric: 1,
            latency_ms: 0,
            latency_detail_ms: 0,
            status: 200,
            flags: 0,
            dims: BTreeMap::new(),
            counters: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn page(events: Vec<EventJson>) -> EventsResponse {
        EventsResponse {
            events,
            next_cursor: None,
        }
    }

    fn ids(r: &EventsResponse) -> Vec<&str> {
        r.events.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn aggregates_are_summed() {
        let a = AggregateResponse {
            event_count: 2,
            metric: 10,
            counters: [("tokens".to_string(), 5)].into(),
            latency_ms_sum: 7,
            latency_detail_ms_sum: 1,
            min_ts_ns: Some(5),
            max_ts_ns: Some(9),
        };
        let b = AggregateResponse {
            event_count: 3,
            metric: -4,
            counters: [("tokens".to_string(), 6)].into(),
            latency_ms_sum: 1,
            latency_detail_ms_sum: 2,
            min_ts_ns: Some(3),
            max_ts_ns: Some(8),
        };
        let empty = AggregateResponse::default();
        let m = merge_aggregates([a, empty, b]);
        assert_eq!(m.event_count, 5);
        assert_eq!(m.metric, 6);
        assert_eq!(m.counters["tokens"], 11);
        assert_eq!((m.latency_ms_sum, m.latency_detail_ms_sum), (8, 3));
        assert_eq!((m.min_ts_ns, m.max_ts_ns), (Some(3), Some(9)));
        assert_eq!(merge_aggregates([]), AggregateResponse::default());
    }

    #[test]
    fn pages_interleave_newest_first_and_cut_at_limit() {
        let a = page(vec![ev("a3", 30), ev("a2", 20), ev("a1", 10)]);
        let b = page(vec![ev("b2", 25), ev("b1", 20)]);
        let m = merge_pages([a.clone(), b.clone()], 3);
        assert_eq!(ids(&m), ["a3", "b2", "b1"], "ties on ts: id descending");
        assert_eq!(m.next_cursor.as_deref(), Some("20:b1"));
        let m = merge_pages([a, b], 10);
        assert_eq!(ids(&m), ["a3", "b2", "b1", "a2", "a1"]);
        assert_eq!(m.next_cursor, None, "a page that is not full is the last");
        assert_eq!(merge_pages([], 5), EventsResponse::default());
    }

    #[test]
    fn pages_show_an_event_stored_twice_once() {
        let a = page(vec![ev("x", 5), ev("w", 4)]);
        let b = page(vec![ev("x", 5), ev("v", 3)]);
        let m = merge_pages([a, b], 3);
        assert_eq!(ids(&m), ["x", "w", "v"]);
    }

    #[test]
    fn paging_the_merge_with_its_cursor_visits_every_event_once() {
        // Three members, each answering like the engine: newest first, strictly after the cursor.
        let members: Vec<Vec<EventJson>> = (0..3)
            .map(|m| {
                (0..40)
                    .map(|i| ev(&format!("m{m}-{i:02}"), (i * 7 + m * 3) % 50))
                    .collect()
            })
            .collect();
        let answer = |events: &[EventJson], cursor: Option<(i64, String)>, limit: usize| {
            let mut v: Vec<EventJson> = events
                .iter()
                .filter(|e| {
                    cursor.as_ref().is_none_or(|(ts, id)| {
                        e.ts_ns < *ts || (e.ts_ns == *ts && e.id.as_str() < id.as_str())
                    })
                })
                .cloned()
                .collect();
            v.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
            v.truncate(limit);
            page(v)
        };
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let m = merge_pages(members.iter().map(|e| answer(e, cursor.clone(), 7)), 7);
            seen.extend(m.events.iter().map(|e| (e.ts_ns, e.id.clone())));
            let Some(c) = m.next_cursor else { break };
            let (ts, id) = c.split_once(':').unwrap();
            cursor = Some((ts.parse().unwrap(), id.to_string()));
        }
        assert_eq!(seen.len(), 120);
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "strictly newest first"
        );
    }

    #[test]
    fn rollups_are_summed_per_day_and_dims() {
        let bucket = |day, user: &str, n, tokens| RollupBucket {
            day,
            dims: [("user".to_string(), user.to_string())].into(),
            event_count: n,
            metric: n as i64,
            counters: [("tokens".to_string(), tokens)].into(),
        };
        let a = RollupsResponse {
            buckets: vec![bucket(2, "u1", 1, 10), bucket(1, "u1", 2, 20)],
        };
        let b = RollupsResponse {
            buckets: vec![bucket(1, "u1", 3, 30), bucket(1, "u2", 4, 40)],
        };
        let m = merge_rollups([a, b]);
        let got: Vec<_> = m
            .buckets
            .iter()
            .map(|b| {
                (
                    b.day,
                    b.dims["user"].as_str(),
                    b.event_count,
                    b.counters["tokens"],
                )
            })
            .collect();
        assert_eq!(got, [(1, "u1", 5, 50), (1, "u2", 4, 40), (2, "u1", 1, 10)]);
    }

    #[test]
    fn a_lookup_takes_any_member_that_has_the_event() {
        assert_eq!(pick_event([]), None);
        let got = pick_event([ev("x", 5), ev("x", 7)]).unwrap();
        assert_eq!(got.ts_ns, 7, "the newest copy");
    }

    #[test]
    fn replies_are_classified_by_status() {
        let r: Reply<AggregateResponse> = decode_reply(200, "{}", false);
        assert!(
            matches!(r, Reply::Failed(FailureKind::BadResponse, _)),
            "{r:?}"
        );
        let r: Reply<EventJson> = decode_reply(404, r#"{"error":"no event"}"#, true);
        assert!(matches!(r, Reply::NotFound));
        let r: Reply<AggregateResponse> = decode_reply(404, r#"{"error":"no route"}"#, false);
        assert!(matches!(r, Reply::Failed(FailureKind::Http, ref e) if e == "HTTP 404: no route"));
        let r: Reply<AggregateResponse> =
            decode_reply(400, r#"{"error":"no dim","parameter":"dim.x"}"#, false);
        assert!(
            matches!(r, Reply::BadRequest { parameter: Some(ref p), ref error } if p == "dim.x" && error == "no dim")
        );
        let r: Reply<AggregateResponse> = decode_reply(502, "bad gateway\n", false);
        assert!(
            matches!(r, Reply::Failed(FailureKind::Http, ref e) if e == "HTTP 502: bad gateway")
        );
    }

    #[test]
    fn dns_targets_parse_and_resolve() {
        let t = DnsTarget::parse("keplor-agent.ns.svc:8686").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("keplor-agent.ns.svc", 8686));
        let t = DnsTarget::parse("[::1]:9").unwrap();
        assert_eq!((t.host.as_str(), t.to_string()), ("::1", "[::1]:9".into()));
        for bad in ["host", "host:", ":80", "host:0", "host:http", "http://h:1"] {
            assert!(DnsTarget::parse(bad).is_err(), "{bad}");
        }
        let t = DnsTarget::parse("127.0.0.1:8686").unwrap();
        assert_eq!(t.resolve().unwrap(), ["http://127.0.0.1:8686"]);
        let e = DnsTarget::parse("no-such-host.invalid:1")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid:1"), "{e}");
    }

    #[test]
    fn endpoints_are_normalised_and_asked_once() {
        let d = Duration::from_secs(1);
        let f = Fleet::new(
            [
                "http://a:1/".to_string(),
                "http://a:1".into(),
                "http://b:2".into(),
            ],
            None,
            d,
            d,
        )
        .unwrap();
        assert_eq!(f.endpoints(), ["http://a:1", "http://b:2"]);
        assert_eq!(
            Fleet::new(Vec::new(), None, d, d).unwrap_err(),
            FleetError::NoEndpoints
        );
        for bad in ["localhost:8686", "https://a:1", "http://", ""] {
            let e = Fleet::new([bad.to_string()], None, d, d).unwrap_err();
            assert!(matches!(e, FleetError::BadEndpoint(_)), "{bad}: {e}");
        }
    }

    /// An endpoint that answers every request with an empty aggregate, as an agent would.
    fn live_endpoint() -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let body = serde_json::to_string(&AggregateResponse::default()).unwrap();
            for mut conn in l.incoming().flatten() {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    fn quick(endpoints: &[&String]) -> Fleet {
        let d = Duration::from_secs(2);
        Fleet::new(endpoints.iter().map(|e| e.to_string()), None, d, d).unwrap()
    }

    #[test]
    fn fewer_members_than_expected_make_the_answer_partial() {
        let (a, b) = (live_endpoint(), live_endpoint());
        let target = "keplor-agent.ns.svc:8686";
        let c = quick(&[&a, &b])
            .expect_members(3, target)
            .aggregate(&Params::default())
            .unwrap()
            .completeness;
        assert!(c.partial, "{c:?}");
        assert_eq!(
            (c.endpoints, c.answered.clone()),
            (2, vec![a.clone(), b.clone()])
        );
        assert_eq!(
            c.missing,
            [Missing {
                endpoint: target.into(),
                kind: FailureKind::NotResolved,
                error: "3 members expected, 2 found".into(),
            }]
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["missing"][0]["kind"], "not_resolved", "{json}");

        // As many as expected, or more: complete.
        for expected in [2, 1] {
            let c = quick(&[&a, &b])
                .expect_members(expected, target)
                .aggregate(&Params::default())
                .unwrap()
                .completeness;
            assert!(!c.partial && c.missing.is_empty(), "{expected}: {c:?}");
        }
        // Duplicates count once.
        let c = quick(&[&a, &a])
            .expect_members(2, "fleet")
            .aggregate(&Params::default())
            .unwrap()
            .completeness;
        assert_eq!(c.missing[0].error, "2 members expected, 1 found");
        assert_eq!(c.missing[0].endpoint, "fleet");
    }

    #[test]
    fn a_shortfall_is_named_after_the_dns_target_of_the_settings() {
        let a = live_endpoint();
        let port = a.rsplit_once(':').unwrap().1;
        let target = DnsTarget::parse(&format!("127.0.0.1:{port}")).unwrap();
        let mut s = FleetSettings {
            endpoints: Vec::new(),
            endpoints_dns: Some(target.clone()),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            token: None,
            expected_members: Some(2),
        };
        let c = Fleet::from_settings(&s)
            .unwrap()
            .aggregate(&Params::default())
            .unwrap()
            .completeness;
        assert_eq!(c.answered, [a]);
        assert_eq!(c.missing.len(), 1, "{c:?}");
        assert_eq!(c.missing[0].endpoint, target.to_string());
        assert_eq!(c.missing[0].kind, FailureKind::NotResolved);
        s.expected_members = Some(1);
        let c = Fleet::from_settings(&s)
            .unwrap()
            .aggregate(&Params::default())
            .unwrap()
            .completeness;
        assert!(!c.partial, "{c:?}");
        assert_eq!(members_source(&[]), "fleet");
        assert_eq!(members_source(&[target.clone(), target]), "fleet");
    }

    #[test]
    fn a_shortfall_is_listed_when_nothing_answered() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let Err(FleetError::NoneAnswered(c)) = quick(&[&dead_url])
            .expect_members(2, "svc:1")
            .aggregate(&Params::default())
        else {
            panic!("nothing answered")
        };
        let kinds: Vec<_> = c.missing.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [FailureKind::Refused, FailureKind::NotResolved]);
    }

    #[test]
    fn dead_and_silent_endpoints_are_missing_with_their_reason() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        // Accepts connections (the kernel completes the handshake) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        let f = Fleet::new(
            [dead_url.clone(), silent_url.clone()],
            None,
            Duration::from_secs(2),
            Duration::from_millis(300),
        )
        .unwrap();
        let Err(FleetError::NoneAnswered(c)) = f.aggregate(&Params::default()) else {
            panic!("nothing answered")
        };
        assert!(c.partial && c.answered.is_empty() && c.endpoints == 2);
        assert_eq!(c.missing[0].endpoint, dead_url);
        assert_eq!(
            c.missing[0].kind,
            FailureKind::Refused,
            "{:?}",
            c.missing[0]
        );
        assert_eq!(c.missing[1].endpoint, silent_url);
        assert_eq!(
            c.missing[1].kind,
            FailureKind::Timeout,
            "{:?}",
            c.missing[1]
        );
    }
}
