//! A fleet of agents answering as one store: the CLI's fan-out with dead and silent endpoints
//! (partial answers, exit codes), endpoints from DNS, and the HTTP API's `fleet=true`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use serde_json::Value;

use crate::common::*;

const EVENTS: u64 = 800;
const TOKEN: &str = "t0k";

/// An endpoint nothing listens on (a port bound once, then released).
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// An endpoint that accepts connections (the kernel completes the handshake) but never answers.
fn silent_endpoint() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// Two agents of one consumer group holding `EVENTS` events between them; `env_a`/`env_b`
/// override their configuration.
struct Pair {
    _kafka: Kafka,
    _dirs: [tempfile::TempDir; 2],
    a: Agent,
    b: Agent,
    ea: String,
    eb: String,
}

impl Pair {
    fn start(group: &str, env_a: &[(&str, &str)], env_b: &[(&str, &str)]) -> Pair {
        let kafka = Kafka::new(&[("in", 4)]);
        kafka.produce("in", 4, &(0..EVENTS).map(call).collect::<Vec<_>>());
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let a = Agent::start(config(&kafka.brokers, dirs[0].path(), group, env_a)).unwrap();
        let b = Agent::start(config(&kafka.brokers, dirs[1].path(), group, env_b)).unwrap();
        let stored = || a.engine.total_events() + b.engine.total_events();
        assert!(wait_until(Duration::from_secs(30), || stored() == EVENTS));
        let (ea, eb) = (
            format!("http://{}", a.http_addr().unwrap()),
            format!("http://{}", b.http_addr().unwrap()),
        );
        Pair {
            _kafka: kafka,
            _dirs: dirs,
            a,
            b,
            ea,
            eb,
        }
    }

    fn stop(self) {
        assert!(matches!(self.a.stop(), Stopped::Clean));
        assert!(matches!(self.b.stop(), Stopped::Clean));
    }
}

/// Runs the binary: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `query -e <each endpoint> <extra...>` with JSON output; exit code and parsed stdout.
fn cli_json(endpoints: &[&str], extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["query", "-o", "json", "--timeout", "1s"];
    for e in endpoints {
        args.extend(["-e", e]);
    }
    args.extend(extra);
    let (code, out, err) = cli(&args);
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, v, err)
}

fn http(url: &str) -> (u16, Value) {
    let mut r = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (r.status().as_u16(), v)
}

/// The answer without its completeness fields (`partial`, `endpoints`, `answered`, `missing`).
fn figures(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["partial", "endpoints", "answered", "missing"] {
            m.remove(k);
        }
    }
    v
}

