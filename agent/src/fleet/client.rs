//! Asking the fleet: one HTTP exchange per endpoint (bounded by a connect and a read
//! timeout, the answer by size), every endpoint at once in waves of [`MAX_PARALLEL`], each
//! reply classified, and the answers gathered with who answered ([`Completeness`]).

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

use super::merge::{merge_aggregates, merge_pages, merge_rollups, pick_event};
use super::merge_groups::{merge_series, merge_top};
use super::{members_source, Answer, Completeness, FailureKind, FleetError, Missing};
use crate::api::{
    AggregateResponse, EventJson, EventsResponse, Params, RollupsResponse, SeriesResponse,
    TopResponse,
};
use crate::config::units::fmt_duration;
use crate::config::FleetSettings;

/// Endpoints asked at once; a larger fleet is asked in waves of this many, so a query takes at
/// most `ceil(endpoints / MAX_PARALLEL) * (connect_timeout + timeout)`.
pub const MAX_PARALLEL: usize = 64;

/// Largest answer read from one endpoint (a page of big labels can pass ureq's 10 MB default).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

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
    /// Endpoints are `http://host:port` or `https://host:port` (a trailing `/` is dropped,
    /// duplicates are asked once); `https` trusts the system's CA roots (see
    /// [`Fleet::trust_ca_file`]).
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
            let host = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if host.is_none_or(str::is_empty) {
                return Err(FleetError::BadEndpoint(e));
            }
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        if unique.is_empty() {
            return Err(FleetError::NoEndpoints);
        }
        Ok(Fleet {
            endpoints: unique,
            token,
            http: http_agent(connect_timeout, timeout, RootCerts::PlatformVerifier),
            connect_timeout,
            timeout,
            expected: None,
        })
    }

    /// `https` endpoints are trusted when a CA of the PEM file `path` signed their certificate
    /// (instead of the system's roots).
    pub fn trust_ca_file(mut self, path: &Path) -> Result<Fleet, FleetError> {
        let certs = crate::mapping::registry::pem_certificates(path).map_err(FleetError::CaFile)?;
        let roots = RootCerts::new_with_certs(&certs);
        self.http = http_agent(self.connect_timeout, self.timeout, roots);
        Ok(self)
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

    /// `GET /v1/events` on every member with the same `limit` and cursor, merged newest first
    /// into a page of at most `limit` events and `max_bytes` of their JSON (at least one).
    pub fn events(
        &self,
        p: &Params,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Answer<EventsResponse>, FleetError> {
        let mut p = p.clone();
        p.limit = Some(limit);
        let (parts, completeness) = self.ask("/v1/events", &p.to_pairs(), false)?;
        Ok(Answer {
            value: merge_pages(parts, limit, max_bytes),
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

    /// `GET /v1/top` on every member, asking each for `ask` groups (at least `limit`) so that
    /// small group sets merge complete and exact; the `limit` largest of the sums.
    pub fn top(
        &self,
        p: &Params,
        limit: usize,
        ask: usize,
    ) -> Result<Answer<TopResponse>, FleetError> {
        let mut q = p.clone();
        q.limit = Some(ask.max(limit));
        let (parts, completeness) = self.ask("/v1/top", &q.to_pairs(), false)?;
        Ok(Answer {
            value: merge_top(parts, limit),
            completeness,
        })
    }

    /// `GET /v1/series` on every member, buckets summed and groups ranked again. Members are
    /// asked for `limit` groups only (each group's series counts against their bucket cap), so
    /// a split series is exact when no member has more groups than that.
    pub fn series(&self, p: &Params, limit: usize) -> Result<Answer<SeriesResponse>, FleetError> {
        let (parts, completeness) = self.ask("/v1/series", &p.to_pairs(), false)?;
        Ok(Answer {
            value: merge_series(parts, limit),
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

/// The HTTP client of a fleet: a connect and a read timeout, TLS through OpenSSL (the
/// library librdkafka links too) trusting `roots`.
fn http_agent(connect_timeout: Duration, timeout: Duration, roots: RootCerts) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(roots)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(connect_timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .timeout_global(Some(connect_timeout + timeout))
        .build()
        .into()
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
        ureq::Error::NativeTls(_) | ureq::Error::Tls(_) => (FailureKind::Network, tls_failure(e)),
        other => (FailureKind::Network, other.to_string()),
    }
}

/// A TLS failure in plain words: a refused certificate names the way to trust it.
fn tls_failure(e: &ureq::Error) -> String {
    let detail = e.to_string();
    if detail.contains("certificate verify failed") {
        format!("TLS: the endpoint's certificate was refused (a CA not trusted, expired, or a name it does not hold; trust its CA with --ca-file): {detail}")
    } else {
        format!("TLS: {detail}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::DnsTarget;

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
    fn endpoints_are_normalised_and_asked_once() {
        let d = Duration::from_secs(1);
        let f = Fleet::new(
            [
                "http://a:1/".to_string(),
                "http://a:1".into(),
                "http://b:2".into(),
                "https://c:3/".into(),
            ],
            None,
            d,
            d,
        )
        .unwrap();
        assert_eq!(f.endpoints(), ["http://a:1", "http://b:2", "https://c:3"]);
        assert_eq!(
            Fleet::new(Vec::new(), None, d, d).unwrap_err(),
            FleetError::NoEndpoints
        );
        for bad in ["localhost:8686", "ftp://a:1", "http://", "https://", ""] {
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
