//! Issue 15's archive, engine side: `DynEngine::segments` lists the sealed segments and
//! `DynEngine::export_segment` writes each one's live rows as Parquet, one file per UTC day in
//! time order; over every segment, every stored event comes out exactly once. `gc_where` keeps
//! the segments its caller has not handled.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;

use keplordb::export::ParquetOptions;
use keplordb::{day_of, DynEngine, DynEvent, EngineConfig};

use crate::parquet_export::{event, read_file};

/// A store whose events all lie in segments (five rotations), every 11th one deleted.
fn sealed_store(dir: &std::path::Path, n: u64) -> DynEngine {
    let config = EngineConfig::new(dir)
        .with_columns(["user", "model"], ["tokens", "budget"], ["note"])
        .with_bloom_dim(Some(0));
    let engine = DynEngine::open(config).unwrap();
    let events: Vec<DynEvent> = (0..n).map(event).collect();
    for rotation in events.chunks(n as usize / 5 + 1) {
        for batch in rotation.chunks(97) {
            engine.append_batch(batch).unwrap();
        }
        engine.flush().unwrap();
    }
    let deleted: Vec<String> = (0..n).step_by(11).map(|i| format!("e{i:05}")).collect();
    let ids: Vec<&str> = deleted.iter().map(String::as_str).collect();
    engine.delete_events(&ids).unwrap();
    engine
}

#[test]
fn every_segment_exports_its_live_rows_once_per_day_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let engine = sealed_store(&dir.path().join("db"), 2_000);
    let segments = engine.segments();
    assert!(segments.len() >= 5, "{segments:?}");
    let mut stored = BTreeMap::new();
    engine
        .scan_events(|e| {
            stored.insert(e.id.clone(), e);
        })
        .unwrap();
    assert_eq!(
        segments.iter().map(|s| s.live_rows).sum::<u64>(),
        stored.len() as u64
    );

    // Whole row groups: the bloom filter is sized by the segment's dictionary (`read_file`).
    let opts = ParquetOptions::default();
    let mut exported: BTreeMap<String, DynEvent> = BTreeMap::new();
    let mut files = 0;
    for s in &segments {
        let mut days = Vec::new();
        let written = engine
            .export_segment(s.id, &opts, |day| {
                days.push(day);
                let path = out.path().join(format!("{}-{day}.parquet", s.id));
                File::create(&path)
                    .map(BufWriter::new)
                    .map_err(|e| keplordb::DbError::Io {
                        op: "create",
                        path,
                        source: e,
                    })
            })
            .unwrap()
            .expect("the segment exists");
        assert!(
            days.windows(2).all(|w| w[0] < w[1]),
            "days in order: {days:?}"
        );
        assert_eq!(
            written.iter().map(|f| f.stats.rows).sum::<u64>(),
            s.live_rows
        );
        for f in written {
            drop(f.out.into_inner().unwrap());
            let (events, _) = read_file(&out.path().join(format!("{}-{}.parquet", s.id, f.day)));
            assert!(
                events.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
                "oldest first"
            );
            for e in events {
                assert_eq!(day_of(e.ts_ns), f.day, "{} in the file of its day", e.id);
                assert!(e.ts_ns >= s.min_ts && e.ts_ns <= s.max_ts);
                let id = e.id.clone();
                assert!(
                    exported.insert(id.clone(), e).is_none(),
                    "{id} exported twice"
                );
            }
            files += 1;
        }
    }
    assert!(
        files > segments.len(),
        "segments spanning days were split: {files} files"
    );
    assert_eq!(exported, stored, "every stored event, exactly as stored");

    let missing: Result<_, keplordb::DbError> =
        engine.export_segment(u64::MAX, &opts, |_| Ok(Vec::new()));
    assert!(missing.unwrap().is_none(), "an unknown id is None");
}

#[test]
fn gc_where_keeps_the_segments_its_caller_holds_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = sealed_store(dir.path(), 1_000);
    let before = engine.segments();
    let held = |s: &keplordb::SegmentInfo| s.generation.is_multiple_of(2);
    let stats = engine.gc_where(i64::MAX, |s| !held(s)).unwrap();
    let after = engine.segments();
    assert_eq!(stats.segments_deleted, before.len() - after.len());
    assert!(stats.segments_deleted > 0);
    assert_eq!(
        after,
        before.into_iter().filter(held).collect::<Vec<_>>(),
        "exactly the held segments remain"
    );
}