fn missing(v: &Value) -> Vec<(String, String)> {
    v["missing"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|m| {
            (
                m["endpoint"].as_str().unwrap().to_string(),
                m["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn cli_fan_out_marks_dead_and_silent_endpoints_partial_and_exits_3() {
    let pair = Pair::start("g-fleet-cli", &[], &[]);
    let (ea, eb) = (pair.ea.as_str(), pair.eb.as_str());
    let dead = dead_endpoint();
    let (_silent_listener, silent) = silent_endpoint();
    let all = [ea, eb, dead.as_str(), silent.as_str()];

    // Each live agent on its own, then the whole fleet.
    let agg = ["aggregate", "--where", "model=m1"];
    let (code, va, _) = cli_json(&[ea], &agg);
    assert_eq!(code, Some(0));
    let (_, vb, _) = cli_json(&[eb], &agg);
    let (code, v, err) = cli_json(&all, &agg);
    assert_eq!(code, Some(3), "partial without --allow-partial: {err}");
    assert_eq!(v["partial"], true);
    assert_eq!(v["endpoints"], 4);
    assert_eq!(v["answered"], serde_json::json!([ea, eb]));
    assert_eq!(
        missing(&v),
        [
            (dead.clone(), "refused".to_string()),
            (silent.clone(), "timeout".to_string())
        ],
        "the silent endpoint proves the read timeout: {v}"
    );
    let want = (0..EVENTS).filter(|i| i % 3 == 1);
    assert_eq!(v["event_count"], want.clone().count() as u64);
    for k in ["event_count", "metric", "latency_ms_sum"] {
        let sum = va[k].as_i64().unwrap() + vb[k].as_i64().unwrap();
        assert_eq!(v[k].as_i64(), Some(sum), "{k}: the sum of the live agents");
    }
    assert_eq!(
        v["counters"]["tokens"],
        want.map(|i| i % 100).sum::<u64>(),
        "merged counters"
    );
    let allowed: Vec<&str> = ["--allow-partial"].into_iter().chain(agg).collect();
    let (code, v2, _) = cli_json(&all, &allowed);
    assert_eq!(code, Some(0), "--allow-partial");
    assert_eq!(v2, v);
    let (code, whole, _) = cli_json(&[ea, eb], &agg);
    assert_eq!(code, Some(0));
    assert_eq!(whole["partial"], false);
    assert_eq!(whole["endpoints"], 2);
    assert_eq!(whole["missing"], serde_json::json!([]));
    assert_eq!(figures(&whole), figures(&v));

    // Expecting more members than the endpoints found: partial, though every endpoint answered.
    let expect3: Vec<&str> = ["--expect-members", "3"].into_iter().chain(agg).collect();
    let (code, short, err) = cli_json(&[ea, eb], &expect3);
    assert_eq!(code, Some(3), "a member short: {err}");
    assert_eq!(short["partial"], true);
    assert_eq!(short["endpoints"], 2);
    assert_eq!(short["answered"], serde_json::json!([ea, eb]));
    assert_eq!(
        short["missing"],
        serde_json::json!([{
            "endpoint": "fleet",
            "kind": "not_resolved",
            "error": "3 members expected, 2 found"
        }])
    );
    assert_eq!(figures(&short), figures(&whole));
    assert!(
        err.contains("warning: partial answer: fleet: 3 members expected, 2 found"),
        "{err}"
    );
    let allowed3: Vec<&str> = ["--allow-partial"].into_iter().chain(expect3).collect();
    let (code, v3, _) = cli_json(&[ea, eb], &allowed3);
    assert_eq!(code, Some(0), "--allow-partial");
    assert_eq!(v3, short);
    let expect2: Vec<&str> = ["--expect-members", "2"].into_iter().chain(agg).collect();
    let (code, v2, _) = cli_json(&[ea, eb], &expect2);
    assert_eq!(
        (code, v2.clone()),
        (Some(0), whole.clone()),
        "as many as expected"
    );
    let expect1: Vec<&str> = ["--expect-members", "1"].into_iter().chain(agg).collect();
    let (code, v1, _) = cli_json(&[ea, eb], &expect1);
    assert_eq!(
        (code, v1),
        (Some(0), whole.clone()),
        "more than expected is fine"
    );
    let (code, _, err) = cli_json(&[ea], &["--expect-members", "0", "aggregate"]);
    assert_eq!(code, Some(2), "a count below 1 is a usage error: {err}");

    // Table and CSV: the answer on stdout, a warning per missing endpoint on stderr.
    let mut args = vec!["query", "--timeout", "1s", "-o", "table"];
    for e in all {
        args.extend(["-e", e]);
    }
    let (code, out, err) = cli(&[args.as_slice(), &["recent", "-n", "5"]].concat());
    assert_eq!(code, Some(3));
    assert!(
        out.starts_with("id") && out.contains("next page: --cursor"),
        "{out}"
    );
    assert!(err.contains("partial answer: 2 of 4 endpoints"), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {dead} did not answer: connection refused"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("warning: {silent} did not answer:")),
        "{err}"
    );
    args[4] = "csv";
    let day = [
        "rollups",
        "--from-day",
        "2025-11-25",
        "--to-day",
        "2025-11-25",
    ];
    let (code, out, err) = cli(&[args.as_slice(), &day].concat());
    assert_eq!(code, Some(3));
    assert!(err.contains(&format!("warning: {dead} did not answer")));
    let total: u64 = out
        .lines()
        .skip(1)
        .map(|r| r.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, EVENTS, "rollups merged over the live agents");

    // Look-ups: found despite the missing endpoints (still partial); not found is 4 only when
    // partial answers are allowed, since a missing endpoint might hold the event.
    let (code, v, _) = cli_json(&all, &["get", "in/2/11"]);
    assert_eq!(
        (code, v["events"][0]["id"].as_str()),
        (Some(3), Some("in/2/11"))
    );
    let (code, _, err) = cli_json(&all, &["get", "nope"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no event with id \"nope\" on the endpoints that answered"));
    let (code, _, _) = cli_json(&all, &["--allow-partial", "get", "nope"]);
    assert_eq!(code, Some(4));

    // Nothing answered: an error. A bad parameter: a usage error, however many answered.
    let (code, _, err) = cli_json(&[&dead, &silent], &["--allow-partial", "aggregate"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("none of the 2 endpoints answered") && err.contains("connection refused"),
        "{err}"
    );
    let (code, _, err) = cli_json(&all, &["aggregate", "--where", "colour=red"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("parameter `dim.colour`"), "{err}");

    // Endpoints from DNS: every address of localhost, at agent A's port.
    let port = pair.a.http_addr().unwrap().port().to_string();
    let target = format!("localhost:{port}");
    let (code, v, err) = cli_json(
        &[eb],
        &["--endpoints-dns", &target, "--allow-partial", "aggregate"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["event_count"], EVENTS, "{v}");
    let answered: Vec<&str> = v["answered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        answered.contains(&format!("http://127.0.0.1:{port}").as_str()),
        "{v}"
    );
    // localhost may also resolve to ::1, where the agent does not listen.
    assert!(
        missing(&v).iter().all(|(e, _)| e.starts_with("http://[")),
        "{v}"
    );
    // A member short: named after the DNS target.
    let (code, v, err) = cli_json(
        &[eb],
        &[
            "--endpoints-dns",
            &target,
            "--expect-members",
            "9",
            "aggregate",
        ],
    );
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(v["event_count"], EVENTS, "{v}");
    let short = v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "not_resolved")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(short["endpoint"], target.as_str());
    let found = v["endpoints"].as_u64().unwrap();
    assert_eq!(
        short["error"],
        format!("9 members expected, {found} found").as_str()
    );
    let (code, _, err) = cli(&["query", "--endpoints-dns", "localhost", "aggregate"]);
    assert_eq!(code, Some(2), "HOST without PORT is a usage error: {err}");
    let (code, _, err) = cli(&["query", "-e", "localhost:8686", "aggregate"]);
    assert_eq!(
        code,
        Some(2),
        "an endpoint without http:// is a usage error: {err}"
    );
    assert!(err.contains("not like http://host:port"), "{err}");
    let (code, _, err) = cli(&[
        "query",
        "--endpoints-dns",
        "no-such-host.invalid:8686",
        "aggregate",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot resolve no-such-host.invalid:8686"),
        "{err}"
    );
    pair.stop();
}

#[test]
fn http_fleet_answers_like_the_cli_and_pages_every_id_once() {
    let (pa, pb) = (free_port(), free_port());
    let (ea, eb) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let dead = dead_endpoint();
    let (_silent_listener, silent) = silent_endpoint();
    let (listen_a, listen_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    // A lists two members that never answer; B lists the live fleet. Both list themselves.
    let fleet_a = format!("[\"{ea}\", \"{eb}\", \"{dead}\", \"{silent}\"]");
    let fleet_b = format!("[\"{ea}\", \"{eb}\"]");
    let env = |listen: &str, fleet: &str| -> Vec<(String, String)> {
        [
            ("KEPLOR_HTTP__LISTEN", listen),
            ("KEPLOR_HTTP__AUTH_TOKEN", TOKEN),
            ("KEPLOR_FLEET__ENDPOINTS", fleet),
            ("KEPLOR_FLEET__TIMEOUT", "1s"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    let (env_a, env_b) = (env(&listen_a, &fleet_a), env(&listen_b, &fleet_b));
    let pair = Pair::start("g-fleet-http", &borrow(&env_a), &borrow(&env_b));
    assert_eq!(
        (pair.ea.as_str(), pair.eb.as_str()),
        (ea.as_str(), eb.as_str())
    );
    let tok = ["--token", TOKEN];

    // The fleet answer of either member equals the CLI's fan-out over the live agents.
    let (code, cli_agg, _) = cli_json(
        &[&ea, &eb],
        &[&tok[..], &["aggregate", "--where", "model=m1"]].concat(),
    );
    assert_eq!(code, Some(0));
    let (status, whole) = http(&format!("{eb}/v1/aggregate?dim.model=m1&fleet=true"));
    assert_eq!(status, 200, "{whole}");
    assert_eq!(
        (whole["partial"].clone(), whole["endpoints"].clone()),
        (false.into(), 2.into())
    );
    assert_eq!(figures(&whole), figures(&cli_agg));
    let (status, part) = http(&format!("{ea}/v1/aggregate?dim.model=m1&fleet=true"));
    assert_eq!(status, 200, "{part}");
    assert_eq!(part["partial"], true);
    assert_eq!(
        missing(&part),
        [
            (dead.clone(), "refused".into()),
            (silent.clone(), "timeout".into())
        ]
    );
    assert_eq!(figures(&part), figures(&cli_agg), "the live members' sum");
    let (code, cli_part, _) = cli_json(
        &[&ea, &eb, &dead, &silent],
        &[
            &tok[..],
            &["--allow-partial", "aggregate", "--where", "model=m1"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0));
    assert_eq!(part, cli_part, "same completeness fields as the CLI");
    let (status, own) = http(&format!("{ea}/v1/aggregate?dim.model=m1"));
    assert_eq!(status, 200);
    assert!(
        own.get("partial").is_none(),
        "without fleet=true: this agent only"
    );
    assert!(own["event_count"].as_u64() <= cli_agg["event_count"].as_u64());

    let days = [
        "rollups",
        "--from-day",
        "2025-11-25",
        "--to-day",
        "2025-11-25",
    ];
    let (_, cli_rollups, _) = cli_json(&[&ea, &eb], &[&tok[..], &days].concat());
    let (status, r) = http(&format!(
        "{eb}/v1/rollups?from_day=2025-11-25&to_day=2025-11-25&fleet=true"
    ));
    assert_eq!(status, 200);
    assert_eq!(figures(&r), figures(&cli_rollups));
    let (_, cli_page, _) = cli_json(
        &[&ea, &eb],
        &[&tok[..], &["recent", "-n", "9", "--where", "user=u3"]].concat(),
    );
    let (status, page) = http(&format!("{eb}/v1/events?dim.user=u3&limit=9&fleet=true"));
    assert_eq!(status, 200);
    assert_eq!(figures(&page), figures(&cli_page));

    // Look-ups.
    let (status, e) = http(&format!("{eb}/v1/events/in%2F2%2F11?fleet=true"));
    assert_eq!((status, e["id"].as_str()), (200, Some("in/2/11")), "{e}");
    assert_eq!(e["partial"], false);
    let (status, e) = http(&format!("{eb}/v1/events/nope?fleet=true"));
    assert_eq!((status, e["partial"].clone()), (404, false.into()), "{e}");
    let (status, e) = http(&format!("{ea}/v1/events/nope?fleet=true"));
    assert_eq!((status, e["partial"].clone()), (404, true.into()), "{e}");

    // Rejected before or by the fan-out, naming the parameter.
    for (query, param) in [
        ("/v1/aggregate?fleet=true&dim.colour=red", "dim.colour"),
        ("/v1/events?fleet=true&limit=5000", "limit"),
        ("/v1/events?fleet=yes", "fleet"),
        ("/v1/events/x?fleet=true&bogus=1", "bogus"),
    ] {
        let (status, v) = http(&format!("{eb}{query}"));
        assert_eq!(
            (status, v["parameter"].as_str()),
            (400, Some(param)),
            "{query}: {v}"
        );
    }

    // Paging through the whole fleet with cursors returns every stored id exactly once.
    let mut stored = stored_ids(&pair.a.engine);
    for (id, n) in stored_ids(&pair.b.engine) {
        *stored.entry(id).or_default() += n;
    }
    assert_eq!(stored.len() as u64, EVENTS);
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0u64;
    loop {
        let mut url = format!("{eb}/v1/events?limit=97&fleet=true");
        if let Some(c) = &cursor {
            url += &format!("&cursor={}", keplor_agent::fleet::encode_path_segment(c));
        }
        let (status, page) = http(&url);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["partial"], false);
        for e in page["events"].as_array().unwrap() {
            *seen
                .entry(e["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, EVENTS.div_ceil(97));
    assert_eq!(seen, stored, "every id once");
    pair.stop();
}

fn borrow(e: &[(String, String)]) -> Vec<(&str, &str)> {
    e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
