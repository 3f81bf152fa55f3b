//! Delivery: exactly once into the store, offsets after the fsync, crashes, rebalances.

use std::sync::atomic::Ordering;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use keplordb::DynFilter;

use crate::common::*;

#[test]
fn json_messages_land_exactly_once_and_offsets_follow() {
    let kafka = Kafka::new(&[("in", 4)]);
    let payloads: Vec<Vec<u8>> = (0..1000).map(call).collect();
    kafka.produce("in", 4, &payloads);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g1", &[])).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent.engine.total_events()
            == 1000),
        "stored {}",
        agent.engine.total_events()
    );
    let engine = agent.engine.clone();
    let agg = engine.aggregate(&DynFilter::default()).unwrap();
    assert_eq!(agg.counters[0], (0..1000u64).map(|i| i % 100).sum::<u64>());
    assert_eq!(agg.metric, (0..1000i64).map(|i| i * 10).sum::<i64>());
    let errors = engine
        .aggregate(&DynFilter {
            status_min: Some(500),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(errors.event_count, 100);
    assert!(agent.ready.load(Ordering::Acquire));
    assert!(matches!(agent.stop(), Stopped::Clean));
    // Committed offsets cover everything, and only after it was durable.
    assert_eq!(kafka.committed("g1", "in", 4), vec![250; 4]);
    let cps = engine.durable_checkpoints();
    for p in 0..4 {
        assert_eq!(cps[&format!("in/{p}")], 249);
    }
    drop(engine);

    // Restart: nothing is read twice; new messages arrive.
    kafka.produce("in", 4, &(1000..1100).map(call).collect::<Vec<_>>());
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g1", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 1100));
    std::thread::sleep(Duration::from_millis(300));
    let ids = stored_ids(&agent.engine);
    assert_eq!(ids.len(), 1100);
    assert!(ids.values().all(|&n| n == 1));
    assert!(matches!(agent.stop(), Stopped::Clean));
}

use keplor_agent::sink::CrashPlan;
use std::sync::Arc;

#[test]
fn crash_and_restart_at_random_points_is_exactly_once() {
    let kafka = Kafka::new(&[("in", 3)]);
    let n = 3000u64;
    kafka.produce("in", 3, &(0..n).map(call).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x5DEE_CE66_D1CE_4E5Bu64;
    let mut crashes = 0;
    for round in 0..15 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Crash points come every message, append and fsync: 1..600 lands anywhere in a run.
        let after = 1 + (seed >> 33) as i64 % 600;
        let engine = Arc::new(
            keplordb::DynEngine::open(
                config(&kafka.brokers, dir.path(), "g-crash", &[]).engine_config(),
            )
            .unwrap(),
        );
        let before = engine.total_events();
        let plan = CrashPlan::after(after);
        let agent = Agent::start_with_crash(
            config(&kafka.brokers, dir.path(), "g-crash", &[]),
            engine.clone(),
            Some(plan.clone()),
        )
        .unwrap();
        wait_until(Duration::from_secs(20), || {
            plan.crashed() || engine.total_events() == n
        });
        let outcome = agent.stop();
        if plan.crashed() {
            crashes += 1;
            assert!(
                matches!(outcome, Stopped::Crashed),
                "round {round}: {outcome:?}"
            );
        }
        // Whatever happened, nothing is stored twice.
        let ids = stored_ids(&engine);
        assert!(
            ids.values().all(|&c| c == 1),
            "round {round}: duplicates after crash at point {after}"
        );
        assert!(engine.total_events() >= before);
        drop(engine);
    }
    assert!(crashes >= 10, "most rounds crash ({crashes})");
    // A last run without faults completes the topic.
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g-crash", &[])).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent.engine.total_events() == n),
        "stored {}",
        agent.engine.total_events()
    );
    std::thread::sleep(Duration::from_millis(300));
    let ids = stored_ids(&agent.engine);
    assert_eq!(ids.len() as u64, n);
    assert!(ids.values().all(|&c| c == 1));
    for p in 0..3 {
        for o in 0..n / 3 {
            assert!(
                ids.contains_key(&format!("in/{p}/{o}")),
                "missing in/{p}/{o}"
            );
        }
    }
    assert!(matches!(agent.stop(), Stopped::Clean));
}

