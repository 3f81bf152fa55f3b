//! How much query work the API takes on at once (`http.max_concurrent_queries`).
//!
//! A query holds a slot (a semaphore permit) from before its blocking task starts until that
//! task ends, not until its request is answered: a query that outlives `http.request_timeout`
//! is answered 503 at once but keeps its slot until the engine is done with it. Timed-out work
//! therefore cannot pile up behind the answers: at most `max_concurrent_queries` engine queries
//! run at any time, whatever the clients do, and a request that finds every slot taken is
//! refused at once with a 429 and `Retry-After` rather than queued.
//!
//! `fleet=true` fan-outs have as many slots of their own: a fan-out does not use this agent's
//! engine (its share comes back to this agent as an ordinary request, which takes a query slot),
//! so one shared pool would let fan-outs refuse their own parts.
//!
//! The slots compose with the engine's own pools: a query's blocking thread only waits while
//! the engine's query pool (`engine.query_threads`) does the scanning, and ingestion maps
//! messages on its own pool (`batch.map_threads`), so queries cannot starve ingestion of CPU
//! threads; the slots bound how many callers queue on the query pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error;
use crate::metrics::Metrics;

/// What a refused request is told to wait before trying again, in seconds.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// The query and fan-out slots.
#[derive(Debug)]
pub(crate) struct Limits {
    queries: Arc<Semaphore>,
    fan_outs: Arc<Semaphore>,
    max: usize,
    /// Tests: runs on the query's blocking thread once it holds its slot, before the engine is
    /// asked, to stand for a query that takes long.
    #[cfg(test)]
    pub(crate) before_query: crate::metrics::EngineHook,
    /// Tests: runs at each of a query's checks between two engine calls (`api::Cancel`).
    #[cfg(test)]
    pub(crate) between_calls: crate::metrics::EngineHook,
}

/// Which slots a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A query of this agent's engine.
    Query,
    /// A `fleet=true` fan-out.
    FanOut,
}

/// A slot, held by the work it was taken for and given back when that work ends.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    kind: Kind,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.kind == Kind::Query {
            self.metrics
                .queries_in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Limits {
    /// `max` slots for queries and as many for fan-outs.
    pub(crate) fn new(max: usize) -> Limits {
        Limits {
            queries: Arc::new(Semaphore::new(max)),
            fan_outs: Arc::new(Semaphore::new(max)),
            max,
            #[cfg(test)]
            before_query: Default::default(),
            #[cfg(test)]
            between_calls: Default::default(),
        }
    }

    /// Takes a slot of `kind`, or answers the 429 that refuses the request (counted).
    // The refusal is the handler's whole answer: boxing it gains nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn take(&self, kind: Kind, metrics: &Arc<Metrics>) -> Result<Slot, Response> {
        let pool = match kind {
            Kind::Query => &self.queries,
            Kind::FanOut => &self.fan_outs,
        };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => {
                if kind == Kind::Query {
                    metrics.queries_in_flight.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Slot {
                    _permit: permit,
                    kind,
                    metrics: metrics.clone(),
                })
            }
            Err(_) => {
                metrics.queries_rejected.fetch_add(1, Ordering::Relaxed);
                Err(self.refusal(kind))
            }
        }
    }

    fn refusal(&self, kind: Kind) -> Response {
        let what = match kind {
            Kind::Query => "queries",
            Kind::FanOut => "fleet=true fan-outs",
        };
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            format!(
                "{} {what} are running (http.max_concurrent_queries); retry in {RETRY_AFTER_SECS} s",
                self.max
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        r
    }
}
