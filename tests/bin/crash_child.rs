//! Runs a random mix of engine operations and reports each one on stdout, until killed.
//!
//! Usage: `crash-child <data-dir> <run> <seed>`. Operations: batch appends (fsynced), deletes
//! of ids it appended, `flush` (rotation of every shard), `gc`. The WAL limits are tiny, so
//! rotations (and kills inside their phases) are constant. Lines, each flushed:
//!
//! - `try <run> <batch> <n>` before an append, `ack <run> <batch> <n>` once it returned Ok;
//!   `err <run> <batch> <error>` when it failed (the child goes on);
//! - `deleting <id>...` before a delete, `deleted` once it returned Ok, `delerr <error>`;
//! - `gc <cutoff>` before a gc (events older than the cutoff may go), `gcerr <error>`;
//! - `reopen` when it dropped and reopened the engine after three failed appends, or
//!   three failed deletes, in a row.
//!
//! Event contents are a function of `(run, batch, i)` (`event`), so the parent can rebuild
//! every event it was told about. Environment (for the fault tests, not the engine):
//! `KEPLOR_CHILD_BATCHES` stops after that many batches (exit 0), `KEPLOR_CHILD_APPENDS_ONLY=1`
//! appends only, `KEPLOR_CHILD_SHARDS` sets the shard count, `KEPLOR_CHILD_ARM` names a file
//! created once the engine is open (the shim's faults wait for it).

use std::io::Write;

use keplordb::{Engine, EngineConfig, LogEvent};

/// Event type of the campaigns.
pub type Ev = LogEvent<2, 1, 1>;

/// Timestamps of run `r` lie in `[BASE_TS + r * RUN_NS, BASE_TS + r * RUN_NS + RUN_NS / 2)`:
/// one hour per run, so a campaign spans days (rollups of old and recent days) and a gc cutoff
/// at a run's start collects only older runs.
pub const BASE_TS: i64 = 1_700_000_000_000_000_000;
/// Span of one run's timestamps.
pub const RUN_NS: i64 = 3_600_000_000_000;

/// The engine configuration shared with the tests that check the directory.
pub fn config(dir: &str) -> EngineConfig {
    let mut c = EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], ["note"]);
    c.schema_id = 5;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0];
    c.wal_shard_count = env_u64("KEPLOR_CHILD_SHARDS").unwrap_or(3) as usize;
    c.wal_sync_every_events = 1;
    // Tiny WALs: rotations (and so crashes inside them) happen every few batches.
    c.wal_max_events = 120;
    c.wal_max_bytes = 24 << 10;
    c.rollup_replay_days = 2;
    c
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Event `i` of batch `batch` of run `run`.
pub fn event(run: u64, batch: u64, i: u64) -> Ev {
    let h = mix(run << 40 ^ batch << 12 ^ i);
    let mut e = Ev::new(BASE_TS + run as i64 * RUN_NS + (h % (RUN_NS as u64 / 2)) as i64);
    e.id = format!("r{run}-b{batch}-e{i}");
    let h2 = mix(h);
    e.dims = [
        format!("user-{}", h2 % 23),
        format!("model-{}", (h2 >> 8) % 4),
    ];
    e.counters = [((h2 >> 16) % 1000) as u32];
    e.metric = ((h2 >> 26) % 10_000) as i64 - 2_000;
    e.latency_ms = ((h2 >> 40) % 500) as u32;
    e.latency_detail_ms = ((h2 >> 50) % 9) as u32;
    e.status = [200, 200, 201, 404, 500][((h2 >> 54) % 5) as usize];
    e.labels = [format!("run {run} batch {batch}")];
    e
}

/// Parses `r<run>-b<batch>-e<i>`.
pub fn parse_id(id: &str) -> Option<(u64, u64, u64)> {
    let mut nums = id
        .split('-')
        .map(|p| p.get(1..).and_then(|n| n.parse().ok()));
    match (nums.next(), nums.next(), nums.next(), nums.next()) {
        (Some(Some(r)), Some(Some(b)), Some(Some(i)), None) => Some((r, b, i)),
        _ => None,
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let out = std::io::stdout();
    let mut lock = out.lock();
    let _ = writeln!(lock, "{line}");
    let _ = lock.flush();
}

fn open(dir: &str) -> Engine<2, 1, 1> {
    match Engine::open(config(dir)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(3);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, run, seed] = args.as_slice() else {
        eprintln!("usage: crash-child <data-dir> <run> <seed>");
        std::process::exit(2);
    };
    let run: u64 = run.parse().expect("run is a number");
    let mut rng: u64 = seed.parse::<u64>().expect("seed is a number") | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let batches = env_u64("KEPLOR_CHILD_BATCHES").unwrap_or(u64::MAX);
    let appends_only = std::env::var_os("KEPLOR_CHILD_APPENDS_ONLY").is_some();
    let mut engine = open(dir);
    if let Some(arm) = std::env::var_os("KEPLOR_CHILD_ARM") {
        std::fs::write(arm, b"").expect("create the arm file");
    }
    // Acknowledged batches of this run, for deletes.
    let mut acked: Vec<(u64, u64)> = Vec::new();
    // Failures in a row, of appends and of deletes.
    let (mut failures, mut del_failures) = (0, 0);
    let mut batch = 0u64;
    while batch < batches {
        let roll = if appends_only { 0 } else { next() % 100 };
        if roll < 80 || acked.is_empty() {
            let n = 1 + next() % 30;
            let events: Vec<Ev> = (0..n).map(|i| event(run, batch, i)).collect();
            say(format_args!("try {run} {batch} {n}"));
            let result = if n == 1 {
                engine.append_durable(&events[0])
            } else {
                engine.append_batch(&events)
            };
            match result {
                Ok(_) => {
                    say(format_args!("ack {run} {batch} {n}"));
                    acked.push((batch, n));
                    failures = 0;
                }
                Err(e) => {
                    say(format_args!("err {run} {batch} {e}"));
                    failures += 1;
                }
            }
            batch += 1;
        } else if roll < 90 {
            let ids: Vec<String> = (0..1 + next() % 3)
                .map(|_| {
                    let (b, n) = acked[(next() % acked.len() as u64) as usize];
                    format!("r{run}-b{b}-e{}", next() % n)
                })
                .collect();
            say(format_args!("deleting {}", ids.join(" ")));
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            match engine.delete_events(&refs) {
                Ok(_) => {
                    say(format_args!("deleted"));
                    del_failures = 0;
                }
                Err(e) => {
                    say(format_args!("delerr {e}"));
                    del_failures += 1;
                }
            }
        } else if roll < 96 {
            if let Err(e) = engine.flush() {
                say(format_args!("flusherr {e}"));
            }
        } else {
            let cutoff = BASE_TS + (run as i64 - 2) * RUN_NS;
            say(format_args!("gc {cutoff}"));
            if let Err(e) = engine.gc(cutoff) {
                say(format_args!("gcerr {e}"));
            }
        }
        if failures >= 3 || del_failures >= 3 {
            drop(engine);
            engine = open(dir);
            say(format_args!("reopen"));
            (failures, del_failures) = (0, 0);
        }
    }
}
