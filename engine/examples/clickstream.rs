//! Clickstream: sessions and pages, time on page as latency, scroll depth as a counter.
//!
//! `cargo run --release -p keplordb --example clickstream`

use keplordb::{Cursor, Schema};

#[derive(Debug, Schema)]
#[keplordb(id = 6)]
pub struct Click {
    #[dim(bloom)]
    pub session: String,
    #[dim(rollup)]
    pub page: String,
    #[dim(rollup)]
    pub country: String,
    #[counter]
    pub scroll_pct: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine: ClickEngine = Click::open(dir.path())?;
    let t0: i64 = 1_764_028_800_000_000_000;
    let pages = ["/", "/pricing", "/docs", "/signup", "/blog/launch"];
    let countries = ["DE", "BR", "JP", "US"];
    let mut n = 0;
    for s in 0..400i64 {
        let session = format!("sess-{s:04}");
        let steps = 1 + s % 6;
        let events: Vec<_> = (0..steps)
            .map(|k| {
                // Many sessions start at the same second: pagination must not lose ties.
                Click::new(t0 + (s / 20) * 1_000_000_000)
                    .id(format!("{session}-{k}"))
                    .session(&*session)
                    .page(pages[((s + k) % 5) as usize])
                    .country(countries[(s % 4) as usize])
                    .scroll_pct((k * 20 % 101) as u32)
                    .latency_ms((1000 + k * 1500) as u32)
                    .into_log_event()
            })
            .collect();
        n += events.len();
        engine.append_batch(&events)?;
    }
    let all = engine.aggregate(&Click::filter().into_filter())?;
    assert_eq!(all.event_count, n as u64);

    println!("{:<14} {:>6} {:>12}", "page", "views", "avg seconds");
    for p in pages {
        let a = engine.aggregate(&Click::filter().page(p).into_filter())?;
        println!(
            "{p:<14} {:>6} {:>12.1}",
            a.event_count,
            a.latency_ms_sum as f64 / a.event_count as f64 / 1000.0
        );
    }

    use ClickFields as _;
    let journey = engine.query_recent(&Click::filter().session("sess-0011").into_filter(), 10)?;
    println!("\nsession sess-0011, newest first:");
    for c in &journey {
        println!("  {} {} scrolled {}%", c.id, c.page(), c.scroll_pct());
    }
    assert_eq!(journey.len(), 6);

    // Page through every click, 37 at a time: every event exactly once despite the ties.
    let mut filter = Click::filter().into_filter();
    let mut ids = std::collections::HashSet::new();
    loop {
        let page = engine.query_recent(&filter, 37)?;
        let Some(last) = page.last() else { break };
        filter.cursor = Some(Cursor::from(last));
        for c in &page {
            assert!(ids.insert(c.id.clone()), "{} seen twice", c.id);
        }
    }
    assert_eq!(ids.len(), n);
    println!("\npaged through {} clicks", ids.len());

    let day = keplordb::day_of(t0);
    let signups = engine.query_rollups(day, day, &[Some("/signup"), None])?;
    for (k, v) in &signups {
        println!("  /signup from {}: {}", k.dims[1], v.event_count);
    }
    assert_eq!(signups.len(), 4);
    Ok(())
}
