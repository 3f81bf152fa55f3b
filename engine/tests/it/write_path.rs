//! Appends, rotation, reopen.

use crate::common::*;

#[test]
fn append_flush_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Ev> = (0..5000).map(event).collect();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        for chunk in events.chunks(100) {
            engine.append_batch(chunk).unwrap();
        }
        assert_eq!(engine.total_events(), 5000);
        assert_eq!(all_events(&engine), events);
        engine.flush().unwrap();
        assert_eq!(engine.total_events(), 5000);
        assert_eq!(all_events(&engine), events);
        for e in (5000..5100).map(event) {
            engine.append(&e).unwrap();
        }
    }
    let engine = TestEngine::open(config(dir.path())).unwrap();
    let mut expect = events.clone();
    expect.extend((5000..5100).map(event));
    assert_eq!(engine.total_events(), 5100);
    assert_eq!(all_events(&engine), expect);
}

use std::sync::Arc;

use keplordb::{DbError, SourceCheckpoint};

#[test]
fn concurrent_appenders_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_max_events = 5_000;
    let engine = Arc::new(TestEngine::open(c.clone()).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for b in 0..25u64 {
                    let batch: Vec<Ev> =
                        (0..100).map(|i| event(t * 100_000 + b * 100 + i)).collect();
                    engine.append_batch(&batch).unwrap();
                }
                for i in 0..50 {
                    engine.append(&event(t * 100_000 + 90_000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let want = 8 * (2500 + 50);
    assert_eq!(engine.total_events(), want);
    assert!(engine.stats().rotations > 0);
    let got = all_events(&engine);
    assert_eq!(got.len() as u64, want);
    drop(got);
    drop(engine);
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(engine.total_events(), want);
}

#[test]
fn durable_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    let engine = Arc::new(TestEngine::open(c).unwrap());
    let per_thread = 40;
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let ticket = engine.append_durable(&event(t * 1000 + i)).unwrap();
                    assert!(engine.is_durable(&ticket));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = engine.stats();
    assert_eq!(stats.events_appended, 8 * per_thread);
    // Group commit: waiters covered by another thread's fsync return without their own.
    assert!(stats.fsyncs < stats.frames_written, "{stats:?}");
    assert!(stats.fsyncs > 0);
}

#[test]
fn sync_interval_and_bytes_bound_unsynced_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    c.wal_sync_every_events = 10;
    let engine = TestEngine::open(c.clone()).unwrap();
    let mut last = None;
    for i in 0..25 {
        last = Some(engine.append(&event(i)).unwrap());
    }
    assert_eq!(engine.stats().fsyncs, 2, "an fsync every 10 events");
    let t = last.unwrap();
    assert!(!engine.is_durable(&t));
    engine.wait_durable(&t).unwrap();
    assert!(engine.is_durable(&t));
    drop(engine);

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    c.wal_sync_every_events = u32::MAX;
    let engine = TestEngine::open(c).unwrap();
    for i in 0..500 {
        engine.append(&event(i)).unwrap();
    }
    assert_eq!(engine.stats().fsyncs, 0, "u32::MAX never fsyncs on its own");
}

#[test]
fn checkpoints_are_durable_with_their_batch_and_survive_rotation_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 2;
    c.wal_sync_every_events = u32::MAX;
    {
        let engine = TestEngine::open(c.clone()).unwrap();
        let cp = |p| {
            Some(SourceCheckpoint {
                source: "orders/0",
                position: p,
            })
        };
        let t1 = engine
            .append_batch_to(1, &[event(1), event(2)], cp(10))
            .unwrap();
        assert_eq!(t1.shard, 1);
        assert!(!engine.is_durable(&t1));
        assert_eq!(
            engine.durable_checkpoints().get("orders/0"),
            None,
            "not durable yet"
        );
        engine.wait_durable(&t1).unwrap();
        assert_eq!(engine.durable_checkpoints()["orders/0"], 10);
        let t2 = engine.append_batch_to(1, &[event(3)], cp(11)).unwrap();
        // A later, smaller position never moves the checkpoint back.
        engine.append_batch_to(0, &[event(4)], cp(5)).unwrap();
        engine.sync().unwrap();
        assert!(engine.is_durable(&t2));
        assert_eq!(engine.durable_checkpoints()["orders/0"], 11);
        engine.flush().unwrap();
        engine.gc(i64::MAX).unwrap();
        assert_eq!(engine.total_events(), 0);
        // Checkpoints outlive the data they came with.
        assert_eq!(engine.durable_checkpoints()["orders/0"], 11);
        assert!(matches!(
            engine.append_batch_to(2, &[event(5)], None),
            Err(DbError::ShardOutOfRange {
                shard: 2,
                shards: 2
            })
        ));
    }
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(engine.durable_checkpoints()["orders/0"], 11);
}

