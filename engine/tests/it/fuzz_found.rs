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

/// `b` (a segment file) with section `s`'s checksum and then the header's recomputed.
fn reseal_segment(b: &mut [u8], s: usize) {
    let entry = 64 + 16 * s;
    let start = u64::from_le_bytes(b[entry..entry + 8].try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(b[entry + 8..entry + 12].try_into().unwrap()) as usize;
    let crc = crc32(&b[start..start + len]);
    b[entry + 12..entry + 16].copy_from_slice(&crc.to_le_bytes());
    b[60..64].fill(0);
    let crc = crc32(&b[..256]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// Fuzz target `segment`: two rows of one timestamp whose ids are out of order (FORMAT.md 9.1
/// sorts rows by time, then id) behind valid checksums. The reader checked only the times, and
/// the segment opened; pages of newest events, which rely on the order for ties, then came out
/// of order. The Ids section is now checked against the Ts column.
#[test]
fn rows_of_one_time_out_of_id_order_make_a_corrupt_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        let mut tie = event(1);
        tie.ts_ns = event(0).ts_ns;
        engine.append_batch(&[event(0), tie, event(2)]).unwrap();
        engine.flush().unwrap();
    }
    let seg = dir.path().join("seg-0000000000000001.kseg");
    let mut b = fs::read(&seg).unwrap();
    // Ids section (table entry 10), version 2: N, filter length F, the filter, stream length R,
    // then a zstd frame of the front-coded ids: per row, shared prefix length, suffix length,
    // suffix (one-byte varints here).
    let start = u64::from_le_bytes(b[64 + 160..64 + 168].try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(b[64 + 168..64 + 172].try_into().unwrap()) as usize;
    let f = u32::from_le_bytes(b[start + 4..start + 8].try_into().unwrap()) as usize;
    let z_at = start + 16 + f;
    let raw = zstd::bulk::decompress(&b[z_at..start + len], 1 << 20).unwrap();
    let (id0, id1) = (event(0).id, event(1).id);
    let front = |first: &str, second: &str| {
        let mut s = vec![0, first.len() as u8];
        s.extend_from_slice(first.as_bytes());
        s.extend_from_slice(&[10, 1, second.as_bytes()[10]]);
        s
    };
    let original = front(&id0, &id1);
    assert_eq!(&raw[..original.len()], &original[..]);
    let mut swapped = front(&id1, &id0);
    swapped.extend_from_slice(&raw[original.len()..]);
    let z = zstd::bulk::compress(&swapped, 1).unwrap();
    assert_eq!(
        z.len(),
        start + len - z_at,
        "the same length, so the section keeps its place"
    );
    b[z_at..start + len].copy_from_slice(&z);
    reseal_segment(&mut b, 10);
    fs::write(&seg, &b).unwrap();

    let ro = DynEngine::open(read_only(dir.path())).unwrap();
    let report = &ro.recovery_report().corrupt_segments;
    assert_eq!(report.len(), 1, "{report:?}");
    let want = format!("ids: at byte {z_at}: row 1 has the time of row 0");
    assert!(
        report[0].1.contains(&want),
        "{} should say {want:?}",
        report[0].1
    );
    assert_eq!(ro.total_events(), 0);
}
