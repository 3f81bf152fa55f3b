//! Soak: one `keplor-agent run` process against a real broker (Tansu) for a long time at a
//! steady rate, with query clients running all along. Every sampling window records the
//! agent's anonymous and total RSS (`/proc/<pid>/status`), its open file descriptors
//! (`/proc/<pid>/fd`), each query kind's p50/p99, the produced and stored rates and the lag the
//! agent reports; the windows are printed as a table. After a warm-up quarter, the last
//! quarter must be no worse than the second: anonymous memory (file-backed pages of mmapped
//! segments grow with the data and are not a leak), descriptors and query p99. At the end the
//! store holds every produced message exactly once.
//!
//! Sizes: `KEPLOR_SOAK_SECS` (default 60; the long size is 3600), `KEPLOR_SOAK_RATE` messages
//! per second (default 2000). Windows last 3 s below 10 minutes, 10 s from there on. A failure
//! keeps the test directory (agent and broker logs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keplordb::DynEngine;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::tansu::{AgentOpts, AgentProc, Tansu, TestDir};

const TOPIC: &str = "in";
const GROUP: &str = "soak";
const PARTITIONS: i32 = 4;
/// Queries per second of each kind (one client thread per kind, each waiting for its answer).
const QPS_PER_KIND: f64 = 10.0;
/// Point lookups ask for ids sent at least this long ago (stored by then unless the agent lags).
const LOOKUP_AGE: Duration = Duration::from_secs(10);

/// The query kinds the clients run, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `/v1/aggregate?since=1m`: a time-bounded aggregate over the newest minute.
    Aggregate,
    /// `/v1/events?limit=100`: the newest page.
    Newest,
    /// `/v1/events/<id>` of an id sent at least [`LOOKUP_AGE`] ago.
    Lookup,
    /// `/v1/rollups` of yesterday and today.
    Rollups,
}

const KINDS: [Kind; 4] = [Kind::Aggregate, Kind::Newest, Kind::Lookup, Kind::Rollups];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Aggregate => "agg 1m",
            Kind::Newest => "newest 100",
            Kind::Lookup => "get id",
            Kind::Rollups => "rollups",
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: a number")),
    )
}

/// Message `i`: event id `s<i>`, stamped now (so `since=1m` and today's rollups see it).
fn message(i: u64) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        r#"{{"rid":"s{i}","user":"u{}","model":"m{}","usage":{{"tokens":{}}},"cost":{},"status":{},"ts":{now_ms},"note":"soak {i}"}}"#,
        i % 7,
        i % 3,
        i % 900,
        i % 1000,
        if i.is_multiple_of(20) { 500 } else { 200 },
    )
    .into_bytes()
}

