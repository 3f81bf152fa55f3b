//! Poison messages under each policy, and Avro end to end.

use std::sync::atomic::Ordering;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use rdkafka::message::{Headers, Message};

use crate::common::*;

/// Every tenth message is not JSON, every tenth + 5 has a negative counter.
fn mixed(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| match i % 10 {
            3 => b"{not json".to_vec(),
            8 => br#"{"usage":{"tokens":-4},"ts":1}"#.to_vec(),
            _ => call(i),
        })
        .collect()
}

#[test]
fn poison_messages_go_to_the_dlq_with_headers() {
    let kafka = Kafka::new(&[("in", 2), ("dlq", 1)]);
    kafka.produce("in", 2, &mixed(400));
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(
        &kafka.brokers,
        dir.path(),
        "g-dlq",
        &[
            ("KEPLOR_ERRORS__POLICY", "dlq"),
            ("KEPLOR_ERRORS__DLQ_TOPIC", "dlq"),
        ],
    ))
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent.engine.total_events()
            == 320),
        "{}",
        agent.engine.total_events()
    );
    assert!(matches!(agent.stop(), Stopped::Clean));
    // The partition was never blocked, and its offset passed the poison messages.
    assert_eq!(kafka.committed("g-dlq", "in", 2), vec![200, 200]);
    let dead = kafka.read_all("dlq", 1, 80);
    assert_eq!(dead.len(), 80);
    for m in &dead {
        let h = m.headers().expect("headers");
        let get = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(get("keplor.source.topic").as_deref(), Some("in"));
        assert!(get("keplor.source.offset").unwrap().parse::<i64>().is_ok());
        let reason = get("keplor.error.reason").unwrap();
        assert!(reason == "decode" || reason == "field", "{reason}");
        assert!(!get("keplor.error").unwrap().is_empty());
        assert_eq!(
            get("origin").as_deref(),
            Some("test"),
            "the original headers are kept"
        );
        let body = text(m);
        assert!(body == "{not json" || body.contains("-4"), "{body}");
    }
}

#[test]
fn skip_counts_and_moves_on() {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &mixed(200));
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g-skip", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 160));
    assert!(wait_until(Duration::from_secs(5), || agent
        .metrics
        .rejected_total()
        == 40));
    let http = agent.http_addr().unwrap();
    let metrics: String = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("keplor_messages_rejected_total{reason=\"decode\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("keplor_messages_rejected_total{reason=\"field\"} 20"));
    assert!(matches!(agent.stop(), Stopped::Clean));
    assert_eq!(kafka.committed("g-skip", "in", 2), vec![100, 100]);
}

#[test]
fn stop_policy_stops_after_committing_what_came_before() {
    init_logs();
    let kafka = Kafka::new(&[("in", 1)]);
    let mut payloads: Vec<Vec<u8>> = (0..50).map(call).collect();
    payloads.push(b"garbage".to_vec());
    payloads.extend((51..60).map(call));
    kafka.produce("in", 1, &payloads);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(
        &kafka.brokers,
        dir.path(),
        "g-stop",
        &[("KEPLOR_ERRORS__POLICY", "stop")],
    ))
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent.finished()),
        "the agent stops on the poison message"
    );
    let engine = agent.engine.clone();
    match agent.stop() {
        Stopped::Failed(why) => assert!(why.contains("in/0@50"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.total_events(), 50);
    assert_eq!(
        kafka.committed("g-stop", "in", 1),
        vec![50],
        "committed up to the poison message, not past it"
    );
}

const AVSC: &str = r#"{"type":"record","name":"Call","fields":[
  {"name":"user","type":"string"},{"name":"tokens","type":"long"},{"name":"ts","type":"long"},
  {"name":"meta","type":{"type":"record","name":"Meta","fields":[{"name":"model","type":["null","string"]}]}}]}"#;

