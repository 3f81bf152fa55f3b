//! Device readings: temperature (milli-degrees, as the metric), battery and signal counters.
//!
//! `cargo run --release -p keplordb --example iot`

use keplordb::{Schema, NANOS_PER_DAY};

#[derive(Debug, Schema)]
#[keplordb(id = 4)]
pub struct Reading {
    #[dim(bloom)]
    pub device: String,
    #[dim(rollup)]
    pub site: String,
    #[counter]
    pub battery_pct: u32,
    #[counter]
    pub rssi_abs: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Reading::default_config(dir.path().into());
    config.wal_max_events = 4_096; // many small segments, pruned by time below
    let engine: ReadingEngine = keplordb::Engine::open(config)?;
    let t0: i64 = 1_764_028_800_000_000_000;
    let sites = ["berlin", "lagos", "osaka"];
    let mut batch = Vec::new();
    // Three days of readings from 30 devices, one a minute.
    for minute in 0..(3 * 24 * 60i64) {
        for d in 0..30i64 {
            let temp_milli =
                18_000 + (minute % 600) * 10 + d * 100 - if d == 7 { 25_000 } else { 0 };
            batch.push(
                Reading::new(t0 + minute * 60_000_000_000 + d)
                    .id(format!("dev-{d:02}/{minute}"))
                    .device(format!("dev-{d:02}"))
                    .site(sites[(d % 3) as usize])
                    .battery_pct((100 - minute * 100 / (3 * 24 * 60)) as u32)
                    .rssi_abs((60 + d) as u32)
                    .metric(temp_milli)
                    .into_log_event(),
            );
        }
        if batch.len() >= 3000 {
            engine.append_batch(&batch)?;
            batch.clear();
        }
    }
    engine.append_batch(&batch)?;
    let total = engine.aggregate(&Reading::filter().into_filter())?;
    assert_eq!(total.event_count, 3 * 24 * 60 * 30);
    println!(
        "{} readings in {} segments",
        total.event_count,
        engine.stats().segments
    );

    println!("\n{:<8} {:>8} {:>10}", "day", "readings", "avg °C");
    for day in 0..3 {
        let f = Reading::filter()
            .from_ts(t0 + day * NANOS_PER_DAY)
            .to_ts(t0 + (day + 1) * NANOS_PER_DAY);
        let a = engine.aggregate(&f.into_filter())?;
        println!(
            "{:<8} {:>8} {:>10.2}",
            day,
            a.event_count,
            a.metric as f64 / a.event_count as f64 / 1000.0
        );
        assert_eq!(a.event_count, 24 * 60 * 30);
    }
    let cold = engine.aggregate(&Reading::filter().device("dev-07").into_filter())?;
    let avg = cold.metric as f64 / cold.event_count as f64 / 1000.0;
    println!("\ndev-07 runs cold: {avg:.2} °C on average");
    assert!(avg < 0.0);

    use ReadingFields as _;
    let last = engine.query_recent(&Reading::filter().device("dev-29").into_filter(), 3)?;
    for r in &last {
        println!(
            "  dev-29 at {} : {:.1} °C, battery {}%",
            r.ts_ns,
            r.metric as f64 / 1000.0,
            r.battery_pct()
        );
    }
    assert_eq!(last[0].id, format!("dev-29/{}", 3 * 24 * 60 - 1));

    // Retention: drop the first day.
    let gc = engine.gc(t0 + NANOS_PER_DAY)?;
    println!(
        "\ngc: {} segments, {} readings dropped",
        gc.segments_deleted, gc.events_deleted
    );
    assert!(gc.segments_deleted > 0);
    let rollups = engine.query_rollups(
        keplordb::day_of(t0),
        keplordb::day_of(t0) + 2,
        &[Some("lagos")],
    )?;
    for (k, v) in &rollups {
        println!("  {} day {}: {} readings", k.dims[0], k.day, v.event_count);
    }
    assert_eq!(
        rollups.last().map(|(_, v)| v.event_count),
        Some(24 * 60 * 10)
    );
    Ok(())
}