/// Counts the producer's delivery reports.
#[derive(Default)]
struct Acks {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let n = if result.is_ok() {
            &self.acked
        } else {
            &self.failed
        };
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces message 0, 1, 2... round-robin over the partitions at `rate` per second until
/// `stop`, counting them in `sent`; waits for every delivery and returns how many were sent.
fn produce(brokers: &str, rate: f64, sent: &AtomicU64, stop: &AtomicBool) -> u64 {
    let p: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(Acks::default())
        .expect("producer");
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while i < due {
            let payload = message(i);
            let key = format!("k{i}");
            let rec = BaseRecord::to(TOPIC)
                .key(&key)
                .payload(&payload)
                .partition((i % PARTITIONS as u64) as i32);
            match p.send(rec) {
                Ok(()) => {
                    i += 1;
                    sent.store(i, Ordering::Relaxed);
                }
                Err((e, _)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce s{i}: {e}"
                    );
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
    }
    p.flush(Duration::from_secs(60))
        .expect("flush the producer");
    let acks = p.context();
    assert_eq!(acks.failed.load(Ordering::Relaxed), 0, "failed deliveries");
    assert_eq!(acks.acked.load(Ordering::Relaxed), i, "deliveries");
    i
}

/// What the query clients saw: the current window's latencies per kind, and totals.
#[derive(Default)]
struct Tally {
    window: [Vec<Duration>; 4],
    answered: [u64; 4],
    /// Answers that held data: a count > 0, a full page newest first, the id asked for, a
    /// bucket.
    with_data: [u64; 4],
    /// Lookups answered 404 (the id not stored yet).
    not_found: u64,
    /// Any other status, or an answer that does not hold what was asked: the first few.
    errors: Vec<String>,
}

fn kind_index(k: Kind) -> usize {
    KINDS.iter().position(|&x| x == k).unwrap()
}

/// Today's day number (days since the epoch, UTC).
fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
}

/// Runs `kind` against `base` at [`QPS_PER_KIND`] until `stop`, logging into `log`.
fn query_client(kind: Kind, base: &str, sent: &AtomicU64, stop: &AtomicBool, log: &QueryLog) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // (when, messages sent by then): lookups ask for ids sent at least LOOKUP_AGE ago.
    let mut history: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ kind_index(kind) as u64;
    let period = Duration::from_secs_f64(1.0 / QPS_PER_KIND);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        history.push_back((Instant::now(), sent.load(Ordering::Relaxed)));
        while history.len() > 1 && history[1].0.elapsed() >= LOOKUP_AGE {
            history.pop_front();
        }
        let old_enough = match history.front() {
            Some((t, n)) if t.elapsed() >= LOOKUP_AGE => *n,
            _ => 0,
        };
        let url = match kind {
            Kind::Aggregate => format!("{base}/v1/aggregate?since=1m"),
            Kind::Newest => format!("{base}/v1/events?limit=100"),
            Kind::Rollups => format!("{base}/v1/rollups?from_day={}", today() - 1),
            Kind::Lookup if old_enough == 0 => {
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                continue;
            }
            Kind::Lookup => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                format!("{base}/v1/events/s{}", rng % old_enough)
            }
        };
        let started = Instant::now();
        let answer = http
            .get(&url)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| {
                let status = r.status().as_u16();
                let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
                Ok((status, body))
            });
        let took = started.elapsed();
        log.record(kind, &url, took, answer);
        next += period;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// The [`Tally`], shared by the query clients and the sampler.
#[derive(Default)]
struct QueryLog(Mutex<Tally>);

impl QueryLog {
    fn record(&self, kind: Kind, url: &str, took: Duration, answer: Result<(u16, String), String>) {
        let k = kind_index(kind);
        let mut log = self.0.lock().unwrap();
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => return log.error(format!("{url}: {e}")),
        };
        if status == 404 && kind == Kind::Lookup {
            log.not_found += 1;
            log.window[k].push(took);
            log.answered[k] += 1;
            return;
        }
        if status != 200 {
            return log.error(format!("{url}: {status} {body}"));
        }
        let v: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => return log.error(format!("{url}: {e}: {body}")),
        };
        match holds_data(kind, url, &v) {
            Ok(true) => log.with_data[k] += 1,
            Ok(false) => {}
            Err(e) => return log.error(format!("{url}: {e}")),
        }
        log.window[k].push(took);
        log.answered[k] += 1;
    }

    /// Takes the current window's latencies, per kind.
    fn take_window(&self) -> [Vec<Duration>; 4] {
        std::mem::take(&mut self.0.lock().unwrap().window)
    }
}

impl Tally {
    fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        } else {
            self.errors[19] = format!("... and more, the last: {e}");
        }
    }
}

