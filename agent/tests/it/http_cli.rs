//! The HTTP API and the `keplor-agent query` CLI against running agents.

use std::process::Command;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use serde_json::Value;

use crate::common::*;

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(url).config().http_status_as_error(false).build();
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn json(url: &str, token: Option<&str>) -> Value {
    let (status, body) = get(url, token);
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn http_api_answers_pages_and_rejects() {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..500).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(
        &kafka.brokers,
        dir.path(),
        "g-http",
        &[
            ("KEPLOR_HTTP__AUTH_TOKEN", "t0k"),
            ("KEPLOR_HTTP__MAX_LIMIT", "50"),
            // About five events' JSON: pages are cut by bytes before `limit`.
            ("KEPLOR_HTTP__MAX_PAGE_BYTES", "2000"),
            ("KEPLOR_HTTP__MAX_ROLLUP_BUCKETS", "3"),
        ],
    ))
    .unwrap();
    let base = format!("http://{}", agent.http_addr().unwrap());
    let tok = Some("t0k");
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 500));
    assert_eq!(get(&format!("{base}/healthz"), None).0, 200);
    assert_eq!(get(&format!("{base}/readyz"), None).0, 200);

    // Auth.
    let (status, body) = get(&format!("{base}/v1/aggregate"), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&format!("{base}/v1/aggregate"), Some("wrong")).0, 401);

    let a = json(&format!("{base}/v1/aggregate?dim.user=u3"), tok);
    let want: Vec<u64> = (0..500).filter(|i| i % 7 == 3).collect();
    assert_eq!(a["event_count"], want.len() as u64);
    assert_eq!(
        a["counters"]["tokens"],
        want.iter().map(|i| i % 100).sum::<u64>()
    );
    let a = json(
        &format!("{base}/v1/aggregate?status_min=500&from=2025-11-25T00:00:00Z"),
        tok,
    );
    assert_eq!(a["event_count"], 50);

    // Paging through user u1 with cursors returns each event once, newest first.
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let mut url = format!("{base}/v1/events?dim.user=u1&limit=13");
        if let Some(c) = &cursor {
            url += &format!("&cursor={}", keplor_agent::fleet::encode_path_segment(c));
        }
        let page = json(&url, tok);
        sizes.push(page["events"].as_array().unwrap().len());
        for e in page["events"].as_array().unwrap() {
            seen.push((
                e["ts_ns"].as_i64().unwrap(),
                e["id"].as_str().unwrap().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), (0..500).filter(|i| i % 7 == 1).count());
    assert!(
        sizes.iter().all(|&n| (1..13).contains(&n)),
        "pages cut at 2000 bytes, before limit=13: {sizes:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );

    let one = json(&format!("{base}/v1/events/in%2F0%2F7"), tok);
    assert_eq!(one["id"], "in/0/7");
    assert_eq!(one["labels"]["note"], "n14");
    assert_eq!(get(&format!("{base}/v1/events/nope"), tok).0, 404);

    let r = json(
        &format!("{base}/v1/rollups?from_day=2025-11-25&to_day=2025-11-25&dim.user=u2"),
        tok,
    );
    let buckets = r["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0]["dims"]["user"], "u2");
    assert_eq!(
        buckets[0]["event_count"],
        (0..500).filter(|i| i % 7 == 2).count() as u64
    );

    // More rollup buckets than http.max_rollup_buckets: a 400 naming the cap.
    let (status, body) = get(
        &format!("{base}/v1/rollups?from_day=2025-11-25&to_day=2025-11-25"),
        tok,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("http.max_rollup_buckets"), "{body}");

    // Bad parameters: 400 naming the parameter.
    for (query, param) in [
        ("/v1/events?limit=51", "limit"),
        ("/v1/events?limit=abc", "limit"),
        ("/v1/aggregate?from=tomorrow", "from"),
        ("/v1/aggregate?dim.colour=red", "dim.colour"),
        ("/v1/aggregate?bogus=1", "bogus"),
        ("/v1/rollups?dim.model=m1", "dim.model"),
        ("/v1/events?cursor=zzz", "cursor"),
        // Times out of 64-bit nanoseconds: refused, not wrapped into another bound.
        ("/v1/aggregate?since=1000000000000s", "since"),
        ("/v1/events?since=106752d", "since"),
        ("/v1/aggregate?from=9223372036854775808", "from"),
        ("/v1/aggregate?to=2262-06-01T00:00:00Z", "to"),
        ("/v1/rollups?from_day=99999999999999999999", "from_day"),
        ("/v1/rollups?to_day=-106752", "to_day"),
        // No [fleet] section: this agent cannot answer for the fleet.
        ("/v1/aggregate?fleet=true", "fleet"),
        ("/v1/events/in%2F0%2F7?fleet=true", "fleet"),
        ("/v1/rollups?fleet=maybe", "fleet"),
    ] {
        let (status, body) = get(&format!("{base}{query}"), tok);
        assert_eq!(status, 400, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parameter"], param, "{query}: {body}");
    }
    let long = format!("{base}/v1/aggregate?dim.user={}", "x".repeat(10_000));
    assert_eq!(get(&long, tok).0, 414);
    assert_eq!(get(&format!("{base}/v2/nothing"), tok).0, 404);

    // Metrics are present and moving.
    let (_, m1) = get(&format!("{base}/metrics"), tok);
    for name in [
        "keplor_messages_consumed_total 500",
        "keplor_events_appended_total 500",
        "keplor_partition_durable_offset{topic=\"in\",partition=\"0\"} 249",
        "keplor_fsync_seconds_bucket",
        "keplor_batch_events_count",
        "keplor_query_seconds_bucket{endpoint=\"events\"",
        "keplor_engine_events 500",
    ] {
        assert!(m1.contains(name), "missing {name} in\n{m1}");
    }
    kafka.produce("in", 2, &(500..600).map(call).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 600));
    let committed = wait_until(Duration::from_secs(10), || {
        get(&format!("{base}/metrics"), tok)
            .1
            .contains("keplor_partition_committed_offset{topic=\"in\",partition=\"1\"} 300")
    });
    assert!(committed, "{}", get(&format!("{base}/metrics"), tok).1);
    // Lag needs a high watermark from librdkafka's statistics (every second).
    let lag = wait_until(Duration::from_secs(10), || {
        get(&format!("{base}/metrics"), tok)
            .1
            .contains("keplor_partition_consumer_lag{topic=\"in\",partition=\"0\"}")
    });
    let (_, m2) = get(&format!("{base}/metrics"), tok);
    assert!(lag, "{m2}");
    assert!(m2.contains("keplor_messages_consumed_total 600"));
    assert!(matches!(agent.stop(), Stopped::Clean));
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn query_cli_formats_fan_out_and_data_dir() {
    let kafka = Kafka::new(&[("in", 4)]);
    kafka.produce("in", 4, &(0..800).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two agents in one group: each holds part of the data.
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-cli", &[])).unwrap();
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-cli", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        + b.engine.total_events()
        == 800));
    let (ea, eb) = (
        format!("http://{}", a.http_addr().unwrap()),
        format!("http://{}", b.http_addr().unwrap()),
    );

    let (ok, out, err) = cli(&[
        "query",
        "-e",
        &ea,
        "-e",
        &eb,
        "-o",
        "json",
        "aggregate",
        "--where",
        "model=m1",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["event_count"],
        (0..800).filter(|i| i % 3 == 1).count() as u64,
        "merged across both agents"
    );
    assert_eq!(v["partial"], false, "both agents answered: {v}");
    assert_eq!(v["endpoints"], 2);

    let (ok, out, _) = cli(&[
        "query", "-e", &ea, "-e", &eb, "-o", "table", "recent", "-n", "5", "--where", "user=u0",
    ]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("id") && lines[0].contains("user") && lines[0].contains("tokens"),
        "{out}"
    );
    assert!(lines[1].starts_with("--"));
    let newest: Vec<u64> = (0..800).filter(|i| i % 7 == 0).rev().take(5).collect();
    for (line, i) in lines[2..7].iter().zip(&newest) {
        assert!(
            line.contains(&format!("n{i}")),
            "{line} should be event {i}\n{out}"
        );
    }
    assert!(out.contains("next page: --cursor"));

    let (ok, out, _) = cli(&[
        "query",
        "-e",
        &ea,
        "-e",
        &eb,
        "-o",
        "csv",
        "rollups",
        "--from-day",
        "2025-11-25",
        "--to-day",
        "2025-11-25",
    ]);
    assert!(ok);
    let mut rows = out.lines();
    assert_eq!(rows.next(), Some("day,user,events,metric,tokens"));
    let total: u64 = rows
        .map(|r| r.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 800);

    let (ok, out, _) = cli(&[
        "query", "-e", &ea, "-e", &eb, "-o", "json", "get", "in/2/11",
    ]);
    assert!(ok);
    assert!(out.contains("\"in/2/11\""));
    let (ok, _, err) = cli(&["query", "-e", &ea, "get", "no-such-id"]);
    assert!(!ok && err.contains("no event with id"));
    let (ok, _, err) = cli(&["query", "-e", &ea, "aggregate", "--where", "colour=red"]);
    assert!(!ok && err.contains("parameter `dim.colour`"), "{err}");
    let (ok, _, err) = cli(&["query", "-e", &ea, "aggregate", "--since", "soon"]);
    assert!(!ok && err.contains("since"), "{err}");
    // Out of range: a usage error (exit 2) naming the flag, before any request is sent.
    for args in [
        &["aggregate", "--since", "1000000000000s"][..],
        &["recent", "--since", "999999d"],
        &["aggregate", "--from", "99999999999999999999"],
        &["rollups", "--from-day", "2262-05-01"],
        &["rollups", "--to-day=-99999999"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
            .args(["query", "-e", &ea])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let flag = args[1].split('=').next().unwrap();
        assert!(
            err.contains(&format!("error: {flag}: ")) && err.contains("out of range"),
            "{args:?}: {err}"
        );
    }

    // A stopped agent's data, read-only.
    assert!(matches!(a.stop(), Stopped::Clean));
    assert!(matches!(b.stop(), Stopped::Clean));
    let mut total = 0;
    for d in [&da, &db] {
        let (ok, out, err) = cli(&[
            "query",
            "--data-dir",
            d.path().to_str().unwrap(),
            "-o",
            "json",
            "aggregate",
        ]);
        assert!(ok, "{err}");
        total += serde_json::from_str::<Value>(&out).unwrap()["event_count"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(total, 800);
}

#[test]
fn check_config_prints_the_resolved_config_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/llm-json.toml");
    let (ok, out, _) = cli(&["check-config", good.to_str().unwrap()]);
    assert!(ok);
    assert!(
        out.contains("group_id = \"keplor-llm\"") && out.contains("linger = \"50ms\""),
        "{out}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kafka]\nbrokers = \"x:1\"\ntopics = [\"t\"]\n[schema]\nid = 1\n[batch]\nlinger = \"fast\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config key `batch.linger`"));
}
