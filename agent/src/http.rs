//! Local query endpoints (axum): `/v1/aggregate`, `/v1/events`, `/v1/events/{id}`,
//! `/v1/rollups`, `/metrics`, `/healthz`, `/readyz`. Bound to 127.0.0.1 by default; optional
//! bearer token; bounded `limit`, query-string size and request time; bad parameters are a 400
//! whose JSON names the parameter. Schemas: `agent/openapi.yaml`.
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

use axum::extract::rejection::PathRejection;
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
use crate::fleet::{Answer, Completeness, Fleet, FleetError};
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Arc<DynEngine>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub settings: HttpSettings,
    /// The partitions the sink holds (`GET /v1/partitions`).
    pub held: Arc<crate::ownership::Held>,
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
    let start = Instant::now();
    // No timeout of its own: every member's exchange is bounded by fleet.connect_timeout +
    // fleet.timeout (see fleet::MAX_PARALLEL for fleets asked in waves).
    let task = tokio::task::spawn_blocking(move || f(&Fleet::from_settings(&settings)?));
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
    respond(run(&s, "aggregate", move |e| api::aggregate(e, &p)).await)
}

async fn events(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Query { fleet, params: p } = match query(&s, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let max = s.settings.max_limit;
    if fleet {
        let limit = match api::page_limit(&p, max) {
            Ok(l) => l,
            Err(e) => return QueryError::Param(e).into_response(),
        };
        return respond(run_fleet(&s, "fleet_events", move |f| f.events(&p, limit)).await);
    }
    respond(run(&s, "events", move |e| api::events(e, &p, max)).await)
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
        return error(
            StatusCode::BAD_REQUEST,
            Some("id"),
            "id is longer than any stored id",
        );
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
    match run(&s, "event", move |e| api::get(e, &id)).await {
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
    if fleet {
        return respond(run_fleet(&s, "fleet_rollups", move |f| f.rollups(&p)).await);
    }
    respond(run(&s, "rollups", move |e| api::rollups(e, &p)).await)
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
/// The partitions this agent's sink holds: a new owner waits until the old one let go.
async fn partitions(State(s): State<AppState>) -> Response {
    Json(s.held.holdings()).into_response()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/aggregate", get(aggregate))
        .route("/v1/events", get(events))
        .route("/v1/events/{id}", get(event))
        .route("/v1/rollups", get(rollups))
        .route("/v1/partitions", get(partitions))
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::ownership::{Held, StoreId};

    /// The API served on a current-thread runtime: its one async worker serves every request.
    fn serve_on_one_worker(
        state: AppState,
    ) -> (
        String,
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serve(listener, state, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        (url, stop, server)
    }

    /// Fuzz target `query_params`: `GET /v1/events/%999` (an id that is not UTF-8 once
    /// decoded) was answered by axum's plain-text rejection, where every other bad request is
    /// a JSON 400 naming the parameter (agent/openapi.yaml).
    #[test]
    fn an_id_that_does_not_decode_is_a_json_bad_request() {
        let dir = tempfile::tempdir().unwrap();
        let engine = keplordb::EngineConfig::new(dir.path().join("data")).with_columns(
            ["user"],
            ["tokens"],
            Vec::<&str>::new(),
        );
        let config = Config::from_toml(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"in\"]\n[schema]\nid = 1\n",
            [],
            dir.path(),
        )
        .unwrap();
        let state = AppState {
            engine: Arc::new(DynEngine::open(engine).unwrap()),
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(true)),
            settings: config.http.clone(),
            held: Arc::new(Held::new(&StoreId("test".into()))),
        };
        let (url, stop, server) = serve_on_one_worker(state);
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for (path, status) in [("%999", 400), ("%FF%FE", 400), ("caf%C3%A9", 404)] {
            let mut r = client
                .get(format!("{url}/v1/events/{path}"))
                .call()
                .unwrap();
            let body = r.body_mut().read_to_string().unwrap();
            assert_eq!(r.status().as_u16(), status, "{path}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
            assert!(v["error"].is_string(), "{path}: {body}");
            if status == 400 {
                assert_eq!(v["parameter"], "id", "{path}: {body}");
            }
        }
        let _ = stop.send(());
        server.join().unwrap();
    }

    #[test]
    fn health_answers_while_a_metrics_render_waits_on_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = keplordb::EngineConfig::new(dir.path().join("data")).with_columns(
            ["user"],
            ["tokens"],
            Vec::<&str>::new(),
        );
        let engine = Arc::new(DynEngine::open(engine).unwrap());
        let metrics = Arc::new(Metrics::default());
        // The render's engine call blocks until released, as behind a shard's fsync.
        let (entered, render_entered) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        metrics.before_engine.set(move || {
            let _ = entered.send(());
            let _ = released.lock().unwrap().recv();
        });
        let config = Config::from_toml(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"in\"]\n[schema]\nid = 1\n",
            [],
            dir.path(),
        )
        .unwrap();
        let state = AppState {
            engine,
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
            settings: config.http.clone(),
            held: Arc::new(Held::new(&StoreId("test".into()))),
        };
        let (url, stop, server) = serve_on_one_worker(state);
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let scrape = {
            let (client, url) = (client.clone(), url.clone());
            std::thread::spawn(move || {
                let mut r = client.get(format!("{url}/metrics")).call().unwrap();
                (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
            })
        };
        render_entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the /metrics render never reached the engine");
        // The render is blocked in its engine call. Served on the async worker, it would keep
        // /healthz from being answered until released (after this request timed out).
        let health = client
            .get(format!("{url}/healthz"))
            .call()
            .map(|r| r.status().as_u16());
        release.send(()).unwrap();
        assert_eq!(
            health.ok(),
            Some(200),
            "/healthz did not answer while /metrics waited on the engine"
        );
        let (status, body) = scrape.join().unwrap();
        assert_eq!(status, 200);
        assert!(body.contains(crate::metrics::ENGINE_BYTES), "{body}");
        drop(client);
        let _ = stop.send(());
        server.join().unwrap();
    }
}