#[test]
fn checkpoint_only_batch_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::open(config(dir.path())).unwrap();
    let t = engine
        .append_batch_to(
            0,
            &[] as &[Ev],
            Some(SourceCheckpoint {
                source: "t/0",
                position: 7,
            }),
        )
        .unwrap();
    engine.wait_durable(&t).unwrap();
    drop(engine);
    let engine = TestEngine::open(config(dir.path())).unwrap();
    assert_eq!(engine.durable_checkpoints()["t/0"], 7);
    assert_eq!(engine.total_events(), 0);
}

#[test]
fn oversized_values_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::open(config(dir.path())).unwrap();
    let mut e = event(1);
    e.dims[0] = "u".repeat(70_000);
    let err = engine.append_batch(&[event(0), e]).unwrap_err();
    assert!(
        matches!(&err, DbError::ValueTooLarge { column, len: 70_000, max: 65_535 } if column == "dim user"),
        "{err}"
    );
    assert_eq!(engine.total_events(), 0, "the whole batch is refused");
    let mut e = event(2);
    e.labels[0] = "l".repeat(17 << 20);
    assert!(matches!(
        engine.append(&e),
        Err(DbError::ValueTooLarge { .. })
    ));
    let mut e = event(3);
    e.labels[0] = "l".repeat(1 << 20);
    engine.append(&e).unwrap();
    assert_eq!(
        engine.get_event(&e.id).unwrap().unwrap().labels[0].len(),
        1 << 20
    );
}

#[test]
fn many_distinct_values_rotate_into_several_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    c.wal_max_events = 200_000;
    let engine = TestEngine::open(c).unwrap();
    let events: Vec<Ev> = (0..140_000u64)
        .map(|i| {
            let mut e = event(i);
            e.dims[0] = format!("user-{i}");
            e
        })
        .collect();
    for chunk in events.chunks(10_000) {
        engine.append_batch(chunk).unwrap();
    }
    engine.flush().unwrap();
    assert_eq!(engine.stats().segments, 3);
    assert_eq!(engine.total_events(), 140_000);
    let mut q = keplordb::QueryFilter::<2>::new();
    q.dims[0] = Some("user-139999".into());
    assert_eq!(engine.aggregate(&q).unwrap().event_count, 1);
}

#[test]
fn empty_ids_get_unique_generated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::open(config(dir.path())).unwrap();
    let mut e = event(1);
    e.id.clear();
    engine.append_batch(&[e.clone(), e.clone(), e]).unwrap();
    let got = all_events(&engine);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|e| !e.id.is_empty()));
    assert!(got[0].id != got[1].id && got[1].id != got[2].id);
}

#[test]
fn segment_cache_maps_at_most_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    c.mmap_cache_capacity = 2;
    let engine = TestEngine::open(c.clone()).unwrap();
    for s in 0..6u64 {
        engine
            .append_batch(&(s * 100..s * 100 + 100).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
    }
    assert_eq!(engine.stats().segments, 6);
    assert!(engine.stats().mapped_segments <= 2, "{:?}", engine.stats());
    // Queries over every segment still see everything, re-mapping as they go.
    assert_eq!(all_events(&engine).len(), 600);
    assert_eq!(
        engine
            .aggregate(&keplordb::QueryFilter::new())
            .unwrap()
            .event_count,
        600
    );
    assert!(engine.stats().mapped_segments <= 2);
    drop(engine);
    let engine = TestEngine::open(c).unwrap();
    assert!(engine.stats().mapped_segments <= 2);
    assert_eq!(engine.total_events(), 600);
}

#[test]
fn the_segment_cache_holds_at_most_its_byte_budget_of_decoded_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 1;
    let engine = TestEngine::open(c.clone()).unwrap();
    for s in 0..8u64 {
        engine
            .append_batch(&(s * 500..s * 500 + 500).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
    }
    // With the default budget every segment stays decoded, ids included once a scan has read
    // them: that is one segment's share.
    assert_eq!(all_events(&engine).len(), 4000);
    let all = engine.stats();
    assert_eq!((all.segments, all.mapped_segments), (8, 8), "{all:?}");
    let per_segment = all.segment_cache_bytes / 8;
    assert!(per_segment > 500 * 16, "{all:?}");
    drop(engine);

    // A budget of three segments' columns: open and every query keep within it.
    c.segment_cache_bytes = 3 * per_segment + per_segment / 2;
    let engine = TestEngine::open(c.clone()).unwrap();
    let within = |e: &TestEngine| {
        let s = e.stats();
        assert!(s.segment_cache_bytes <= c.segment_cache_bytes, "{s:?}");
        assert!((1..=3).contains(&s.mapped_segments), "{s:?}");
    };
    within(&engine);
    assert_eq!(all_events(&engine).len(), 4000);
    within(&engine);
    let totals = engine.aggregate(&keplordb::QueryFilter::new()).unwrap();
    assert_eq!(totals.event_count, 4000);
    for i in [0u64, 1999, 3999] {
        assert!(engine.get_event(&event(i).id).unwrap().is_some());
    }
    within(&engine);

    // Scans over more segments than the cache holds keep the segments it holds: an aggregate
    // by a dim reads the columns of all eight, and decodes again only those the cache cannot
    // hold, plus one for the place they rotate through (a least-recently-used cache would
    // decode all eight every time).
    let mut by_dim = keplordb::QueryFilter::new();
    by_dim.dims[0] = Some(event(0).dims[0].clone());
    let want = engine.aggregate(&by_dim).unwrap();
    let before = engine.stats().segment_reloads;
    for scan in 1..=3 {
        assert_eq!(engine.aggregate(&by_dim).unwrap(), want);
        let reloads = engine.stats().segment_reloads - before;
        assert!(reloads <= scan * 6, "scan {scan}: {reloads} reloads");
        within(&engine);
    }
    drop(engine);

    // A budget smaller than one segment still answers: the segment in use is kept.
    c.segment_cache_bytes = 1;
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(all_events(&engine).len(), 4000);
    assert_eq!(engine.stats().mapped_segments, 1, "{:?}", engine.stats());
}

