//! How cost grows with the data (issue 13): the read bench's data shape at several sizes, each
//! measured in a fresh process so that memory figures are the store's own.
//!
//! For each size N (`KEPLOR_SCALE_EVENTS`, a comma-separated list; default `1000000`, the long
//! mode is `1000000,10000000,100000000`):
//! - N events are appended on one shard (1,000 users, 10 models; 1,000,000 events per day, so
//!   the data spans N / 1M days) and sealed into segments of 262,144 events, the agent's default;
//!   bytes per event on disk are every file of the directory over N;
//! - a child process (this binary with `KEPLOR_SCALE_PROBE` set) opens the directory and
//!   reports the open time, `RssAnon`/`VmRSS` after the open, the median latency of every
//!   read-bench query, and `RssAnon`/`VmRSS` after the queries (`queries: ...` figures);
//! - then 262,143 newer events fill the WAL to one event short of its rotation, and the writer
//!   stops without sealing them, as a crash would leave it; another child opens the directory,
//!   which replays that full WAL, and reports the open time and memory (`open: ...` figures).
//!
//! The engine runs with its defaults, so the segment cache is a quarter of the machine's (or
//! the cgroup's) memory; `KEPLOR_SCALE_CACHE_MIB` sets it instead. The probes inherit the
//! environment: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` measures the store as the agent's image
//! runs it (transparent huge pages for malloc's memory).
//!
//! Queries are those of the read bench, with time ranges relative to the data's span: "10%
//! time range" is the middle tenth of the span, the time series is 24 hourly buckets of the
//! newest day, the rollup is one user over every day. A query touches the data it needs, so an
//! aggregate over 10% of the span is expected to grow with N; one that grows faster than the
//! data it touches is a defect.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keplor_benches::{config, event_spanning, median, BenchEngine, BenchEvent, Rng, DAY_START};
use keplordb::{day_of, GroupBy, GroupOrder, QueryFilter, NANOS_PER_DAY};

/// Events per segment, and the WAL's rotation threshold: the agent's default.
const SEGMENT_EVENTS: u64 = 262_144;
/// Events per day of data.
const PER_DAY: u64 = 1_000_000;
/// The user every filtered query asks for.
const USER: &str = "user-0042";
/// What the probe prints before each of its figures.
const FIGURE: &str = "figure\t";

fn main() {
    if let Some(dir) = std::env::var_os("KEPLOR_SCALE_PROBE") {
        let n = std::env::var("KEPLOR_SCALE_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("KEPLOR_SCALE_N");
        let what = std::env::var("KEPLOR_SCALE_WHAT").unwrap_or_default();
        probe(Path::new(&dir), n, &what);
        return;
    }
    let sizes = std::env::var("KEPLOR_SCALE_EVENTS").unwrap_or_else(|_| "1000000".into());
    let mut report = Vec::new();
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<u64>().ok())
    {
        report.push((n, run(n)));
    }
    print_report(&report);
}

/// Event `i` of a data set of `n` (sealed) events: one day per million events.
fn event(i: u64, n: u64, rng: &mut Rng) -> BenchEvent {
    event_spanning(i, n, span_ns(n), rng)
}

/// The time the `n` sealed events span.
fn span_ns(n: u64) -> i64 {
    (n.div_ceil(PER_DAY) as i64) * NANOS_PER_DAY
}

fn engine_config(dir: &Path) -> keplordb::EngineConfig {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c.wal_sync_every_events = u32::MAX;
    c.wal_max_events = SEGMENT_EVENTS;
    // The engine's default cache is a quarter of the memory limit; `KEPLOR_SCALE_CACHE_MIB`
    // sets another, to see a store outgrow its cache.
    if let Some(mib) = std::env::var("KEPLOR_SCALE_CACHE_MIB")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
    {
        c.segment_cache_bytes = mib << 20;
    }
    c
}

