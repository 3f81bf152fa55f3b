//! The HTTP query API's parameters: the input is a request's path-and-query suffix (its first
//! byte picks the endpoint), sent in process to the agent's router over a small store with
//! events in a segment and in a memtable, some deleted.
//!
//! Checks: every request is answered with a status the API documents for it (200; 400 naming
//! the problem; 404 for an unknown id or path; 414), never a 5xx, and always with a JSON body;
//! and parameters that parse print back (`Params::to_pairs`) to pairs that parse to the same
//! parameters.

#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use keplor_agent::api::Params;
use keplor_agent::config::Config;
use keplor_agent::http::{router, AppState};
use keplor_agent::metrics::Metrics;
use keplor_agent::ownership::{Held, StoreId};
use keplor_fuzz::{config, read_only, scratch_dir};
use keplordb::{DynEngine, DynEvent, EventFlags, NANOS_PER_DAY};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Setup {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

/// Event `i`: three days, five users, two models, statuses 200/404/500.
fn event(i: u64) -> DynEvent {
    DynEvent {
        id: format!("ev-{i:04}"),
        ts_ns: 20_782 * NANOS_PER_DAY + (i as i64 % 3) * NANOS_PER_DAY + i as i64 * 1_000_000,
        metric: i as i64 * 7 - 50,
        counters: vec![i as u32 * 3],
        latency_ms: i as u32 % 90,
        latency_detail_ms: i as u32 % 9,
        status: [200, 200, 404, 500][i as usize % 4],
        flags: EventFlags((i % 2) as u16),
        dims: vec![format!("user-{}", i % 5), format!("model-{}", i % 2)],
        labels: vec![format!("note {i}")],
    }
}

/// A store with 40 events in a segment and 20 in a WAL, two of them deleted, opened read-only
/// (nothing a request does can change it).
fn store() -> DynEngine {
    let dir = scratch_dir("query-params");
    {
        let mut c = config(&dir);
        c.wal_shard_count = 1;
        let engine = DynEngine::open(c).expect("open the store");
        engine
            .append_batch(&(0..40).map(event).collect::<Vec<_>>())
            .expect("append");
        engine.flush().expect("flush");
        engine
            .append_batch(&(40..60).map(event).collect::<Vec<_>>())
            .expect("append");
        engine
            .delete_events(&["ev-0003", "ev-0045"])
            .expect("delete");
        engine.sync().expect("sync");
    }
    DynEngine::open(read_only(&dir)).expect("reopen the store")
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = Config::from_toml(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"in\"]\n[schema]\nid = 1\n",
            [],
            std::path::Path::new("."),
        )
        .expect("config");
        let state = AppState::new(
            Arc::new(store()),
            Arc::new(Metrics::default()),
            Arc::new(AtomicBool::new(true)),
            config.http.clone(),
            Arc::new(Held::new(&StoreId("fuzz".into()))),
        );
        Setup {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
            router: router(state),
        }
    })
}

const ENDPOINTS: [&str; 4] = [
    "/v1/aggregate?",
    "/v1/events?",
    "/v1/rollups?",
    "/v1/events/",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let endpoint = ENDPOINTS[pick as usize % ENDPOINTS.len()];
    let by_id = endpoint.ends_with('/');

    // Parameters as pairs, without percent-decoding: what parses prints back the same.
    if !by_id {
        let pairs = rest
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")));
        if let Ok(p) = Params::parse(pairs) {
            let printed = p.to_pairs();
            let again = Params::parse(printed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            assert_eq!(again.as_ref(), Ok(&p), "{printed:?}");
        }
    }

    // The request, if it is one a client can send.
    let Ok(request) = Request::get(format!("{endpoint}{rest}")).body(Body::empty()) else {
        return;
    };
    let s = setup();
    let (status, body) = s.runtime.block_on(async {
        let response = s.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, body)
    });
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {body:?}"));
    match status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST | StatusCode::URI_TOO_LONG => {
            assert!(json["error"].is_string(), "{status}: {json}");
        }
        // An unknown id, or a path no route takes (a `/` in the id).
        StatusCode::NOT_FOUND if by_id => {}
        other => panic!("{other} for {endpoint}{rest}: {json}"),
    }
});
