//! Local query endpoints (axum): `/v1/aggregate`, `/v1/events`, `/v1/events/{id}`,
//! `/v1/rollups`, `/metrics`, `/healthz`, `/readyz`. Bound to 127.0.0.1 by default; optional
//! bearer token; bounded `limit`, query-string size and request time; bad parameters are a 400
//! whose JSON names the parameter. Schemas: `agent/openapi.yaml`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keplordb::DynEngine;
use serde_json::json;

use crate::api::{self, ParamError, Params, QueryError};
use crate::config::HttpSettings;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Arc<DynEngine>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub settings: HttpSettings,
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
        }
    }
}

/// Splits and decodes a query string; the size limit is checked here.
// A handler builds at most one response per request: boxing the error variant gains nothing.
#[allow(clippy::result_large_err)]
fn params(state: &AppState, raw: Option<String>) -> Result<Params, Response> {
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
    let pairs: Vec<(String, String)> =
        serde_urlencoded_pairs(&raw).map_err(|e| error(StatusCode::BAD_REQUEST, None, e))?;
    Params::parse(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .map_err(|e| error(StatusCode::BAD_REQUEST, Some(&e.parameter), e.error))
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
async fn run<T: Send + 'static>(
    state: &AppState,
    endpoint: &'static str,
    f: impl FnOnce(&DynEngine) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, Response> {
    let engine = state.engine.clone();
    let start = Instant::now();
    let task = tokio::task::spawn_blocking(move || f(&engine));
    let out = match tokio::time::timeout(state.settings.request_timeout, task).await {
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "query timed out",
        )),
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

async fn aggregate(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match params(&s, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match run(&s, "aggregate", move |e| api::aggregate(e, &p)).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}

async fn events(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match params(&s, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let max = s.settings.max_limit;
    match run(&s, "events", move |e| api::events(e, &p, max)).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}

async fn event(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if id.len() > keplordb::MAX_VALUE_LEN {
        return error(
            StatusCode::BAD_REQUEST,
            Some("id"),
            "id is longer than any stored id",
        );
    }
    match run(&s, "event", move |e| api::get(e, &id)).await {
        Ok(Some(ev)) => Json(ev).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, None, "no event with this id"),
        Err(r) => r,
    }
}

async fn rollups(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match params(&s, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match run(&s, "rollups", move |e| api::rollups(e, &p)).await {
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.render(&s.engine);
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
            "not ready: no partitions assigned yet",
        )
    }
}

/// Bearer-token check (health probes stay open).
async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.settings.auth_token {
        let path = req.uri().path();
        if path != "/healthz" && path != "/readyz" {
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
            if !ok {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "missing or wrong bearer token",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/aggregate", get(aggregate))
        .route("/v1/events", get(events))
        .route("/v1/events/{id}", get(event))
        .route("/v1/rollups", get(rollups))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                None,
                "no such endpoint; see agent/openapi.yaml",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), auth))
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
