//! Agent throughput: messages/s from Kafka (librdkafka's mock cluster) to durable in the store
//! and committed, for JSON and Avro, compared in the same run with `kcat -C` reading the same
//! topic to /dev/null (the client's own ceiling); and produce-to-queryable latency at a steady
//! rate (p50/p99).
//!
//! `KEPLOR_BENCH_MESSAGES` sets the message count (default 200,000).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keplor_agent::agent::Agent;
use keplor_agent::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const AVSC: &str = r#"{"type":"record","name":"Call","fields":[
  {"name":"user","type":"string"},{"name":"model","type":"string"},
  {"name":"tokens","type":"long"},{"name":"cost","type":"long"},{"name":"ts","type":"long"}]}"#;

fn produce(brokers: &str, topic: &str, payloads: impl Iterator<Item = Vec<u8>>) -> usize {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut n = 0;
    for (i, payload) in payloads.enumerate() {
        let key = format!("k{i}");
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        n += 1;
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    n
}

fn config(brokers: &str, dir: &Path, topic: &str, avro: bool) -> Config {
    let (format, schema) = if avro {
        std::fs::write(dir.join("call.avsc"), AVSC).unwrap();
        (
            "kind = \"avro\"\nschema_file = \"call.avsc\"",
            r#"dims = [{ name = "user", path = "user", bloom = true, rollup = true }, { name = "model", path = "model" }]
counters = [{ name = "tokens", path = "tokens" }]
metric = "cost"
ts = { source = "field", path = "ts", unit = "ms" }"#,
        )
    } else {
        (
            "kind = \"json\"",
            r#"dims = [{ name = "user", path = "/user", bloom = true, rollup = true }, { name = "model", path = "/model" }]
counters = [{ name = "prompt_tokens", path = "/usage/prompt_tokens" }, { name = "completion_tokens", path = "/usage/completion_tokens" }]
labels = [{ name = "finish_reason", path = "/finish_reason" }]
metric = "/cost_micros"
latency_ms = "/latency_ms"
status = "/status"
ts = { source = "field", path = "/ts", unit = "ms" }"#,
        )
    };
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "bench-{topic}"
topics = ["{topic}"]
[kafka.properties]
"fetch.max.bytes" = 52428800
"queued.max.messages.kbytes" = 262144
[format]
{format}
[schema]
id = 1
{schema}
[engine]
data_dir = "{}"
shards = 4
[batch]
max_events = 10000
linger = "20ms"
[http]
enabled = false
"#,
        dir.join("data").display()
    );
    Config::from_toml(&text, [], dir).expect("bench config")
}

/// Time for the agent to make `n` messages durable and committed, from the moment its
/// partitions are assigned.
fn agent_rate(brokers: &str, topic: &str, n: usize, avro: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(brokers, dir.path(), topic, avro)).unwrap();
    while !agent.ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let verbose = std::env::var_os("KEPLOR_BENCH_VERBOSE").is_some();
    let mut next_report = Duration::ZERO;
    while agent.metrics.appended.load(Ordering::Relaxed) < n as u64 {
        if verbose && start.elapsed() >= next_report {
            eprintln!(
                "{topic}: {:>5} ms consumed {:>7} appended {:>7}",
                start.elapsed().as_millis(),
                agent.metrics.consumed.load(Ordering::Relaxed),
                agent.metrics.appended.load(Ordering::Relaxed)
            );
            next_report += Duration::from_millis(100);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let m = agent.metrics.partitions.lock().unwrap().clone();
            eprintln!(
                "stalled: engine holds {} events; {m:?}",
                agent.engine.total_events()
            );
            std::thread::sleep(Duration::from_secs(5));
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "agent stalled: {} appended, {} rejected, {} offsets skipped",
            agent.metrics.appended.load(Ordering::Relaxed),
            agent.metrics.rejected_total(),
            agent.metrics.offsets_skipped.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("KEPLOR_BENCH_VERBOSE").is_some() {
        for line in agent.metrics.render(&agent.engine).lines() {
            if line.starts_with("keplor_fsync_seconds_sum")
                || line.starts_with("keplor_fsync_seconds_count")
                || line.starts_with("keplor_append_seconds_sum")
                || line.starts_with("keplor_batch_events_sum")
                || line.starts_with("keplor_batch_events_count")
            {
                eprintln!("{topic}: {line}");
            }
        }
        eprintln!("{topic}: {secs:.2} s");
    }
    let _ = agent.stop();
    n as f64 / secs
}

/// The same consumer settings as the agent, polling and dropping every message: what
/// librdkafka alone delivers in this process.
fn consumer_rate(brokers: &str, topic: &str, n: usize) -> f64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "262144")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", "1000")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut got = 0usize;
    let mut start = None;
    while got < n {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            got += 1;
        }
    }
    n as f64 / start.map_or(1.0, |s| s.elapsed().as_secs_f64())
}