/// Whether a 200 answer of `kind` holds data; an error when it holds something it must not.
fn holds_data(kind: Kind, url: &str, v: &serde_json::Value) -> Result<bool, String> {
    Ok(match kind {
        Kind::Aggregate => v["event_count"].as_u64().ok_or("no event_count")? > 0,
        Kind::Rollups => !v["buckets"].as_array().ok_or("no buckets")?.is_empty(),
        Kind::Newest => {
            let events = v["events"].as_array().ok_or("no events")?;
            let ts: Vec<i64> = events.iter().filter_map(|e| e["ts_ns"].as_i64()).collect();
            if ts.len() != events.len() || ts.windows(2).any(|w| w[0] < w[1]) {
                return Err("a page not newest first".into());
            }
            events.len() == 100
        }
        Kind::Lookup => {
            let asked = url.rsplit('/').next().unwrap();
            if v["id"].as_str() != Some(asked) {
                return Err(format!("asked for {asked}, got {}", v["id"]));
            }
            true
        }
    })
}

/// One sampling window.
#[derive(Clone, Debug, Default)]
struct Window {
    /// Seconds since the start, at the window's end.
    t: f64,
    rss_anon: u64,
    rss_total: u64,
    fds: u64,
    /// Per kind: queries answered, p50 and p99 in ms.
    queries: [(usize, f64, f64); 4],
    /// Messages produced and events stored per second.
    produced_rate: f64,
    stored_rate: f64,
    /// The agent's consumer lag summed over partitions (`keplor_partition_consumer_lag`).
    lag: f64,
}

/// `RssAnon` and `VmRSS` of `pid` in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
            * 1024
    };
    (kb("RssAnon:"), kb("VmRSS:"))
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count() as u64
}

/// The sum of every sample of metric `name` (any labels) in a Prometheus text answer.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(base: &str) -> String {
    ureq::get(&format!("{base}/metrics"))
        .call()
        .expect("/metrics")
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The `q` quantile of `v` in ms (nearest rank; 0 when empty).
fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const MIB: f64 = 1024.0 * 1024.0;

/// The flatness checks, the second quarter (after a warm-up quarter) against the last: what
/// failed, empty when flat.
fn flatness(w: &[Window]) -> Vec<String> {
    let q = w.len() / 4;
    assert!(q >= 2, "{} windows: too few to judge", w.len());
    let (second, last) = (&w[q..2 * q], &w[w.len() - q..]);
    let max = |ws: &[Window], f: fn(&Window) -> u64| ws.iter().map(f).max().unwrap();
    let mut failed = Vec::new();
    let (anon2, anon4) = (max(second, |x| x.rss_anon), max(last, |x| x.rss_anon));
    if anon4 as f64 > anon2 as f64 * 1.25 + 16.0 * MIB {
        failed.push(format!(
            "anonymous RSS grew: max {:.1} MiB in the last quarter, {:.1} MiB in the second",
            anon4 as f64 / MIB,
            anon2 as f64 / MIB
        ));
    }
    let (fds2, fds4) = (max(second, |x| x.fds), max(last, |x| x.fds));
    if fds4 > fds2 + 8 {
        failed.push(format!(
            "open fds grew: max {fds4} in the last quarter, {fds2} in the second"
        ));
    }
    for (k, kind) in KINDS.iter().enumerate() {
        let p99 = |ws: &[Window]| median(ws.iter().map(|x| x.queries[k].2).collect());
        let (p2, p4) = (p99(second), p99(last));
        if p4 > 3.0 * p2 + 25.0 {
            failed.push(format!(
                "{} p99 grew: median of the windows' p99 {p4:.1} ms in the last quarter, \
                 {p2:.1} ms in the second",
                kind.name()
            ));
        }
    }
    let mean =
        |ws: &[Window], f: fn(&Window) -> f64| ws.iter().map(f).sum::<f64>() / ws.len() as f64;
    let (stored, produced) = (
        mean(last, |x| x.stored_rate),
        mean(last, |x| x.produced_rate),
    );
    if stored < 0.7 * produced {
        failed.push(format!(
            "ingest fell behind: {stored:.0} events/s stored in the last quarter for \
             {produced:.0} messages/s produced"
        ));
    }
    failed
}

