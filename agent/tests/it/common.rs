//! A mock Kafka per test, producers, consumers and agent configs.

use std::path::Path;
use std::time::{Duration, Instant};

use keplor_agent::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A mock cluster owned by a hidden producer handle (so its group rebalance delay can be cut
/// from 3 s to 100 ms through librdkafka's C API).
pub struct Kafka {
    holder: BaseProducer,
    pub brokers: String,
}

impl Kafka {
    pub fn new(topics: &[(&str, i32)]) -> Kafka {
        let holder: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .expect("mock cluster");
        let brokers = {
            let mock = holder.client().mock_cluster().expect("mock cluster handle");
            // SAFETY: the native client pointer is valid while `holder` lives, and the mock
            // cluster it owns lives exactly as long; the call only sets an integer.
            unsafe {
                let mc =
                    rdkafka::bindings::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
                rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mc, 100);
            }
            for (t, n) in topics {
                mock.create_topic(t, *n, 1).expect("create topic");
            }
            mock.bootstrap_servers()
        };
        Kafka { holder, brokers }
    }

    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "2")
            .create()
            .expect("producer")
    }

    /// Produces `payloads` to `topic`, message `i` to partition `i % partitions`; waits for acks.
    pub fn produce(&self, topic: &str, partitions: i32, payloads: &[Vec<u8>]) {
        let p = self.producer();
        for (i, payload) in payloads.iter().enumerate() {
            let key = format!("k{i}");
            let mut rec = BaseRecord::to(topic)
                .key(&key)
                .payload(payload)
                .partition(i as i32 % partitions);
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("test"),
            }));
            let mut rec = Some(rec);
            while let Some(r) = rec.take() {
                if let Err((e, r)) = p.send(r) {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "{e}"
                    );
                    p.poll(Duration::from_millis(10));
                    rec = Some(r);
                }
            }
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The offsets committed by `group` for `topic`'s partitions (next offset to read).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    }

    /// Reads every message of `topic` from the beginning (until `n` arrived).
    pub fn read_all(
        &self,
        topic: &str,
        partitions: i32,
        n: usize,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("reader-{topic}"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        while out.len() < n && start.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(m.detach());
            }
        }
        out
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = self.holder.flush(Duration::from_millis(100));
    }
}

/// One JSON LLM call; `ts` is ms.
pub fn call(i: u64) -> Vec<u8> {
    format!(
        r#"{{"rid":"r{i}","user":"u{}","model":"m{}","usage":{{"tokens":{}}},"cost":{},"status":{},"ts":{},"note":"n{i}"}}"#,
        i % 7,
        i % 3,
        i % 100,
        i * 10,
        if i.is_multiple_of(10) { 500 } else { 200 },
        1_764_028_800_000 + i as i64
    )
    .into_bytes()
}

pub const SCHEMA: &str = r#"
[schema]
id = 1
dims = [{ name = "user", path = "/user", bloom = true, rollup = true }, { name = "model", path = "/model" }]
counters = [{ name = "tokens", path = "/usage/tokens" }]
labels = [{ name = "note", path = "/note" }]
metric = "/cost"
status = "/status"
ts = { source = "field", path = "/ts", unit = "ms" }
"#;

/// The test agents' configuration file: `data_dir` and `listen` as given.
pub fn config_text(brokers: &str, data_dir: &str, group: &str, listen: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["in"]
[kafka.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
"topic.metadata.refresh.interval.ms" = 1000
{SCHEMA}
[engine]
data_dir = "{data_dir}"
shards = 2
[batch]
linger = "20ms"
max_events = 300
[http]
listen = "{listen}"
[shutdown]
grace_period = "20s"
"#
    )
}

/// An agent config for `brokers`, storing in `dir`; `env` overrides any key.
pub fn config(brokers: &str, dir: &Path, group: &str, env: &[(&str, &str)]) -> Config {
    let text = config_text(brokers, &dir.display().to_string(), group, "127.0.0.1:0");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml(&text, env, Path::new(".")).expect("test config")
}

/// `call(i)` with its note padded by `pad` bytes (to fill disks and broker logs).
pub fn padded_call(i: u64, pad: usize) -> Vec<u8> {
    let note = format!("\"note\":\"{}", "x".repeat(pad));
    String::from_utf8(call(i))
        .unwrap()
        .replace("\"note\":\"", &note)
        .into_bytes()
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every stored event id, with how many times it is stored.
pub fn stored_ids(engine: &keplordb::DynEngine) -> std::collections::HashMap<String, u32> {
    let mut m = std::collections::HashMap::new();
    engine
        .scan_events(|e| {
            *m.entry(e.id).or_default() += 1;
        })
        .unwrap();
    m
}

/// A message's payload as text.
pub fn text(m: &rdkafka::message::OwnedMessage) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()
}

/// Logs to stderr when `KEPLOR_TEST_LOG` is set (e.g. `info`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("KEPLOR_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A local port free right now (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the Python `script` with `args` (DuckDB and pyarrow read what the agent wrote) and
/// parses the JSON it prints; panics with its stderr when it fails.
pub fn python_json<T: serde::de::DeserializeOwned>(
    script: &str,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> T {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
