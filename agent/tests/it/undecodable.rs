//! Issue 9: a fetched batch that cannot be decoded surfaces, against a real broker (Tansu).
//!
//! kafka-python produces a zstd batch whose compressed bytes are garbage behind zstd's magic
//! (its header, CRC and record count are right, so Tansu stores it as it comes, like any broker
//! that does not recompress). librdkafka cannot inflate it and hands the agent a consume error
//! every time it fetches the batch again. The agent must:
//! - count it in `keplor_consumer_errors_total{kind}`;
//! - log it, without flooding the log;
//! - name the topic, partition and offset of the batch once the partition is stuck, and turn
//!   `/readyz` false after `errors.stuck_after`;
//! - keep consuming the other partitions exactly, store nothing of the bad batch and nothing
//!   twice, and keep running (`/healthz`).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{call, wait_until};
use crate::tansu::{query, AgentOpts, AgentProc, ProduceOpts, Tansu, TestDir};

/// Messages `range` on partition `p`, as `call(i)`.
fn on(p: i32, range: std::ops::Range<u64>) -> Vec<(i32, Vec<u8>)> {
    range.map(|i| (p, call(i))).collect()
}

/// The events the agent stores, as `keplor-agent query aggregate` counts them.
fn stored(agent: &AgentProc) -> u64 {
    query(&[agent.endpoint()], &["aggregate"])["event_count"]
        .as_u64()
        .unwrap()
}

#[test]
fn an_undecodable_batch_is_counted_logged_and_turns_readiness_false() {
    let started = Instant::now();
    let dir = TestDir::new("undecodable");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic("bad", 2);
    let opts = AgentOpts {
        group: "g-undecodable".into(),
        topic: "bad".into(),
        dlq: None,
        static_member: false,
        assignment: "cooperative-sticky".into(),
    };
    let mut agent = AgentProc::new(dir.path(), "agent", &tansu.brokers, &opts);
    let config = dir.path().join("agent").join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[errors]\n", "[errors]\nstuck_after = \"3s\"\n"),
    )
    .unwrap();
    agent.start();

    // 40 good messages on each partition.
    let good = |msgs| tansu.produce(dir.path(), "bad", msgs, 0.0).finish();
    good([on(0, 0..40), on(1, 40..80)].concat());
    assert!(wait_until(Duration::from_secs(60), || stored(&agent) == 80));
    assert!(wait_until(Duration::from_secs(30), || agent.ready()));
    assert_eq!(agent.metric_series("keplor_consumer_errors_total").0, 0.0);

    // One undecodable zstd batch of 5 messages on partition 0, then good messages on both.
    let broken = ProduceOpts {
        client: json!({ "compression_type": "zstd", "linger_ms": 200 }),
        break_codec: Some("zstd"),
        ..ProduceOpts::default()
    };
    let acked = tansu
        .produce_with(dir.path(), "bad", on(0, 80..85), 0.0, &broken)
        .finish();
    let bad_offset = acked.iter().map(|&(_, o)| o).min().unwrap();
    assert_eq!(bad_offset, 40, "{acked:?}");
    good([on(0, 85..125), on(1, 125..165)].concat());

    // Partition 1 goes on exactly; partition 0 stops at the bad batch.
    assert!(
        wait_until(Duration::from_secs(60), || stored(&agent) >= 120),
        "stored {}\n{}",
        stored(&agent),
        agent.log_tail(40)
    );
    // Counted, by kind.
    assert!(
        wait_until(Duration::from_secs(30), || agent
            .metric_series("keplor_consumer_errors_total")
            .0
            >= 1.0),
        "{}",
        agent.log_tail(40)
    );
    // Not ready once partition 0 made no progress for stuck_after; alive all along.
    assert!(
        wait_until(Duration::from_secs(30), || !agent.ready()),
        "{}",
        agent.log_tail(40)
    );
    let stuck = agent.metric_series("keplor_partition_stuck").1;
    assert!(
        stuck
            .iter()
            .any(|l| l.contains("partition=\"0\"") && l.ends_with(" 1")),
        "{stuck:?}"
    );
    assert!(
        stuck
            .iter()
            .any(|l| l.contains("partition=\"1\"") && l.ends_with(" 0")),
        "{stuck:?}"
    );
    // Fetched again and again for a while: still counted, still not ready, still alive.
    std::thread::sleep(Duration::from_secs(12));
    agent.check_alive();
    assert!(!agent.ready());
    let (errors, by_kind) = agent.metric_series("keplor_consumer_errors_total");
    assert_eq!(
        stored(&agent),
        120,
        "nothing of the bad batch, nothing twice"
    );

    // The log names the partition and the batch's offset, and does not repeat each error.
    let log = std::fs::read_to_string(dir.path().join("agent").join("agent.log")).unwrap();
    let stuck_line = log
        .lines()
        .find(|l| l.contains("partition stuck"))
        .unwrap_or_else(|| panic!("no stuck warning:\n{}", agent.log_tail(40)));
    for want in [
        "topic=\"bad\"",
        "partition=0",
        &format!("next={bad_offset}"),
        "last_consumer_error=",
    ] {
        let want = want.replace('"', "");
        assert!(
            stuck_line.replace('"', "").contains(&want),
            "{want}: {stuck_line}"
        );
    }
    let warnings = log.lines().filter(|l| l.contains("consumer error")).count();
    eprintln!(
        "undecodable: {errors} consumer errors {by_kind:?}, {warnings} warnings, {stuck_line}"
    );
    assert!(warnings >= 1, "{}", agent.log_tail(40));
    assert!(
        warnings <= 1 + by_kind.len() * (started.elapsed().as_secs() as usize / 10 + 1),
        "{warnings} warnings for {errors} errors: one per kind per 10 s at most"
    );
    assert!(agent.stop().success(), "{}", agent.log_tail(30));
}