fn print_header() {
    let mut h = format!(
        "{:>7} {:>9} {:>9} {:>5}",
        "t (s)", "anon MiB", "rss MiB", "fds"
    );
    for k in KINDS {
        h += &format!(" {:>17}", format!("{} p50/p99", k.name()));
    }
    h += &format!(" {:>7} {:>8} {:>7}", "sent/s", "stored/s", "lag");
    eprintln!("{h}");
}

fn print_row(w: &Window) {
    let mut row = format!(
        "{:>7.0} {:>9.1} {:>9.1} {:>5}",
        w.t,
        w.rss_anon as f64 / MIB,
        w.rss_total as f64 / MIB,
        w.fds
    );
    for (_, p50, p99) in w.queries {
        row += &format!(" {:>17}", format!("{p50:.1}/{p99:.1}"));
    }
    row += &format!(
        " {:>7.0} {:>8.0} {:>7.0}",
        w.produced_rate, w.stored_rate, w.lag
    );
    eprintln!("{row}");
}

/// Samples the agent over `count` windows of `window`; prints each window as it closes.
fn sample(
    agent: &mut AgentProc,
    log: &QueryLog,
    sent: &AtomicU64,
    start: Instant,
    window: Duration,
    count: u32,
) -> Vec<Window> {
    let pid = agent.pid().expect("the agent runs");
    let base = agent.endpoint();
    let mut windows = Vec::new();
    let (mut t0, mut sent0) = (Instant::now(), sent.load(Ordering::Relaxed));
    let mut stored0 = metric_sum(&scrape(&base), keplor_agent::metrics::EVENTS_APPENDED);
    log.take_window();
    print_header();
    let first = t0;
    for i in 1..=count {
        let next = first + window * i;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        agent.check_alive();
        let metrics = scrape(&base);
        let (now, sent1) = (Instant::now(), sent.load(Ordering::Relaxed));
        let stored1 = metric_sum(&metrics, keplor_agent::metrics::EVENTS_APPENDED);
        let (rss_anon, rss_total) = rss(pid);
        let dt = (now - t0).as_secs_f64();
        let mut lat = log.take_window();
        let queries = std::array::from_fn(|k| {
            let v = &mut lat[k];
            (v.len(), quantile_ms(v, 0.5), quantile_ms(v, 0.99))
        });
        let w = Window {
            t: (now - start).as_secs_f64(),
            rss_anon,
            rss_total,
            fds: open_fds(pid),
            queries,
            produced_rate: (sent1 - sent0) as f64 / dt,
            stored_rate: (stored1 - stored0) / dt,
            lag: metric_sum(&metrics, keplor_agent::metrics::CONSUMER_LAG),
        };
        print_row(&w);
        windows.push(w);
        (t0, sent0, stored0) = (now, sent1, stored1);
    }
    windows
}

/// Waits until the agent's HTTP count reaches `n` (it never passes it: asserted).
fn wait_for_count(agent: &mut AgentProc, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        agent.check_alive();
        let count = crate::tansu::query(&[agent.endpoint()], &["aggregate"])["event_count"]
            .as_u64()
            .unwrap();
        assert!(
            count <= n,
            "the agent counts {count} events for {n} messages"
        );
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent stored {count} of {n} messages in 180 s:\n{}",
            agent.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every message `s0..s<n>` stored exactly once, nothing else: read from the stopped store.
fn check_store(data: &std::path::Path, n: u64) {
    let store = DynEngine::open_read_only(data).expect("open the store read-only");
    let mut seen = vec![0u8; n as usize];
    let mut foreign = Vec::new();
    store
        .scan_events(
            |e| match e.id.strip_prefix('s').and_then(|i| i.parse::<u64>().ok()) {
                Some(i) if i < n => seen[i as usize] = seen[i as usize].saturating_add(1),
                _ => foreign.push(e.id),
            },
        )
        .unwrap();
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] > 1).collect();
    eprintln!(
        "soak store: {n} messages, {} missing, {} stored twice, {} unknown ids",
        missing.len(),
        twice.len(),
        foreign.len()
    );
    assert!(
        missing.is_empty(),
        "missing, e.g. s{:?}",
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "stored twice, e.g. s{:?}",
        &twice[..twice.len().min(5)]
    );
    assert!(
        foreign.is_empty(),
        "unknown ids, e.g. {:?}",
        &foreign[..foreign.len().min(5)]
    );
}

