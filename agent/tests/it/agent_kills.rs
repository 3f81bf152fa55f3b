//! One agent, SIGKILLed at random moments while it consumes from a real broker (Tansu) and a
//! producer that is not ours (kafka-python) keeps sending. After every kill, with the agent
//! down: Kafka's committed offset of each partition never runs ahead of what the store holds
//! durably (published or staged), read from the store itself. At the end: every produced
//! message stored exactly once, poison messages skipped.
//!
//! Sizes: `KEPLOR_AGENT_KILLS` (default 20; the long size is 500), `KEPLOR_AGENT_KILLS_SEED`
//! picks the run. A failure keeps the test directory (agent, broker and producer logs).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use keplordb::DynEngine;

use crate::tansu::{query, AgentOpts, AgentProc, Tansu, TestDir};

const TOPIC: &str = "in";
const GROUP: &str = "kills";
const PARTITIONS: i32 = 4;
/// Messages per second from the producer.
const RATE: f64 = 400.0;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// xorshift64*: the campaign's moments and partitions, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// Message `i`: a good event with id `r<i>`, or (1 in 61) a poison message.
fn message(i: u64) -> (Vec<u8>, bool) {
    if i % 61 == 17 {
        return (format!(r#"{{"rid":"p{i}","user":"#).into_bytes(), false);
    }
    let payload = format!(
        r#"{{"rid":"r{i}","user":"u{}","model":"m{}","usage":{{"tokens":{}}},"cost":{},"status":200,"ts":{}}}"#,
        i % 5,
        i % 3,
        i % 900,
        i as i64 * 3 - 50,
        1_764_028_800_000 + i as i64 * 1000
    );
    (payload.into_bytes(), true)
}

/// Per partition, the highest offset the store holds durably: published (its durable
/// checkpoint) or staged (durable, waiting for its commit to be decided).
fn durable_in_store(data: &std::path::Path) -> BTreeMap<i32, i64> {
    let e = DynEngine::open_read_only(data).expect("open the killed agent's store read-only");
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let source = format!("{TOPIC}/{p}");
        let published = e.durable_checkpoint(&source).map(|o| o as i64);
        let staged = e
            .staged_positions()
            .get(&source)
            .and_then(|v| v.iter().max().copied())
            .map(|o| o as i64);
        out.insert(p, published.max(staged).unwrap_or(-1));
    }
    out
}

#[test]
fn agent_sigkills_against_a_real_broker_lose_and_duplicate_nothing() {
    let _serial = crate::fleet_campaign::serial();
    let kills = env_u64("KEPLOR_AGENT_KILLS").unwrap_or(20);
    let seed = env_u64("KEPLOR_AGENT_KILLS_SEED").unwrap_or(0x4b11_5eed);
    let mut rng = Rng(seed | 1);
    let dir = TestDir::new("agent-kills");
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
    // Enough messages to keep the producer sending through every kill (about 2.5 s each).
    let n = (kills * 1000).max(4000);
    let mut good = Vec::new();
    let msgs: Vec<(i32, Vec<u8>)> = (0..n)
        .map(|i| {
            let (payload, ok) = message(i);
            if ok {
                good.push(format!("r{i}"));
            }
            ((rng.next() % PARTITIONS as u64) as i32, payload)
        })
        .collect();
    let started = Instant::now();
    agent.start();
    let production = tansu.produce(dir.path(), TOPIC, msgs, RATE);
    let mut checked = 0;
    for k in 0..kills {
        std::thread::sleep(rng.millis(300, 2500));
        agent.check_alive();
        agent.kill();
        let committed = tansu.committed(GROUP, TOPIC, PARTITIONS);
        let durable = durable_in_store(&agent.dir.join("data"));
        for (p, (c, _)) in committed.iter().enumerate() {
            let d = durable[&(p as i32)];
            assert!(
                *c <= d + 1,
                "kill {k}: partition {p} committed at {c} but the store holds only up to {d}:\n{}",
                agent.log_tail(30)
            );
            checked += 1;
        }
        agent.start();
    }
    let acked = production.finish();
    assert_eq!(acked.len() as u64, n, "the producer lost messages");
    let mut ends = vec![0i64; PARTITIONS as usize];
    for (p, o) in &acked {
        ends[*p as usize] = ends[*p as usize].max(o + 1);
    }
    // Tansu 0.6 can leave a partition with the dead member after a SIGKILL (see the fleet
    // campaign's `nudge`): when the committed offsets stop moving while behind, restart the
    // agent cleanly (counted).
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut last, mut moved_at, mut nudges) = (Vec::new(), Instant::now(), 0);
    loop {
        agent.check_alive();
        let c: Vec<i64> = tansu
            .committed(GROUP, TOPIC, PARTITIONS)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        if c.iter().zip(&ends).all(|(c, e)| c >= e) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not catch up ({c:?} of {ends:?}):\n{}",
            agent.log_tail(30)
        );
        if c != last {
            (last, moved_at) = (c, Instant::now());
        } else if moved_at.elapsed() > Duration::from_secs(15) {
            nudges += 1;
            assert!(agent.stop().success(), "{}", agent.log_tail(30));
            agent.start();
            moved_at = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let count = query(&[agent.endpoint()], &["aggregate"])["event_count"]
        .as_u64()
        .unwrap();
    assert!(agent.stop().success(), "{}", agent.log_tail(30));
    let store = DynEngine::open_read_only(agent.dir.join("data")).unwrap();
    let mut stored: HashMap<String, u32> = HashMap::new();
    store
        .scan_events(|e| *stored.entry(e.id).or_default() += 1)
        .unwrap();
    let missing: Vec<&String> = good.iter().filter(|id| !stored.contains_key(*id)).collect();
    let twice: Vec<(&String, &u32)> = stored.iter().filter(|(_, &c)| c > 1).collect();
    eprintln!(
        "agent kills: seed {seed:#x}, {kills} SIGKILLs, {n} messages ({} good), {checked} \
         committed-vs-durable checks, stalled-group restarts {nudges}, stored {}, missing {}, \
         twice {}, elapsed {:.1?}",
        good.len(),
        stored.len(),
        missing.len(),
        twice.len(),
        started.elapsed()
    );
    assert!(
        missing.is_empty(),
        "missing, e.g. {:?}",
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "stored twice, e.g. {:?}",
        &twice[..twice.len().min(5)]
    );
    assert_eq!(stored.len(), good.len());
    assert_eq!(count, good.len() as u64, "the HTTP count");
}
