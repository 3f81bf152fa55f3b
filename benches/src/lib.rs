//! Shared data and helpers for the benches: the data set of the product page (1,000,000
//! events, 1,000 users spread uniformly, 10 models, one day of timestamps, 10 segments), its
//! SQLite twin, the DuckDB runner (through DuckDB's Python package, in the same run) and the
//! comparison table.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keplordb::{Engine, EngineConfig, LogEvent, NANOS_PER_DAY};

/// The bench schema: dims user (bloom, rollup) and model; counter tokens.
pub type BenchEngine = Engine<2, 1, 0>;
/// One event of the bench schema.
pub type BenchEvent = LogEvent<2, 1, 0>;

/// First timestamp of the bench day (2025-11-25 00:00 UTC).
pub const DAY_START: i64 = 20_417 * NANOS_PER_DAY;
/// Users in the data set.
pub const USERS: u64 = 1_000;
/// Models in the data set.
pub const MODELS: u64 = 10;

/// SplitMix64: a seeded, dependency-free generator so every engine sees the same data.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Event `i` of `n`, timestamps spread over the bench day in order.
pub fn event(i: u64, n: u64, rng: &mut Rng) -> BenchEvent {
    event_spanning(i, n, NANOS_PER_DAY, rng)
}

/// Event `i` of `n`, timestamps spread in order over `span_ns` from the bench day's start.
pub fn event_spanning(i: u64, n: u64, span_ns: i64, rng: &mut Rng) -> BenchEvent {
    let mut e = BenchEvent::new(DAY_START + (i as i128 * span_ns as i128 / n as i128) as i64);
    e.id = format!("evt-{i:08}");
    e.dims = [
        format!("user-{:04}", rng.next_u64() % USERS),
        format!("model-{}", rng.next_u64() % MODELS),
    ];
    e.counters = [(rng.next_u64() % 4000) as u32];
    e.metric = (rng.next_u64() % 10_000_000) as i64;
    e.latency_ms = (rng.next_u64() % 3000) as u32;
    e.status = if rng.next_u64().is_multiple_of(20) {
        500
    } else {
        200
    };
    e
}

/// `n` events.
pub fn events(n: u64) -> Vec<BenchEvent> {
    let mut rng = Rng(42);
    (0..n).map(|i| event(i, n, &mut rng)).collect()
}

/// Engine config of the bench schema.
pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], [] as [&str; 0]);
    c.schema_id = 1;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0];
    c
}

/// A loaded engine: `events` appended on one shard, rotated every `n / segments` events.
pub fn load_engine(dir: &Path, evs: &[BenchEvent], segments: u64) -> BenchEngine {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c.wal_sync_every_events = u32::MAX;
    c.wal_max_events = (evs.len() as u64).div_ceil(segments);
    let engine = BenchEngine::open(c).expect("open bench engine");
    for chunk in evs.chunks(10_000) {
        engine.append_batch(chunk).expect("append");
    }
    engine.flush().expect("flush");
    engine
}

/// The same events in SQLite (file-backed, indexed on ts and (user, ts), id primary key).
pub fn load_sqlite(path: &Path, evs: &[BenchEvent]) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open(path).expect("sqlite open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE events(id TEXT PRIMARY KEY, ts INTEGER, metric INTEGER, tokens INTEGER,
                             latency INTEGER, status INTEGER, user TEXT, model TEXT);",
    )
    .expect("sqlite schema");
    let tx = conn.transaction().expect("tx");
    {
        let mut st = tx
            .prepare("INSERT INTO events VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")
            .expect("prepare");
        for e in evs {
            st.execute(rusqlite::params![
                e.id,
                e.ts_ns,
                e.metric,
                e.counters[0],
                e.latency_ms,
                e.status,
                e.dims[0],
                e.dims[1]
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch(
        "CREATE INDEX ev_ts ON events(ts); CREATE INDEX ev_user_ts ON events(user, ts); ANALYZE;",
    )
    .expect("index");
    conn
}

/// Writes the events as CSV for DuckDB.
pub fn write_csv(path: &Path, evs: &[BenchEvent]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("csv"));
    writeln!(f, "id,ts,metric,tokens,latency,status,user,model").expect("csv");
    for e in evs {
        writeln!(
            f,
            "{},{},{},{},{},{},{},{}",
            e.id, e.ts_ns, e.metric, e.counters[0], e.latency_ms, e.status, e.dims[0], e.dims[1]
        )
        .expect("csv");
    }
}

/// Median time of `f` over repeated runs lasting about `budget`.
pub fn median(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
        if samples.len() >= 100_000 {
            break;
        }
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs `benches/duckdb_bench.py` with `args`; returns `name -> median µs`, or why DuckDB could
/// not run (the Python package is missing, say).
pub fn duckdb(args: &[&str]) -> Result<Vec<(String, f64)>, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("duckdb_bench.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// Prints the comparison table.
pub fn print_table(title: &str, rows: &[(String, f64, Option<f64>, Option<f64>)]) {
    println!("\n{title}");
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "operation", "keplordb µs", "sqlite µs", "duckdb µs", "sqlite/k", "duckdb/k"
    );
    for (name, ours, sqlite, duck) in rows {
        let f = |v: &Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let r = |v: &Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}x", v / ours));
        println!(
            "{name:<34} {ours:>12.1} {:>12} {:>12} {:>10} {:>10}",
            f(sqlite),
            f(duck),
            r(sqlite),
            r(duck)
        );
    }
}