#[test]
fn two_agents_split_partitions_and_hand_over() {
    init_logs();
    let kafka = Kafka::new(&[("in", 6)]);
    kafka.produce("in", 6, &(0..1200).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-pair", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 1200));
    // b joins: cooperative-sticky hands some of a's partitions over, committed first.
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-pair", &[])).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || b.ready.load(Ordering::Acquire)),
        "b never got a partition"
    );
    kafka.produce("in", 6, &(1200..2400).map(call).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        + b.engine.total_events()
        == 2400));
    assert!(
        b.engine.total_events() > 0 && a.engine.total_events() > 1200,
        "both consume"
    );
    // a leaves: it flushes, commits and releases its partitions; b takes over.
    let ea = a.engine.clone();
    assert!(matches!(a.stop(), Stopped::Clean));
    kafka.produce("in", 6, &(2400..3000).map(call).collect::<Vec<_>>());
    assert!(
        wait_until(Duration::from_secs(30), || ea.total_events()
            + b.engine.total_events()
            == 3000),
        "a {} + b {}",
        ea.total_events(),
        b.engine.total_events()
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut all = stored_ids(&ea);
    for (id, c) in stored_ids(&b.engine) {
        *all.entry(id).or_default() += c;
    }
    assert_eq!(all.len(), 3000, "no loss across the two stores");
    assert!(
        all.values().all(|&c| c == 1),
        "no duplicates across the two stores"
    );
    assert!(matches!(b.stop(), Stopped::Clean));
    assert_eq!(kafka.committed("g-pair", "in", 6), vec![500; 6]);
}

#[test]
fn a_new_store_starts_at_kafkas_committed_offsets() {
    init_logs();
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..100).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-fresh", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 100));
    assert!(matches!(a.stop(), Stopped::Clean));
    assert_eq!(kafka.committed("g-fresh", "in", 2), vec![50, 50]);
    // A store that has never seen these partitions starts where the group left off.
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-fresh", &[])).unwrap();
    kafka.produce("in", 2, &(100..110).map(call).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || b
        .engine
        .total_events()
        >= 10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.engine.total_events(), 10);
    assert!(matches!(b.stop(), Stopped::Clean));
}

#[test]
fn a_partition_that_comes_back_resumes_where_the_group_left_off() {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..200).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // a stores the first 200 and leaves.
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-back", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 200));
    assert!(matches!(a.stop(), Stopped::Clean));
    // b takes over, stores 200 more, commits, leaves.
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-back", &[])).unwrap();
    kafka.produce("in", 2, &(200..400).map(call).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || b
        .engine
        .total_events()
        == 200));
    let eb = b.engine.clone();
    assert!(matches!(b.stop(), Stopped::Clean));
    // a comes back: its own checkpoint is older than the group's offset; it must not re-read
    // what b stored.
    kafka.produce("in", 2, &(400..500).map(call).collect::<Vec<_>>());
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-back", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 300));
    std::thread::sleep(Duration::from_millis(500));
    let mut all = stored_ids(&a.engine);
    for (id, c) in stored_ids(&eb) {
        *all.entry(id).or_default() += c;
    }
    assert_eq!(all.len(), 500);
    assert!(
        all.values().all(|&c| c == 1),
        "no message stored by both agents"
    );
    assert_eq!(
        a.metrics.offsets_skipped.load(Ordering::Relaxed),
        0,
        "a jump to the group's offset is not a gap"
    );
    assert!(matches!(a.stop(), Stopped::Clean));
    assert_eq!(kafka.committed("g-back", "in", 2), vec![250, 250]);
}

/// Ids stored (and counted) by either store, with how many times.
fn merged_ids(stores: &[&keplordb::DynEngine]) -> std::collections::HashMap<String, u32> {
    let mut all = std::collections::HashMap::new();
    for s in stores {
        for (id, c) in stored_ids(s) {
            *all.entry(id).or_default() += c;
        }
    }
    all
}

#[test]
fn a_store_that_dies_before_its_commit_never_double_counts_with_the_next_owner() {
    // The fleet bug: a store that made a batch durable but died before Kafka saw its commit
    // still held that batch when the next owner read the same offsets again. Staged batches
    // count only once their commit is accepted, and the restarted store retracts what the
    // ownership chain gives to someone else.
    init_logs();
    let kafka = Kafka::new(&[("in", 4)]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-fleet", &[])).unwrap();
    let mut produced = 0u64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut crashes = 0;
    for round in 0..5 {
        kafka.produce(
            "in",
            4,
            &(produced..produced + 400).map(call).collect::<Vec<_>>(),
        );
        produced += 400;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let plan = CrashPlan::after(1 + (seed >> 33) as i64 % 300);
        let ea = Arc::new(
            keplordb::DynEngine::open(
                config(&kafka.brokers, da.path(), "g-fleet", &[]).engine_config(),
            )
            .unwrap(),
        );
        let a = Agent::start_with_crash(
            config(&kafka.brokers, da.path(), "g-fleet", &[]),
            ea.clone(),
            Some(plan.clone()),
        )
        .unwrap();
        wait_until(Duration::from_secs(20), || {
            plan.crashed() || ea.total_events() + b.engine.total_events() == produced
        });
        let outcome = a.stop();
        crashes += plan.crashed() as u32;
        // While a is down, b alone never counts anything twice.
        let live = merged_ids(&[&b.engine]);
        assert!(live.values().all(|&c| c == 1), "round {round}: b alone");
        // a is back (same store, no fault): it decides its staged batches from the chain.
        let a = Agent::start_with(
            config(&kafka.brokers, da.path(), "g-fleet", &[]),
            ea.clone(),
        )
        .unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || {
                merged_ids(&[&ea, &b.engine]).len() as u64 == produced
            }),
            "round {round} ({outcome:?}): a {} + b {} for {produced}",
            ea.total_events(),
            b.engine.total_events()
        );
        std::thread::sleep(Duration::from_millis(300));
        let all = merged_ids(&[&ea, &b.engine]);
        let twice: Vec<&String> = all.iter().filter(|(_, &c)| c > 1).map(|(k, _)| k).collect();
        assert!(
            twice.is_empty(),
            "round {round}: {} ids counted twice, e.g. {:?}",
            twice.len(),
            twice.first()
        );
        assert_eq!(ea.total_events() + b.engine.total_events(), produced);
        assert!(matches!(a.stop(), Stopped::Clean));
        drop(ea);
    }
    assert!(crashes >= 3, "most rounds crash ({crashes})");
    assert!(matches!(b.stop(), Stopped::Clean));
}

