//! Crash recovery, corruption and guards, at the engine level.

use std::fs;
use std::path::{Path, PathBuf};

use keplordb::{DbError, EngineConfig, WalRecoveryMode};

use crate::common::*;

fn one_shard(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c
}

fn wal_path(dir: &Path) -> PathBuf {
    dir.join("shard-000.wal")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kseg"))
        .collect();
    v.sort();
    v
}

/// Writes four batches of 3 events, one frame each; returns the WAL bytes and the offset where
/// the last frame starts.
fn four_frames(dir: &Path) -> (Vec<u8>, usize) {
    let engine = TestEngine::open(one_shard(dir)).unwrap();
    let mut before_last = 0;
    for b in 0..4u64 {
        if b == 3 {
            before_last = fs::metadata(wal_path(dir)).unwrap().len() as usize;
        }
        let batch: Vec<Ev> = (b * 3..b * 3 + 3).map(event).collect();
        engine.append_batch(&batch).unwrap();
    }
    drop(engine);
    (fs::read(wal_path(dir)).unwrap(), before_last)
}

#[test]
fn torn_wal_tail_at_every_byte_recovers_complete_frames() {
    let src = tempfile::tempdir().unwrap();
    let (full, last) = four_frames(src.path());
    let all: Vec<Ev> = (0..12).map(event).collect();
    for cut in last..full.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::copy(
            src.path().join("keplordb.schema"),
            dir.path().join("keplordb.schema"),
        )
        .unwrap();
        fs::write(wal_path(dir.path()), &full[..cut]).unwrap();
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        let got = all_events(&engine);
        assert_eq!(got, all[..9], "cut at {cut}");
        let report = engine.recovery_report();
        assert_eq!(report.events_replayed, 9);
        assert_eq!(
            report.discarded.len(),
            usize::from(cut > last),
            "cut at {cut}"
        );
        // The file was truncated to the last complete frame; new appends land after it.
        engine.append(&event(100)).unwrap();
        drop(engine);
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        assert_eq!(engine.total_events(), 10);
        assert!(engine.recovery_report().discarded.is_empty());
    }
}

#[test]
fn bit_flips_in_the_wal_never_yield_a_corrupt_event() {
    let src = tempfile::tempdir().unwrap();
    let (full, _) = four_frames(src.path());
    let all: Vec<Ev> = (0..12).map(event).collect();
    // Every byte after the file header, one bit each (the header has its own test).
    for byte in 32..full.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::copy(
            src.path().join("keplordb.schema"),
            dir.path().join("keplordb.schema"),
        )
        .unwrap();
        let mut b = full.clone();
        b[byte] ^= 1 << (byte % 8);
        fs::write(wal_path(dir.path()), &b).unwrap();
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        let got = all_events(&engine);
        // A prefix of the batches survives, each batch whole.
        assert!(
            got.len() % 3 == 0 && got.len() < 12,
            "flip at {byte}: {} events",
            got.len()
        );
        assert_eq!(got, all[..got.len()], "flip at {byte}");
        let mut strict = one_shard(dir.path());
        strict.wal_recovery = WalRecoveryMode::AbsoluteConsistency;
        drop(engine);
        // The tolerant open already truncated; a fresh copy shows the strict mode refusing.
        fs::write(wal_path(dir.path()), &b).unwrap();
        assert!(
            matches!(TestEngine::open(strict), Err(DbError::CorruptWal { .. })),
            "flip at {byte}"
        );
        assert_eq!(
            fs::read(wal_path(dir.path())).unwrap(),
            b,
            "strict mode must not touch the file"
        );
    }
}

#[test]
fn corrupt_segment_is_reported_and_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine
            .append_batch(&(0..100).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
        engine
            .append_batch(&(100..200).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
        engine
            .append_batch(&(200..250).map(event).collect::<Vec<_>>())
            .unwrap();
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2);
    let mut bytes = fs::read(&segs[0]).unwrap();
    // The middle of the Ids section (table entry 10), which its checksum covers.
    let entry = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mid = entry(64 + 160) + entry(64 + 168) / 2;
    bytes[mid] ^= 0x40;
    fs::write(&segs[0], &bytes).unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    let report = engine.recovery_report();
    assert_eq!(report.corrupt_segments.len(), 1);
    assert_eq!(report.corrupt_segments[0].0, segs[0]);
    assert!(
        report.corrupt_segments[0].1.contains("checksum"),
        "{:?}",
        report.corrupt_segments
    );
    let got = all_events(&engine);
    assert_eq!(got, (100..250).map(event).collect::<Vec<_>>());
    assert!(segs[0].exists(), "a corrupt segment is kept for inspection");
    // New segments never reuse its id.
    engine.flush().unwrap();
    assert_eq!(segments(dir.path()).len(), 3);
}

