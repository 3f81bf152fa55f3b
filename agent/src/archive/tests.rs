//! The archiver against a real engine and a local directory: every sealed segment archived
//! once, the manifest durable across reopen, and the leftovers of a crash (temporary files,
//! files renamed but not recorded) cleaned up, rewritten under the same name or adopted.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use keplordb::export::ParquetOptions;
use keplordb::{DynEngine, DynEvent, EngineConfig, EventFlags};

use super::store::{ArchiveStore, LocalDir};
use super::*;

const DAY: i64 = 86_400_000_000_000;
/// 2026-11-24T00:00:00Z.
const DAY0: i64 = 20_781 * DAY;
const STORE: &str = "00112233aabbccdd";

fn event(i: u64) -> DynEvent {
    DynEvent {
        id: format!("e{i}"),
        // Two hours between events: a segment of 30 spans three days.
        ts_ns: DAY0 + i as i64 * 2 * 3_600_000_000_000,
        metric: i as i64,
        counters: vec![],
        latency_ms: 0,
        latency_detail_ms: 0,
        status: 200,
        flags: EventFlags(0),
        dims: vec![format!("u{}", i % 3)],
        labels: vec![format!("{i}")],
    }
}

/// An engine with `rotations` segments of 30 events each.
fn engine(dir: &std::path::Path, rotations: u64) -> Arc<DynEngine> {
    let config = EngineConfig::new(dir).with_columns(["user"], Vec::<&str>::new(), ["offset"]);
    let e = DynEngine::open(config).unwrap();
    for r in 0..rotations {
        let batch: Vec<DynEvent> = (r * 30..(r + 1) * 30).map(event).collect();
        e.append_batch(&batch).unwrap();
        e.flush().unwrap();
    }
    Arc::new(e)
}

