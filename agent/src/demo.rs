//! `keplor-agent demo`: the whole pipeline on an embedded default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use keplordb::DynEngine;
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

/// Runs the demo: a mock Kafka, the agent on the embedded configuration, a producer of
/// synthetic LLM calls at `rate` per second for `duration`, then a summary of what was stored.
/// With `serve_until`, the API and the console then stay up until that flag is set.
pub fn run(
    duration: Duration,
    rate: u64,
    listen: SocketAddr,
    data_dir: Option<PathBuf>,
    serve_until: Option<Arc<AtomicBool>>,
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

    let agent = Agent::start(demo_config(&brokers, &dir, listen)?)?;
    println!("while it runs, try:  keplor-agent query --endpoint http://{listen} aggregate --where model=gpt-4o");
    println!("                or open the console: http://{listen}/ui");
    let mut calls = Calls::start(&brokers, rate)?;
    show_progress(&agent, &calls, duration);
    let produced = calls.stop();
    wait_for_sink(&agent, produced);
    print_costs(&agent.engine)?;
    print_samples(&agent.engine)?;
    if let Some(flag) = serve_until {
        println!("serving the API and the console at http://{listen}/ui until Ctrl-C");
        while !flag.load(Ordering::Acquire) && !agent.finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// The embedded configuration, with the environment's `KEPLOR_<SECTION>__<KEY>` overrides as
/// for `run` (e.g. `KEPLOR_HTTP__AUTH_TOKEN` to try the console's sign-in), then the mock
/// cluster's brokers, the data directory and the HTTP address filled in.
fn demo_config(brokers: &str, dir: &Path, listen: SocketAddr) -> anyhow::Result<Config> {
    let mut config = Config::from_toml(DEMO_CONFIG, std::env::vars(), Path::new("."))?;
    config.kafka.brokers = vec![brokers.to_string()];
    config.engine.data_dir = dir.to_path_buf();
    config.http.listen = listen;
    Ok(config)
}

/// The producer of synthetic LLM calls and the thread that feeds it.
struct Calls {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    producer: Arc<ThreadedProducer<DefaultProducerContext>>,
    thread: Option<JoinHandle<()>>,
}

impl Calls {
    /// Starts producing calls to `llm-calls` at `rate` per second.
    fn start(brokers: &str, rate: u64) -> anyhow::Result<Calls> {
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create()?;
        let producer = Arc::new(producer);
        let thread = {
            let (stop, produced, producer) = (stop.clone(), produced.clone(), producer.clone());
            std::thread::spawn(move || produce(&producer, rate, &stop, &produced))
        };
        Ok(Calls {
            stop,
            produced,
            producer,
            thread: Some(thread),
        })
    }

    /// Calls produced so far.
    fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Stops the thread and flushes the producer; returns the number of calls produced.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.producer.flush(Duration::from_secs(5));
        self.produced()
    }
}

/// Sends call after call, keeping to `rate` per second since the start, until `stop`.
fn produce(
    producer: &ThreadedProducer<DefaultProducerContext>,
    rate: u64,
    stop: &AtomicBool,
    produced: &AtomicU64,
) {
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
}

/// Prints produced and stored counts every second, for `duration` or until the agent stops.
fn show_progress(agent: &Agent, calls: &Calls, duration: Duration) {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < duration && !agent.finished() {
        std::thread::sleep(Duration::from_secs(1));
        let appended = agent.metrics.appended.load(Ordering::Relaxed);
        let p = calls.produced();
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
}

/// Lets the sink catch up with the last messages: waits (at most 10 s) until `target` events
/// are stored.
fn wait_for_sink(agent: &Agent, target: u64) {
    let wait = Instant::now();
    while agent.metrics.appended.load(Ordering::Relaxed) < target
        && wait.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints the calls stored and their cost, in total and per model.
fn print_costs(engine: &DynEngine) -> anyhow::Result<()> {
    let all = api::aggregate(engine, &Params::default()).map_err(plain)?;
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
        let p = Params::parse([("dim.model", model)]).map_err(plain)?;
        let a = api::aggregate(engine, &p).map_err(plain)?;
        let tokens = a.counters.values().sum::<u64>();
        println!(
            "{model:<14} {:>8} {:>12} {:>10.2}",
            a.event_count,
            tokens,
            a.metric as f64 / 1e6
        );
    }
    Ok(())
}

/// Prints the number of server errors and the latest calls of one user.
fn print_samples(engine: &DynEngine) -> anyhow::Result<()> {
    let errors = api::aggregate(
        engine,
        &Params::parse([("status_min", "500")]).map_err(plain)?,
    )
    .map_err(plain)?;
    println!("\nserver errors (status >= 500): {}", errors.event_count);
    let recent = api::events(
        engine,
        &Params::parse([("limit", "3"), ("dim.user", "user-007")]).map_err(plain)?,
        &api::Caps::NONE,
        &api::Cancel::default(),
    )
    .map_err(plain)?;
    println!("\nlatest calls of user-007:");
    for e in &recent.events {
        println!(
            "  {} {} {} tokens={:?}",
            e.id, e.dims["model"], e.labels["finish_reason"], e.counters
        );
    }
    Ok(())
}

/// An error of the query API as a plain message.
fn plain(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("keplor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn data_dir_is_temp(dir: &Path, tmp: &Path) -> bool {
    dir == tmp
}
