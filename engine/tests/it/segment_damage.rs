//! A damaged byte in any section of a real segment file: the open keeps the segment out of
//! queries and its recovery report names the section and the byte.

use std::fs;
use std::path::Path;

use keplordb::EngineConfig;

use crate::common::*;

/// The sections in table order, as corruption errors name them.
const SECTIONS: [&str; 12] = [
    "ts_ns column",
    "metric column",
    "u32 columns",
    "u16 columns",
    "bloom filter",
    "status bitmaps",
    "zone maps",
    "chunk aggregates",
    "intern tables",
    "posting lists",
    "ids",
    "labels",
];

fn one_shard(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c
}

/// The little-endian integer of `N` bytes at `at`.
fn le<const N: usize>(b: &[u8], at: usize) -> u64 {
    b[at..at + N]
        .iter()
        .rev()
        .fold(0, |v, &byte| v << 8 | byte as u64)
}

#[test]
fn a_damaged_byte_in_each_section_is_reported_with_the_section_and_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        engine
            .append_batch(&(0..600).map(event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
    }
    let seg = dir.path().join("seg-0000000000000001.kseg");
    let pristine = fs::read(&seg).unwrap();
    for (i, name) in SECTIONS.iter().enumerate() {
        // Section table entry i (FORMAT.md 9.4): u64 offset, u32 length.
        let start = le::<8>(&pristine, 64 + 16 * i) as usize;
        let len = le::<4>(&pristine, 64 + 16 * i + 8) as usize;
        assert!(len > 0, "{name} is empty");
        let mut bytes = pristine.clone();
        bytes[start + len / 2] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        let report = &engine.recovery_report().corrupt_segments;
        assert_eq!(report.len(), 1, "{name}");
        assert_eq!(report[0].0, seg);
        let want = format!(": {name}: at byte {start}: checksum mismatch");
        assert!(
            report[0].1.ends_with(&want),
            "{:?} should end with {want:?}",
            report[0].1
        );
        assert_eq!(engine.total_events(), 0, "{name}");
    }
    // Undamaged again, the same file opens: the corrupt segment was kept as it was.
    fs::write(&seg, &pristine).unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert!(engine.recovery_report().corrupt_segments.is_empty());
    assert_eq!(all_events(&engine), (0..600).map(event).collect::<Vec<_>>());
}

/// Two segments (events 0..600 and 600..900) and three events left in the WAL; returns the
/// first segment's path.
fn two_segments(dir: &Path) -> std::path::PathBuf {
    let engine = TestEngine::open(one_shard(dir)).unwrap();
    engine
        .append_batch(&(0..600).map(event).collect::<Vec<_>>())
        .unwrap();
    engine.flush().unwrap();
    engine
        .append_batch(&(600..900).map(event).collect::<Vec<_>>())
        .unwrap();
    engine.flush().unwrap();
    engine
        .append_batch(&(900..903).map(event).collect::<Vec<_>>())
        .unwrap();
    dir.join("seg-0000000000000001.kseg")
}

/// Opens `dir` writable with `seg` damaged to `bytes`: the open succeeds, reports `seg` (and
/// nothing else), leaves its bytes as they were, and serves every other event exactly.
#[track_caller]
fn set_aside(dir: &Path, seg: &Path, bytes: &[u8], what: &str) {
    fs::write(seg, bytes).unwrap();
    let engine = TestEngine::open(one_shard(dir)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let report = &engine.recovery_report().corrupt_segments;
    assert_eq!(report.len(), 1, "{what}: {report:?}");
    assert_eq!(report[0].0, seg, "{what}");
    assert_eq!(
        all_events(&engine),
        (600..903).map(event).collect::<Vec<_>>(),
        "{what}"
    );
    assert_eq!(engine.total_events(), 303, "{what}");
    drop(engine);
    assert_eq!(
        fs::read(seg).unwrap(),
        bytes,
        "{what}: the damaged file was changed"
    );
}

#[test]
fn a_segment_cut_at_any_byte_is_set_aside_and_reported_and_the_others_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let seg = two_segments(dir.path());
    let pristine = fs::read(&seg).unwrap();
    // Every byte of the header and section table, then every 7th byte and each section's
    // last byte (where a cut leaves every other section whole).
    let mut cuts: Vec<usize> = (0..320).chain((320..pristine.len()).step_by(7)).collect();
    for i in 0..SECTIONS.len() {
        let start = le::<8>(&pristine, 64 + 16 * i) as usize;
        let len = le::<4>(&pristine, 64 + 16 * i + 8) as usize;
        cuts.extend([start, start + len - 1]);
    }
    for cut in cuts {
        set_aside(dir.path(), &seg, &pristine[..cut], &format!("cut at {cut}"));
    }
    fs::write(&seg, &pristine).unwrap();
    let engine = TestEngine::open(one_shard(dir.path())).unwrap();
    assert!(engine.recovery_report().corrupt_segments.is_empty());
    assert_eq!(engine.total_events(), 903);
}

#[test]
fn a_flipped_bit_anywhere_in_a_segment_is_set_aside_and_reported_and_the_others_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let seg = two_segments(dir.path());
    let pristine = fs::read(&seg).unwrap();
    // Every byte of the header and table, and 16 offsets spread over each section.
    let mut offsets: Vec<usize> = (0..64 + 16 * SECTIONS.len()).collect();
    for i in 0..SECTIONS.len() {
        let start = le::<8>(&pristine, 64 + 16 * i) as usize;
        let len = le::<4>(&pristine, 64 + 16 * i + 8) as usize;
        offsets.extend((0..16).map(|k| start + k * (len - 1) / 15));
    }
    let mut flips = 0;
    for (k, at) in offsets.into_iter().enumerate() {
        let mut bytes = pristine.clone();
        bytes[at] ^= 1 << (k % 8);
        if (4..6).contains(&at) {
            // The format version: a segment of another version is refused, never set aside.
            fs::write(&seg, &bytes).unwrap();
            let err = TestEngine::open(one_shard(dir.path())).unwrap_err();
            assert!(
                matches!(err, keplordb::DbError::UnsupportedFormat { .. }),
                "{err}"
            );
            assert_eq!(fs::read(&seg).unwrap(), bytes);
            continue;
        }
        set_aside(
            dir.path(),
            &seg,
            &bytes,
            &format!("bit {} of byte {at}", k % 8),
        );
        flips += 1;
    }
    assert!(flips > 300, "{flips}");
}
