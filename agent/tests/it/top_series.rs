//! Issue 14: `GET /v1/top`, `GET /v1/series` and `query top` / `query series`, from one agent,
//! merged over two agents, and from a stopped agent's data directory, against the events the
//! stores hold (summed naively).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use keplordb::DynEngine;
use serde_json::Value;

use crate::common::*;

/// `keplor-agent query <args>` with JSON output: its answer.
fn query_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .arg("query")
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "query {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `GET url`, its JSON.
fn get_json(url: &str) -> Value {
    let text = ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Events and cost per model over the stores, and the stores' events in all.
fn naive(engines: &[&DynEngine]) -> (BTreeMap<String, (u64, i64)>, u64) {
    let mut by_model: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut total = 0;
    for e in engines {
        e.scan_events(|ev| {
            let g = by_model.entry(ev.dims[1].clone()).or_default();
            g.0 += 1;
            g.1 += ev.metric;
            total += 1;
        })
        .unwrap();
    }
    (by_model, total)
}

/// The groups of a `top` answer as (model, events, metric), in its order.
fn groups(v: &Value) -> Vec<(String, u64, i64)> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["values"]["model"].as_str().unwrap().to_string(),
                g["event_count"].as_u64().unwrap(),
                g["metric"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn top_and_series_answer_locally_over_two_agents_and_from_a_data_dir() {
    let kafka = Kafka::new(&[("in", 4)]);
    kafka.produce("in", 4, &(0..900).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-top", &[])).unwrap();
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-top", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        + b.engine.total_events()
        == 900));
    let (ea, eb) = (
        format!("http://{}", a.http_addr().unwrap()),
        format!("http://{}", b.http_addr().unwrap()),
    );
    let (want, total) = naive(&[&a.engine, &b.engine]);
    assert_eq!(total, 900);
    let mut ranked: Vec<(String, u64, i64)> =
        want.iter().map(|(m, (n, c))| (m.clone(), *n, *c)).collect();
    ranked.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(&y.0)));

    // Over both agents: the exact ranking by cost, the last model in "others".
    let v = query_json(&[
        "-e", &ea, "-e", &eb, "top", "--by", "model", "--order", "metric", "-n", "2",
    ]);
    assert_eq!(groups(&v), ranked[..2].to_vec(), "{v}");
    assert_eq!(v["others"]["event_count"], ranked[2].1);
    assert_eq!(
        (v["exact"].as_bool(), v["total_groups"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(v["partial"], false);

    // One agent over HTTP: its own share, a pair of dims, and a bad order named.
    let (mine, _) = naive(&[&a.engine]);
    let v: Value = get_json(&format!("{ea}/v1/top?by=model&limit=5"));
    let counts: BTreeMap<String, u64> = groups(&v).into_iter().map(|(m, n, _)| (m, n)).collect();
    assert_eq!(
        counts,
        mine.iter().map(|(m, (n, _))| (m.clone(), *n)).collect()
    );
    let v: Value = get_json(&format!("{ea}/v1/top?by=user,model&limit=1000"));
    let pairs: u64 = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["event_count"].as_u64().unwrap())
        .sum();
    assert_eq!(pairs, a.engine.total_events());
    let r = ureq::get(format!("{ea}/v1/top?order=speed")).call();
    assert!(matches!(r, Err(ureq::Error::StatusCode(400))), "{r:?}");

    // A series over both agents: every event in its bucket, split by model.
    let v = query_json(&[
        "-e", &ea, "-e", &eb, "series", "--every", "1h", "--by", "model", "-n", "3",
    ]);
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "the calls span less than a second: {v}");
    assert_eq!(buckets[0]["event_count"], 900);
    assert_eq!(buckets[0]["start_ns"], 1_764_028_800_000_000_000i64);
    let split: BTreeMap<String, u64> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["values"]["model"].as_str().unwrap().to_string(),
                s["buckets"][0]["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        split,
        want.iter().map(|(m, (n, _))| (m.clone(), *n)).collect()
    );

    // A stopped agent's data directory, as a table with its "(others)" row.
    assert!(matches!(a.stop(), Stopped::Clean));
    assert!(matches!(b.stop(), Stopped::Clean));
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args([
            "query",
            "--data-dir",
            da.path().to_str().unwrap(),
            "-o",
            "table",
        ])
        .args(["top", "--by", "user", "-n", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("user") && lines[0].contains("tokens"),
        "{text}"
    );
    assert!(lines.last().unwrap().starts_with("(others)"), "{text}");
}
