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
