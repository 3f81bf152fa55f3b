//! Local query endpoints (axum): `/v1/aggregate`, `/v1/events`, `/v1/events/{id}`,
//! `/v1/rollups`, `/v1/top`, `/v1/series`, `/v1/schema`, `/metrics`, `/healthz`, `/readyz`,
//! and the console at `/ui` (`ui.rs`). Bound to 127.0.0.1 by default; optional
//! bearer token (`auth.rs`); bounded `limit`, query-string size, request time and queries at
//! once (`limits.rs`: a query keeps its slot until its work ends, timed out or not); bad
//! parameters are a 400 whose JSON names the parameter. Schemas: `agent/openapi.yaml`.
//!
//! Every call into the engine (queries, the engine figures of `/metrics`) runs on a blocking
//! thread (`spawn_blocking`): engine calls wait for shard locks that a WAL fsync may hold, and
//! an async worker held there would stall every other request, health probes included.
//!
//! With `fleet=true` the four query endpoints answer for the whole fleet of `[fleet]`: the
//! request (without `fleet`, so it never recurses) is sent to every member through `crate::fleet`
//! on a blocking thread, bounded by the fleet's timeouts rather than `http.request_timeout`,
//! and the merged JSON carries `partial`, `endpoints`, `answered` and `missing`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod auth;
mod limits;
mod ui;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keplordb::DynEngine;
use serde_json::json;

use crate::api::{self, Cancel, Caps, ParamError, Params, QueryError};
use crate::config::HttpSettings;
use crate::fleet::{Answer, Completeness, Fleet, FleetError};
use crate::metrics::Metrics;
use auth::TokenCheck;
use limits::{Kind, Limits};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Arc<DynEngine>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub settings: HttpSettings,
    /// The partitions the sink holds (`GET /v1/partitions`).
    pub held: Arc<crate::ownership::Held>,
    /// The query and fan-out slots (`http.max_concurrent_queries`).
    limits: Arc<Limits>,
}

impl AppState {
    /// The state of an API over `engine`, with the limits of `settings`.
    pub fn new(
        engine: Arc<DynEngine>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        settings: HttpSettings,
        held: Arc<crate::ownership::Held>,
    ) -> AppState {
        AppState {
            limits: Arc::new(Limits::new(settings.max_concurrent_queries)),
            engine,
            metrics,
            ready,
            settings,
            held,
        }
    }

    /// The caps of one answer, from the settings.
    fn caps(&self) -> Caps {
        Caps {
            max_limit: self.settings.max_limit,
            max_page_bytes: self.settings.max_page_bytes,
            max_rollup_buckets: self.settings.max_rollup_buckets,
        }
    }
}

fn error(status: StatusCode, parameter: Option<&str>, msg: impl Into<String>) -> Response {
    let body = match parameter {
        Some(p) => json!({ "error": msg.into(), "parameter": p }),
        None => json!({ "error": msg.into() }),
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        match self {
            QueryError::Param(ParamError {
                parameter,
                error: e,
            }) => error(StatusCode::BAD_REQUEST, Some(&parameter), e),
            QueryError::Engine(e) => error(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string()),
            QueryError::TooLarge(m) => error(StatusCode::BAD_REQUEST, None, m),
            // Only after the timeout answered, or nobody waits for it any more.
            QueryError::Cancelled => {
                error(StatusCode::SERVICE_UNAVAILABLE, None, "query timed out")
            }
        }
    }
}

/// A request's parameters, and whether it asks for the whole fleet.
struct Query {
    fleet: bool,
    params: Params,
}

// A handler builds at most one response per request: boxing the error variant gains nothing.
#[allow(clippy::result_large_err)]
fn query(state: &AppState, raw: Option<String>) -> Result<Query, Response> {
    let (fleet, pairs) = split_fleet(decoded_pairs(state, raw)?)?;
    let params = Params::parse(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .map_err(|e| error(StatusCode::BAD_REQUEST, Some(&e.parameter), e.error))?;
    Ok(Query { fleet, params })
}

/// Takes `fleet=true|false` out of the pairs: it routes the request, it is not forwarded.
#[allow(clippy::result_large_err)]
fn split_fleet(pairs: Vec<(String, String)>) -> Result<(bool, Vec<(String, String)>), Response> {
    let mut fleet = false;
    let mut rest = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if k != "fleet" {
            rest.push((k, v));
            continue;
        }
        fleet = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    Some("fleet"),
                    format!("{v:?}: use true or false"),
                ))
            }
        };
    }
    Ok((fleet, rest))
}

/// Splits and decodes a query string; the size limit is checked here.
#[allow(clippy::result_large_err)]
fn decoded_pairs(state: &AppState, raw: Option<String>) -> Result<Vec<(String, String)>, Response> {
    let raw = raw.unwrap_or_default();
    if raw.len() > state.settings.max_query_bytes {
        return Err(error(
            StatusCode::URI_TOO_LONG,
            None,
            format!(
                "query string of {} bytes exceeds {}",
                raw.len(),
                state.settings.max_query_bytes
            ),
        ));
    }
    serde_urlencoded_pairs(&raw).map_err(|e| error(StatusCode::BAD_REQUEST, None, e))
}