fn archiver(engine: &Arc<DynEngine>, root: &std::path::Path) -> Archiver<LocalDir> {
    Archiver::open(
        engine.clone(),
        LocalDir::open(root).unwrap(),
        STORE,
        ParquetOptions::default(),
        Arc::new(Progress::default()),
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

fn manifest(root: &std::path::Path) -> Manifest {
    let bytes = std::fs::read(root.join(manifest_name(STORE))).unwrap();
    Manifest::parse(&bytes, STORE).unwrap()
}

#[test]
fn every_sealed_segment_is_archived_once_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let engine = engine(&dir.path().join("db"), 3);
    let mut a = archiver(&engine, &root);
    let go = AtomicBool::new(false);
    assert_eq!(a.pass(&go).unwrap(), engine.segments().len());
    assert_eq!(a.metrics.archive_lag(), Some(0));
    for s in engine.segments() {
        assert!(a.progress.is_archived(&s));
    }
    let m = manifest(&root);
    assert_eq!(
        m.segments.iter().map(|e| e.events.unwrap()).sum::<u64>(),
        90
    );
    let files: Vec<String> = m.files().map(String::from).collect();
    assert_eq!(
        files.len(),
        3 * 3,
        "three segments over three days each: {files:?}"
    );
    assert_eq!(
        LocalDir::open(&root).unwrap().list("dt=").unwrap().len(),
        files.len()
    );
    assert!(
        files.iter().all(|f| parse_file_name(f, STORE).is_some()),
        "{files:?}"
    );
    assert!(files.contains(&format!(
        "dt=2026-11-24/{STORE}-{}-0.parquet",
        engine.segments()[2].generation
    )));

    // Nothing twice, also after a reopen; a new segment is picked up.
    assert_eq!(a.pass(&go).unwrap(), 0);
    drop(a);
    let mut a = archiver(&engine, &root);
    assert_eq!(a.pass(&go).unwrap(), 0);
    engine
        .append_batch(&(90..95).map(event).collect::<Vec<_>>())
        .unwrap();
    engine.flush().unwrap();
    assert_eq!(a.pass(&go).unwrap(), 1);
    assert_eq!(manifest(&root).segments.len(), 4);
}

#[test]
fn a_crash_leaves_nothing_lost_nor_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let engine = engine(&dir.path().join("db"), 2);
    let go = AtomicBool::new(false);
    let store = LocalDir::open(&root).unwrap();
    let [newer, older] = [engine.segments()[0], engine.segments()[1]];
    // A crash after the rename of one file of the older segment, before the manifest: that
    // file holds garbage here, to show it is rewritten; plus a temporary file.
    let orphan = file_name(keplordb::day_of(older.min_ts), STORE, older.generation, 0);
    store.put(&orphan, b"not yet").unwrap();
    // A day that the segment does not span (as after compaction dropped its rows).
    let stale = file_name(0, STORE, older.generation, 0);
    store.put(&stale, b"stale").unwrap();
    let mut half = store.begin("dt=2026-11-24/x.parquet").unwrap();
    std::io::Write::write_all(&mut half, b"half").unwrap();
    drop(half);
    // And an orphan of a segment that gc deleted: adopted as it is.
    let gone = file_name(5, STORE, 999, 0);
    store.put(&gone, b"whole").unwrap();

    let mut a = archiver(&engine, &root);
    assert_eq!(a.pass(&go).unwrap(), 2);
    let listed = store.list("").unwrap();
    assert!(!listed.iter().any(|f| f.ends_with(".tmp")), "{listed:?}");
    assert!(!listed.contains(&stale), "{listed:?}");
    let m = manifest(&root);
    let mut files: Vec<&str> = m.files().collect();
    files.sort();
    let mut on_disk: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|f| f.starts_with("dt="))
        .collect();
    on_disk.sort();
    assert_eq!(files, on_disk, "every file recorded, none twice");
    assert!(
        std::fs::metadata(root.join(&orphan)).unwrap().len() > 100,
        "rewritten as Parquet"
    );
    assert!(
        m.contains(999, 0) && m.contains(newer.generation, 0) && m.contains(older.generation, 0)
    );
    assert_eq!(m.segments.iter().filter_map(|e| e.events).sum::<u64>(), 60);
}

#[test]
fn file_names_round_trip() {
    let name = file_name(20_781, STORE, 42, 3);
    assert_eq!(name, format!("dt=2026-11-24/{STORE}-42-3.parquet"));
    assert_eq!(parse_file_name(&name, STORE), Some((42, 3)));
    assert_eq!(parse_file_name(&name, "ffffffffffffffff"), None);
    assert_eq!(parse_file_name("dt=2026-11-24/other.parquet", STORE), None);
}

fn settings(enabled: bool, retain_until_archived: bool) -> ArchiveSettings {
    ArchiveSettings {
        enabled,
        dir: Some("/unused".into()),
        row_group_rows: 1000,
        interval: Duration::from_secs(1),
        retain_until_archived,
    }
}

#[test]
fn retention_never_drops_a_segment_not_yet_archived() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let engine = engine(&dir.path().join("db"), 3);
    let all = engine.segments();
    let progress = Arc::new(Progress::default());
    // Only the oldest segment is archived.
    progress.lock().insert(
        (all[2].generation, all[2].part_index),
        Some(all[2].live_rows),
    );
    let held = settings(true, true);
    let s = retention_gc(&engine, i64::MAX, &held, &progress).unwrap();
    assert_eq!(s.segments_deleted, 1);
    assert_eq!(engine.segments(), all[..2].to_vec());

    // Once the archiver has written them, they go too; their files stay.
    let mut a = Archiver::open(
        engine.clone(),
        LocalDir::open(&root).unwrap(),
        STORE,
        ParquetOptions::default(),
        progress.clone(),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    assert_eq!(a.pass(&AtomicBool::new(false)).unwrap(), 2);
    let s = retention_gc(&engine, i64::MAX, &held, &progress).unwrap();
    assert_eq!(s.segments_deleted, 2);
    assert!(engine.segments().is_empty());
    assert_eq!(manifest(&root).segments.len(), 2);
    assert!(manifest(&root).files().all(|f| root.join(f).is_file()));
}

