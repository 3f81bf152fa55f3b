//! `keplor-agent demo`: the whole pipeline on an embedded default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::agent::Agent;
use crate::api::{self, Params};
use crate::config::Config;

/// The embedded default configuration (brokers and data dir are filled in at run time).
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

const USERS: usize = 200;
const MODELS: [(&str, &str, u64); 5] = [
    ("gpt-4o", "openai", 5),
    ("gpt-4o-mini", "openai", 1),
    ("claude-sonnet", "anthropic", 6),
    ("claude-haiku", "anthropic", 2),
    ("llama-3-70b", "meta", 1),
];

/// One synthetic LLM call as JSON.
pub fn llm_call(i: u64, now_ms: i64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xD6E8_FEB8_6659_FD93;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (model, provider, price) = MODELS[(next() % MODELS.len() as u64) as usize];
    let user = format!("user-{:03}", next() % USERS as u64);
    let prompt = 50 + next() % 2000;
    let completion = 10 + next() % 800;
    let status = match next() % 100 {
        0 => 500,
        1..=2 => 429,
        _ => 200,
    };
    format!(
        r#"{{"request_id":"req-{i}","ts":{now_ms},"user":"{user}","model":"{model}","provider":"{provider}","usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion}}},"cost_micros":{},"latency_ms":{},"ttft_ms":{},"status":{status},"finish_reason":"{}"}}"#,
        (prompt + completion) * price,
        200 + next() % 3000,
        50 + next() % 400,
        if status == 200 { "stop" } else { "error" },
    )
}

pub fn run(
    duration: Duration,
    rate: u64,
    listen: SocketAddr,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mock =
        MockCluster::new(1).context("starting the in-process Kafka (librdkafka mock cluster)")?;
    mock.create_topic("llm-calls", 4, 1)
        .context("creating the topic")?;
    let brokers = mock.bootstrap_servers();
    let tmp = tempfile_dir()?;
    let dir = data_dir.unwrap_or_else(|| tmp.clone());
    println!(
        "keplor-agent demo: Kafka (mock) at {brokers}, store at {}, API at http://{listen}",
        dir.display()
    );

    let mut config = Config::from_toml(DEMO_CONFIG, [], std::path::Path::new("."))?;
    config.kafka.brokers = vec![brokers.clone()];
    config.engine.data_dir = dir.clone();
    config.http.listen = listen;
    let agent = Agent::start(config)?;
    println!("while it runs, try:  keplor-agent query --endpoint http://{listen} aggregate --where model=gpt-4o");

    // The producer: synthetic LLM calls at `rate` per second.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let producer = Arc::new(producer);
    let gen = {
        let (stop, produced, producer) = (stop.clone(), produced.clone(), producer.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if i >= due {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let payload = llm_call(i, now_ms);
                let key = format!("k{}", i % 64);
                if producer
                    .send(BaseRecord::to("llm-calls").key(&key).payload(&payload))
                    .is_ok()
                {
                    produced.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };

    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < duration && !agent.finished() {
        std::thread::sleep(Duration::from_secs(1));
        let appended = agent.metrics.appended.load(Ordering::Relaxed);
        let p = produced.load(Ordering::Relaxed);
        println!(
            "[{:>3}s] produced {:>8}  stored {:>8}  (+{:>6}/s)  rejected {}  segments {}",
            start.elapsed().as_secs(),
            p,
            appended,
            appended - last,
            agent.metrics.rejected_total(),
            agent.engine.stats().segments,
        );
        last = appended;
    }
    stop.store(true, Ordering::Release);
    let _ = gen.join();
    let _ = producer.flush(Duration::from_secs(5));
    // Let the sink catch up with the last messages.
    let target = produced.load(Ordering::Relaxed);
    let wait = Instant::now();
    while agent.metrics.appended.load(Ordering::Relaxed) < target
        && wait.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    let engine = &agent.engine;
    let all = api::aggregate(engine, &Params::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "\nstored {} LLM calls, total cost ${:.2}",
        all.event_count,
        all.metric as f64 / 1e6
    );
    println!(
        "\n{:<14} {:>8} {:>12} {:>10}",
        "model", "calls", "tokens", "cost $"
    );
    for (model, _, _) in MODELS {
        let p = Params::parse([("dim.model", model)]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let a = api::aggregate(engine, &p).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tokens = a.counters.values().sum::<u64>();
        println!(
            "{model:<14} {:>8} {:>12} {:>10.2}",
            a.event_count,
            tokens,
            a.metric as f64 / 1e6
        );
    }
    let errors = api::aggregate(
        engine,
        &Params::parse([("status_min", "500")]).map_err(|e| anyhow::anyhow!("{e}"))?,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("\nserver errors (status >= 500): {}", errors.event_count);
    let recent = api::events(
        engine,
        &Params::parse([("limit", "3"), ("dim.user", "user-007")])
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        &api::Caps::NONE,
        &api::Cancel::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("\nlatest calls of user-007:");
    for e in &recent.events {
        println!(
            "  {} {} {} tokens={:?}",
            e.id, e.dims["model"], e.labels["finish_reason"], e.counters
        );
    }

    let outcome = agent.stop();
    drop(mock);
    if data_dir_is_temp(&dir, &tmp) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match outcome {
        crate::sink::Stopped::Clean => Ok(()),
        crate::sink::Stopped::Failed(why) => anyhow::bail!(why),
        crate::sink::Stopped::Crashed => anyhow::bail!("crashed"),
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("keplor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn data_dir_is_temp(dir: &std::path::Path, tmp: &std::path::Path) -> bool {
    dir == tmp
}
