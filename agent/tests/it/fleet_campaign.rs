//! Fleet exactly-once (issue 8): `keplor-agent run` processes in one consumer group on a real
//! broker (Tansu), each with its own store, answer as one store through the fan-out query CLI
//! across SIGKILLs, restarts, rebalances and scaling. Every figure is exact: computed from what
//! was produced, compared with `keplor-agent query -e A -e B -e C`.
//!
//! Sizes: `KEPLOR_FLEET_KILLS` (default 10) kills in the campaign, 600 messages per kill
//! (at least 6,000); `KEPLOR_FLEET_SEED` picks the run; `KEPLOR_FLEET_STATIC=1` gives the
//! campaign's agents static membership (`group.instance.id`); `KEPLOR_FLEET_ASSIGNMENT`
//! replaces the `range` assignment (see `tansu::AgentOpts::assignment`). Figures go to stderr,
//! a failure lists expected vs got per figure and the partition offsets of the ids missing or
//! stored twice; the test directory (agent, broker and producer logs) is kept.
//!
//! Tansu 0.6.0's group coordinator can stall after SIGKILLs or leaves (see `tansu.rs`); when
//! the committed offsets do not move for [`STALL`] while behind, the running agents are
//! restarted (counted as "stalled-group restarts" in the report). Restarts are more chaos for
//! the agents, never a way around a wrong figure.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::fleet_figures::{page_ids, Check};
use crate::tansu::{query, query_output, AgentOpts, AgentProc, Production, Tansu, TestDir};

const TOPIC: &str = "in";
const DLQ: &str = "dlq";
const GROUP: &str = "fleet";
const BASE_TS_MS: i64 = 1_764_028_800_000;
/// Consecutive messages are 37 s apart: a few days, so rollups have several days.
const TS_STEP_MS: i64 = 37_000;
const MS_PER_DAY: i64 = 86_400_000;
/// No commit progress for this long while behind: the group is stalled (see `Fleet::nudge`).
const STALL: Duration = Duration::from_secs(15);

/// The fleet tests each run a broker and several agents: on a 2-core machine, one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: a number")),
    )
}

/// xorshift64*: seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// A message the mapper accepts, as produced.
#[derive(Clone, Debug)]
struct Good {
    i: u64,
    user: u64,
    model: u64,
    tokens: u64,
    cost: i64,
    status: u16,
    ts_ms: i64,
}