/// `a=1&b=x%20y` → pairs, percent-decoded.
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |s: &str| -> Result<String, String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    let b = hex
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                    out.push(b);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
    };
    raw.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Runs a blocking engine query off the async threads, timed and with the request timeout.
/// The query holds a slot of `http.max_concurrent_queries` until its blocking task ends, even
/// when its request was answered 503 for the timeout first (see `limits.rs`); with every slot
/// taken, the answer is a 429 at once.
///
/// The query is also asked to stop (its [`Cancel`] is set) when the timeout answers it or when
/// its request is dropped before an answer (the handler's future is dropped with it): a query
/// made of several engine calls stops at its next check (see `api::bounds`).
async fn run<T: Send + 'static>(
    state: &AppState,
    endpoint: &'static str,
    f: impl FnOnce(&DynEngine, &Cancel) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, Response> {
    let slot = state.limits.take(Kind::Query, &state.metrics)?;
    let (engine, metrics) = (state.engine.clone(), state.metrics.clone());
    #[allow(unused_mut)]
    let mut cancel = Cancel::default();
    #[cfg(test)]
    let limits = state.limits.clone();
    #[cfg(test)]
    {
        let limits = limits.clone();
        cancel.between_calls = Some(Arc::new(move || limits.between_calls.run()));
    }
    let stop = CancelOnDrop(cancel.clone());
    let start = Instant::now();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        #[cfg(test)]
        limits.before_query.run();
        let out = f(&engine, &cancel);
        if matches!(out, Err(QueryError::Cancelled)) {
            metrics.queries_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        out
    });
    let out = match tokio::time::timeout(state.settings.request_timeout, task).await {
        Err(_) => {
            stop.0.cancel();
            state
                .metrics
                .queries_timed_out
                .fetch_add(1, Ordering::Relaxed);
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "query timed out",
            ))
        }
        Ok(Err(e)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("query failed: {e}"),
        )),
        Ok(Ok(r)) => r.map_err(IntoResponse::into_response),
    };
    state.metrics.query(endpoint, start.elapsed());
    out
}

/// Sets its [`Cancel`] when dropped: when the request's future ends, answered or dropped.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs a fan-out over `[fleet]` on a blocking thread, timed.
async fn run_fleet<T: Send + 'static>(
    state: &AppState,
    endpoint: &'static str,
    f: impl FnOnce(&Fleet) -> Result<T, FleetError> + Send + 'static,
) -> Result<T, Response> {
    let Some(settings) = state.settings.fleet.clone() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            Some("fleet"),
            "fleet=true needs a [fleet] section in this agent's configuration, listing every member",
        ));
    };
    let slot = state.limits.take(Kind::FanOut, &state.metrics)?;
    let start = Instant::now();
    // No timeout of its own: every member's exchange is bounded by fleet.connect_timeout +
    // fleet.timeout (see fleet::MAX_PARALLEL for fleets asked in waves).
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&Fleet::from_settings(&settings)?)
    });
    let out = match task.await {
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("fleet query failed: {e}"),
        )),
        Ok(r) => r.map_err(fleet_error),
    };
    state.metrics.query(endpoint, start.elapsed());
    out
}

fn fleet_error(e: FleetError) -> Response {
    match e {
        FleetError::BadRequest {
            endpoint,
            parameter,
            error: msg,
        } => error(
            StatusCode::BAD_REQUEST,
            parameter.as_deref(),
            format!("{msg} (answered by {endpoint})"),
        ),
        FleetError::NoneAnswered(c) => {
            error_with(StatusCode::BAD_GATEWAY, "no fleet member answered", &c)
        }
        other => error(StatusCode::BAD_GATEWAY, None, other.to_string()),
    }
}

/// An error whose JSON also says which members answered.
fn error_with(status: StatusCode, msg: &str, c: &Completeness) -> Response {
    let mut body = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if let Some(m) = body.as_object_mut() {
        m.insert("error".into(), json!(msg));
    }
    (status, Json(body)).into_response()
}

