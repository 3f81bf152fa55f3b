//! Per-request LLM traces: who called which model, tokens, cost and latency.
//!
//! `cargo run --release -p keplordb --example llm`

use keplordb::{Cursor, Engine, Schema};

#[derive(Debug, Schema)]
#[keplordb(id = 1)]
pub struct AiCall {
    #[dim(bloom, rollup)]
    pub user: String,
    #[dim]
    pub model: String,
    #[counter]
    pub tokens: u32,
    #[label]
    pub prompt_preview: String,
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const MODELS: [(&str, i64); 3] = [("gpt-4o", 5), ("claude-3.5", 3), ("llama-3-70b", 1)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let t0: i64 = 1_764_028_800_000_000_000; // 2025-11-25 00:00 UTC

    let engine: Engine<2, 1, 1> = Engine::open(AiCall::default_config(dir.path().join("keplor")))?;
    // The call from the product page, verbatim.
    engine.append(
        &AiCall::new(t0)
            .user("alice")
            .model("gpt-4o")
            .tokens(1200)
            .metric(5_000_000)
            .status(200)
            .prompt_preview("summarise the quarterly report")
            .into_log_event(),
    )?;
    // A day of traffic: 2,000 calls, cost in micro-dollars as the metric.
    let mut batch = Vec::new();
    for i in 1..2000i64 {
        let user = USERS[(i * 7 % 4) as usize];
        let (model, price) = MODELS[(i % 3) as usize];
        let tokens = 100 + (i * 37 % 2000) as u32;
        batch.push(
            AiCall::new(t0 + i * 40_000_000_000)
                .id(format!("call-{i:05}"))
                .user(user)
                .model(model)
                .tokens(tokens)
                .metric(tokens as i64 * price)
                .latency_ms(200 + (i % 900) as u32)
                .status(if i % 50 == 0 { 429 } else { 200 })
                .prompt_preview(format!("request {i}"))
                .into_log_event(),
        );
    }
    engine.append_batch(&batch)?;

    let t = engine.aggregate(&AiCall::filter().user("alice").into_filter())?;
    println!(
        "alice: {} calls, {} tokens, cost ${:.2}",
        t.event_count,
        t.counters[0],
        t.metric as f64 / 1e6
    );
    assert_eq!(t.event_count, 500);

    println!(
        "\n{:<12} {:>6} {:>10} {:>10} {:>8}",
        "model", "calls", "tokens", "cost $", "avg ms"
    );
    let mut all_calls = 0;
    for (model, _) in MODELS {
        let a = engine.aggregate(&AiCall::filter().model(model).into_filter())?;
        all_calls += a.event_count;
        println!(
            "{model:<12} {:>6} {:>10} {:>10.2} {:>8}",
            a.event_count,
            a.counters[0],
            a.metric as f64 / 1e6,
            a.latency_ms_sum / a.event_count.max(1)
        );
    }
    assert_eq!(all_calls, 2000);

    let throttled = engine.aggregate(&AiCall::filter().status_range(429, 430).into_filter())?;
    println!("\nthrottled (429): {}", throttled.event_count);
    assert_eq!(throttled.event_count, 39);

    // Newest first, two pages of bob's calls, read back through named getters.
    use AiCallFields as _;
    let page1 = engine.query_recent(&AiCall::filter().user("bob").into_filter(), 3)?;
    let page2 = engine.query_recent(
        &AiCall::filter()
            .user("bob")
            .after(Cursor::from(&page1[2]))
            .into_filter(),
        3,
    )?;
    println!("\nbob's latest calls:");
    for e in page1.iter().chain(&page2) {
        println!(
            "  {} {:<12} {:>5} tokens  {}",
            e.id,
            e.model(),
            e.tokens(),
            e.prompt_preview()
        );
        assert_eq!(e.user(), "bob");
    }
    assert!(page1[2].ts_ns > page2[0].ts_ns);
    let typed = AiCall::from_event(&page1[0]);
    assert_eq!(typed.user, "bob");

    let day = keplordb::day_of(t0);
    let rollups = engine.query_rollups(day, day + 1, &[None])?;
    println!("\ndaily rollup:");
    for (k, v) in &rollups {
        println!(
            "  day {} {:<6} {:>4} calls {:>8} tokens",
            k.day, k.dims[0], v.event_count, v.counters[0]
        );
    }
    assert_eq!(
        rollups.iter().map(|(_, v)| v.event_count).sum::<u64>(),
        2000
    );
    Ok(())
}
