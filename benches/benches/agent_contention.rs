//! Ingestion under query load: the agent's ingest rate (mock cluster → durable in the store and
//! committed) while `KEPLOR_BENCH_CLIENTS` (16) HTTP clients run filtered aggregates against
//! the same agent without pause, next to its rate with no queries, in the same run. The filter
//! (`status_min=500`) makes every segment a scan, so the queries keep every core busy.
//!
//! Before the engine owned its query pool, queries ran on rayon's global pool, which the agent's
//! mapping stage used too. `KEPLOR_BENCH_MESSAGES` (default 200,000) messages per phase;
//! `KEPLOR_BENCH_PREFILL` (default 1,000,000) events ingested first so that queries have
//! something to scan.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keplor_agent::agent::Agent;
use keplor_agent::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn produce(brokers: &str, topic: &str, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for i in 0..n as u64 {
        let payload = keplor_agent::demo::llm_call(i, 1_764_028_800_000 + i as i64);
        let key = format!("k{i}");
        while p
            .send(BaseRecord::to(topic).key(&key).payload(&payload))
            .is_err()
        {
            p.poll(Duration::from_millis(5));
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

fn config(brokers: &str, dir: &Path, topic: &str) -> Config {
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "contention-{topic}"
topics = ["{topic}"]
[kafka.properties]
"fetch.max.bytes" = 52428800
"queued.max.messages.kbytes" = 262144
[format]
kind = "json"
[schema]
id = 1
dims = [{{ name = "user", path = "/user", bloom = true, rollup = true }}, {{ name = "model", path = "/model" }}]
counters = [{{ name = "prompt_tokens", path = "/usage/prompt_tokens" }}]
metric = "/cost_micros"
status = "/status"
ts = {{ source = "field", path = "/ts", unit = "ms" }}
[engine]
data_dir = "{}"
shards = 4
[batch]
max_events = 10000
linger = "20ms"
[http]
listen = "127.0.0.1:0"
"#,
        dir.join("data").display()
    );
    Config::from_toml(&text, [], dir).expect("bench config")
}

/// One HTTP/1.1 GET on a fresh connection; true on a 200.
fn get(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// Runs an agent on `topic` until `n` messages are appended; messages per second from its
/// assignment on, and the queries per second `clients` answered meanwhile.
fn ingest(brokers: &str, dir: &Path, topic: &str, n: usize, clients: usize) -> (f64, f64) {
    let agent = Agent::start(config(brokers, dir, topic)).unwrap();
    while !agent.ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let addr = agent.http_addr().expect("http address");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(addr, "/v1/aggregate?status_min=500") {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let before = agent.metrics.appended.load(Ordering::Relaxed);
    while agent.metrics.appended.load(Ordering::Relaxed) - before < n as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "agent stalled at {} appended",
            agent.metrics.appended.load(Ordering::Relaxed) - before
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = agent.stop();
    (
        n as f64 / secs,
        answered.load(Ordering::Relaxed) as f64 / secs,
    )
}

fn main() {
    let n = env_usize("KEPLOR_BENCH_MESSAGES", 200_000);
    let prefill = env_usize("KEPLOR_BENCH_PREFILL", 1_000_000);
    let clients = env_usize("KEPLOR_BENCH_CLIENTS", 16);
    let mock = MockCluster::new(1).expect("mock cluster");
    // The mock keeps at most 5 MiB per partition: enough partitions keep every message.
    for (topic, count) in [("prefill", prefill), ("idle", n), ("loaded", n)] {
        mock.create_topic(topic, (count / 10_000).max(4) as i32, 1)
            .unwrap();
    }
    let brokers = mock.bootstrap_servers();
    for (topic, count) in [("prefill", prefill), ("idle", n), ("loaded", n)] {
        produce(&brokers, topic, count);
    }
    let dir = tempfile::tempdir().unwrap();
    ingest(&brokers, dir.path(), "prefill", prefill, 0);
    let (idle, _) = ingest(&brokers, dir.path(), "idle", n, 0);
    let (loaded, qps) = ingest(&brokers, dir.path(), "loaded", n, clients);
    println!("\ningestion under query load, {n} messages per phase, {prefill} events stored first");
    println!("{:<28} {:>12} {:>12}", "phase", "ingest msg/s", "queries/s");
    println!("{:<28} {idle:>12.0} {:>12}", "no queries", "-");
    println!(
        "{:<28} {loaded:>12.0} {qps:>12.0}",
        format!("{clients} clients aggregating")
    );
    println!(
        "ingest rate under load: {:.2}x of the rate without queries",
        loaded / idle
    );
}
