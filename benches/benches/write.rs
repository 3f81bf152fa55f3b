//! Write path: the product page's rows (batch append of 4096 and 1024 events with the default
//! sync policy, concurrent appenders, WAL without fsync, rotation of one shard), then a table
//! comparing a durable 1024-event batch with DuckDB's 1024-row insert + commit in this run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keplor_benches::*;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// `n` fresh events (unique ids) for one iteration.
fn batch(n: u64) -> Vec<BenchEvent> {
    let start = NEXT.fetch_add(n, Ordering::Relaxed);
    let mut rng = Rng(start);
    (start..start + n)
        .map(|i| event(i, u64::MAX / 2, &mut rng))
        .collect()
}

fn engine(dir: &std::path::Path, shards: usize, sync: u32) -> BenchEngine {
    let mut c = config(dir);
    c.wal_shard_count = shards;
    c.wal_sync_every_events = sync;
    BenchEngine::open(c).unwrap()
}

fn write(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    for (n, name) in [
        (4096u64, "batch 4096, default sync"),
        (1024, "batch 1024, default sync"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 4, 64);
        let b = batch(n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(name, |bench| {
            bench.iter(|| e.append_batch(black_box(&b)).unwrap())
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 4, u32::MAX);
        let b = batch(1024);
        g.throughput(Throughput::Elements(1024));
        g.bench_function("batch 1024, no fsync (WAL to page cache)", |bench| {
            bench.iter(|| e.append_batch(black_box(&b)).unwrap())
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 8, 64);
        let batches: Vec<Vec<BenchEvent>> = (0..8).map(|_| batch(1024)).collect();
        g.throughput(Throughput::Elements(8 * 1024));
        g.bench_function("concurrent 8 threads x 1024, default sync", |bench| {
            bench.iter(|| {
                std::thread::scope(|s| {
                    for b in &batches {
                        s.spawn(|| e.append_batch(b).unwrap());
                    }
                })
            })
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.wal_shard_count = 1;
        c.wal_sync_every_events = u32::MAX;
        c.wal_max_events = 1 << 22;
        let e = BenchEngine::open(c).unwrap();
        g.throughput(Throughput::Elements(1024));
        g.bench_function("rotation, 1 shard x 1024 (compress + fsync)", |bench| {
            bench.iter_batched(
                || e.append_batch(&batch(1024)).unwrap(),
                |_| e.flush().unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    // Same-run comparison with DuckDB: both pay one fsync per durable batch.
    let budget = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 4, 64);
    let b = batch(1024);
    let durable = median(budget, || {
        e.append_batch_durable(&b).unwrap();
    });
    let fsync_only = {
        let f = std::fs::File::create(dir.path().join("probe")).unwrap();
        median(budget, || {
            use std::io::Write;
            (&f).write_all(&[0u8; 4096]).unwrap();
            f.sync_data().unwrap();
        })
    };
    let dir2 = tempfile::tempdir().unwrap();
    let e2 = engine(dir2.path(), 1, u32::MAX);
    let best_effort = median(budget, || {
        e2.append_batch(&b).unwrap();
    });
    let dd = tempfile::tempdir().unwrap();
    let duck = duckdb(&["write", dd.path().to_str().unwrap(), "1024", "2.0"]);
    let duck_us = match &duck {
        Ok(v) => v.first().map(|(_, us)| *us),
        Err(why) => {
            println!("DuckDB not measured: {why} (pip install duckdb)");
            None
        }
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nwrite path (medians, this run)");
    println!("{:<44} {:>10} {:>14}", "operation", "µs", "events/s");
    let line = |name: &str, d: f64, n: f64| println!("{name:<44} {d:>10.1} {:>14.0}", n / d * 1e6);
    line("keplordb durable batch 1024 (1 fsync)", us(durable), 1024.0);
    line(
        "keplordb batch 1024, no fsync, one core",
        us(best_effort),
        1024.0,
    );
    line("4 KiB write + fdatasync on this disk", us(fsync_only), 0.0);
    if let Some(d) = duck_us {
        line("DuckDB insert 1024 rows + commit", d, 1024.0);
        println!(
            "ratio DuckDB / keplordb durable batch: {:.1}x",
            d / us(durable)
        );
    }
    // Concurrent durable appenders: scaling with shards.
    for shards in [1usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), shards, 64);
        let batches: Vec<Vec<BenchEvent>> = (0..4).map(|_| batch(1024)).collect();
        let start = Instant::now();
        let mut rounds = 0;
        while start.elapsed() < budget {
            std::thread::scope(|s| {
                for b in &batches {
                    s.spawn(|| e.append_batch_durable(b).unwrap());
                }
            });
            rounds += 1;
        }
        let per = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "4 threads durable x 1024, {shards} shard(s): {:.0} events/s, {} fsyncs for {} batches",
            4096.0 / per,
            e.stats().fsyncs,
            e.stats().frames_written
        );
    }
}

criterion_group!(benches, write);
criterion_main!(benches);
