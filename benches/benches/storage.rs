//! Storage: bytes per event on disk, ours by segment section and in total, against DuckDB (its
//! file after CHECKPOINT) and Parquet (zstd and snappy, written by DuckDB's COPY) on the same
//! data in the same run (issue 13).
//!
//! Shapes: `issue` (the issue's: 2 dims, user with 1,000 values, bloom and rollup, model with 10;
//! 1 counter; no label; ids `e{i}`; latency and latency detail zero), `llm` (the agent's LLM
//! shape: 3 dims, 2 counters, 1 label, random string request ids) and `highcard` (a dim with a
//! distinct value per event). Events are spread over one day and written as 40 segments.
//! `KEPLOR_STORAGE_EVENTS` sets the event count (default 1,000,000), `KEPLOR_STORAGE_SHAPES` a
//! comma-separated subset of the shapes (default all). The issue shape's metric is uniform in
//! 0..10,000,000 as in the read bench's data (with it, Parquet snappy is the issue's 19.4).
//!
//! Issue 15's export figure too: `export_parquet` of every event (zstd, the default options),
//! its time (median of 3) and bytes per event, beside DuckDB's `COPY events TO 'x.parquet'
//! (FORMAT parquet, COMPRESSION zstd)` of the same data, timed the same way.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use keplor_benches::{duckdb, Rng, DAY_START};
use keplordb::{DynEngine, DynEvent, EngineConfig, EventFlags, NANOS_PER_DAY};

/// Segments every shape is written as.
const SEGMENTS: u64 = 40;

/// One data shape: its columns and its `i`-th event of `n`.
struct Shape {
    name: &'static str,
    dims: &'static [&'static str],
    counters: &'static [&'static str],
    labels: &'static [&'static str],
    rollup_dims: &'static [usize],
    event: fn(u64, u64, &mut Rng) -> DynEvent,
}

fn at(i: u64, n: u64) -> DynEvent {
    DynEvent {
        ts_ns: DAY_START + (i as i128 * NANOS_PER_DAY as i128 / n as i128) as i64,
        ..Default::default()
    }
}

fn status(rng: &mut Rng) -> u16 {
    if rng.next_u64().is_multiple_of(20) {
        500
    } else {
        200
    }
}

fn issue_event(i: u64, n: u64, rng: &mut Rng) -> DynEvent {
    let mut e = at(i, n);
    e.id = format!("e{i}");
    e.dims = vec![
        format!("user-{:04}", rng.next_u64() % 1000),
        format!("model-{}", rng.next_u64() % 10),
    ];
    e.counters = vec![(rng.next_u64() % 4000) as u32];
    e.metric = (rng.next_u64() % 10_000_000) as i64;
    e.status = status(rng);
    e
}

fn llm_event(i: u64, n: u64, rng: &mut Rng) -> DynEvent {
    const FINISH: [&str; 3] = ["stop", "length", "tool_calls"];
    let mut e = at(i, n);
    e.id = format!("req_{:016x}{:08x}", rng.next_u64(), rng.next_u64() as u32);
    e.dims = vec![
        format!("user-{:04}", rng.next_u64() % 1000),
        format!("model-{}", rng.next_u64() % 10),
        format!("provider-{}", rng.next_u64() % 4),
    ];
    let input = (rng.next_u64() % 8000) as u32;
    e.counters = vec![input, (rng.next_u64() % 1000) as u32];
    e.metric = (input as i64) * 3 + (rng.next_u64() % 1000) as i64;
    e.latency_ms = 200 + (rng.next_u64() % 5000) as u32;
    e.latency_detail_ms = (rng.next_u64() % 800) as u32;
    e.status = status(rng);
    e.labels = vec![FINISH[(rng.next_u64() % 3) as usize].to_string()];
    e
}

fn highcard_event(i: u64, n: u64, rng: &mut Rng) -> DynEvent {
    let mut e = issue_event(i, n, rng);
    e.dims[1] = format!("session-{:016x}", rng.next_u64());
    e
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "issue",
        dims: &["user", "model"],
        counters: &["tokens"],
        labels: &[],
        rollup_dims: &[0],
        event: issue_event,
    },
    Shape {
        name: "llm",
        dims: &["user", "model", "provider"],
        counters: &["input_tokens", "output_tokens"],
        labels: &["finish_reason"],
        rollup_dims: &[0, 1],
        event: llm_event,
    },
    Shape {
        name: "highcard",
        dims: &["user", "session"],
        counters: &["tokens"],
        labels: &[],
        rollup_dims: &[0],
        event: highcard_event,
    },
];

