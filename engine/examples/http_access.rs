//! An HTTP access log: route, method, status, response bytes and latency.
//!
//! `cargo run --release -p keplordb --example http_access`

use keplordb::Schema;

#[derive(Debug, Schema)]
#[keplordb(id = 2)]
pub struct Access {
    #[dim(bloom, rollup)]
    pub route: String,
    #[dim(rollup)]
    pub method: String,
    #[dim]
    pub client: String,
    #[counter]
    pub bytes: u32,
    #[label]
    pub user_agent: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine: AccessEngine = Access::open(dir.path())?;
    let t0: i64 = 1_764_028_800_000_000_000;
    let routes = ["/api/orders", "/api/users", "/healthz", "/static/app.js"];
    let mut batch = Vec::new();
    for i in 0..5_000i64 {
        let route = routes[(i % 4) as usize];
        let status = match (route, i % 97) {
            ("/api/orders", 0) => 500,
            ("/api/users", 5) => 404,
            _ => 200,
        };
        batch.push(
            Access::new(t0 + i * 1_000_000_000)
                .id(format!("req-{i}"))
                .route(route)
                .method(if route.starts_with("/api") && i % 3 == 0 {
                    "POST"
                } else {
                    "GET"
                })
                .client(format!("10.0.{}.{}", i % 7, i % 250))
                .bytes(if route == "/static/app.js" {
                    184_320
                } else {
                    512 + (i % 1000) as u32
                })
                .status(status)
                .latency_ms((5 + i % 120) as u32)
                .user_agent("curl/8.5.0")
                .into_log_event(),
        );
        if batch.len() == 1000 {
            engine.append_batch(&batch)?;
            batch.clear();
        }
    }
    engine.flush()?;

    println!(
        "{:<16} {:>6} {:>12} {:>8} {:>8}",
        "route", "hits", "bytes", "avg ms", "errors"
    );
    for route in routes {
        let all = engine.aggregate(&Access::filter().route(route).into_filter())?;
        let errors = engine.aggregate(
            &Access::filter()
                .route(route)
                .status_range(500, 600)
                .into_filter(),
        )?;
        println!(
            "{route:<16} {:>6} {:>12} {:>8} {:>8}",
            all.event_count,
            all.counters[0],
            all.latency_ms_sum / all.event_count,
            errors.event_count
        );
        assert_eq!(all.event_count, 1250);
    }
    let server_errors = engine.aggregate(&Access::filter().status_range(500, 600).into_filter())?;
    assert_eq!(server_errors.event_count, 13);

    use AccessFields as _;
    let not_found =
        engine.query_recent(&Access::filter().status_range(404, 405).into_filter(), 5)?;
    println!("\nlatest 404s:");
    for e in &not_found {
        println!(
            "  {} {} {} from {}",
            e.id,
            e.method(),
            e.route(),
            e.client()
        );
        assert_eq!(e.status, 404);
    }
    assert_eq!(not_found.len(), 5);

    let day = keplordb::day_of(t0);
    let rollups = engine.query_rollups(day, day, &[Some("/api/orders"), None])?;
    println!("\n/api/orders by method today:");
    for (k, v) in &rollups {
        println!(
            "  {:<5} {:>5} requests {:>10} bytes",
            k.dims[1], v.event_count, v.counters[0]
        );
    }
    assert_eq!(rollups.len(), 2);
    assert_eq!(
        rollups.iter().map(|(_, v)| v.event_count).sum::<u64>(),
        1250
    );
    Ok(())
}
