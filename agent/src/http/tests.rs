//! The API served in-process: what a blocked engine call does to the other requests.

use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::ownership::{Held, StoreId};

/// The API served on a current-thread runtime: its one async worker serves every request.
pub(super) fn serve_on_one_worker(
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

/// The API's state over a new engine in `dir` (dim `user`, counter `tokens`, label `note`),
/// with `http` as the `[http]` section's keys.
pub(super) fn state(dir: &std::path::Path, http: &str) -> AppState {
    let engine =
        keplordb::EngineConfig::new(dir.join("data")).with_columns(["user"], ["tokens"], ["note"]);
    let engine = Arc::new(DynEngine::open(engine).unwrap());
    let config = Config::from_toml(
        &format!("[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"in\"]\n[schema]\nid = 1\n[http]\n{http}"),
        [],
        dir,
    )
    .unwrap();
    AppState::new(
        engine,
        Arc::new(Metrics::default()),
        Arc::new(AtomicBool::new(true)),
        config.http.clone(),
        Arc::new(Held::new(&StoreId("test".into()))),
    )
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET url`: the status, the `Retry-After` header and the JSON body (`null` if not JSON).
fn get(client: &ureq::Agent, url: &str) -> (u16, Option<String>, serde_json::Value) {
    let mut r = client.get(url).call().unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.body_mut().read_to_string().unwrap();
    (
        r.status().as_u16(),
        retry,
        serde_json::from_str(&body).unwrap_or_default(),
    )
}

/// A gate the test holds closed: queries that reach it wait until it opens.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut g = open.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Polls `f` until it is true or 30 s pass.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn health_answers_while_a_metrics_render_waits_on_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), "");
    // The render's engine call blocks until released, as behind a shard's fsync.
    let (entered, render_entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    state.metrics.before_engine.set(move || {
        let _ = entered.send(());
        let _ = released.lock().unwrap().recv();
    });
    let (url, stop, server) = serve_on_one_worker(state);
    let client = client();
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

#[test]
fn excess_queries_are_refused_and_timed_out_ones_keep_their_slot() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(
        dir.path(),
        "max_concurrent_queries = 2\nrequest_timeout = \"200ms\"\n",
    );
    // Queries block in the engine until the gate opens.
    let gate = Gate::default();
    let (entered, query_entered) = mpsc::channel::<()>();
    {
        let (gate, entered) = (gate.clone(), Mutex::new(entered));
        state.limits.before_query.set(move || {
            let _ = entered.lock().unwrap().send(());
            gate.wait();
        });
    }
    let metrics = state.metrics.clone();
    let (url, stop, server) = serve_on_one_worker(state);
    let client = client();
    let figure = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    // Two queries take both slots and block.
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            std::thread::spawn(move || get(&client, &format!("{url}/v1/aggregate")))
        })
        .collect();
    for _ in 0..2 {
        query_entered
            .recv_timeout(Duration::from_secs(30))
            .expect("a query never reached the engine");
    }
    // A third is refused at once, with when to retry.
    let (status, retry, body) = get(&client, &format!("{url}/v1/events"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("http.max_concurrent_queries"), "{body}");
    // The blocked two are answered 503 while the gate is still closed: by the timeout, not by
    // their work ending.
    for h in blocked {
        let (status, _, body) = h.join().unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "query timed out");
    }
    // Their work still holds both slots: no other query may start.
    let (status, _, body) = get(&client, &format!("{url}/v1/rollups"));
    assert_eq!(
        status, 429,
        "timed-out work gave its slot back early: {body}"
    );
    assert_eq!(figure(&metrics.queries_in_flight), 2);
    assert_eq!(figure(&metrics.queries_timed_out), 2);
    assert_eq!(figure(&metrics.queries_rejected), 2);
    let (_, _, _) = get(&client, &format!("{url}/healthz"));

    // Once the work ends, the slots are free again.
    gate.open();
    assert!(eventually(|| figure(&metrics.queries_in_flight) == 0));
    let (status, _, body) = get(&client, &format!("{url}/v1/aggregate"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event_count"], 0);
    let rendered = metrics.render(&DynEngine::open_read_only(dir.path().join("data")).unwrap());
    for line in [
        "keplor_queries_rejected_total 2",
        "keplor_queries_timed_out_total 2",
        "keplor_queries_in_flight 0",
    ] {
        assert!(rendered.contains(line), "{line} not in\n{rendered}");
    }
    drop(client);
    let _ = stop.send(());
    server.join().unwrap();
}

#[test]
fn a_timed_out_query_stops_at_its_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), "request_timeout = \"200ms\"\n");
    let events: Vec<keplordb::DynEvent> = (0..100)
        .map(|i| keplordb::DynEvent {
            id: format!("e{i:03}"),
            ts_ns: 1_000 + i,
            counters: vec![1],
            dims: vec!["u".into()],
            labels: vec!["n".into()],
            ..Default::default()
        })
        .collect();
    state.engine.append_batch(&events).unwrap();
    // The page's second chunk waits at the gate, after the first engine call.
    let gate = Gate::default();
    let (entered, reached) = mpsc::channel::<()>();
    {
        let (gate, entered) = (gate.clone(), Mutex::new(entered));
        state.limits.between_calls.set(move || {
            let _ = entered.lock().unwrap().send(());
            gate.wait();
        });
    }
    let metrics = state.metrics.clone();
    let (url, stop, server) = serve_on_one_worker(state);
    let client = client();
    let figure = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    let (status, _, body) = get(&client, &format!("{url}/v1/events?limit=100"));
    assert_eq!(status, 503, "{body}");
    reached
        .recv_timeout(Duration::from_secs(30))
        .expect("the page never reached its second chunk");
    assert_eq!(figure(&metrics.queries_in_flight), 1);
    assert_eq!(figure(&metrics.queries_cancelled), 0);
    gate.open();
    assert!(eventually(|| figure(&metrics.queries_in_flight) == 0));
    assert_eq!(
        figure(&metrics.queries_cancelled),
        1,
        "the query went on after its request timed out"
    );
    // Not timed out: the same page is whole.
    let (status, _, body) = get(&client, &format!("{url}/v1/events?limit=100"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(100));
    drop(client);
    let _ = stop.send(());
    server.join().unwrap();
}

/// Fuzz target `query_params`: `GET /v1/events/%999` (an id that is not UTF-8 once decoded)
/// was answered by axum's plain-text rejection, where every other bad request is a JSON 400
/// naming the parameter (agent/openapi.yaml).
#[test]
fn an_id_that_does_not_decode_is_a_json_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let (url, stop, server) = serve_on_one_worker(state(dir.path(), ""));
    let client = client();
    for (path, status) in [("%999", 400), ("%FF%FE", 400), ("caf%C3%A9", 404)] {
        let (got, _, v) = get(&client, &format!("{url}/v1/events/{path}"));
        assert_eq!(got, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
        if status == 400 {
            assert_eq!(v["parameter"], "id", "{path}: {v}");
        }
    }
    let _ = stop.send(());
    server.join().unwrap();
}