/// Writes the shape's `n` events into an engine at `dir` (40 segments) and as CSV at `csv`.
fn load(shape: &Shape, n: u64, dir: &Path, csv: &Path) {
    let mut c = EngineConfig::new(dir).with_columns(
        shape.dims.iter().copied(),
        shape.counters.iter().copied(),
        shape.labels.iter().copied(),
    );
    c.schema_id = 1;
    c.bloom_dim = Some(0);
    c.rollup_dims = shape.rollup_dims.to_vec();
    c.wal_shard_count = 1;
    c.wal_sync_every_events = u32::MAX;
    c.wal_max_events = n.div_ceil(SEGMENTS);
    let engine = DynEngine::open(c).expect("open");
    let mut f = std::io::BufWriter::new(std::fs::File::create(csv).expect("csv"));
    let cols: Vec<&str> = [
        "id",
        "ts",
        "metric",
        "latency",
        "latency_detail",
        "status",
        "flags",
    ]
    .into_iter()
    .chain(shape.counters.iter().copied())
    .chain(shape.dims.iter().copied())
    .chain(shape.labels.iter().copied())
    .collect();
    writeln!(f, "{}", cols.join(",")).expect("csv");
    let mut rng = Rng(42);
    let mut batch = Vec::with_capacity(5_000);
    for i in 0..n {
        let e = (shape.event)(i, n, &mut rng);
        write_csv_row(&mut f, &e);
        batch.push(e);
        if batch.len() == 5_000 {
            engine.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    engine.append_batch(&batch).expect("append");
    engine.flush().expect("flush");
    f.flush().expect("csv");
}

fn write_csv_row(f: &mut impl Write, e: &DynEvent) {
    let EventFlags(flags) = e.flags;
    write!(
        f,
        "{},{},{},{},{},{},{}",
        e.id, e.ts_ns, e.metric, e.latency_ms, e.latency_detail_ms, e.status, flags
    )
    .expect("csv");
    for c in &e.counters {
        write!(f, ",{c}").expect("csv");
    }
    for s in e.dims.iter().chain(&e.labels) {
        write!(f, ",{s}").expect("csv");
    }
    writeln!(f).expect("csv");
}

/// Bytes of the data directory: every file, and the segments' bytes by section.
fn measure(dir: &Path) -> (u64, usize, BTreeMap<&'static str, u64>) {
    let (mut total, mut segments) = (0, 0);
    let mut by_section = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        total += entry.metadata().expect("metadata").len();
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "kseg") {
            segments += 1;
            for (name, len) in keplordb::diagnostics::segment_sections(&path).expect("segment") {
                *by_section.entry(name).or_insert(0) += len;
            }
        }
    }
    (total, segments, by_section)
}

fn run(shape: &Shape, n: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, csv) = (tmp.path().join("keplordb"), tmp.path().join("events.csv"));
    load(shape, n, &dir, &csv);
    let (total, segments, by_section) = measure(&dir);
    // Version-2 sections are decoded when a segment is opened: what that costs.
    let t = std::time::Instant::now();
    let reopened = DynEngine::open_read_only(&dir).expect("reopen");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let (export_s, export_bytes) = export(&reopened, tmp.path());
    drop(reopened);
    let per = |b: u64| b as f64 / n as f64;
    println!(
        "\nstorage, shape {}: {n} events, {segments} segments",
        shape.name
    );
    println!("{:<28} {:>14} {:>10}", "part", "bytes", "B/event");
    for (name, bytes) in &by_section {
        println!("{name:<28} {bytes:>14} {:>10.2}", per(*bytes));
    }
    println!(
        "{:<28} {total:>14} {:>10.2}",
        "keplordb (whole dir)",
        per(total)
    );
    println!(
        "{:<28} {export_bytes:>14} {:>10.2}",
        "parquet zstd (our export)",
        per(export_bytes)
    );
    println!("keplordb read-only open of the directory: {open_ms:.1} ms");
    let mut copy_s = None;
    match duckdb(&["storage", csv.to_str().expect("utf-8 path")]) {
        Ok(sizes) => {
            for (name, value) in sizes {
                if name == COPY_SECONDS {
                    copy_s = Some(value);
                } else {
                    println!("{name:<28} {value:>14} {:>10.2}", value / n as f64);
                }
            }
        }
        Err(why) => println!("DuckDB not measured: {why} (pip install duckdb)"),
    }
    print!("export to Parquet (zstd), median of 3: keplordb {export_s:.3} s");
    match copy_s {
        Some(c) => println!(
            ", DuckDB COPY {c:.3} s, DuckDB/keplordb {:.2}",
            c / export_s
        ),
        None => println!(),
    }
}

/// The name under which `duckdb_bench.py storage` prints the seconds of its COPY (zstd).
const COPY_SECONDS: &str = "copy zstd seconds";

/// Exports every event of `engine` as Parquet three times, each into a fresh directory under
/// `tmp`; returns the median seconds and the bytes written.
fn export(engine: &DynEngine, tmp: &Path) -> (f64, u64) {
    let opts = keplordb::export::ParquetOptions::default();
    let mut times = Vec::new();
    let mut bytes = 0;
    for run in 0..3 {
        let out = tmp.join(format!("export-{run}"));
        let t = std::time::Instant::now();
        let stats = engine
            .export_parquet(&keplordb::DynFilter::default(), &out, &opts, |_| {})
            .expect("export");
        times.push(t.elapsed().as_secs_f64());
        bytes = stats.bytes;
        std::fs::remove_dir_all(&out).expect("remove export");
    }
    times.sort_by(f64::total_cmp);
    (times[1], bytes)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here is filtered by it.
    let n: u64 = std::env::var("KEPLOR_STORAGE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    assert!(
        n.is_multiple_of(SEGMENTS * 1000),
        "the event count must be a multiple of 40,000"
    );
    let only = std::env::var("KEPLOR_STORAGE_SHAPES").unwrap_or_default();
    for shape in &SHAPES {
        if only.is_empty() || only.split(',').any(|s| s == shape.name) {
            run(shape, n);
        }
    }
}