#[test]
fn without_the_hold_retention_drops_what_it_finds() {
    for (enabled, retain) in [(true, false), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), 2);
        let s = retention_gc(
            &engine,
            i64::MAX,
            &settings(enabled, retain),
            &Progress::default(),
        )
        .unwrap();
        assert_eq!(s.segments_deleted, 2, "enabled {enabled}, retain {retain}");
    }
}

/// A local directory whose manifest writes fail while `fail` is set: a crash between a
/// segment's files and its manifest record.
#[derive(Debug)]
struct FailingManifest {
    dir: LocalDir,
    fail: AtomicBool,
}

impl ArchiveStore for FailingManifest {
    type Pending = <LocalDir as ArchiveStore>::Pending;

    fn begin(&self, name: &str) -> std::io::Result<Self::Pending> {
        self.dir.begin(name)
    }
    fn commit(&self, pending: Self::Pending) -> std::io::Result<u64> {
        self.dir.commit(pending)
    }
    fn list(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        self.dir.list(prefix)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.dir.remove(name)
    }
    fn remove_temporaries(&self) -> std::io::Result<usize> {
        self.dir.remove_temporaries()
    }
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.dir.read(name)
    }
    fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<u64> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("injected: the manifest write fails"));
        }
        self.dir.put(name, bytes)
    }
}

#[test]
fn deletes_after_archiving_rewrite_the_segment_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let engine = engine(&dir.path().join("db"), 3);
    let go = AtomicBool::new(false);
    let progress = Arc::new(Progress::default());
    let store = FailingManifest {
        dir: LocalDir::open(&root).unwrap(),
        fail: AtomicBool::new(false),
    };
    let mut a = Archiver::open(
        engine.clone(),
        store,
        STORE,
        ParquetOptions::default(),
        progress.clone(),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    assert_eq!(a.pass(&go).unwrap(), 3);
    let oldest = engine.segments()[2];
    // Events 24..30 are the oldest segment's whole third day; event 40 is in the middle one.
    let third_day = file_name(
        keplordb::day_of(event(24).ts_ns),
        STORE,
        oldest.generation,
        0,
    );
    assert!(manifest(&root).files().any(|f| f == third_day));
    let ids: Vec<String> = (24..30).chain([40]).map(|i| format!("e{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(engine.delete_events(&ids).unwrap(), 7);
    for s in engine.segments() {
        assert_eq!(progress.is_archived(&s), s.rows == s.live_rows, "{s:?}");
    }

    // The files are replaced and the emptied day removed, then the manifest write fails.
    a.store
        .fail
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(a.pass(&go).is_err());
    assert!(!root.join(&third_day).exists());
    assert_eq!(
        manifest(&root)
            .segments
            .iter()
            .map(|e| e.events.unwrap())
            .sum::<u64>(),
        90,
        "the manifest still counts the old files"
    );
    drop(a);

    let mut a = archiver(&engine, &root);
    assert_eq!(a.pass(&go).unwrap(), 2, "both segments with deletes, again");
    assert_eq!(a.pass(&go).unwrap(), 0);
    let m = manifest(&root);
    assert_eq!(
        m.segments.iter().map(|e| e.events.unwrap()).sum::<u64>(),
        83
    );
    assert!(!m.files().any(|f| f == third_day));
    let mut listed = LocalDir::open(&root).unwrap().list("dt=").unwrap();
    let mut files: Vec<String> = m.files().map(String::from).collect();
    listed.sort();
    files.sort();
    assert_eq!(listed, files, "every file recorded, none stale");
    for s in engine.segments() {
        assert!(a.progress.is_archived(&s), "{s:?}");
    }
}
