//! Golden files: a data directory written by format version 1, committed under
//! `engine/tests/fixtures/v1/`, must still open and read back the same events, and its bytes
//! must match the layout FORMAT.md documents. Corrupt variants must be handled as documented.
//!
//! This build writes segment version 2, so `v1/` can no longer be regenerated: it stays as
//! committed. `fixtures_v2.rs` has the version-2 fixtures (and regenerates them with
//! `KEPLORDB_WRITE_FIXTURES=1 cargo test -p keplordb --test it fixtures_v2`) and the upgrade of
//! a version-1 directory.

use std::fs;
use std::path::{Path, PathBuf};

use keplordb::{DbError, DynEngine, Engine, EngineConfig, EventFlags, LogEvent, QueryFilter};

use crate::common::crc32;

pub(crate) type FxEngine = Engine<2, 2, 1>;
pub(crate) type FxEvent = LogEvent<2, 2, 1>;

fn fixture_dir(name: &str) -> PathBuf {
    fixture_dir_in("v1", name)
}

/// Fixture directory `name` of format `version` (`"v1"`, `"v2"`).
pub(crate) fn fixture_dir_in(version: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join(name)
}

pub(crate) fn fx_config(dir: &Path) -> EngineConfig {
    let mut c =
        EngineConfig::new(dir).with_columns(["service", "region"], ["bytes", "calls"], ["message"]);
    c.schema_id = 42;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0, 1];
    c.wal_shard_count = 1;
    c
}

pub(crate) fn fx_event(i: u32) -> FxEvent {
    let mut e = FxEvent::new(1_750_000_000_000_000_000 + i as i64 * 60_000_000_000);
    e.id = format!("fx-{i:03}");
    e.metric = i as i64 * 1_000 - 7_000;
    e.counters = [i * 512, i % 3];
    e.latency_ms = 10 + i;
    e.latency_detail_ms = i / 2;
    e.status = if i.is_multiple_of(4) { 503 } else { 200 };
    e.flags = EventFlags(1 << (i % 16));
    e.dims = [
        ["api", "web", "batch"][i as usize % 3].into(),
        ["eu-west", "us-east"][i as usize % 2].into(),
    ];
    e.labels = [format!("request {i} ✓")];
    e
}

/// Events 0..20 in a segment, 20..25 in the WAL, fx-007 deleted.
pub(crate) fn expected() -> Vec<FxEvent> {
    (0..25).filter(|&i| i != 7).map(fx_event).collect()
}

pub(crate) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

pub(crate) fn sorted(engine: &FxEngine) -> Vec<FxEvent> {
    let mut v = Vec::new();
    engine.scan_events(|e| v.push(e)).unwrap();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Writes the fixture directories of the current format into `tests/fixtures/<version>/`.
pub(crate) fn write_fixtures(version: &str) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version);
    let _ = fs::remove_dir_all(&base);
    let basic = base.join("basic");
    {
        let engine = FxEngine::open(fx_config(&basic)).unwrap();
        engine
            .append_batch(&(0..20).map(fx_event).collect::<Vec<_>>())
            .unwrap();
        engine.flush().unwrap();
        engine
            .append_batch(&(20..23).map(fx_event).collect::<Vec<_>>())
            .unwrap();
        engine.append(&fx_event(23)).unwrap();
        engine.append(&fx_event(24)).unwrap();
        assert!(engine.delete_event("fx-007").unwrap());
        engine.sync().unwrap();
    }
    fs::remove_file(basic.join("LOCK")).unwrap();
    // Corrupt variants, each from a copy of `basic`.
    for (name, edit) in [
        (
            "corrupt-segment",
            "flip a byte in the middle of the Ids section (section table entry 10)",
        ),
        ("torn-wal", "cut the WAL inside its last frame"),
    ] {
        let dir = base.join(name);
        fs::create_dir_all(&dir).unwrap();
        for e in fs::read_dir(&basic).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        fs::write(dir.join("README"), format!("{edit}\n")).unwrap();
        if name == "corrupt-segment" {
            let seg = dir.join("seg-0000000000000001.kseg");
            let mut b = fs::read(&seg).unwrap();
            let ids = 64 + 16 * 10;
            let mid = u64_at(&b, ids) as usize + u32_at(&b, ids + 8) as usize / 2;
            b[mid] ^= 0x01;
            fs::write(seg, b).unwrap();
        } else {
            let wal = dir.join("shard-000.wal");
            let b = fs::read(&wal).unwrap();
            fs::write(wal, &b[..b.len() - 5]).unwrap();
        }
    }
}