/// Message `i`: one in 97 is poison (truncated JSON, or a negative counter).
fn message(i: u64) -> (Vec<u8>, Option<Good>) {
    if i % 97 == 13 {
        let p = if (i / 97).is_multiple_of(2) {
            format!(r#"{{"rid":"p{i}","user":"u1","#)
        } else {
            format!(r#"{{"rid":"p{i}","user":"u1","usage":{{"tokens":-5}},"ts":{BASE_TS_MS}}}"#)
        };
        return (p.into_bytes(), None);
    }
    let g = Good {
        i,
        user: i % 7,
        model: (i / 7) % 3,
        tokens: (i * 31) % 1000,
        cost: (i as i64 * 7919) % 100_003 - 20_000,
        status: if i.is_multiple_of(10) { 500 } else { 200 },
        ts_ms: BASE_TS_MS + i as i64 * TS_STEP_MS,
    };
    let payload = format!(
        r#"{{"rid":"r{i}","user":"u{}","model":"m{}","usage":{{"tokens":{}}},"cost":{},"status":{},"ts":{},"note":"n{i}"}}"#,
        g.user, g.model, g.tokens, g.cost, g.status, g.ts_ms
    );
    (payload.into_bytes(), Some(g))
}

/// A broker, a group of agents (stopped until started), and everything produced so far.
/// Fields drop in order: agents, then the broker, then the directory (kept on panic).
struct Fleet {
    agents: Vec<AgentProc>,
    tansu: Tansu,
    partitions: i32,
    good: Vec<Good>,
    poison: usize,
    produced: usize,
    /// Per partition: acknowledged offsets (each once) and the end (highest + 1).
    acked: Vec<std::collections::HashSet<i64>>,
    ends: Vec<i64>,
    /// Producers at work, each with the message numbers it sends, in order.
    producing: Vec<(Production, Vec<u64>)>,
    /// Restarts of a stalled group (see `nudge`).
    nudges: u32,
    /// Where each acknowledged message landed: `i -> (partition, offset)`.
    placed: HashMap<u64, (i32, i64)>,
    dir: TestDir,
}

impl Fleet {
    fn new(name: &str, agents: usize, partitions: i32, static_member: bool) -> Fleet {
        let dir = TestDir::new(name);
        let tansu = Tansu::start(dir.path());
        tansu.create_topic(TOPIC, partitions);
        tansu.create_topic(DLQ, 1);
        let opts = AgentOpts {
            group: GROUP.into(),
            topic: TOPIC.into(),
            dlq: Some(DLQ.into()),
            static_member,
            assignment: std::env::var("KEPLOR_FLEET_ASSIGNMENT").unwrap_or_else(|_| "range".into()),
        };
        let agents: Vec<AgentProc> = (0..agents)
            .map(|k| {
                let name = format!("agent-{}", (b'a' + k as u8) as char);
                AgentProc::new(dir.path(), &name, &tansu.brokers, &opts)
            })
            .collect();
        let endpoints: Vec<String> = agents.iter().map(AgentProc::endpoint).collect();
        for a in &agents {
            a.join_fleet(&endpoints);
        }
        Fleet {
            agents,
            tansu,
            partitions,
            good: Vec::new(),
            poison: 0,
            produced: 0,
            acked: vec![Default::default(); partitions as usize],
            ends: vec![0; partitions as usize],
            producing: Vec::new(),
            nudges: 0,
            placed: HashMap::new(),
            dir,
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.agents.iter().map(AgentProc::endpoint).collect()
    }

    fn running_endpoints(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| a.running())
            .map(AgentProc::endpoint)
            .collect()
    }

    fn running(&self) -> usize {
        self.agents.iter().filter(|a| a.running()).count()
    }

    fn check_alive(&mut self) {
        for a in &mut self.agents {
            a.check_alive();
        }
    }

    /// Starts producing messages `range` (random partitions) at `rate` per second.
    fn produce(&mut self, range: Range<u64>, rate: f64, rng: &mut Rng) {
        let mut msgs = Vec::with_capacity(range.end.saturating_sub(range.start) as usize);
        let numbers: Vec<u64> = range.clone().collect();
        for i in range {
            let (payload, good) = message(i);
            match good {
                Some(g) => self.good.push(g),
                None => self.poison += 1,
            }
            msgs.push((rng.below(self.partitions as u64) as i32, payload));
        }
        self.produced += msgs.len();
        let p = self.tansu.produce(self.dir.path(), TOPIC, msgs, rate);
        self.producing.push((p, numbers));
    }

    /// Is a producer still sending?
    fn producing(&mut self) -> bool {
        self.producing.iter_mut().any(|p| p.0.running())
    }

    /// Waits for every producer's acknowledgements: they give each partition's end (Tansu's
    /// ListOffsets cannot, see `Tansu::list_offsets_latest`). Every offset is acknowledged
    /// once and each partition's offsets are 0..end: the producer duplicated nothing.
    fn finish_production(&mut self) {
        for (p, numbers) in std::mem::take(&mut self.producing) {
            for (&i, (part, offset)) in numbers.iter().zip(p.finish()) {
                self.placed.insert(i, (part, offset));
                let part = part as usize;
                assert!(
                    self.acked[part].insert(offset),
                    "offset {offset} of partition {part} acknowledged twice"
                );
                self.ends[part] = self.ends[part].max(offset + 1);
            }
        }
        for (p, (acked, end)) in self.acked.iter().zip(&self.ends).enumerate() {
            assert_eq!(
                acked.len() as i64,
                *end,
                "partition {p}: acknowledged offsets are not 0..{end}"
            );
        }
    }

    /// The fan-out event count over the running agents.
    fn count(&self) -> u64 {
        query(&self.running_endpoints(), &["aggregate"])["event_count"]
            .as_u64()
            .unwrap()
    }

    /// Finishes production, then waits until the group's committed offsets reach the end of
    /// every partition and the fan-out count over the running agents stopped changing (two
    /// equal reads a second apart); that count.
    fn wait_caught_up(&mut self, timeout: Duration) -> u64 {
        self.finish_production();
        let start = Instant::now();
        let mut last: Option<u64> = None;
        let mut committed = Vec::new();
        let hw = self.ends.clone();
        let (mut progress, mut progress_at) = (-1, Instant::now());
        while start.elapsed() < timeout {
            self.check_alive();
            committed = self.tansu.committed(GROUP, TOPIC, self.partitions);
            let at_hw = committed
                .iter()
                .zip(&hw)
                .all(|((c, _), h)| *c == *h || (*c == -1 && *h == 0));
            let sum: i64 = committed.iter().map(|c| c.0.max(0)).sum();
            if sum != progress {
                (progress, progress_at) = (sum, Instant::now());
            } else if !at_hw && progress_at.elapsed() > STALL {
                self.nudge(&committed, &hw);
                progress_at = Instant::now();
            }
            if at_hw {
                let n = self.count();
                if last == Some(n) {
                    return n;
                }
                last = Some(n);
            } else {
                last = None;
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        let logs: Vec<String> = self.agents.iter().map(|a| a.log_tail(25)).collect();
        panic!(
            "not caught up within {timeout:?}: committed {:?}, partition ends {hw:?}\n{}\n--- tansu ---\n{}",
            committed.iter().map(|c| c.0).collect::<Vec<_>>(),
            logs.join("\n"),
            self.tansu.log_tail()
        );
    }

    /// No commit progress for [`STALL`]: Tansu 0.6.0's group coordinator can leave the group
    /// without a leader or with partitions assigned to a dead member after SIGKILLs (it expels
    /// members waiting in JoinGroup on their session timeout). Every running agent is restarted
    /// (SIGTERM: LeaveGroup, then a fresh join); counted in `nudges` and printed.
    fn nudge(&mut self, committed: &[(i64, String)], ends: &[i64]) {
        self.nudges += 1;
        eprintln!(
            "group stalled {STALL:?} at committed {:?} (ends {ends:?}): restarting the running agents",
            committed.iter().map(|c| c.0).collect::<Vec<_>>()
        );
        for a in self.agents.iter_mut().filter(|a| a.running()) {
            let s = a.stop();
            assert!(s.success(), "{s}:\n{}", a.log_tail(30));
            a.start();
        }
    }

    /// Compares every figure over the fan-out of all agents (all must be running) with what
    /// was produced; panics listing expected vs got per figure.
    fn check_figures(&self, rng: &mut Rng) {
        let eps = self.endpoints();
        let mut c = Check::default();

        // The topic holds exactly what was produced (read back through Fetch).
        c.eq(
            "topic: messages acknowledged",
            self.produced as i64,
            self.ends.iter().sum::<i64>(),
        );
        // Aggregates: totals, per user, per model, a status range.
        let agg = |g: &[&Good]| {
            (
                g.len() as u64,
                g.iter().map(|g| g.cost).sum::<i64>(),
                g.iter().map(|g| g.tokens).sum::<u64>(),
            )
        };
        let all: Vec<&Good> = self.good.iter().collect();
        let mut filters: Vec<(String, Vec<String>, Vec<&Good>)> =
            vec![("all".into(), vec![], all.clone())];
        for u in 0..7 {
            let sel = all.iter().copied().filter(|g| g.user == u).collect();
            filters.push((
                format!("user=u{u}"),
                vec!["--where".into(), format!("user=u{u}")],
                sel,
            ));
        }
        for m in 0..3 {
            let sel = all.iter().copied().filter(|g| g.model == m).collect();
            filters.push((
                format!("model=m{m}"),
                vec!["--where".into(), format!("model=m{m}")],
                sel,
            ));
        }
        let sel = all.iter().copied().filter(|g| g.status >= 500).collect();
        filters.push((
            "status 500..600".into(),
            vec!["--status".into(), "500..600".into()],
            sel,
        ));
        for (name, args, sel) in &filters {
            let mut a = vec!["aggregate"];
            a.extend(args.iter().map(String::as_str));
            let got = query(&eps, &a);
            let (n, metric, tokens) = agg(sel);
            c.eq(
                format!("aggregate {name}: events"),
                n,
                got["event_count"].as_u64().unwrap(),
            );
            c.eq(
                format!("aggregate {name}: metric"),
                metric,
                got["metric"].as_i64().unwrap(),
            );
            c.eq(
                format!("aggregate {name}: tokens"),
                tokens,
                got["counters"]["tokens"].as_u64().unwrap(),
            );
            if name == "all" {
                let min = self.good.iter().map(|g| g.ts_ms).min().unwrap() * 1_000_000;
                let max = self.good.iter().map(|g| g.ts_ms).max().unwrap() * 1_000_000;
                c.eq(
                    "aggregate all: min_ts_ns",
                    min,
                    got["min_ts_ns"].as_i64().unwrap(),
                );
                c.eq(
                    "aggregate all: max_ts_ns",
                    max,
                    got["max_ts_ns"].as_i64().unwrap(),
                );
            }
        }

        // Rollups per (day, user), summed over the agents by the CLI.
        let mut want: BTreeMap<(i64, String), (u64, i64, u64)> = BTreeMap::new();
        for g in &self.good {
            let e = want
                .entry((g.ts_ms.div_euclid(MS_PER_DAY), format!("u{}", g.user)))
                .or_default();
            e.0 += 1;
            e.1 += g.cost;
            e.2 += g.tokens;
        }
        let (d0, d1) = (want.keys().next().unwrap().0, want.keys().last().unwrap().0);
        let got = query(
            &eps,
            &[
                "rollups",
                "--from-day",
                &d0.to_string(),
                "--to-day",
                &d1.to_string(),
            ],
        );
        let mut have: BTreeMap<(i64, String), (u64, i64, u64)> = BTreeMap::new();
        for b in got["buckets"].as_array().unwrap() {
            let key = (
                b["day"].as_i64().unwrap(),
                b["dims"]["user"].as_str().unwrap().to_string(),
            );
            let v = (
                b["event_count"].as_u64().unwrap(),
                b["metric"].as_i64().unwrap(),
                b["counters"]["tokens"].as_u64().unwrap(),
            );
            have.insert(key, v);
        }
        let keys: std::collections::BTreeSet<_> = want.keys().chain(have.keys()).cloned().collect();
        c.eq("rollups: buckets", want.len(), have.len());
        for k in keys {
            c.eq(
                format!("rollup day {} {}: (events, metric, tokens)", k.0, k.1),
                want.get(&k).copied().unwrap_or_default(),
                have.get(&k).copied().unwrap_or_default(),
            );
        }

        // Paging `recent` with cursors over the fan-out: every good id exactly once.
        let expected: HashMap<String, u64> =
            self.good.iter().map(|g| (format!("r{}", g.i), 0)).collect();
        let locate = |id: &str| {
            let i: u64 = id.strip_prefix('r')?.parse().ok()?;
            self.placed.get(&i).copied()
        };
        let fan = page_ids(&eps);
        c.ids("recent over the fan-out", &expected, &fan, &locate);
        // Each agent paged on its own: across the stores, every good id is stored once.
        let mut stored: Vec<String> = Vec::new();
        for ep in &eps {
            let ids = page_ids(std::slice::from_ref(ep));
            stored.extend(ids);
        }
        c.ids(
            "recent per agent, all stores together",
            &expected,
            &stored,
            &locate,
        );

        // `get` for a few ids (the newest copy wins in the fan-out), and a poison id.
        for _ in 0..5 {
            let g = &self.good[rng.below(self.good.len() as u64) as usize];
            let got = query(&eps, &["get", &format!("r{}", g.i)]);
            let e = &got["events"][0];
            c.eq(
                format!("get r{}: (user, metric, tokens, ts_ns)", g.i),
                (
                    format!("u{}", g.user),
                    g.cost,
                    g.tokens,
                    g.ts_ms * 1_000_000,
                ),
                (
                    e["dims"]["user"].as_str().unwrap_or_default().to_string(),
                    e["metric"].as_i64().unwrap_or_default(),
                    e["counters"]["tokens"].as_u64().unwrap_or_default(),
                    e["ts_ns"].as_i64().unwrap_or_default(),
                ),
            );
        }
        let poison_id = (0..self.produced as u64).find(|i| i % 97 == 13 && (i / 97) % 2 == 1);
        if let Some(i) = poison_id {
            let out = query_output(&eps, &["get", &format!("p{i}")]);
            c.eq(
                format!("get p{i} (poison): exit code"),
                Some(4),
                out.status.code(),
            );
        }
        // The DLQ holds every poison message (at least once: it is not part of the store).
        let poison: std::collections::HashSet<String> = (0..self.produced as u64)
            .filter(|&i| message(i).1.is_none())
            .map(|i| String::from_utf8(message(i).0).unwrap())
            .collect();
        let dlq = self.tansu.dump(DLQ);
        let in_dlq: std::collections::HashSet<&str> = dlq.iter().map(|m| m.2.as_str()).collect();
        eprintln!(
            "  DLQ: {} messages for {} poison messages",
            dlq.len(),
            poison.len()
        );
        c.eq(
            "dlq: poison messages missing from it",
            0,
            poison
                .iter()
                .filter(|p| !in_dlq.contains(p.as_str()))
                .count(),
        );
        c.finish();
    }

    /// Messages produced, each agent's count and starts, and the nudges, for the report.
    fn summary(&self) -> String {
        let per_agent: Vec<u64> = self
            .running_endpoints()
            .iter()
            .map(|ep| {
                query(std::slice::from_ref(ep), &["aggregate"])["event_count"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        format!(
            "messages {} ({} good, {} poison), expected count {}, per running agent {per_agent:?} \
             (sum {}), starts {:?}, stalled-group restarts {}",
            self.produced,
            self.good.len(),
            self.poison,
            self.good.len(),
            per_agent.iter().sum::<u64>(),
            self.agents.iter().map(|a| a.starts).collect::<Vec<_>>(),
            self.nudges
        )
    }
}

fn seed() -> u64 {
    env_u64("KEPLOR_FLEET_SEED").unwrap_or(0x5eed_0008)
}

/// Three agents, one topic of 8 partitions, a throttled producer with poison messages; during
/// production K times: SIGKILL a random agent, wait 0.5–3 s, restart it; then scale 3 → 1
/// (one SIGKILL, one SIGTERM), catch up, 3 again with a last burst; then every figure exact.
#[test]
fn fleet_campaign_kills_restarts_and_scaling_stay_exact() {
    let _serial = serial();
    let started = Instant::now();
    let kills = env_u64("KEPLOR_FLEET_KILLS").unwrap_or(10);
    let n = (600 * kills).max(6000);
    let static_member = env_u64("KEPLOR_FLEET_STATIC") == Some(1);
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut f = Fleet::new("fleet-campaign", 3, 8, static_member);
    for a in &mut f.agents {
        a.start();
    }
    // 95% during the kills, at a rate that spreads it over them; the rest after scaling up.
    let main_n = n * 95 / 100;
    let rate = main_n as f64 / (kills as f64 * 4.0 + 6.0);
    f.produce(0..main_n, rate, &mut rng);
    std::thread::sleep(Duration::from_secs(2));
    for k in 0..kills {
        let v = rng.below(3) as usize;
        f.check_alive();
        f.agents[v].kill();
        let down = rng.millis(500, 3000);
        std::thread::sleep(down);
        f.agents[v].start();
        let producing = f.producing();
        eprintln!(
            "kill {}/{kills}: {} down {down:?} (producer running: {producing})",
            k + 1,
            f.agents[v].name,
        );
        std::thread::sleep(rng.millis(1000, 3000));
    }

    // Scale 3 -> 1: one SIGKILLed, one SIGTERMed.
    let keep = rng.below(3) as usize;
    let others: Vec<usize> = (0..3).filter(|&k| k != keep).collect();
    f.agents[others[0]].kill();
    let status = f.agents[others[1]].stop();
    assert!(
        status.success(),
        "{status}:\n{}",
        f.agents[others[1]].log_tail(30)
    );
    eprintln!("scaled down to {}", f.agents[keep].name);
    let alone = f.wait_caught_up(Duration::from_secs(150));
    eprintln!(
        "{} alone caught up: it holds {alone} events",
        f.agents[keep].name
    );

    // Scale 1 -> 3, with a last burst.
    for &k in &others {
        f.agents[k].start();
    }
    f.produce(main_n..n, rate.max(200.0), &mut rng);
    let total = f.wait_caught_up(Duration::from_secs(120));
    assert_eq!(f.running(), 3);

    eprintln!(
        "fleet campaign: seed {seed:#x}, static membership {static_member}, kills {kills}, \
         fan-out count {total}, {}, elapsed {:.1?}",
        f.summary(),
        started.elapsed()
    );
    f.check_figures(&mut rng);
}

/// No kills: agents leave (SIGTERM) and join every few seconds while messages are produced,
/// so partitions keep moving between stores; then every figure exact.
#[test]
fn fleet_rebalance_storm_stays_exact() {
    let _serial = serial();
    let started = Instant::now();
    let mut rng = Rng::new(seed() ^ 0x5707);
    let mut f = Fleet::new("fleet-storm", 3, 8, false);
    for a in &mut f.agents {
        a.start();
    }
    f.produce(0..3000, 120.0, &mut rng);
    let mut moves = 0;
    while f.producing() {
        std::thread::sleep(rng.millis(1500, 3500));
        f.check_alive();
        let k = rng.below(3) as usize;
        if !f.agents[k].running() {
            f.agents[k].start();
        } else if f.running() > 1 {
            let s = f.agents[k].stop();
            assert!(s.success(), "{s}:\n{}", f.agents[k].log_tail(30));
        } else {
            continue;
        }
        moves += 1;
        eprintln!(
            "storm: {} now {}",
            f.agents[k].name,
            if f.agents[k].running() { "up" } else { "down" }
        );
    }
    for a in &mut f.agents {
        if !a.running() {
            a.start();
        }
    }
    let total = f.wait_caught_up(Duration::from_secs(120));
    eprintln!(
        "fleet storm: {moves} joins/leaves, fan-out count {total}, {}, elapsed {:.1?}",
        f.summary(),
        started.elapsed()
    );
    f.check_figures(&mut rng);
}

/// A partition moves away from its first owner and comes back: A and B; stop B (A owns
/// all); start B; stop A (B owns all); start A. Messages flow during every move.
#[test]
fn fleet_partition_moves_away_and_back_stays_exact() {
    let _serial = serial();
    let started = Instant::now();
    let mut rng = Rng::new(seed() ^ 0xba4c);
    let mut f = Fleet::new("fleet-move", 2, 8, false);
    for a in &mut f.agents {
        a.start();
    }
    let step = 700;
    let mut next = 0;
    let mut phase = |f: &mut Fleet, what: &str, change: &mut dyn FnMut(&mut Fleet)| {
        f.produce(next..next + step, 350.0, &mut rng);
        next += step;
        std::thread::sleep(Duration::from_millis(800));
        change(f);
        let n = f.wait_caught_up(Duration::from_secs(90));
        eprintln!("move: {what}: {n} events over the running agents");
    };
    phase(&mut f, "A and B", &mut |_| {});
    phase(&mut f, "B stopped, A owns all", &mut |f| {
        assert!(f.agents[1].stop().success())
    });
    phase(&mut f, "B back", &mut |f| f.agents[1].start());
    phase(&mut f, "A stopped, B owns all", &mut |f| {
        assert!(f.agents[0].stop().success())
    });
    phase(&mut f, "A back", &mut |f| f.agents[0].start());
    // Partitions A owned in its first run, then B alone, then A again in its second run.
    let (first, second) = (
        f.agents[0].assigned_in_run(1),
        f.agents[0].assigned_in_run(2),
    );
    let back: Vec<i32> = first.intersection(&second).copied().collect();
    eprintln!("move: A owned {first:?}, then {second:?}: {back:?} went to B and came back");
    assert!(!back.is_empty(), "no partition came back to A");
    eprintln!(
        "fleet move: {}, elapsed {:.1?}",
        f.summary(),
        started.elapsed()
    );
    f.check_figures(&mut Rng::new(seed()));
}

/// With one of three agents stopped, a fan-out query still answers with the others' figures,
/// marked partial (`partial`, `missing` in JSON) and exit code 3; `--allow-partial` exits 0;
/// `get` of an id only the stopped agent has cannot say "not found" without the flag.
#[test]
fn fleet_query_with_a_stopped_agent_is_partial() {
    let _serial = serial();
    let started = Instant::now();
    let mut rng = Rng::new(seed() ^ 0x9a27);
    let mut f = Fleet::new("fleet-partial", 3, 8, false);
    for a in &mut f.agents {
        a.start();
    }
    // Every agent owns partitions before anything is produced, so each stores a share.
    let all_ready = crate::common::wait_until(Duration::from_secs(60), || {
        f.agents.iter().all(AgentProc::ready)
    });
    assert!(
        all_ready,
        "not every agent got partitions:\n{}",
        f.agents[0].log_tail(20)
    );
    std::thread::sleep(Duration::from_secs(2));
    f.produce(0..1500, 0.0, &mut rng);
    let total = f.wait_caught_up(Duration::from_secs(90));
    assert_eq!(total, f.good.len() as u64);
    let eps = f.endpoints();
    let count = |ep: &String| {
        query(std::slice::from_ref(ep), &["aggregate"])["event_count"]
            .as_u64()
            .unwrap()
    };
    let per_agent: Vec<u64> = eps.iter().map(count).collect();
    assert!(
        per_agent.iter().all(|&n| n > 0),
        "every agent stores a share: {per_agent:?}"
    );
    let gone = 1;
    let only_there = page_ids(std::slice::from_ref(&eps[gone]))
        .into_iter()
        .next()
        .expect("agent-b holds events");
    // SIGKILL: the group keeps it as a member until its session times out, so the others'
    // figures do not move while the query runs.
    f.agents[gone].kill();

    let out = query_output(&eps, &["aggregate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial exits 3: {stdout}{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("the partial answer is JSON");
    let answered: u64 = per_agent
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != gone)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(v["event_count"].as_u64(), Some(answered), "{v}");
    assert_eq!(v["partial"], true, "{v}");
    let missing = v["missing"].as_array().expect("missing");
    assert_eq!(missing.len(), 1, "{v}");
    assert_eq!(
        missing[0]["endpoint"].as_str(),
        Some(eps[gone].as_str()),
        "{v}"
    );
    assert!(
        stderr.contains(&eps[gone]),
        "stderr names the endpoint: {stderr}"
    );

    let out = query_output(&eps, &["--allow-partial", "aggregate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["event_count"].as_u64(), &v["partial"]),
        (Some(answered), &serde_json::json!(true))
    );

    let out = query_output(&eps, &["get", &only_there]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an id the missing agent may hold: {out:?}"
    );
    let out = query_output(&eps, &["--allow-partial", "get", &only_there]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // Back: complete again.
    f.agents[gone].start();
    let v = query(&eps, &["aggregate"]);
    assert_eq!(
        v["event_count"].as_u64(),
        Some(per_agent.iter().sum::<u64>()),
        "{v}"
    );
    assert_eq!(v["partial"], false, "{v}");
    eprintln!(
        "fleet partial: per agent {per_agent:?}, partial answer {answered} with {} down, elapsed {:.1?}",
        f.agents[gone].name,
        started.elapsed()
    );
}