fn kcat_rate(brokers: &str, topic: &str, n: usize) -> Option<f64> {
    let start = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-b",
            brokers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status
        .success()
        .then(|| n as f64 / start.elapsed().as_secs_f64())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    if let Ok(filter) = std::env::var("KEPLOR_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    let n: usize = std::env::var("KEPLOR_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mock = MockCluster::new(1).expect("mock cluster");
    // librdkafka's mock keeps at most 5 MiB per partition (it drops older messages beyond
    // that): enough partitions keep every message of the run.
    let partitions = (n / 10_000).max(4) as i32;
    mock.create_topic("json", partitions, 1).unwrap();
    mock.create_topic("avro", partitions, 1).unwrap();
    mock.create_topic("latency", 4, 1).unwrap();
    let brokers = mock.bootstrap_servers();

    produce(
        &brokers,
        "json",
        (0..n as u64).map(|i| keplor_agent::demo::llm_call(i, 1_764_028_800_000).into_bytes()),
    );
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    produce(
        &brokers,
        "avro",
        (0..n as u64).map(|i| {
            let mut r = apache_avro::types::Record::new(&schema).unwrap();
            r.put("user", format!("user-{:03}", i % 200));
            r.put("model", format!("model-{}", i % 5));
            r.put("tokens", (i % 3000) as i64);
            r.put("cost", (i * 7) as i64);
            r.put("ts", 1_764_028_800_000i64 + i as i64);
            #[allow(deprecated)]
            let datum = apache_avro::to_avro_datum(&schema, r).unwrap();
            datum
        }),
    );

    let kcat_json = kcat_rate(&brokers, "json", n);
    let kcat_avro = kcat_rate(&brokers, "avro", n);
    let bare = consumer_rate(&brokers, "json", n);
    let json = agent_rate(&brokers, "json", n, false);
    let avro = agent_rate(&brokers, "avro", n, true);

    println!(
        "\nagent throughput, {n} messages, mock cluster -> durable in the store and committed"
    );
    println!(
        "{:<10} {:>14} {:>16} {:>8}",
        "format", "agent msg/s", "kcat -C msg/s", "ratio"
    );
    for (name, ours, kcat) in [("JSON", json, kcat_json), ("Avro", avro, kcat_avro)] {
        match kcat {
            Some(k) => println!("{name:<10} {ours:>14.0} {k:>16.0} {:>7.2}x", ours / k),
            None => println!("{name:<10} {ours:>14.0} {:>16} {:>8}", "(no kcat)", "-"),
        }
    }

    // Produce-to-queryable latency at a steady 2,000 msg/s for 5 s.
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&brokers, dir.path(), "latency", false)).unwrap();
    while !agent.ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let total = 10_000usize;
    let mut sent_at = Vec::with_capacity(total);
    let mut visible_at = vec![None; total];
    let start = Instant::now();
    let mut seen = 0usize;
    for i in 0..total {
        let due = start + Duration::from_micros(500 * i as u64);
        while Instant::now() < due {
            let now = agent.engine.total_events() as usize;
            for slot in visible_at.iter_mut().take(now.min(total)).skip(seen) {
                *slot = Some(Instant::now());
            }
            seen = seen.max(now.min(total));
            p.poll(Duration::ZERO);
            std::hint::spin_loop();
        }
        let payload = keplor_agent::demo::llm_call(i as u64, now_ms());
        let key = format!("k{i}");
        while p
            .send(BaseRecord::to("latency").key(&key).payload(&payload))
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
        sent_at.push(Instant::now());
    }
    let _ = p.flush(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < total && Instant::now() < deadline {
        let now = agent.engine.total_events() as usize;
        for slot in visible_at.iter_mut().take(now.min(total)).skip(seen) {
            *slot = Some(Instant::now());
        }
        seen = seen.max(now.min(total));
        std::thread::sleep(Duration::from_micros(200));
    }
    // Events become visible in any partition order; the k-th visible event is matched with
    // the k-th sent one, which bounds every message's latency from above on average.
    let mut lat: Vec<f64> = sent_at
        .iter()
        .zip(&visible_at)
        .filter_map(|(s, v)| v.map(|v| v.saturating_duration_since(*s).as_secs_f64() * 1e3))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "\nproduce-to-queryable at 2,000 msg/s (linger 20 ms): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {total} seen)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len()
    );
    let _ = agent.stop();
    println!("(librdkafka consumer alone in this process, polling and dropping: {bare:.0} msg/s)");
    drop(mock);
}
