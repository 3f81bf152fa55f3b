//! What the storage fuzz targets found (`fuzz/`, RELIABILITY.md "Fuzzing"), each rebuilt here
//! from files the engine wrote; the inputs the fuzzer found are in `fuzz/corpus/<target>/`.

use std::fs;
use std::path::Path;

use keplordb::{DbError, DynEngine, WalRecoveryMode};

use crate::common::*;

fn one_shard(dir: &Path) -> keplordb::EngineConfig {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c
}

fn read_only(dir: &Path) -> keplordb::EngineConfig {
    let mut c = one_shard(dir);
    c.read_only = true;
    c
}

/// Events 0..10 in a segment, 10..15 in the WAL.
fn store(dir: &Path) {
    let engine = TestEngine::open(one_shard(dir)).unwrap();
    engine
        .append_batch(&(0..10).map(event).collect::<Vec<_>>())
        .unwrap();
    engine.flush().unwrap();
    engine
        .append_batch(&(10..15).map(event).collect::<Vec<_>>())
        .unwrap();
    engine.sync().unwrap();
}

/// `wal` with its header's generation (bytes 8..16) set to `generation` and its checksum
/// recomputed (FORMAT.md 5.1).
fn set_wal_generation(wal: &Path, generation: u64) {
    let mut b = fs::read(wal).unwrap();
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(wal, b).unwrap();
}

/// `seg` with its header's generation (bytes 48..56) set to `generation` and its checksum
/// recomputed (FORMAT.md 9.3).
fn set_segment_generation(seg: &Path, generation: u64) {
    let mut b = fs::read(seg).unwrap();
    b[48..56].copy_from_slice(&generation.to_le_bytes());
    b[60..64].fill(0);
    let crc = crc32(&b[..256]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::write(seg, b).unwrap();
}

/// Fuzz target `wal`: a WAL header, checksum valid, of generation `u64::MAX`. Open took
/// `1 + max(generations)` as the next generation and overflowed: a panic with overflow checks,
/// without them a wrap to 0, after which new WALs would have reused the generations of existing
/// segments (and a recovered rotation been taken for complete). The header is now damaged.
#[test]
fn a_wal_of_the_last_generation_is_a_damaged_header_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let wal = dir.path().join("shard-000.wal");
    set_wal_generation(&wal, u64::MAX);

    let ro = DynEngine::open(read_only(dir.path())).unwrap();
    assert_eq!(
        ro.recovery_report().corrupt_wals,
        std::slice::from_ref(&wal)
    );
    assert_eq!(ro.total_events(), 10, "the segment is still read");
    drop(ro);
    let mut strict = read_only(dir.path());
    strict.wal_recovery = WalRecoveryMode::AbsoluteConsistency;
    match DynEngine::open(strict) {
        Err(DbError::CorruptWal {
            path,
            offset,
            reason,
        }) => {
            assert_eq!((path, offset), (wal.clone(), 0));
            assert!(reason.contains("generation"), "{reason}");
        }
        other => panic!("expected a corrupt WAL, got {other:?}"),
    }

    // A writable open sets it aside, as any unreadable header, and goes on with a new WAL.
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().corrupt_wals, [wal]);
    engine.append(&event(20)).unwrap();
    assert_eq!(engine.total_events(), 11);

    // The last generation the engine may still hand out opens as usual.
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    set_wal_generation(&dir.path().join("shard-000.wal"), u64::MAX - 1);
    let ro = DynEngine::open(read_only(dir.path())).unwrap();
    assert!(ro.recovery_report().corrupt_wals.is_empty());
    assert_eq!(ro.total_events(), 15);
}

/// The same overflow through a segment header of generation `u64::MAX` (segments' generations
/// count in `1 + max` too): the segment is now corrupt, reported and kept out of queries.
#[test]
fn a_segment_of_the_last_generation_is_corrupt_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let seg = dir.path().join("seg-0000000000000001.kseg");
    set_segment_generation(&seg, u64::MAX);
    let ro = DynEngine::open(read_only(dir.path())).unwrap();
    let report = &ro.recovery_report().corrupt_segments;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].0, seg);
    assert!(
        report[0].1.contains("header: at byte 48: generation"),
        "{}",
        report[0].1
    );
    assert_eq!(ro.total_events(), 5, "the WAL is still read");
}