/// The queries ran and answered with data; none failed.
fn check_queries(log: &QueryLog, windows: &[Window], secs: u64) {
    let log = log.0.lock().unwrap();
    assert!(log.errors.is_empty(), "queries failed: {:#?}", log.errors);
    for (k, kind) in KINDS.iter().enumerate() {
        // Lookups start once ids are LOOKUP_AGE old.
        let expected = QPS_PER_KIND * (secs.saturating_sub(LOOKUP_AGE.as_secs())) as f64;
        assert!(
            log.answered[k] as f64 >= expected / 3.0,
            "{}: {} queries answered, about {expected:.0} expected",
            kind.name(),
            log.answered[k]
        );
        assert!(
            log.with_data[k] * 2 >= log.answered[k],
            "{}: only {} of {} answers held data",
            kind.name(),
            log.with_data[k],
            log.answered[k]
        );
        let q = windows.len() / 4;
        assert!(
            windows[q..].iter().all(|w| w.queries[k].0 > 0),
            "{}: a window after the warm-up without an answered query",
            kind.name()
        );
    }
    eprintln!(
        "soak queries: answered {:?} (agg 1m, newest 100, get id, rollups), with data {:?}, \
         lookups not found yet {}",
        log.answered, log.with_data, log.not_found
    );
}

/// Adds `settings` (lines of `[engine]`) to the agent's configuration.
fn set_engine(agent: &AgentProc, settings: &str) {
    let path = agent.dir.join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nshards = 2\n"), "agent.toml changed shape");
    let text = text.replace("\nshards = 2\n", &format!("\nshards = 2\n{settings}\n"));
    std::fs::write(path, text).unwrap();
}

fn summary(w: &[Window]) {
    let q = w.len() / 4;
    let (first, last) = (&w[q], &w[w.len() - 1]);
    eprintln!(
        "soak summary: windows {}, after warm-up (t={:.0} s) -> end (t={:.0} s): anon RSS \
         {:.1} -> {:.1} MiB, total RSS {:.1} -> {:.1} MiB, fds {} -> {}; max anon RSS {:.1} MiB, \
         max fds {}",
        w.len(),
        first.t,
        last.t,
        first.rss_anon as f64 / MIB,
        last.rss_anon as f64 / MIB,
        first.rss_total as f64 / MIB,
        last.rss_total as f64 / MIB,
        first.fds,
        last.fds,
        w.iter().map(|x| x.rss_anon).max().unwrap() as f64 / MIB,
        w.iter().map(|x| x.fds).max().unwrap()
    );
    for (k, kind) in KINDS.iter().enumerate() {
        let p99s = |ws: &[Window]| median(ws.iter().map(|x| x.queries[k].2).collect());
        eprintln!(
            "soak {}: median p99 {:.1} ms (second quarter) -> {:.1} ms (last quarter), max p99 \
             {:.1} ms",
            kind.name(),
            p99s(&w[q..2 * q]),
            p99s(&w[w.len() - q..]),
            w.iter().map(|x| x.queries[k].2).fold(0.0, f64::max)
        );
    }
}

