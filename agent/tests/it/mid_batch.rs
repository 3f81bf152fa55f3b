//! Issue 11: an agent that resumes inside a producer batch loses nothing, against Tansu 0.6.
//!
//! Tansu's fetch answers only with the stored batches whose base offset is at or past the
//! offset asked for, so a fetch from inside a producer batch gets the next batch and the rest
//! of that one is never served. The 500-kill campaign lost 3 messages this way: the agent took
//! the gap for the log's own (retention, compaction) and went on. Here the group's committed
//! offset is 7, inside a 20-record producer batch, and a second batch follows: the agent must
//! read again from earlier offsets until the broker answers from before the gap
//! (`sink::seek_check`), then store offsets 7 to 29 exactly once.

use std::time::Duration;

use keplordb::DynEngine;
use serde_json::json;

use crate::common::{call, stored_ids, wait_until};
use crate::tansu::{query, AgentOpts, AgentProc, ProduceOpts, Tansu, TestDir};

/// Produces `call(i)` for `range` to partition 0 of `topic` as one producer batch; returns
/// the offsets.
fn one_batch(tansu: &Tansu, dir: &TestDir, topic: &str, range: std::ops::Range<u64>) -> Vec<i64> {
    let opts = ProduceOpts {
        client: json!({ "linger_ms": 1000, "batch_size": 1 << 20 }),
        ..ProduceOpts::default()
    };
    let msgs = range.map(|i| (0, call(i))).collect();
    let acked = tansu
        .produce_with(dir.path(), topic, msgs, 0.0, &opts)
        .finish();
    acked.into_iter().map(|(_, o)| o).collect()
}

#[test]
fn a_resume_inside_a_producer_batch_reads_the_rest_of_it() {
    let dir = TestDir::new("mid-batch");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic("mid", 1);
    assert_eq!(
        one_batch(&tansu, &dir, "mid", 0..20),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        one_batch(&tansu, &dir, "mid", 20..30),
        (20..30).collect::<Vec<_>>()
    );
    let group = "g-mid-batch";
    tansu.commit_py(group, "mid", 0, 7, "");

    let opts = AgentOpts {
        group: group.into(),
        topic: "mid".into(),
        dlq: None,
        static_member: false,
        assignment: "cooperative-sticky".into(),
    };
    let mut agent = AgentProc::new(dir.path(), "agent", &tansu.brokers, &opts);
    agent.start();
    let count = |a: &AgentProc| query(&[a.endpoint()], &["aggregate"])["event_count"].as_u64();
    let all = wait_until(Duration::from_secs(60), || count(&agent) == Some(23));
    assert!(all, "stored {:?}\n{}", count(&agent), agent.log_tail(40));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&agent), Some(23), "nothing twice");

    // The broker left the rest of the first batch out; the agent read again from earlier
    // offsets (7 → 6, 5, 3, then the log's start) and skipped nothing.
    let rewinds = agent.metric("keplor_gap_rewinds_total");
    assert!(rewinds >= 1.0, "{}", agent.log_tail(40));
    assert_eq!(agent.metric("keplor_offsets_skipped_total"), 0.0);
    assert!(agent.stop().success(), "{}", agent.log_tail(30));

    let store = DynEngine::open_read_only(agent.dir.join("data")).unwrap();
    let ids = stored_ids(&store);
    let want: std::collections::HashMap<String, u32> =
        (7..30).map(|i| (format!("r{i}"), 1)).collect();
    assert_eq!(ids, want);
    eprintln!("mid-batch resume: {rewinds} rewinds, offsets 7..30 stored once");
}