fn avro_call(schema: &apache_avro::Schema, i: u64) -> Vec<u8> {
    use apache_avro::types::{Record, Value};
    let meta_schema = match schema {
        apache_avro::Schema::Record(r) => r.fields[3].schema.clone(),
        _ => unreachable!(),
    };
    let mut meta = Record::new(&meta_schema).unwrap();
    meta.put(
        "model",
        Value::Union(1, Box::new(Value::String(format!("m{}", i % 3)))),
    );
    let mut r = Record::new(schema).unwrap();
    r.put("user", format!("u{}", i % 5));
    r.put("tokens", i as i64);
    r.put("ts", 1_764_028_800_000i64 + i as i64);
    r.put("meta", meta);
    #[allow(deprecated)]
    let datum = apache_avro::to_avro_datum(schema, r).unwrap();
    datum
}

fn avro_config(
    brokers: &str,
    dir: &std::path::Path,
    group: &str,
    format: &str,
) -> keplor_agent::config::Config {
    std::fs::write(dir.join("call.avsc"), AVSC).unwrap();
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["in"]
[format]
{format}
[schema]
id = 4
dims = [{{ name = "user", path = "user", bloom = true, rollup = true }}, {{ name = "model", path = "meta.model" }}]
counters = [{{ name = "tokens", path = "tokens" }}]
ts = {{ source = "field", path = "ts", unit = "ms" }}
[engine]
data_dir = "{}"
[http]
enabled = false
"#,
        dir.join("data").display()
    );
    keplor_agent::config::Config::from_toml(&text, [], dir).unwrap()
}

#[test]
fn avro_plain_and_confluent_end_to_end() {
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    for (format, frame) in [
        ("kind = \"avro\"\nschema_file = \"call.avsc\"", false),
        (
            "kind = \"avro-confluent\"\nschemas = { 42 = \"call.avsc\" }",
            true,
        ),
    ] {
        let kafka = Kafka::new(&[("in", 2)]);
        let payloads: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let datum = avro_call(&schema, i);
                if frame {
                    let mut v = vec![0, 0, 0, 0, 42];
                    v.extend(datum);
                    v
                } else {
                    datum
                }
            })
            .collect();
        kafka.produce("in", 2, &payloads);
        let dir = tempfile::tempdir().unwrap();
        let agent =
            Agent::start(avro_config(&kafka.brokers, dir.path(), "g-avro", format)).unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || agent.engine.total_events()
                == 300),
            "{format}"
        );
        let f = keplordb::DynFilter {
            dims: vec![Some("u1".into()), Some("m2".into())],
            ..Default::default()
        };
        let a = agent.engine.aggregate(&f).unwrap();
        let want: Vec<u64> = (0..300).filter(|i| i % 5 == 1 && i % 3 == 2).collect();
        assert_eq!(a.event_count, want.len() as u64);
        assert_eq!(a.counters[0], want.iter().sum::<u64>());
        assert!(matches!(agent.stop(), Stopped::Clean));
    }
}

#[test]
fn offsets_the_broker_dropped_are_counted() {
    let kafka = Kafka::new(&[("in", 1)]);
    kafka.produce("in", 1, &(0..100).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g-gap", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 100));
    assert!(matches!(agent.stop(), Stopped::Clean));
    // While the agent is down, retention drops what it has not read yet: librdkafka's mock
    // keeps 5 MiB per partition, so 8 MiB more pushes the log start past offset 100.
    let payloads: Vec<Vec<u8>> = (100..8100).map(|i| padded_call(i, 1000)).collect();
    kafka.produce("in", 1, &payloads);
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g-gap", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .durable_checkpoint("in/0")
        == Some(8099)));
    let stored = agent.engine.total_events();
    let skipped = agent
        .metrics
        .offsets_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        skipped > 0 && stored < 8100,
        "stored {stored}, skipped {skipped}"
    );
    assert_eq!(
        stored + skipped,
        8100,
        "every offset is stored or counted as skipped"
    );
    assert!(matches!(agent.stop(), Stopped::Clean));
}

/// A registry on `listener` that answers `GET /schemas/ids/<id>` with `AVSC` until dropped.
fn serve_registry(listener: std::net::TcpListener) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                continue;
            }
            let body = serde_json::json!({ "schema": AVSC }).to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

