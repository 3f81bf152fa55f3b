//! The agent binary as an operator runs it: SIGTERM stops it cleanly, SIGKILL loses nothing;
//! and producers that are not ours (kcat, kafka-python) feed it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keplordb::DynEngine;

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(
    dir: &std::path::Path,
    brokers: &str,
    group: &str,
    port: u16,
) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = config_text(brokers, "data", group, &format!("127.0.0.1:{port}"));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("KEPLOR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn consumed(port: u16) -> u64 {
    let Ok(mut r) = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call() else {
        return 0;
    };
    let body = r.body_mut().read_to_string().unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("keplor_events_appended_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_stops_cleanly_and_sigkill_loses_nothing() {
    let kafka = Kafka::new(&[("in", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &kafka.brokers, "g-proc", port);
    kafka.produce("in", 3, &(0..1500).map(call).collect::<Vec<_>>());

    // SIGKILL at random moments while it works.
    let mut produced = 1500u64;
    for round in 0..4u64 {
        let mut child = spawn(&config);
        std::thread::sleep(Duration::from_millis(300 + round * 250));
        kafka.produce(
            "in",
            3,
            &(produced..produced + 300).map(call).collect::<Vec<_>>(),
        );
        produced += 300;
        std::thread::sleep(Duration::from_millis(100 + round * 70));
        signal(&child, "-KILL");
        child.wait().unwrap();
    }

    // A last run; SIGTERM once everything is stored: exit 0, offsets committed.
    let mut child = spawn(&config);
    assert!(wait_until(Duration::from_secs(60), || consumed(port) > 0
        || wait_exit(&mut child, Duration::ZERO).is_some()));
    let data = dir.path().join("data");
    let stored_all = wait_until(Duration::from_secs(60), || {
        // Query through the API: total events.
        let Ok(mut r) = ureq::get(&format!("http://127.0.0.1:{port}/v1/aggregate")).call() else {
            return false;
        };
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                .unwrap_or_default();
        v["event_count"].as_u64() == Some(produced)
    });
    assert!(stored_all, "not everything was stored");
    signal(&child, "-TERM");
    let status =
        wait_exit(&mut child, Duration::from_secs(20)).expect("exits within the grace period");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        kafka.committed("g-proc", "in", 3),
        vec![produced as i64 / 3; 3]
    );

    let engine = DynEngine::open_read_only(&data).unwrap();
    let ids = stored_ids(&engine);
    assert_eq!(ids.len() as u64, produced);
    assert!(
        ids.values().all(|&n| n == 1),
        "exactly once across four SIGKILLs"
    );
}

#[test]
fn kcat_and_kafka_python_producers_feed_the_agent() {
    let kafka = Kafka::new(&[("in", 2)]);
    // kcat (Debian's package): key:value lines, with a header.
    let mut kcat = Command::new("kcat")
        .args([
            "-b",
            &kafka.brokers,
            "-P",
            "-t",
            "in",
            "-K",
            "\t",
            "-H",
            "producer=kcat",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed by .ci/run (apt-get install kcat)");
    {
        let stdin = kcat.stdin.as_mut().unwrap();
        for i in 0..200u64 {
            writeln!(stdin, "k{i}\t{}", String::from_utf8(call(i)).unwrap()).unwrap();
        }
    }
    assert!(kcat.wait().unwrap().success());
    // kafka-python: a producer from another ecosystem (ApiVersions v2 for the mock).
    let script = format!(
        r#"
import json
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers="{}", api_version=(2, 3))
for i in range(200, 400):
    p.send("in", key=b"k%d" % i, value=json.dumps({{"rid": "r%d" % i, "user": "u%d" % (i % 7), "model": "py", "usage": {{"tokens": i}}, "cost": 1, "status": 200, "ts": 1764028800000 + i}}).encode(), headers=[("producer", b"kafka-python")])
p.flush(timeout=30)
p.close()
"#,
        kafka.brokers
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python (pip install kafka-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let agent = keplor_agent::agent::Agent::start(config(&kafka.brokers, dir.path(), "g-ext", &[]))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent.engine.total_events()
            == 400),
        "{}",
        agent.engine.total_events()
    );
    let py = agent
        .engine
        .aggregate(&keplordb::DynFilter {
            dims: vec![None, Some("py".into())],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(py.event_count, 200);
    assert_eq!(py.counters[0], (200..400u64).sum::<u64>());
    assert!(matches!(agent.stop(), keplor_agent::sink::Stopped::Clean));
}

/// Runs the agent with `log_section` until it stored `n` events, stops it with SIGTERM; its
/// stderr.
fn run_and_capture_stderr(log_section: &str, n: u64) -> String {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..n).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &kafka.brokers, "g-logs", port);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(log_section);
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("KEPLOR_LOG", "info,rdkafka=warn")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stored = wait_until(Duration::from_secs(60), || {
        consumed(port) >= n || child.try_wait().unwrap().is_some()
    });
    if !stored || child.try_wait().unwrap().is_some() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the agent did not store {n} events:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn json_logs_are_one_object_per_line_and_text_logs_have_no_colour_off_a_terminal() {
    let json = run_and_capture_stderr("\n[log]\nformat = \"json\"\n", 200);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{json}");
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string(),
            "{l}"
        );
    }
    // Structured fields sit at the top level, beside the message.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "partition assigned" && l["partition"].is_u64()),
        "{json}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "stopped cleanly"),
        "{json}"
    );
    let text = run_and_capture_stderr("", 100);
    assert!(text.contains("stopped cleanly"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a pipe: {text:?}");
}