/// Loads a store of `n` sealed events under a new directory and has a child process measure
/// it; then fills the WAL and has another child measure the open; returns the figures.
fn run(n: u64) -> Vec<(String, f64)> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("keplordb");
    let t = Instant::now();
    seal(&dir, n);
    let load_s = t.elapsed().as_secs_f64();
    let (sealed_bytes, segments) = dir_bytes(&dir);
    let mut figures = vec![
        ("load s".to_string(), load_s),
        ("segments".to_string(), segments as f64),
        (
            "bytes/event, sealed".to_string(),
            sealed_bytes as f64 / n as f64,
        ),
    ];
    figures.extend(measure(&dir, n, "queries"));
    fill_wal(&dir, n);
    let (bytes, _) = dir_bytes(&dir);
    figures.push((
        "WAL bytes/event".to_string(),
        (bytes - sealed_bytes) as f64 / (SEGMENT_EVENTS - 1) as f64,
    ));
    figures.extend(measure(&dir, n, "open"));
    println!("{n} events: {figures:?}");
    figures
}

/// Runs the probe `what` on `dir` in a child process; its figures.
fn measure(dir: &Path, n: u64, what: &str) -> Vec<(String, f64)> {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env("KEPLOR_SCALE_PROBE", dir)
        .env("KEPLOR_SCALE_N", n.to_string())
        .env("KEPLOR_SCALE_WHAT", what)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("probe");
    assert!(out.status.success(), "probe failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix(FIGURE)?.split_once('\t')?;
            Some((name.to_string(), value.parse().expect("figure")))
        })
        .collect()
}

/// Appends `n` events and seals them.
fn seal(dir: &Path, n: u64) {
    let engine = BenchEngine::open(engine_config(dir)).expect("open");
    let mut rng = Rng(42);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(event(i, n, &mut rng));
        if batch.len() == batch.capacity() {
            engine.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    engine.append_batch(&batch).expect("append");
    engine.flush().expect("flush");
}

/// Fills the WAL to one event short of its rotation with events newer than every sealed one,
/// and stops without sealing them, as a crash would leave it.
fn fill_wal(dir: &Path, n: u64) {
    let engine = BenchEngine::open(engine_config(dir)).expect("open");
    let segments = engine.stats().segments;
    let last = DAY_START + span_ns(n);
    let mut rng = Rng(7);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..SEGMENT_EVENTS - 1 {
        let mut e = event(i, n, &mut rng);
        e.id = format!("wal-{i:08}");
        e.ts_ns = last + i as i64 * 1_000;
        batch.push(e);
        if batch.len() == batch.capacity() {
            engine.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    engine.append_batch(&batch).expect("append");
    assert_eq!(engine.stats().segments, segments, "nothing sealed");
}

/// Bytes of every file in `dir` (not below it), and its segments.
fn dir_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut segments = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        total += entry.metadata().expect("metadata").len();
        if entry.path().extension().is_some_and(|x| x == "kseg") {
            segments += 1;
        }
    }
    (total, segments)
}

/// `RssAnon` and `VmRSS` of this process, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib("RssAnon:") / 1024.0, kib("VmRSS:") / 1024.0)
}

fn figure(name: &str, value: f64) {
    println!("{FIGURE}{name}\t{value}");
}

/// A query: its name and how to run it.
type Query<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// The child: opens `dir` (a store of `n` sealed events) and measures the open, then, when
/// `what` is `queries`, the queries.
fn probe(dir: &Path, n: u64, what: &str) {
    let config = engine_config(dir);
    figure(
        &format!("{what}: segment cache MiB"),
        (config.segment_cache_bytes >> 20) as f64,
    );
    let t = Instant::now();
    let engine = BenchEngine::open(config).expect("open");
    figure(&format!("{what}: open ms"), t.elapsed().as_secs_f64() * 1e3);
    let (anon, rss) = memory_mib();
    figure(&format!("{what}: RssAnon after open MiB"), anon);
    figure(&format!("{what}: VmRSS after open MiB"), rss);
    if what == "queries" {
        queries(&engine, n);
    }
}