#[test]
fn a_registry_outage_pauses_reports_stuck_and_resumes_exactly_once() {
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    let kafka = Kafka::new(&[("in", 2)]);
    let payloads: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let mut v = vec![0, 0, 0, 0, 7];
            v.extend(avro_call(&schema, i));
            v
        })
        .collect();
    kafka.produce("in", 2, &payloads);
    // The registry's port is reserved but nothing answers yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let format = format!("kind = \"avro-confluent\"\nregistry_url = \"http://127.0.0.1:{port}\"");
    let mut config = avro_config(&kafka.brokers, dir.path(), "g-reg", &format);
    config.errors.stuck_after = Duration::from_secs(2);
    config.errors.retry_backoff = Duration::from_millis(300);
    let agent = Agent::start(config).unwrap();
    // Paused, not poisoned and not stopped: nothing stored, no DLQ, the agent keeps running,
    // and once nothing moves for `stuck_after` it is not ready.
    assert!(wait_until(Duration::from_secs(30), || agent
        .metrics
        .consumer_errors("registry")
        > 0));
    assert!(
        wait_until(Duration::from_secs(20), || !agent
            .ready
            .load(Ordering::Acquire)),
        "a partition that cannot progress turns readiness false"
    );
    assert_eq!(agent.engine.total_events(), 0);
    assert_eq!(
        agent.metrics.rejected_total(),
        0,
        "no good message is poison"
    );
    assert!(!agent.finished(), "an outage does not stop the agent");
    // The registry comes back: everything arrives once and readiness returns.
    let registry = serve_registry(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    assert!(
        wait_until(Duration::from_secs(30), || agent.engine.total_events()
            == 200),
        "stored {}",
        agent.engine.total_events()
    );
    assert!(wait_until(Duration::from_secs(10), || agent
        .ready
        .load(Ordering::Acquire)));
    std::thread::sleep(Duration::from_millis(300));
    let ids = stored_ids(&agent.engine);
    assert_eq!(ids.len(), 200);
    assert!(ids.values().all(|&c| c == 1));
    assert!(matches!(agent.stop(), Stopped::Clean));
    drop(registry);
}

#[test]
fn kafka_headers_keys_and_partitions_land_in_columns() {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..50).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &kafka.brokers,
        dir.path(),
        "g-meta",
        &[
            (
                "KEPLOR_SCHEMA__LABELS",
                r#"[{ name = "origin", path = "$kafka.header.origin" }, { name = "key", path = "$kafka.key" }]"#,
            ),
            (
                "KEPLOR_SCHEMA__COUNTERS",
                r#"[{ name = "partition", path = "$kafka.partition" }]"#,
            ),
        ],
    );
    let agent = Agent::start(config).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 50));
    let mut seen = 0;
    agent
        .engine
        .scan_events(|e| {
            assert_eq!(e.labels[0], "test", "the producer's `origin` header");
            let i: u64 = e.labels[1].trim_start_matches('k').parse().unwrap();
            assert_eq!(
                e.counters[0] as u64,
                i % 2,
                "the partition it was produced to"
            );
            seen += 1;
        })
        .unwrap();
    assert_eq!(seen, 50);
    assert!(matches!(agent.stop(), Stopped::Clean));
}

#[test]
fn a_topic_pattern_subscribes_to_every_matching_topic() {
    let kafka = Kafka::new(&[("orders-eu", 2), ("orders-us", 1), ("other", 1)]);
    kafka.produce("orders-eu", 2, &(0..40).map(call).collect::<Vec<_>>());
    kafka.produce("orders-us", 1, &(40..60).map(call).collect::<Vec<_>>());
    kafka.produce("other", 1, &(60..70).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &kafka.brokers,
        dir.path(),
        "g-pattern",
        &[
            ("KEPLOR_KAFKA__TOPICS", r#"["^orders-.*"]"#),
            (
                "KEPLOR_SCHEMA__LABELS",
                r#"[{ name = "topic", path = "$kafka.topic" }]"#,
            ),
        ],
    );
    let agent = Agent::start(config).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 60));
    std::thread::sleep(Duration::from_millis(500));
    let mut per_topic = std::collections::BTreeMap::new();
    agent
        .engine
        .scan_events(|e| *per_topic.entry(e.labels[0].clone()).or_insert(0) += 1)
        .unwrap();
    assert_eq!(
        per_topic,
        std::collections::BTreeMap::from([
            ("orders-eu".to_string(), 40),
            ("orders-us".to_string(), 20)
        ])
    );
    assert!(matches!(agent.stop(), Stopped::Clean));
}
