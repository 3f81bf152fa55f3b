//! Payments: merchant, currency and method, the amount in minor units as the metric.
//!
//! `cargo run --release -p keplordb --example payments`

use keplordb::Schema;

#[derive(Debug, Schema)]
#[keplordb(id = 5)]
pub struct Payment {
    #[dim(bloom, rollup)]
    pub merchant: String,
    #[dim(rollup)]
    pub currency: String,
    #[dim]
    pub method: String,
    #[counter]
    pub items: u32,
    #[label]
    pub reference: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine: PaymentEngine = Payment::open(dir.path())?;
    let t0: i64 = 1_764_028_800_000_000_000;
    let merchants = ["acme-books", "kaffee-haus", "nordic-rail"];
    let currencies = ["EUR", "USD", "SEK"];
    let mut batch = Vec::new();
    for i in 0..3_000i64 {
        let m = merchants[(i % 3) as usize];
        let refunded = i % 40 == 0;
        batch.push(
            Payment::new(t0 + i * 10_000_000_000)
                .id(format!("pay-{i:05}"))
                .merchant(m)
                .currency(currencies[(i / 3 % 3) as usize])
                .method(if i % 4 == 0 { "card" } else { "wallet" })
                .items(1 + (i % 5) as u32)
                .metric(if refunded { -(1_000 + i) } else { 1_000 + i })
                .status(if refunded { 409 } else { 200 })
                .reference(format!("ORD-{:06}", 500_000 + i))
                .into_log_event(),
        );
    }
    engine.append_batch_durable(&batch)?;

    println!(
        "{:<12} {:>5} {:>12} {:>9}",
        "merchant", "txns", "net", "refunds"
    );
    let mut net_all = 0;
    for m in merchants {
        let a = engine.aggregate(&Payment::filter().merchant(m).into_filter())?;
        let r = engine.aggregate(
            &Payment::filter()
                .merchant(m)
                .status_range(409, 410)
                .into_filter(),
        )?;
        println!(
            "{m:<12} {:>5} {:>12.2} {:>9}",
            a.event_count,
            a.metric as f64 / 100.0,
            r.event_count
        );
        net_all += a.metric;
    }
    let expect: i64 = (0..3000i64)
        .map(|i| if i % 40 == 0 { -(1_000 + i) } else { 1_000 + i })
        .sum();
    assert_eq!(net_all, expect);

    let day = keplordb::day_of(t0);
    println!("\nvolume by merchant and currency:");
    let rollups = engine.query_rollups(day, day + 1, &[Some("nordic-rail")])?;
    for (k, v) in &rollups {
        println!(
            "  {} {} {:>5} txns {:>10.2}",
            k.dims[0],
            k.dims[1],
            v.event_count,
            v.metric as f64 / 100.0
        );
    }
    assert_eq!(
        rollups.iter().map(|(_, v)| v.event_count).sum::<u64>(),
        1000
    );

    use PaymentFields as _;
    let refunds =
        engine.query_recent(&Payment::filter().status_range(409, 410).into_filter(), 3)?;
    println!("\nlatest refunds:");
    for p in &refunds {
        println!(
            "  {} {} {} {:.2}",
            p.id,
            p.merchant(),
            p.reference(),
            p.metric as f64 / 100.0
        );
        assert!(p.metric < 0);
    }
    let one = engine.get_event("pay-01234")?.expect("payment stored");
    assert_eq!(one.reference(), "ORD-501234");
    Ok(())
}