/// Times every query on `engine` (a store of `n` sealed events), then reads the memory.
fn queries(engine: &BenchEngine, n: u64) {
    let span = span_ns(n);
    let mut f_time = QueryFilter::<2>::new();
    f_time.from_ts_ns = Some(DAY_START + span * 45 / 100);
    f_time.to_ts_ns = Some(DAY_START + span * 55 / 100);
    let mut f_user = QueryFilter::<2>::new();
    f_user.dims[0] = Some(USER.into());
    let mut f_user_time = f_time.clone();
    f_user_time.dims[0] = Some(USER.into());
    let mut f_last_day = QueryFilter::<2>::new();
    f_last_day.from_ts_ns = Some(DAY_START + span - NANOS_PER_DAY);
    f_last_day.to_ts_ns = Some(DAY_START + span);
    let all = QueryFilter::<2>::new();
    let top = GroupBy::new(0, GroupOrder::Metric, 10);
    let (first_day, last_day) = (day_of(DAY_START), day_of(DAY_START + span - 1));
    let id = format!("evt-{:08}", n / 2);
    let e = engine;
    let queries: Vec<Query> = vec![
        (
            "aggregate, no filter",
            Box::new(|| {
                black_box(e.aggregate(&all).unwrap());
            }),
        ),
        (
            "aggregate, user",
            Box::new(|| {
                black_box(e.aggregate(&f_user).unwrap());
            }),
        ),
        (
            "aggregate, 10% time range",
            Box::new(|| {
                black_box(e.aggregate(&f_time).unwrap());
            }),
        ),
        (
            "aggregate, user + time",
            Box::new(|| {
                black_box(e.aggregate(&f_user_time).unwrap());
            }),
        ),
        (
            "newest 100",
            Box::new(|| {
                black_box(e.query_recent(&all, 100).unwrap());
            }),
        ),
        (
            "newest 1000",
            Box::new(|| {
                black_box(e.query_recent(&all, 1000).unwrap());
            }),
        ),
        (
            "newest 100, user",
            Box::new(|| {
                black_box(e.query_recent(&f_user, 100).unwrap());
            }),
        ),
        (
            "top 10 users by metric",
            Box::new(|| {
                black_box(e.group_by(&all, &top).unwrap());
            }),
        ),
        (
            "24 hourly buckets, newest day",
            Box::new(|| {
                black_box(e.time_series(&f_last_day, 3_600_000_000_000).unwrap());
            }),
        ),
        (
            "rollups, user, every day",
            Box::new(|| {
                black_box(e.query_rollups(first_day, last_day, &[Some(USER)]).unwrap());
            }),
        ),
        (
            "get_event by id",
            Box::new(|| assert!(e.get_event(&id).unwrap().is_some())),
        ),
    ];
    for (name, q) in &queries {
        let t = median(Duration::from_millis(800), q);
        figure(&format!("{name} µs"), t.as_secs_f64() * 1e6);
    }
    figure(
        "segments decoded again",
        engine.stats().segment_reloads as f64,
    );
    let (anon, rss) = memory_mib();
    figure("RssAnon after queries MiB", anon);
    figure("VmRSS after queries MiB", rss);
}

/// One row per figure, one column per size.
fn print_report(report: &[(u64, Vec<(String, f64)>)]) {
    let Some((_, first)) = report.first() else {
        return;
    };
    print!("\n{:<36}", "how cost grows");
    for (n, _) in report {
        print!(" {:>14}", format!("{n} events"));
    }
    println!();
    for (i, (name, _)) in first.iter().enumerate() {
        print!("{name:<36}");
        for (_, figures) in report {
            print!(" {:>14.1}", figures.get(i).map_or(f64::NAN, |f| f.1));
        }
        println!();
    }
}
