//! Fan-out over a fleet of agents (the members of one consumer group, each holding the
//! partitions it consumed): every endpoint is asked at once, each exchange bounded by a connect
//! and a read timeout, and the answers are merged as if one store had answered. Who answered,
//! who did not and why travels with the merged answer ([`Completeness`]), so a caller can tell
//! a whole answer from a partial one. Used by the `query` CLI (`--endpoint`, `--endpoints-dns`)
//! and by the HTTP API's `fleet=true` (`http/`, configured by `[fleet]`).
//!
//! Merge rules:
//! - aggregates: summed ([`AggregateResponse::merge`]);
//! - rollups: buckets summed per (day, dims);
//! - newest-first pages: the union, sorted by (ts desc, id desc) as the engine orders them,
//!   cut to `limit` and to a byte budget, with `next_cursor` from the last kept event when the
//!   page was cut or some member has more. Every member answered the newest `limit` events
//!   after the same cursor, or fewer with a `next_cursor` when its own byte budget cut its page:
//!   the union is first cut at the newest last event of such a member (the frontier), so the
//!   fleet's next events are all in it and the cursor is valid for every member;
//! - point look-up: the answer of any member that has the event (the newest copy if several do);
//! - group-by and time series: every group summed across members and ranked again, exact when
//!   every member returned all its groups (`merge_groups.rs`; `exact: false` otherwise).
//!
//! An endpoint that rejects the query's parameters (HTTP 400) makes the whole query a usage
//! error, not a partial answer: every member runs the same code on the same schema.
//!
//! A member whose pod is gone vanishes from its headless service's DNS records instead of
//! failing to answer: with an expected member count ([`Fleet::expect_members`]; `--expect-members`,
//! `fleet.expected_members`), finding fewer distinct endpoints makes every answer partial, with a
//! [`FailureKind::NotResolved`] entry in `missing`.
//!
//! The pieces: this file holds the answer types (who answered, why a query failed);
//! `client.rs` asks the endpoints (the HTTP exchange, the fan-out in waves, the failure
//! classes); `merge.rs` merges their answers; `dns.rs` turns a DNS name into endpoints.

mod client;
mod dns;
mod merge;
mod merge_groups;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use client::{encode_path_segment, Fleet, MAX_PARALLEL};
pub use dns::{members_source, DnsTarget};
pub use merge::{merge_aggregates, merge_pages, merge_rollups, pick_event};

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
    /// An endpoint is not `http://host:port` or `https://host:port`.
    BadEndpoint(String),
    /// The CA file trusted for `https` endpoints cannot be used.
    CaFile(String),
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
                "endpoint {e:?} is not like http://host:port or https://host:port"
            ),
            FleetError::CaFile(e) => write!(f, "--ca-file: {e}"),
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
