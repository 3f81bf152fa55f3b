//! Read path on the product page's data set: 1,000,000 events in 10 segments. Each query is
//! timed for keplordb and SQLite by criterion; then a table compares keplordb, SQLite and
//! DuckDB (Python package) medians measured in this same run.
//!
//! `KEPLOR_BENCH_EVENTS` changes the data set size (default 1,000,000).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keplor_benches::*;
use keplordb::{GroupBy, GroupOrder, QueryFilter, NANOS_PER_DAY};

/// A query: its name, ours, and SQLite's (`None`: too slow for criterion's samples; DuckDB
/// still answers it).
type Query<'a> = (&'static str, Box<dyn Fn() + 'a>, Option<Box<dyn Fn() + 'a>>);

fn read(c: &mut Criterion) {
    let n: u64 = std::env::var("KEPLOR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let evs = events(n);
    let dir = tempfile::tempdir().unwrap();
    let engine = load_engine(&dir.path().join("keplordb"), &evs, 10);
    let sqlite = load_sqlite(&dir.path().join("sqlite.db"), &evs);
    let csv = dir.path().join("events.csv");
    write_csv(&csv, &evs);
    let id = format!("evt-{:08}", n / 2);
    drop(evs);

    let (lo, hi) = (
        DAY_START + NANOS_PER_DAY * 45 / 100,
        DAY_START + NANOS_PER_DAY * 55 / 100,
    );
    let user = "user-0042";
    let f_all = QueryFilter::<2>::new();
    let mut f_user = QueryFilter::<2>::new();
    f_user.dims[0] = Some(user.into());
    let mut f_time = QueryFilter::<2>::new();
    f_time.from_ts_ns = Some(lo);
    f_time.to_ts_ns = Some(hi);
    let mut f_user_time = f_time.clone();
    f_user_time.dims[0] = Some(user.into());
    let day = keplordb::day_of(DAY_START);

    let agg =
        "SELECT count(*), sum(metric), sum(tokens), sum(latency), min(ts), max(ts) FROM events";
    let sql_agg = |sql: String| {
        let sqlite = &sqlite;
        Box::new(move || {
            let mut st = sqlite.prepare_cached(&sql).unwrap();
            let r: (i64, Option<i64>) = st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            black_box(r);
        }) as Box<dyn Fn()>
    };
    let sql_rows = |sql: String| {
        let sqlite = &sqlite;
        Box::new(move || {
            let mut st = sqlite.prepare_cached(&sql).unwrap();
            let rows: Vec<(String, i64, String, String)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(6)?, r.get(7)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            black_box(rows);
        }) as Box<dyn Fn()>
    };
    let sql_group = |sql: String| {
        let sqlite = &sqlite;
        Box::new(move || {
            let mut st = sqlite.prepare_cached(&sql).unwrap();
            let rows: Vec<(String, i64)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            black_box(rows);
        }) as Box<dyn Fn()>
    };
    let sql_buckets = |sql: String| {
        let sqlite = &sqlite;
        Box::new(move || {
            let mut st = sqlite.prepare_cached(&sql).unwrap();
            let rows: Vec<(i64, i64)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            black_box(rows);
        }) as Box<dyn Fn()>
    };
    let top_users = GroupBy::new(0, GroupOrder::Metric, 10);
    let hour = 3_600 * 1_000_000_000i64;
    let e = &engine;
    let queries: Vec<Query> = vec![
        ("aggregate, no filter", Box::new(|| { black_box(e.aggregate(&f_all).unwrap()); }), Some(sql_agg(agg.into()))),
        (
            "aggregate, user",
            Box::new(|| { black_box(e.aggregate(&f_user).unwrap()); }),
            Some(sql_agg(format!("{agg} WHERE user = '{user}'"))),
        ),
        (
            "aggregate, 10% time range",
            Box::new(|| { black_box(e.aggregate(&f_time).unwrap()); }),
            Some(sql_agg(format!("{agg} WHERE ts >= {lo} AND ts < {hi}"))),
        ),
        (
            "aggregate, user + time",
            Box::new(|| { black_box(e.aggregate(&f_user_time).unwrap()); }),
            Some(sql_agg(format!("{agg} WHERE user = '{user}' AND ts >= {lo} AND ts < {hi}"))),
        ),
        (
            "query_recent 100",
            Box::new(|| { black_box(e.query_recent(&f_all, 100).unwrap()); }),
            Some(sql_rows("SELECT * FROM events ORDER BY ts DESC, id DESC LIMIT 100".into())),
        ),
        (
            "query_recent 1000",
            Box::new(|| { black_box(e.query_recent(&f_all, 1000).unwrap()); }),
            Some(sql_rows("SELECT * FROM events ORDER BY ts DESC, id DESC LIMIT 1000".into())),
        ),
        (
            "query_recent 100, user",
            Box::new(|| { black_box(e.query_recent(&f_user, 100).unwrap()); }),
            Some(sql_rows(format!("SELECT * FROM events WHERE user = '{user}' ORDER BY ts DESC, id DESC LIMIT 100"))),
        ),
        (
            "rollup, single user, day",
            Box::new(|| { black_box(e.query_rollups(day, day, &[Some(user)]).unwrap()); }),
            Some(sql_group(format!(
                "SELECT user, count(*), sum(metric), sum(tokens) FROM events WHERE ts >= {DAY_START} AND ts < {} AND user = '{user}' GROUP BY user",
                DAY_START + NANOS_PER_DAY
            ))),
        ),
        (
            "rollup, all buckets, day",
            Box::new(|| { black_box(e.query_rollups(day, day, &[None]).unwrap()); }),
            Some(sql_group(format!(
                "SELECT user, count(*), sum(metric), sum(tokens) FROM events WHERE ts >= {DAY_START} AND ts < {} GROUP BY user",
                DAY_START + NANOS_PER_DAY
            ))),
        ),
        (
            "top 10 users by metric",
            Box::new(|| { black_box(e.group_by(&f_all, &top_users).unwrap()); }),
            None,
        ),
        (
            "top 10 users by metric, 10% time range",
            Box::new(|| { black_box(e.group_by(&f_time, &top_users).unwrap()); }),
            None,
        ),
        (
            "time series, 24 hourly buckets",
            Box::new(|| { black_box(e.time_series(&f_all, hour).unwrap()); }),
            Some(sql_buckets(format!("SELECT ts / {hour} AS b, count(*), sum(metric), sum(tokens) FROM events GROUP BY b ORDER BY b"))),
        ),
        (
            "get_event by id",
            Box::new(|| { black_box(e.get_event(&id).unwrap()); }),
            Some(sql_rows(format!("SELECT * FROM events WHERE id = '{id}'"))),
        ),
    ];

    let mut group = c.benchmark_group("read");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(30);
    for (name, ours, theirs) in &queries {
        group.bench_function(format!("keplordb/{name}"), |b| b.iter(ours));
        if let Some(theirs) = theirs {
            group.bench_function(format!("sqlite/{name}"), |b| b.iter(theirs));
        }
    }
    group.finish();

    // Same-run comparison, medians measured the same way for every engine.
    let budget = Duration::from_millis(700);
    let duck = duckdb(&["read", csv.to_str().unwrap(), &DAY_START.to_string(), "0.7"]);
    if let Err(why) = &duck {
        println!("DuckDB not measured: {why} (pip install duckdb)");
    }
    let duck = duck.unwrap_or_default();
    let rows: Vec<_> = queries
        .iter()
        .map(|(name, ours, theirs)| {
            let k = median(budget, ours).as_secs_f64() * 1e6;
            let s = theirs
                .as_ref()
                .map(|t| median(budget, t).as_secs_f64() * 1e6);
            let d = duck.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            (name.to_string(), k, s, d)
        })
        .collect();
    print_table(
        &format!(
            "read path, {n} events in {} segments, kernels: {} (DuckDB through its Python package; its times include a Python call)",
            engine.stats().segments,
            keplordb::diagnostics::kernel_name()
        ),
        &rows,
    );
}

criterion_group!(benches, read);
criterion_main!(benches);