#[test]
fn invalid_configs_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = Box<dyn Fn(&mut keplordb::EngineConfig)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c| c.wal_shard_count = 0), "wal_shard_count"),
        (
            Box::new(|c| c.wal_sync_every_events = 0),
            "wal_sync_every_events",
        ),
        (Box::new(|c| c.bloom_dim = Some(2)), "bloom_dim"),
        (Box::new(|c| c.rollup_dims = vec![0, 0]), "rollup_dims"),
        (Box::new(|c| c.dim_names = vec!["a".into()]), "dim_names"),
        (
            Box::new(|c| c.label_names = vec!["user".into()]),
            "dim_names",
        ),
        (Box::new(|c| c.wal_max_events = 0), "wal_max_events"),
        (
            Box::new(|c| c.segment_cache_bytes = 0),
            "segment_cache_bytes",
        ),
    ];
    for (edit, field) in cases {
        let mut c = config(dir.path());
        edit(&mut c);
        match TestEngine::open(c) {
            Err(DbError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidConfig({field}), got {other:?}"),
        }
    }
}

#[test]
fn paging_while_appends_continue_sees_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_max_events = 700; // rotations happen between pages
    let engine = TestEngine::open(c).unwrap();
    // 3,000 events on 3 timestamps: thousands of ties.
    let ts = |i: u64| 1_700_000_000_000_000_000 + (i % 3) as i64;
    let mk = |i: u64| {
        let mut e = event(i);
        e.ts_ns = ts(i);
        e
    };
    engine
        .append_batch(&(0..3000).map(mk).collect::<Vec<_>>())
        .unwrap();
    let mut filter = keplordb::QueryFilter::<2>::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = 3000u64;
    loop {
        let page = engine.query_recent(&filter, 97).unwrap();
        let Some(last) = page.last() else { break };
        filter.cursor = Some(keplordb::Cursor::from(last));
        for e in &page {
            assert!(seen.insert(e.id.clone()), "{} returned twice", e.id);
        }
        // New events keep arriving, at the same timestamps and newer ones.
        let fresh: Vec<Ev> = (next..next + 50)
            .map(|i| if i % 2 == 0 { mk(i) } else { event(i) })
            .collect();
        engine.append_batch(&fresh).unwrap();
        next += 50;
    }
    for i in 0..3000 {
        assert!(
            seen.contains(&format!("ev-{i:08}")),
            "ev-{i:08} was never returned"
        );
    }
}

#[test]
fn shard_for_is_stable_and_spreads_a_groups_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.wal_shard_count = 4;
    let e = keplordb::DynEngine::open(c).unwrap();
    // Part of where existing stores keep their sources: hash64("alice") ends in 0x07.
    assert_eq!(e.shard_for("alice", 3), 2);
    let shards: Vec<usize> = (0..8).map(|m| e.shard_for("alice", m)).collect();
    assert_eq!(shards, [3, 0, 1, 2, 3, 0, 1, 2]);
    assert!((0..100).all(|m| e.shard_for("topic", m) < 4));
}

#[test]
fn the_typed_engine_offers_read_only_opens_its_config_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let e = TestEngine::open(config(dir.path()).with_wal_shard_count(2)).unwrap();
    assert_eq!(e.config().wal_shard_count, 2);
    assert_eq!(e.config().dim_names, ["user", "model"]);
    let events: Vec<Ev> = (0..50).map(event).collect();
    e.append_batch_to(
        1,
        &events,
        Some(SourceCheckpoint {
            source: "in/3",
            position: 49,
        }),
    )
    .unwrap();
    e.sync().unwrap();
    assert_eq!(e.durable_checkpoint("in/3"), Some(49));
    assert_eq!(e.durable_checkpoint("in/4"), None);
    drop(e);
    let ro = TestEngine::open_read_only(dir.path()).unwrap();
    assert!(ro.config().read_only);
    assert_eq!(ro.total_events(), 50);
    assert_eq!(ro.durable_checkpoint("in/3"), Some(49));
    assert!(matches!(
        ro.append(&event(99)),
        Err(DbError::ReadOnly { .. })
    ));
    // The engine type must match the directory's schema.
    let err = keplordb::Engine::<3, 1, 1>::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            DbError::InvalidConfig {
                field: "dim_names",
                ..
            }
        ),
        "{err}"
    );
}
