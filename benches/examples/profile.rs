//! Runs one read query in a loop on the bench data set, for profilers:
//! `cargo run --release -p keplor-benches --example profile -- <query> [seconds]`, e.g. under
//! `perf record -g` or `valgrind --tool=callgrind` (with `seconds` = 0: ten iterations, for
//! repeatable instruction counts). Queries: agg, agg_user, agg_time, recent100, recent1000,
//! recent_user, rollup_all, get, top (top 10 users by metric), top_time (the same over 10% of
//! the day), series (24 hourly buckets).

use std::hint::black_box;
use std::time::{Duration, Instant};

use keplor_benches::*;
use keplordb::{GroupBy, GroupOrder, QueryFilter, NANOS_PER_DAY};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let query = args.get(1).map(String::as_str).unwrap_or("recent100");
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let n: u64 = std::env::var("KEPLOR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let engine = load_engine(dir.path(), &events(n), 10);
    let mut f = QueryFilter::<2>::new();
    match query {
        "agg_user" | "recent_user" => f.dims[0] = Some("user-0042".into()),
        "agg_time" | "top_time" => {
            f.from_ts_ns = Some(DAY_START + NANOS_PER_DAY * 45 / 100);
            f.to_ts_ns = Some(DAY_START + NANOS_PER_DAY * 55 / 100);
        }
        _ => {}
    }
    let day = keplordb::day_of(DAY_START);
    let run = || match query {
        "agg" | "agg_user" | "agg_time" => {
            black_box(engine.aggregate(&f).unwrap());
        }
        "recent100" | "recent_user" => {
            black_box(engine.query_recent(&f, 100).unwrap());
        }
        "recent1000" => {
            black_box(engine.query_recent(&f, 1000).unwrap());
        }
        "rollup_all" => {
            black_box(engine.query_rollups(day, day, &[None]).unwrap());
        }
        "top" | "top_time" => {
            black_box(
                engine
                    .group_by(&f, &GroupBy::new(0, GroupOrder::Metric, 10))
                    .unwrap(),
            );
        }
        "series" => {
            black_box(engine.time_series(&f, 3_600_000_000_000).unwrap());
        }
        "get" => {
            black_box(engine.get_event("evt-00500000").unwrap());
        }
        other => panic!("unknown query {other}"),
    };
    let start = Instant::now();
    let mut iters = 0u64;
    if secs == 0 {
        for _ in 0..10 {
            run();
        }
        iters = 10;
    } else {
        while start.elapsed() < Duration::from_secs(secs) {
            run();
            iters += 1;
        }
    }
    eprintln!(
        "{query}: {iters} iterations, {:.2} µs each",
        start.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
}
