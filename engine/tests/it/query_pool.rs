//! Queries run on the engine's query pool (its own, or one the user gives), never on rayon's
//! global pool: a program whose global pool is busy still gets answers, and the other way round.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use keplordb::{DynFilter, QueryFilter};

use crate::common::*;

/// Rows enough for the parallel path (several segments, more than 2^17 rows to scan).
const ROWS: u64 = 300_000;

fn filled(dir: &std::path::Path, config: keplordb::EngineConfig) -> TestEngine {
    let engine = TestEngine::open(config.with_wal_max_events(65_536)).unwrap();
    let events: Vec<Ev> = (0..ROWS).map(event).collect();
    for chunk in events.chunks(10_000) {
        engine.append_batch(chunk).unwrap();
    }
    engine.flush().unwrap();
    assert!(engine.stats().segments > 1, "{}", dir.display());
    engine
}

/// Blocks every thread of rayon's global pool until the returned barrier is passed.
fn occupy_global_pool() -> Arc<Barrier> {
    let n = rayon::current_num_threads();
    let release = Arc::new(Barrier::new(n + 1));
    let (started, all_started) = mpsc::channel();
    for _ in 0..n {
        let (release, started) = (release.clone(), started.clone());
        rayon::spawn(move || {
            started.send(()).unwrap();
            release.wait();
        });
    }
    for _ in 0..n {
        all_started.recv().unwrap();
    }
    release
}

/// Runs `f` on another thread; its answer, or `None` if it did not finish in `limit` (the
/// query would be waiting for the blocked global pool).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn queries_answer_while_the_global_pool_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(filled(dir.path(), config(dir.path()).with_query_threads(2)));
    let release = occupy_global_pool();
    let e = engine.clone();
    let answer = within(Duration::from_secs(60), move || {
        let all = e.aggregate(&QueryFilter::new()).unwrap();
        let mut f = QueryFilter::new();
        f.status_min = Some(500);
        let errors = e.aggregate(&f).unwrap();
        let page = e.query_recent(&f, 5).unwrap();
        (all.event_count, errors.event_count, page.len())
    });
    release.wait();
    assert_eq!(
        answer,
        Some((ROWS, ROWS / 5, 5)),
        "queries waited for rayon's global pool"
    );
}

#[test]
fn a_given_query_pool_is_used_and_the_answers_match_the_engines_own() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap(),
    );
    let engine = filled(dir.path(), config(dir.path()).with_query_pool(pool.clone()));
    let f = DynFilter {
        status_min: Some(404),
        ..Default::default()
    };
    let given = engine.as_dyn().aggregate(&f).unwrap();
    let recent = engine.as_dyn().query_recent(&f, 100).unwrap();
    drop(engine);
    // The same data under the engine's own pool: the same answers.
    let own = keplordb::DynEngine::open(config(dir.path()).with_wal_max_events(65_536)).unwrap();
    assert_eq!(own.aggregate(&f).unwrap(), given);
    assert_eq!(own.query_recent(&f, 100).unwrap(), recent);
    assert_eq!(given.event_count, ROWS * 2 / 5);
    drop(own);
    // The given pool is the engine's: with the global pool blocked, it still answers.
    let engine = Arc::new(
        TestEngine::open(
            config(dir.path())
                .with_wal_max_events(65_536)
                .with_query_pool(pool),
        )
        .unwrap(),
    );
    let release = occupy_global_pool();
    let e = engine.clone();
    let n = within(Duration::from_secs(60), move || {
        let mut f = QueryFilter::new();
        f.status_min = Some(404);
        e.aggregate(&f).unwrap().event_count
    });
    release.wait();
    assert_eq!(n, Some(ROWS * 2 / 5), "the given pool was not used");
}