#[test]
fn truncated_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine
            .append_batch(&(0..300).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
    }
    let seg = &segments(dir.path())[0];
    let bytes = fs::read(seg).unwrap();
    for cut in [0, 10, 255, 256, bytes.len() / 2, bytes.len() - 1] {
        fs::write(seg, &bytes[..cut]).unwrap();
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        assert_eq!(
            engine.recovery_report().corrupt_segments.len(),
            1,
            "cut {cut}"
        );
        assert_eq!(engine.total_events(), 0);
    }
}

#[test]
fn schema_mismatch_fails_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(config(dir.path())).unwrap();
        engine.append(&event(1)).unwrap();
    }
    let snapshot = |d: &Path| {
        let mut v: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot(dir.path());
    let mut other_id = config(dir.path());
    other_id.schema_id = 2;
    let err = TestEngine::open(other_id).unwrap_err();
    match &err {
        DbError::SchemaMismatch {
            expected,
            found,
            path,
        } => {
            assert_eq!(expected.schema_id, 2);
            assert_eq!(found.schema_id, 1);
            assert!(path.ends_with("keplordb.schema"));
            assert!(err.to_string().contains("dims: user, model"), "{err}");
        }
        e => panic!("unexpected {e}"),
    }
    let mut other_cols = config(dir.path());
    other_cols.dim_names = vec!["user".into(), "region".into()];
    assert!(matches!(
        TestEngine::open(other_cols),
        Err(DbError::SchemaMismatch { .. })
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn orphaned_rotating_wal_is_replayed_once() {
    // Crash after phase 1: the .rotating file exists, no segment yet.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine
            .append_batch(&(0..50).map(event).collect::<Vec<_>>())
            .unwrap();
    }
    fs::rename(
        wal_path(dir.path()),
        dir.path().join("shard-000.wal.rotating"),
    )
    .unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        assert_eq!(engine.recovery_report().rotations_completed, 1);
        assert_eq!(all_events(&engine), (0..50).map(event).collect::<Vec<_>>());
        assert_eq!(segments(dir.path()).len(), 1);
        assert!(!dir.path().join("shard-000.wal.rotating").exists());
    }

    // Crash after phase 2: the segment exists and so does the .rotating file.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine
            .append_batch(&(0..50).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.sync().unwrap();
        fs::copy(wal_path(dir.path()), dir.path().join("saved")).unwrap();
        engine.flush().unwrap();
    }
    fs::rename(
        dir.path().join("saved"),
        dir.path().join("shard-000.wal.rotating"),
    )
    .unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().rotations_already_done, 1);
    assert_eq!(all_events(&engine), (0..50).map(event).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn partial_segments_of_an_interrupted_rotation_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    // Two parts: a dim with more distinct values than one segment's u16 codes hold.
    let n = 70_000u64;
    let events: Vec<Ev> = (0..n)
        .map(|i| {
            let mut e = event(i);
            e.dims[1] = format!("model-{i}");
            e
        })
        .collect();
    {
        let mut c = one_shard(dir.path());
        c.wal_max_events = 1 << 20;
        let engine = TestEngine::open(c).unwrap();
        engine.append_batch(&events).unwrap();
        engine.sync().unwrap();
        fs::copy(wal_path(dir.path()), dir.path().join("saved")).unwrap();
        engine.flush().unwrap();
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "70,000 distinct models need two segments");
    // Crash in the middle of phase 2: only the first part made it.
    fs::remove_file(&segs[1]).unwrap();
    fs::rename(
        dir.path().join("saved"),
        dir.path().join("shard-000.wal.rotating"),
    )
    .unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().rotations_completed, 1);
    assert_eq!(engine.total_events(), n);
    let got = all_events(&engine);
    assert_eq!(got.len(), events.len());
    assert_eq!(got, events);
    assert_eq!(segments(dir.path()).len(), 2);
}