fn respond<T: serde::Serialize>(r: Result<T, Response>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn aggregate(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if fleet {
        return respond(run_fleet(&s, "fleet_aggregate", move |f| f.aggregate(&p)).await);
    }
    respond(run(&s, "aggregate", move |e, _| api::aggregate(e, &p)).await)
}

async fn events(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let caps = s.caps();
    if fleet {
        let limit = match api::page_limit(&p, caps.max_limit) {
            Ok(l) => l,
            Err(e) => return QueryError::Param(e).into_response(),
        };
        let bytes = caps.max_page_bytes;
        return respond(run_fleet(&s, "fleet_events", move |f| f.events(&p, limit, bytes)).await);
    }
    respond(run(&s, "events", move |e, c| api::events(e, &p, &caps, c)).await)
}

async fn event(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Response {
    // An id that does not decode (not UTF-8 once percent-decoded) is a bad request like any
    // other, answered in JSON; axum's own rejection is plain text.
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, Some("id"), e.body_text()),
    };
    if id.len() > keplordb::MAX_VALUE_LEN {
        // Longer than any stored id: not found, without asking the engine.
        return error(StatusCode::NOT_FOUND, None, "no event with this id");
    }
    let fleet = match decoded_pairs(&s, q).and_then(split_fleet) {
        Ok((_, rest)) if !rest.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(&rest[0].0),
                "unknown parameter: /v1/events/{id} takes only fleet",
            )
        }
        Ok((fleet, _)) => fleet,
        Err(r) => return r,
    };
    if fleet {
        return match run_fleet(&s, "fleet_event", move |f| f.get(&id)).await {
            Ok(Answer {
                value: Some(ev),
                completeness,
            }) => Json(Answer {
                value: ev,
                completeness,
            })
            .into_response(),
            Ok(Answer {
                value: None,
                completeness,
            }) => error_with(
                StatusCode::NOT_FOUND,
                "no fleet member that answered has an event with this id",
                &completeness,
            ),
            Err(r) => r,
        };
    }
    match run(&s, "event", move |e, _| api::get(e, &id)).await {
        Ok(Some(ev)) => Json(ev).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, None, "no event with this id"),
        Err(r) => r,
    }
}

async fn rollups(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let caps = s.caps();
    if fleet {
        let merged = run_fleet(&s, "fleet_rollups", move |f| f.rollups(&p)).await;
        // Each member keeps to its own cap; their sum may still pass this agent's.
        if let Ok(a) = &merged {
            if a.value.buckets.len() > caps.max_rollup_buckets {
                return QueryError::TooLarge(format!(
                    "the fleet's answer holds more than {} rollup buckets (http.max_rollup_buckets): ask for fewer days (from_day, to_day) or filter on a rollup dim",
                    caps.max_rollup_buckets
                ))
                .into_response();
            }
        }
        return respond(merged);
    }
    respond(run(&s, "rollups", move |e, c| api::rollups(e, &p, &caps, c)).await)
}

async fn top(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let caps = s.caps();
    if fleet {
        let limit = p.limit.unwrap_or(api::DEFAULT_TOP);
        return respond(
            run_fleet(&s, "fleet_top", move |f| f.top(&p, limit, caps.max_limit)).await,
        );
    }
    respond(run(&s, "top", move |e, _| api::top(e, &p, &caps)).await)
}

async fn series(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let caps = s.caps();
    if fleet {
        let limit = p.limit.unwrap_or(api::DEFAULT_TOP);
        return respond(run_fleet(&s, "fleet_series", move |f| f.series(&p, limit)).await);
    }
    respond(run(&s, "series", move |e, c| api::series(e, &p, &caps, c)).await)
}

/// `GET /metrics`. Rendering asks the engine for its figures, which wait for every shard's
/// lock (held across a WAL fsync during a rotation): it runs on a blocking thread, so the
/// async workers keep serving the other requests meanwhile.
async fn metrics(State(s): State<AppState>) -> Response {
    let (metrics, engine) = (s.metrics.clone(), s.engine.clone());
    let body = match tokio::task::spawn_blocking(move || metrics.render(&engine)).await {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                format!("rendering the metrics failed: {e}"),
            )
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "not ready: no partitions assigned yet, a partition stuck (errors.stuck_after), or a fatal error",
        )
    }
}

/// The partitions this agent's sink holds: a new owner waits until the old one let go.
async fn partitions(State(s): State<AppState>) -> Response {
    Json(s.held.holdings()).into_response()
}

/// The store's columns, for clients that build queries (the console): dims (with whether
/// they have a bloom filter and daily rollups), counters and labels in schema order, whether
/// `fleet=true` is available and whether the API needs a token.
async fn schema(State(s): State<AppState>) -> Response {
    let def = s.engine.schema();
    let dims: Vec<_> = def
        .dims
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "name": name,
                "bloom": def.bloom_dim == Some(i),
                "rollup": def.rollup_dims.contains(&i),
            })
        })
        .collect();
    Json(json!({
        "dims": dims,
        "counters": def.counters,
        "labels": def.labels,
        "fleet": s.settings.fleet.is_some(),
        "auth": s.settings.auth_token.is_some(),
    }))
    .into_response()
}

/// The router.
pub fn router(state: AppState) -> Router {
    let tokens = Arc::new(TokenCheck::new(state.settings.auth_token.as_deref()));
    Router::new()
        .route("/v1/aggregate", get(aggregate))
        .route("/v1/events", get(events))
        .route("/v1/events/{id}", get(event))
        .route("/v1/rollups", get(rollups))
        .route("/v1/top", get(top))
        .route("/v1/series", get(series))
        .route("/v1/partitions", get(partitions))
        .route("/v1/schema", get(schema))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(ui::routes(tokens.clone()))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                None,
                "no such endpoint; see agent/openapi.yaml",
            )
        })
        .layer(middleware::from_fn_with_state(tokens, auth::require_token))
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
