//! Staged batches: durable, invisible until published, dropped when retracted, through
//! rotation, reopen, crashes of the decision and shard-count changes.

use keplordb::SourceCheckpoint;

use crate::common::*;

fn stage(engine: &TestEngine, shard: usize, source: &str, range: std::ops::Range<u64>) {
    let batch: Vec<Ev> = range.clone().map(event).collect();
    let cp = SourceCheckpoint {
        source,
        position: range.end - 1,
    };
    let t = engine.append_staged_to(shard, &batch, cp).unwrap();
    engine.wait_durable(&t).unwrap();
}

fn ids(engine: &TestEngine) -> Vec<u64> {
    all_events(engine)
        .iter()
        .map(|e| e.id[3..].parse().unwrap())
        .collect()
}

#[test]
fn staged_rows_are_invisible_until_published_and_gone_when_retracted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::open(config(dir.path())).unwrap();
    stage(&engine, 0, "t/0", 0..10);
    stage(&engine, 0, "t/0", 10..20);
    stage(&engine, 0, "t/1", 100..105);
    assert_eq!(engine.total_events(), 0);
    assert!(engine.durable_checkpoints().is_empty());
    assert_eq!(engine.staged_positions()["t/0"], vec![9, 19]);
    assert_eq!(engine.publish_staged("t/0", 9).unwrap(), 1);
    assert_eq!(ids(&engine), (0..10).collect::<Vec<_>>());
    engine.sync().unwrap();
    assert_eq!(engine.durable_checkpoints()["t/0"], 9);
    // Publishing again is a no-op; retracting never touches published rows.
    assert_eq!(engine.publish_staged("t/0", 9).unwrap(), 0);
    assert_eq!(engine.retract_staged("t/0", 0).unwrap(), 1);
    assert_eq!(engine.total_events(), 10);
    assert_eq!(engine.retract_staged("t/1", 104).unwrap(), 1);
    assert!(engine.staged_positions().is_empty());
    assert_eq!(engine.durable_checkpoints().get("t/1"), None);
    let agg = engine.aggregate(&Default::default()).unwrap();
    assert_eq!(agg.event_count, 10);
}

#[test]
fn pending_batches_and_decisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        stage(&engine, 0, "t/0", 0..10);
        stage(&engine, 0, "t/0", 10..20);
        stage(&engine, 1, "t/1", 50..60);
        engine.publish_staged("t/0", 9).unwrap();
        engine.retract_staged("t/1", 0).unwrap();
        engine.sync().unwrap();
    }
    let engine = TestEngine::open(config(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().staged_pending, 1);
    assert_eq!(ids(&engine), (0..10).collect::<Vec<_>>());
    assert_eq!(engine.staged_positions()["t/0"], vec![19]);
    assert_eq!(engine.durable_checkpoints()["t/0"], 9);
    engine.publish_staged("t/0", 19).unwrap();
    assert_eq!(ids(&engine), (0..20).collect::<Vec<_>>());
}

#[test]
fn an_undecided_batch_stays_pending_across_a_crash_of_the_decision() {
    // The decision frame is written but never fsynced: after a crash the batch may be pending
    // again, and deciding again gives the same result.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        stage(&engine, 0, "t/0", 0..10);
        engine.publish_staged("t/0", 9).unwrap();
        // Dropped without sync: the publish frame is in the page cache, so it survives here;
        // either way the outcome after deciding again is the same.
    }
    let engine = TestEngine::open(config(dir.path())).unwrap();
    engine.publish_staged("t/0", 9).unwrap();
    assert_eq!(ids(&engine), (0..10).collect::<Vec<_>>());
    assert!(engine.staged_positions().is_empty());
}

#[test]
fn pending_batches_survive_rotations_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_max_events = 100;
    {
        let engine = TestEngine::open(c.clone()).unwrap();
        stage(&engine, 0, "t/0", 0..10);
        // Many rotations of shard 0 while the batch is pending.
        for b in 0..10u64 {
            let batch: Vec<Ev> = (1000 + b * 50..1050 + b * 50).map(event).collect();
            engine.append_batch_to(0, &batch, None).unwrap();
        }
        engine.flush().unwrap();
        assert!(engine.stats().rotations >= 3);
        assert_eq!(engine.staged_positions()["t/0"], vec![9]);
        assert_eq!(engine.total_events(), 500);
    }
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(engine.staged_positions()["t/0"], vec![9]);
    engine.publish_staged("t/0", 9).unwrap();
    engine.flush().unwrap();
    assert_eq!(engine.total_events(), 510);
    drop(engine);
    let engine = TestEngine::open(config(dir.path())).unwrap();
    assert_eq!(engine.total_events(), 510);
    assert!(engine.staged_positions().is_empty());
    assert_eq!(engine.durable_checkpoints()["t/0"], 9);
}

#[test]
fn lowering_the_shard_count_moves_pending_batches_to_shard_zero() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut c = config(dir.path());
        c.wal_shard_count = 4;
        let engine = TestEngine::open(c).unwrap();
        stage(&engine, 3, "t/3", 0..10);
        stage(&engine, 2, "t/2", 10..20);
        engine.publish_staged("t/2", 19).unwrap();
        engine.sync().unwrap();
    }
    let mut c = config(dir.path());
    c.wal_shard_count = 2;
    {
        let engine = TestEngine::open(c.clone()).unwrap();
        assert_eq!(engine.staged_positions()["t/3"], vec![9]);
        assert_eq!(ids(&engine), (10..20).collect::<Vec<_>>());
    }
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(engine.staged_positions()["t/3"], vec![9]);
    engine.publish_staged("t/3", 9).unwrap();
    assert_eq!(ids(&engine), (0..20).collect::<Vec<_>>());
}

#[test]
fn read_only_open_hides_pending_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        stage(&engine, 0, "t/0", 0..10);
        stage(&engine, 0, "t/0", 10..20);
        engine.publish_staged("t/0", 9).unwrap();
        engine.sync().unwrap();
    }
    let ro = keplordb::DynEngine::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.total_events(), 10);
    assert!(ro.publish_staged("t/0", 19).is_err());
}

/// A read-only open listed no pending batch (it builds no shards, and the batches were
/// dropped with them): the agent's kill campaign, which compares Kafka's committed offsets with
/// what a killed agent's store holds published or staged, then saw a batch staged just before
/// its commit was accepted as missing.
#[test]
fn read_only_open_lists_pending_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        stage(&engine, 0, "t/0", 0..10);
        stage(&engine, 0, "t/0", 10..20);
        stage(&engine, 1, "t/1", 100..105);
        stage(&engine, 1, "t/1", 105..110);
        engine.publish_staged("t/0", 9).unwrap();
        engine.retract_staged("t/1", 109).unwrap();
        engine.sync().unwrap();
    }
    let ro = keplordb::DynEngine::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.durable_checkpoint("t/0"), Some(9));
    assert_eq!(ro.durable_checkpoint("t/1"), None);
    let pending = ro.staged_positions();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(pending["t/0"], vec![19]);
    assert_eq!(pending["t/1"], vec![104]);
    assert_eq!(ro.total_events(), 10);
}
