//! The segment reader: the input is a segment file (its section and header checksums rewritten
//! so that mutations reach every section's parse), opened read-only.
//!
//! Checks: an open fails only with a typed error, and a segment that fails verification is
//! reported and kept out of queries; a segment that opened reads every row, and answers every
//! query (pages, point lookups, one filter per dim value and status, rollups), or fails with
//! `CorruptSegment` where a section is decoded on first use; answers made from its rows agree
//! with the full scan (`Agree::InRows`: the sections are not checked against one another).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use keplor_fuzz::{
    assert_open_error, check_queries, fix_segment_checksums, read_only, scan, scratch_dir, Agree,
};
use keplordb::DynEngine;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| scratch_dir("segment"))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let mut file = data.to_vec();
    fix_segment_checksums(&mut file);
    let path = dir.join("seg-0000000000000001.kseg");
    std::fs::write(&path, &file).expect("write the segment");

    match DynEngine::open(read_only(dir)) {
        Err(e) => assert_open_error(&e),
        Ok(engine) => {
            let report = engine.recovery_report();
            let segments = engine.stats().segments;
            if report.corrupt_segments.is_empty() {
                assert_eq!(segments, 1);
                if let Ok(events) = scan(&engine) {
                    let _ = check_queries(&engine, &events, Agree::InRows);
                }
            } else {
                assert_eq!(report.corrupt_segments[0].0, path);
                assert_eq!((segments, engine.total_events()), (0, 0));
            }
        }
    }
    std::fs::remove_file(&path).expect("remove the segment");
});
