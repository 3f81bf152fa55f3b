//! Appends batches to an engine and reports each acknowledged one on stdout, until killed.
//!
//! Usage: `crash-child <data-dir> <run> <seed>`. Every event id is `r<run>-b<batch>-e<i>`;
//! after `append_batch` returns, the line `ack <run> <batch> <count>` is printed and flushed.

use std::io::Write;

use keplordb::{Engine, EngineConfig, LogEvent};

/// The engine configuration shared with the test that checks the directory.
pub fn config(dir: &str) -> EngineConfig {
    let mut c = EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], ["note"]);
    c.schema_id = 5;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0];
    c.wal_shard_count = 3;
    c.wal_sync_every_events = 1;
    // Small WALs: rotations (and so crashes inside them) are frequent.
    c.wal_max_events = 400;
    c
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
    let engine: Engine<2, 1, 1> = match Engine::open(config(dir)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(3);
        }
    };
    let out = std::io::stdout();
    for batch in 0u64.. {
        let n = 1 + next() % 40;
        let events: Vec<LogEvent<2, 1, 1>> = (0..n)
            .map(|i| {
                let mut e = LogEvent::new(1_700_000_000_000_000_000 + (next() % 1_000_000) as i64);
                e.id = format!("r{run}-b{batch}-e{i}");
                e.dims = [
                    format!("user-{}", next() % 50),
                    format!("model-{}", next() % 4),
                ];
                e.counters = [(next() % 1000) as u32];
                e.metric = (next() % 10_000) as i64;
                e.labels = [format!("run {run} batch {batch}")];
                e
            })
            .collect();
        let result = if n == 1 {
            engine.append_durable(&events[0])
        } else {
            engine.append_batch(&events)
        };
        if let Err(e) = result {
            eprintln!("append failed: {e}");
            std::process::exit(4);
        }
        let mut lock = out.lock();
        let _ = writeln!(lock, "ack {run} {batch} {n}");
        let _ = lock.flush();
        drop(lock);
        if next() % 50 == 0 {
            if let Err(e) = engine.flush() {
                eprintln!("flush failed: {e}");
                std::process::exit(5);
            }
        }
    }
}
