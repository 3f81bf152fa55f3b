//! `/metrics` is standard Prometheus text exposition: `promtool check metrics` (the parser and
//! linter of Prometheus itself) accepts it with no finding. The exposition is hand-written
//! (`metrics.rs`, `process_metrics.rs`) rather than a metrics crate's: this is its check.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;

use crate::common::*;

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this test needs promtool (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let kafka = Kafka::new(&[("in", 2)]);
    let mut payloads: Vec<Vec<u8>> = (0..200).map(call).collect();
    payloads.push(b"not json".to_vec()); // a rejected message: its series appear too
    kafka.produce("in", 2, &payloads);
    let dir = tempfile::tempdir().unwrap();
    // With the archive on, so that its series are checked too.
    let archive = dir.path().join("archive");
    let env = [
        (
            "KEPLOR_SCHEMA__LABELS",
            r#"[{ name = "t", path = "$kafka.topic" }, { name = "p", path = "$kafka.partition" }, { name = "o", path = "$kafka.offset" }]"#,
        ),
        ("KEPLOR_ARCHIVE__DIR", archive.to_str().unwrap()),
    ];
    let agent = Agent::start(config(
        &kafka.brokers,
        &dir.path().join("data"),
        "g-prom",
        &env,
    ))
    .unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 200));
    let url = format!("http://{}", agent.http_addr().unwrap());
    // A query, so that the query histograms have observations.
    ureq::get(format!("{url}/v1/aggregate")).call().unwrap();
    let body = ureq::get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for family in [
        "keplor_build_info",
        "keplor_consumer_errors_total",
        "keplor_offset_commit_seconds_bucket",
        "keplor_rebalances_total",
        "keplor_bytes_consumed_total",
        "keplor_data_volume_free_bytes",
        "keplor_event_freshness_seconds",
        "process_resident_memory_bytes",
        "keplor_archive_lag_segments",
        "keplor_archived_segments_total",
        "keplor_archived_bytes_total",
        "keplor_engine_segment_reloads_total 0",
    ] {
        assert!(body.contains(family), "{family} missing from /metrics");
    }
    let (ok, said) = promtool_check_metrics(&body);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );

    // The check is not vacuous: a counter without `_total` is a finding.
    let (ok, said) = promtool_check_metrics(
        "# HELP keplor_bad A counter.\n# TYPE keplor_bad counter\nkeplor_bad 1\n",
    );
    assert!(!ok && said.contains("_total"), "{said}");
    assert!(matches!(agent.stop(), Stopped::Clean));
}