#[test]
fn v1_data_directory_still_reads() {
    let dir = copy_dir(&fixture_dir("basic"));
    let engine = FxEngine::open(fx_config(dir.path())).unwrap();
    assert_eq!(sorted(&engine), expected());
    assert_eq!(engine.get_event("fx-007").unwrap(), None);
    let mut q = QueryFilter::<2>::new();
    q.dims[0] = Some("api".into());
    let agg = engine.aggregate(&q).unwrap();
    let want: Vec<FxEvent> = expected()
        .into_iter()
        .filter(|e| e.dims[0] == "api")
        .collect();
    assert_eq!(agg.event_count, want.len() as u64);
    assert_eq!(
        agg.counters[0],
        want.iter().map(|e| e.counters[0] as u64).sum::<u64>()
    );
    let recent = engine.query_recent(&QueryFilter::new(), 3).unwrap();
    assert_eq!(
        recent.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["fx-024", "fx-023", "fx-022"]
    );
    drop(engine);
    // Read-only, straight from the committed files (nothing is written).
    let ro = DynEngine::open_read_only(fixture_dir("basic")).unwrap();
    assert_eq!(ro.total_events(), 24);
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn v1_bytes_match_format_md() {
    let dir = fixture_dir("basic");
    let seg = fs::read(dir.join("seg-0000000000000001.kseg")).unwrap();
    assert_eq!(&seg[0..4], b"KSEG");
    assert_eq!(u16_at(&seg, 4), 1, "format version");
    assert_eq!(u16_at(&seg, 6), 256, "header length");
    assert_eq!(seg[8], 42, "schema id");
    assert_eq!(seg[9], 12, "section count");
    assert_eq!(u16_at(&seg, 10), 0, "bloom dim");
    assert_eq!(u16_at(&seg, 12), 2, "dims");
    assert_eq!((seg[14], seg[15]), (2, 1), "counters, labels");
    assert_eq!(u32_at(&seg, 24), 20, "rows");
    assert_eq!(
        (u16_at(&seg, 28), u16_at(&seg, 30)),
        (0, 1),
        "part index, part count"
    );
    assert_eq!(u64_at(&seg, 32) as i64, fx_event(0).ts_ns, "min ts");
    assert_eq!(u64_at(&seg, 40) as i64, fx_event(19).ts_ns, "max ts");
    let mut zeroed = seg[..256].to_vec();
    zeroed[60..64].fill(0);
    assert_eq!(u32_at(&seg, 60), crc32(&zeroed), "header checksum");
    // Section table: 12 entries of (offset u64, length u32, crc u32), 64-byte aligned.
    for s in 0..12 {
        let at = 64 + 16 * s;
        let (off, len, crc) = (
            u64_at(&seg, at) as usize,
            u32_at(&seg, at + 8) as usize,
            u32_at(&seg, at + 12),
        );
        assert_eq!(off % 64, 0, "section {s} alignment");
        assert_eq!(crc32(&seg[off..off + len]), crc, "section {s} checksum");
    }
    // u32 columns: latency of row 0 first.
    let u32_off = u64_at(&seg, 64 + 16 * 2) as usize;
    assert_eq!(u32_at(&seg, u32_off), fx_event(0).latency_ms);
    // u16 columns: status of rows 0 and 1.
    let u16_off = u64_at(&seg, 64 + 16 * 3) as usize;
    assert_eq!(
        (u16_at(&seg, u16_off), u16_at(&seg, u16_off + 2)),
        (503, 200)
    );

    let wal = fs::read(dir.join("shard-000.wal")).unwrap();
    assert_eq!(&wal[0..4], b"KWAL");
    assert_eq!(u16_at(&wal, 4), 1, "WAL version");
    assert_eq!(u16_at(&wal, 6), 0, "shard");
    assert_eq!(wal[16], 42, "schema id");
    assert_eq!(u32_at(&wal, 28), crc32(&wal[..28]), "WAL header checksum");
    // First frame after the 32-byte header: the events frame of fx-020..fx-022.
    let (len, count, kind) = (u32_at(&wal, 32) as usize, u32_at(&wal, 36), wal[40]);
    assert_eq!((count, kind), (3, 1));
    let mut covered = wal[32..44].to_vec();
    covered.extend_from_slice(&wal[48..48 + len]);
    assert_eq!(u32_at(&wal, 44), crc32(&covered), "frame checksum");
    let schema = fs::read_to_string(dir.join("keplordb.schema")).unwrap();
    assert!(schema.starts_with("keplordb-schema 1\nid 42\n"), "{schema}");
}

#[test]
fn v1_corrupt_segment_is_excluded() {
    let dir = copy_dir(&fixture_dir("corrupt-segment"));
    let engine = FxEngine::open(fx_config(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().corrupt_segments.len(), 1);
    let got = sorted(&engine);
    assert_eq!(
        got,
        (20..25).map(fx_event).collect::<Vec<_>>(),
        "the WAL's events remain"
    );
}

#[test]
fn v1_torn_wal_keeps_complete_frames() {
    let dir = copy_dir(&fixture_dir("torn-wal"));
    let engine = FxEngine::open(fx_config(dir.path())).unwrap();
    assert_eq!(engine.recovery_report().discarded.len(), 1);
    let mut want = expected();
    want.retain(|e| e.id != "fx-024");
    assert_eq!(sorted(&engine), want);
    let mut strict = fx_config(dir.path());
    strict.wal_recovery = keplordb::WalRecoveryMode::AbsoluteConsistency;
    drop(engine);
    let dir = copy_dir(&fixture_dir("torn-wal"));
    strict.data_dir = dir.path().to_path_buf();
    assert!(matches!(
        FxEngine::open(strict),
        Err(DbError::CorruptWal { .. })
    ));
}

#[test]
fn a_v1_wal_is_replaced_by_a_v2_wal_before_anything_is_appended() {
    let dir = copy_dir(&fixture_dir("basic"));
    {
        let engine = FxEngine::open(fx_config(dir.path())).unwrap();
        let wal = fs::read(dir.path().join("shard-000.wal")).unwrap();
        assert_eq!(
            u16_at(&wal, 4),
            2,
            "the active WAL is of the current version"
        );
        // Staged batches (a version-2 frame kind) work on an upgraded directory.
        let extra = fx_event(30);
        let cp = keplordb::SourceCheckpoint {
            source: "t/0",
            position: 30,
        };
        let t = engine
            .append_staged_to(0, std::slice::from_ref(&extra), cp)
            .unwrap();
        engine.wait_durable(&t).unwrap();
        engine.publish_staged("t/0", 30).unwrap();
        engine.append(&fx_event(31)).unwrap();
        engine.sync().unwrap();
    }
    let engine = FxEngine::open(fx_config(dir.path())).unwrap();
    let mut want = expected();
    want.extend([fx_event(30), fx_event(31)]);
    assert_eq!(sorted(&engine), want);
    assert_eq!(engine.durable_checkpoints()["t/0"], 30);
}