#[test]
fn the_ownership_ledger_records_every_new_owner_in_order() {
    use keplor_agent::sink::ledger::Ledger;
    let kafka = Kafka::new(&[("in", 2), ("owners", 1)]);
    kafka.produce("in", 2, &(0..100).map(call).collect::<Vec<_>>());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("KEPLOR_KAFKA__OWNERSHIP_TOPIC", "owners")];
    let a = Agent::start(config(&kafka.brokers, da.path(), "g-ledger", &env)).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 100));
    assert!(matches!(a.stop(), Stopped::Clean));
    kafka.produce("in", 2, &(100..200).map(call).collect::<Vec<_>>());
    let b = Agent::start(config(&kafka.brokers, db.path(), "g-ledger", &env)).unwrap();
    assert!(wait_until(Duration::from_secs(30), || b
        .engine
        .total_events()
        == 100));
    assert!(matches!(b.stop(), Stopped::Clean));
    let id = |d: &std::path::Path| std::fs::read_to_string(d.join("keplor-agent.id")).unwrap();
    let mut cc = rdkafka::config::ClientConfig::new();
    cc.set("bootstrap.servers", &kafka.brokers);
    let chains = Ledger::new(&cc, "owners", "g-ledger")
        .unwrap()
        .chains()
        .unwrap();
    for p in 0..2 {
        let chain = &chains[&format!("in/{p}")];
        assert_eq!(
            chain.entries,
            [(id(da.path()), 0), (id(db.path()), 50)],
            "a from the start, b from a's last commit"
        );
    }
}

#[test]
fn a_partition_another_member_still_holds_waits_until_it_lets_go() {
    // The handover barrier: a member assigned a partition that another member's sink still
    // holds (brokers that finish a rebalance before every member let go) defers it, consumes
    // nothing of it, and takes it from the committed offset once the holder let go. Two
    // groups make Kafka hand both agents the same partitions.
    init_logs();
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..200).map(call).collect::<Vec<_>>());
    let ports = [free_port(), free_port()];
    let fleet = format!(
        "[fleet]\nendpoints = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n",
        ports[0], ports[1]
    );
    let cfg = |dir: &std::path::Path, group: &str, port: u16| {
        let text = config_text(
            &kafka.brokers,
            &dir.display().to_string(),
            group,
            &format!("127.0.0.1:{port}"),
        ) + &fleet;
        keplor_agent::config::Config::from_toml(&text, Vec::new(), std::path::Path::new("."))
            .unwrap()
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Agent::start(cfg(da.path(), "g-hold-a", ports[0])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 200));
    let b = Agent::start(cfg(db.path(), "g-hold-b", ports[1])).unwrap();
    let deferred = || b.metrics.deferred.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(30), || deferred() == 2),
        "b deferred {}",
        deferred()
    );
    kafka.produce("in", 2, &(200..300).map(call).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(30), || a
        .engine
        .total_events()
        == 300));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b.engine.total_events(), 0, "b consumed a held partition");
    assert_eq!(deferred(), 2);
    let metrics = b.metrics.render(&b.engine);
    assert!(
        metrics.contains("keplor_partitions_deferred 2"),
        "{metrics}"
    );

    assert!(matches!(a.stop(), Stopped::Clean));
    assert!(
        wait_until(Duration::from_secs(30), || b.engine.total_events() == 300),
        "b stored {} once a let go",
        b.engine.total_events()
    );
    assert_eq!(deferred(), 0);
    let ids = stored_ids(&b.engine);
    assert_eq!(ids.len(), 300);
    assert!(ids.values().all(|&n| n == 1));
    assert!(matches!(b.stop(), Stopped::Clean));
}