#[test]
fn second_writer_is_locked_out_but_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::open(config(dir.path())).unwrap();
    engine.append(&event(1)).unwrap();
    assert!(matches!(
        TestEngine::open(config(dir.path())),
        Err(DbError::Locked { .. })
    ));
    let ro = keplordb::DynEngine::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.total_events(), 1);
    assert!(matches!(
        ro.append(&keplordb::DynEvent::default()),
        Err(DbError::ReadOnly { .. })
    ));
    assert!(matches!(ro.flush(), Err(DbError::ReadOnly { .. })));
    let none: &[keplordb::DynEvent] = &[];
    assert!(matches!(
        ro.append_batch_to(0, none, None),
        Err(DbError::ReadOnly { .. })
    ));
    drop(engine);
    TestEngine::open(config(dir.path())).unwrap();
}

#[test]
fn lowering_the_shard_count_keeps_events_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut c = config(dir.path());
        c.wal_shard_count = 4;
        let engine = TestEngine::open(c).unwrap();
        for s in 0..4 {
            let batch: Vec<Ev> = (s * 10..s * 10 + 10).map(event).collect();
            let cp = keplordb::SourceCheckpoint {
                source: &format!("topic/{s}"),
                position: 100 + s,
            };
            engine
                .append_batch_to(s as usize, &batch, Some(cp))
                .unwrap();
        }
        engine.sync().unwrap();
    }
    let mut c = config(dir.path());
    c.wal_shard_count = 2;
    {
        let engine = TestEngine::open(c.clone()).unwrap();
        assert_eq!(all_events(&engine), (0..40).map(event).collect::<Vec<_>>());
        let cps = engine.durable_checkpoints();
        assert_eq!(cps.len(), 4);
        assert_eq!(cps["topic/3"], 103);
        assert!(!dir.path().join("shard-003.wal").exists());
    }
    let engine = TestEngine::open(c).unwrap();
    assert_eq!(engine.durable_checkpoints()["topic/3"], 103);
    assert_eq!(engine.total_events(), 40);
}

#[test]
fn future_format_versions_are_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine.append(&event(1)).unwrap();
    }
    let mut b = fs::read(wal_path(dir.path())).unwrap();
    b[4] = 9; // version
    fs::write(wal_path(dir.path()), &b).unwrap();
    let err = TestEngine::open(one_shard(dir.path())).unwrap_err();
    assert!(
        matches!(err, DbError::UnsupportedFormat { found: 9, .. }),
        "{err}"
    );
    assert_eq!(fs::read(wal_path(dir.path())).unwrap(), b);
}

#[test]
fn unreadable_wal_header_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine.append(&event(1)).unwrap();
    }
    let mut b = fs::read(wal_path(dir.path())).unwrap();
    b[10] ^= 0xFF; // inside the generation: header checksum fails
    fs::write(wal_path(dir.path()), &b).unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().corrupt_wals.len(), 1);
    assert_eq!(engine.total_events(), 0);
    let aside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".corrupt"))
        .collect();
    assert_eq!(aside.len(), 1);
    engine.append(&event(2)).unwrap();
}

#[test]
fn a_removed_shards_wal_left_by_a_crash_is_not_converted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut four = config(dir.path());
    four.wal_shard_count = 4;
    {
        let engine = TestEngine::open(four).unwrap();
        engine
            .append_batch_to(3, &(0..30).map(event).collect::<Vec<_>>(), None)
            .unwrap();
        engine.sync().unwrap();
    }
    let saved = fs::read(dir.path().join("shard-003.wal")).unwrap();
    let mut two = config(dir.path());
    two.wal_shard_count = 2;
    drop(TestEngine::open(two.clone()).unwrap());
    // A crash between the conversion and the unlink leaves the file behind.
    fs::write(dir.path().join("shard-003.wal"), &saved).unwrap();
    let engine = TestEngine::open(two).unwrap();
    assert_eq!(all_events(&engine), (0..30).map(event).collect::<Vec<_>>());
    assert!(!dir.path().join("shard-003.wal").exists());
}