#[test]
fn soak_a_steady_rate_with_queries_keeps_memory_fds_and_latency_flat() {
    let _serial = crate::fleet_campaign::serial();
    let secs = env_u64("KEPLOR_SOAK_SECS").unwrap_or(60);
    let rate = env_u64("KEPLOR_SOAK_RATE").unwrap_or(2000) as f64;
    let long = secs >= 600;
    let window = Duration::from_secs(if long { 10 } else { 3 });
    let dir = TestDir::new("soak");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic(TOPIC, PARTITIONS);
    let opts = AgentOpts {
        group: GROUP.into(),
        topic: TOPIC.into(),
        dlq: None,
        static_member: false,
        assignment: "range".into(),
    };
    let mut agent = AgentProc::new(dir.path(), "agent", &tansu.brokers, &opts);
    // The decoded columns of segments are held up to `engine.segment_cache`: a budget the
    // long run's data passes within minutes, so that memory must level off once it is full.
    set_engine(&agent, "segment_cache = \"32MiB\"");
    // Short runs rotate every few seconds so that the second quarter already holds whole
    // memtable cycles; long runs keep the agent's default (262,144 events per shard).
    if !long {
        set_engine(&agent, "max_segment_events = 8192");
    }
    agent.start();
    let (sent, stop, log) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(QueryLog::default()),
    );
    let start = Instant::now();
    let producer = {
        let (brokers, sent, stop) = (tansu.brokers.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || produce(&brokers, rate, &sent, &stop))
    };
    let clients: Vec<_> = KINDS
        .iter()
        .map(|&kind| {
            let (base, sent, stop, log) =
                (agent.endpoint(), sent.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || query_client(kind, &base, &sent, &stop, &log))
        })
        .collect();
    let count = (Duration::from_secs(secs).as_secs_f64() / window.as_secs_f64()) as u32;
    let windows = sample(&mut agent, &log, &sent, start, window, count);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let n = producer.join().unwrap();
    eprintln!("soak: {secs} s at {rate} messages/s, {n} messages, windows of {window:?}");
    summary(&windows);
    check_queries(&log, &windows, secs);
    wait_for_count(&mut agent, n);
    assert!(agent.stop().success(), "{}", agent.log_tail(30));
    check_store(&agent.dir.join("data"), n);
    let failed = flatness(&windows);
    assert!(failed.is_empty(), "not flat:\n{}", failed.join("\n"));
    eprintln!("soak: {:.1?} in all", start.elapsed());
}

/// The flatness checks fail on a leak of memory or descriptors, on queries that slow down and
/// on ingest that falls behind, and pass on noise.
#[test]
fn soak_flatness_catches_leaks_and_slowdowns() {
    let steady = |i: usize| Window {
        t: i as f64,
        rss_anon: (60 + (i % 3) as u64 * 5) << 20,
        rss_total: (100 + i as u64) << 20,
        fds: 40 + (i % 2) as u64,
        queries: [(30, 1.0, 4.0 + (i % 4) as f64); 4],
        produced_rate: 2000.0,
        stored_rate: 1900.0 + (i % 5) as f64 * 40.0,
        lag: 0.0,
    };
    let run = |f: &dyn Fn(usize, &mut Window)| {
        let w: Vec<Window> = (0..40)
            .map(|i| {
                let mut w = steady(i);
                f(i, &mut w);
                w
            })
            .collect();
        flatness(&w)
    };
    assert!(run(&|_, _| {}).is_empty(), "{:?}", run(&|_, _| {}));
    let anon = run(&|i, w| w.rss_anon += (i as u64 * 4) << 20);
    assert!(
        anon.len() == 1 && anon[0].contains("anonymous RSS"),
        "{anon:?}"
    );
    let fds = run(&|i, w| w.fds += i as u64 / 2);
    assert!(fds.len() == 1 && fds[0].contains("fds"), "{fds:?}");
    let slow = run(&|i, w| w.queries[2].2 += if i >= 30 { 100.0 } else { 0.0 });
    assert!(slow.len() == 1 && slow[0].contains("get id"), "{slow:?}");
    let behind = run(&|i, w| w.stored_rate = if i >= 30 { 1000.0 } else { w.stored_rate });
    assert!(
        behind.len() == 1 && behind[0].contains("ingest"),
        "{behind:?}"
    );
}
