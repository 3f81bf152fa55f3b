//! Golden files of segment format version 2 (`engine/tests/fixtures/v2/`, FORMAT.md 9.8 and
//! 10.4): the same directories as `v1/`, written by this build; and the upgrade of a version-1
//! directory, which keeps its version-1 segment as it is and writes version 2 from then on.
//!
//! Regenerate (only when the format version changes) with
//! `KEPLORDB_WRITE_FIXTURES=1 cargo test -p keplordb --test it fixtures_v2`.

use std::fs;

use keplordb::{DbError, DynEngine, QueryFilter};

use crate::common::crc32;
use crate::fixtures::*;

fn dir(name: &str) -> std::path::PathBuf {
    fixture_dir_in("v2", name)
}

#[test]
fn v2_data_directory_reads() {
    if std::env::var_os("KEPLORDB_WRITE_FIXTURES").is_some() {
        write_fixtures("v2");
    }
    let copy = copy_dir(&dir("basic"));
    let engine = FxEngine::open(fx_config(copy.path())).unwrap();
    assert_eq!(sorted(&engine), expected());
    assert_eq!(engine.get_event("fx-007").unwrap(), None);
    assert_eq!(
        engine.get_event("fx-011").unwrap().map(FxEvent::from),
        Some(fx_event(11))
    );
    let mut q = QueryFilter::<2>::new();
    q.dims[0] = Some("web".into());
    let want: Vec<FxEvent> = expected()
        .into_iter()
        .filter(|e| e.dims[0] == "web")
        .collect();
    let agg = engine.aggregate(&q).unwrap();
    assert_eq!(agg.event_count, want.len() as u64);
    let recent = engine.query_recent(&q, 2).unwrap();
    let recent: Vec<FxEvent> = recent.into_iter().map(FxEvent::from).collect();
    assert_eq!(
        recent,
        want.iter().rev().take(2).cloned().collect::<Vec<_>>()
    );
    drop(engine);
    let ro = DynEngine::open_read_only(dir("basic")).unwrap();
    assert_eq!(ro.total_events(), 24);
}

#[test]
fn v2_bytes_match_format_md() {
    let seg = fs::read(dir("basic").join("seg-0000000000000001.kseg")).unwrap();
    assert_eq!(&seg[0..4], b"KSEG");
    assert_eq!(u16_at(&seg, 4), 2, "format version");
    assert_eq!((u16_at(&seg, 6), seg[8], seg[9]), (256, 42, 12));
    assert_eq!(u32_at(&seg, 24), 20, "rows");
    let mut zeroed = seg[..256].to_vec();
    zeroed[60..64].fill(0);
    assert_eq!(u32_at(&seg, 60), crc32(&zeroed), "header checksum");
    let section = |s: usize| {
        let at = 64 + 16 * s;
        let (off, len) = (u64_at(&seg, at) as usize, u32_at(&seg, at + 8) as usize);
        assert_eq!(off % 64, 0, "section {s} alignment");
        assert_eq!(
            crc32(&seg[off..off + len]),
            u32_at(&seg, at + 12),
            "section {s} crc"
        );
        &seg[off..off + len]
    };
    (0..12).for_each(|s| {
        section(s);
    });
    // U32Cols (9.8.2): latency 10 + i is kind 1, chunk min 10, width 5 (values 0..19), then
    // 0, 1, 2... packed 5 bits each.
    let u32s = section(2);
    assert_eq!(&u32s[..4], &[1, 10, 5, 0b0010_0000]);
    // U16Cols: status is a two-value column, first byte its kind (1 or 2).
    assert!([1, 2].contains(&section(3)[0]));
    // Postings (9.8.3): two posting dims, 0 (3 values) and 1 (2 values), 4 + 8 * 2 bytes.
    let p = section(9);
    assert_eq!(p.len(), 20);
    assert_eq!((u32_at(p, 0), u16_at(p, 4), u32_at(p, 8)), (2, 0, 3));
    assert_eq!((u16_at(p, 12), u32_at(p, 16)), (1, 2));
    // Ids (9.8.4): N, F, the filter (1,024 bits, 7 probes), R, then a zstd frame.
    let ids = section(10);
    let f = u32_at(ids, 4) as usize;
    assert_eq!((u32_at(ids, 0), f), (20, 8 + 128));
    assert_eq!((u32_at(ids, 8), u32_at(ids, 12)), (1024, 7));
    let raw = u64_at(ids, 8 + f) as usize;
    assert_eq!(
        &ids[16 + f..20 + f],
        &[0x28, 0xB5, 0x2F, 0xFD],
        "zstd magic"
    );
    // Row 0 is "fx-000" whole, row 1 shares 5 bytes and adds "1".
    assert!(raw >= 8 + 3);
}

#[test]
fn v2_corrupt_segment_is_excluded() {
    let copy = copy_dir(&dir("corrupt-segment"));
    let engine = FxEngine::open(fx_config(copy.path())).unwrap();
    assert_eq!(engine.recovery_report().corrupt_segments.len(), 1);
    assert_eq!(sorted(&engine), (20..25).map(fx_event).collect::<Vec<_>>());
}

#[test]
fn v2_torn_wal_keeps_complete_frames() {
    let copy = copy_dir(&dir("torn-wal"));
    let engine = FxEngine::open(fx_config(copy.path())).unwrap();
    assert_eq!(engine.recovery_report().discarded.len(), 1);
    let mut want = expected();
    want.retain(|e| e.id != "fx-024");
    assert_eq!(sorted(&engine), want);
    drop(engine);
    let copy = copy_dir(&dir("torn-wal"));
    let mut strict = fx_config(copy.path());
    strict.wal_recovery = keplordb::WalRecoveryMode::AbsoluteConsistency;
    assert!(matches!(
        FxEngine::open(strict),
        Err(DbError::CorruptWal { .. })
    ));
}

/// The upgrade test: a version-1 directory opens and answers, takes appends (written
/// as version-2 segments), and reopens; its version-1 segment is never rewritten silently.
#[test]
fn a_v1_directory_is_queried_appended_to_and_reopened() {
    let copy = copy_dir(&fixture_dir_in("v1", "basic"));
    let v1_seg = copy.path().join("seg-0000000000000001.kseg");
    let v1_bytes = fs::read(&v1_seg).unwrap();
    let mut want = expected();
    {
        let engine = FxEngine::open(fx_config(copy.path())).unwrap();
        assert_eq!(sorted(&engine), want);
        assert_eq!(
            engine.get_event("fx-003").unwrap().map(FxEvent::from),
            Some(fx_event(3))
        );
        let more: Vec<FxEvent> = (40..60).map(fx_event).collect();
        engine.append_batch(&more).unwrap();
        engine.flush().unwrap();
        want.extend(more);
        assert!(engine.delete_event("fx-041").unwrap());
        want.retain(|e| e.id != "fx-041");
        assert_eq!(sorted(&engine), want);
    }
    let engine = FxEngine::open(fx_config(copy.path())).unwrap();
    assert_eq!(sorted(&engine), want);
    assert_eq!(engine.get_event("fx-041").unwrap(), None);
    assert_eq!(
        engine.get_event("fx-050").unwrap().map(FxEvent::from),
        Some(fx_event(50))
    );
    let mut q = QueryFilter::<2>::new();
    q.dims[1] = Some("us-east".into());
    let agg = engine.aggregate(&q).unwrap();
    assert_eq!(
        agg.event_count,
        want.iter().filter(|e| e.dims[1] == "us-east").count() as u64
    );
    assert_eq!(
        fs::read(&v1_seg).unwrap(),
        v1_bytes,
        "the v1 segment is untouched"
    );
    let versions: Vec<u16> = fs::read_dir(copy.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kseg"))
        .map(|p| u16_at(&fs::read(p).unwrap(), 4))
        .collect();
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );
}

/// `compact` rewrites the version-1 segment as version 2 without its deleted row; a crash
/// between the new file's rename and the old one's unlink leaves both, and the next open keeps
/// the new one and deletes the old.
#[test]
fn compact_rewrites_v1_segments_and_a_crash_before_the_unlink_is_repaired() {
    let copy = copy_dir(&fixture_dir_in("v1", "basic"));
    let v1_seg = copy.path().join("seg-0000000000000001.kseg");
    let v1_bytes = fs::read(&v1_seg).unwrap();
    let want = expected();
    {
        let engine = FxEngine::open(fx_config(copy.path())).unwrap();
        let stats = engine.compact().unwrap();
        assert_eq!((stats.segments_rewritten, stats.rows_dropped), (1, 1));
        assert_eq!(stats.tombstones_dropped, 1, "fx-007 is in no file any more");
        assert!(stats.bytes_after < stats.bytes_before, "{stats:?}");
        assert!(!v1_seg.exists());
        assert_eq!(sorted(&engine), want);
        assert_eq!(engine.get_event("fx-007").unwrap(), None);
        assert_eq!(engine.compact().unwrap(), keplordb::CompactStats::default());
    }
    let segs: Vec<_> = fs::read_dir(copy.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kseg"))
        .collect();
    // The compacted segment, and the one the version-1 WAL became at open (FORMAT.md 5.1).
    let mut shapes: Vec<(u16, u32)> = segs
        .iter()
        .map(|p| {
            let b = fs::read(p).unwrap();
            (u16_at(&b, 4), u32_at(&b, 24))
        })
        .collect();
    shapes.sort_unstable();
    assert_eq!(shapes, [(2, 5), (2, 19)], "version 2; 19 live rows of 20");
    // The crash: the old file is back beside its replacement.
    fs::write(&v1_seg, &v1_bytes).unwrap();
    let engine = FxEngine::open(fx_config(copy.path())).unwrap();
    assert_eq!(
        engine.recovery_report().superseded_segments,
        std::slice::from_ref(&v1_seg)
    );
    assert!(!v1_seg.exists());
    assert_eq!(sorted(&engine), want);
    assert_eq!(engine.stats().segments, 2);
}
