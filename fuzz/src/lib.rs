//! What the fuzz targets share: scratch directories, the engine schema of the storage targets,
//! checksum fix-ups (so that mutated bytes reach the parsers behind the CRCs), and the checks
//! made on every store that opened.
//!
//! The storage targets go through the engine's public API only: the fuzzed bytes are written as
//! a file into a data directory and the directory is opened read-only, which runs the same
//! header, frame, section and recovery code as a real open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use keplordb::{Cursor, DbError, DynEngine, DynEvent, DynFilter, EngineConfig};

/// A directory of this process's own under the temp dir (`TMPDIR`; `.ci/fuzz` points it at a
/// directory it removes afterwards), emptied first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keplor-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// One query thread shared by every engine a target opens: an engine's own pool would start
/// threads at every open.
fn query_pool() -> Arc<rayon::ThreadPool> {
    static POOL: OnceLock<Arc<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("query pool"),
        )
    })
    .clone()
}

/// The schema of the storage targets and of their seeds: the engine integration tests' schema
/// (`engine/tests/it/common.rs`): dims `user` (bloom filter) and `model`, counter `tokens`,
/// label `note`, both dims rolled up, schema id 1.
pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], ["note"]);
    c.schema_id = 1;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0, 1];
    c.query_pool = Some(query_pool());
    c
}

/// [`config`], read-only.
pub fn read_only(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.read_only = true;
    c
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Rewrites the checksums of a WAL file (FORMAT.md section 5): the header's (bytes 28..32, of
/// bytes 0..28), then each frame's (header bytes 12..16, of header bytes 0..12 and the
/// payload), frame after frame while their lengths fit in the file.
pub fn fix_wal_checksums(file: &mut [u8]) {
    const HEADER: usize = 32;
    const FRAME_HEADER: usize = 16;
    if file.len() < HEADER {
        return;
    }
    let crc = crc32fast::hash(&file[..28]);
    file[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut pos = HEADER;
    while let Some(len) = le_u32(file, pos) {
        let Some(end) = (pos + FRAME_HEADER).checked_add(len as usize) else {
            return;
        };
        if end > file.len() {
            return;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&file[pos..pos + 12]);
        h.update(&file[pos + FRAME_HEADER..end]);
        let crc = h.finalize();
        file[pos + 12..pos + 16].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Rewrites the checksums of a segment file (FORMAT.md section 9): each section's in the
/// table (`{u64 offset, u32 length, u32 crc}` x 12 at byte 64) whose range is inside the file,
/// then the header's (bytes 60..64, of the 256-byte header with that field zeroed).
pub fn fix_segment_checksums(file: &mut [u8]) {
    const HEADER: usize = 256;
    if file.len() < HEADER {
        return;
    }
    for i in 0..12 {
        let entry = 64 + 16 * i;
        let (Some(start), Some(len)) = (le_u64(file, entry), le_u32(file, entry + 8)) else {
            continue;
        };
        let Some(end) = start.checked_add(len as u64) else {
            continue;
        };
        if end > file.len() as u64 {
            continue;
        }
        let crc = crc32fast::hash(&file[start as usize..end as usize]);
        file[entry + 12..entry + 16].copy_from_slice(&crc.to_le_bytes());
    }
    file[60..64].fill(0);
    let crc = crc32fast::hash(&file[..HEADER]);
    file[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The errors a damaged file may cause at open: a typed refusal, never an I/O error or an
/// invalid configuration (the targets' configurations are valid, their directories readable).
pub fn assert_open_error(e: &DbError) {
    assert!(
        matches!(
            e,
            DbError::CorruptWal { .. }
                | DbError::CorruptSegment { .. }
                | DbError::SchemaMismatch { .. }
                | DbError::UnsupportedFormat { .. }
        ),
        "unexpected error kind: {e:?}"
    );
}

/// Sort key of an event: every field, so that equal keys are equal events.
fn key(e: &DynEvent) -> impl Ord + '_ {
    (
        (e.ts_ns, &e.id, e.metric, &e.counters),
        (e.latency_ms, e.latency_detail_ms, e.status, e.flags.0),
        (&e.dims, &e.labels),
    )
}

/// `events` in a canonical order.
pub fn sorted(mut events: Vec<DynEvent>) -> Vec<DynEvent> {
    events.sort_by(|a, b| key(a).cmp(&key(b)));
    events
}

/// What a read of a store found; `Err` when a section decoded on first use turned out damaged
/// (`CorruptSegment`, the only error a read may give).
pub type Read<T> = Result<T, DbError>;

fn readable<T>(r: Read<T>) -> Read<T> {
    if let Err(e) = &r {
        assert!(
            matches!(e, DbError::CorruptSegment { .. }),
            "a read failed with {e:?}"
        );
    }
    r
}

/// Every live event of `engine`, checked against the engine's schema: one value per column,
/// and ids and dims within the lengths an append accepts.
pub fn scan(engine: &DynEngine) -> Read<Vec<DynEvent>> {
    let s = engine.schema();
    let mut events = Vec::new();
    readable(engine.scan_events(|e| events.push(e)))?;
    for e in &events {
        assert_eq!(e.dims.len(), s.dims.len(), "{e:?}");
        assert_eq!(e.counters.len(), s.counters.len(), "{e:?}");
        assert_eq!(e.labels.len(), s.labels.len(), "{e:?}");
        assert!(e.id.len() <= keplordb::MAX_VALUE_LEN);
        assert!(e.dims.iter().all(|d| d.len() <= keplordb::MAX_VALUE_LEN));
    }
    assert_eq!(engine.total_events(), events.len() as u64);
    Ok(sorted(events))
}

/// How far the answers of a store's queries must agree with its full scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agree {
    /// In every figure: stores whose rows are all in memtables, replayed from a WAL.
    Exactly,
    /// Where the answer is made from the rows themselves: segments. A segment's sections are
    /// each verified at open, but not against one another (the per-chunk sums and zone maps
    /// against the columns, the posting lists against the dim codes, the id index against the
    /// ids), so a segment whose checksums were rewritten over altered bytes may answer a
    /// filter, a sum or a lookup from one section and a row from another.
    InRows,
}

/// Reads `engine` through every query (pages, aggregates, point lookups, one filter per dim
/// value and per status, rollups) and checks the answers against `events`, its full scan.
///
/// Always: every read succeeds (or finds a damaged section, [`Read`]); the unfiltered count is
/// the number of events; pages come newest first and hold only scanned events; a point lookup
/// finds the id it was asked for or nothing. With [`Agree::Exactly`] also: the sums; the pages
/// hold every distinct `(ts, id)` of the scan; every id is found; the count of every filter is
/// the number of scanned events that match it and its events match it; the rollups count every
/// event.
pub fn check_queries(engine: &DynEngine, events: &[DynEvent], agree: Agree) -> Read<()> {
    let exact = agree == Agree::Exactly;
    let all = DynFilter::default();
    let agg = readable(engine.aggregate(&all))?;
    assert_eq!(agg.event_count, events.len() as u64, "unfiltered count");
    if exact {
        let sum = |f: &dyn Fn(&DynEvent) -> u64| events.iter().map(f).sum::<u64>();
        let metric: i128 = events.iter().map(|e| e.metric as i128).sum();
        assert_eq!(
            agg.metric,
            metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64
        );
        assert_eq!(agg.latency_ms_sum, sum(&|e| e.latency_ms as u64));
        assert_eq!(
            agg.latency_detail_ms_sum,
            sum(&|e| e.latency_detail_ms as u64)
        );
        for (c, total) in agg.counters.iter().enumerate() {
            assert_eq!(*total, sum(&|e| e.counters[c] as u64), "counter {c}");
        }
        assert_eq!(agg.min_ts_ns, events.iter().map(|e| e.ts_ns).min());
        assert_eq!(agg.max_ts_ns, events.iter().map(|e| e.ts_ns).max());
    }

    // Newest first, page by page. Events of one (ts, id) (the same event appended twice) are
    // one position for a cursor: a page boundary between them skips the second.
    let keys: BTreeSet<(i64, &str)> = events.iter().map(|e| (e.ts_ns, e.id.as_str())).collect();
    let mut paged: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut last: Option<(i64, String)> = None;
    let mut filter = DynFilter::default();
    for pages in 1.. {
        assert!(pages <= events.len() + 1, "paging does not end");
        let page = readable(engine.query_recent(&filter, 7))?;
        for e in &page {
            let key = (e.ts_ns, e.id.clone());
            assert!(
                keys.contains(&(e.ts_ns, e.id.as_str())),
                "paged, not scanned: {e:?}"
            );
            if let Some(last) = &last {
                assert!(key <= *last, "page order: {key:?} after {last:?}");
            }
            paged.insert(key.clone());
            last = Some(key);
        }
        match page.last() {
            Some(e) if page.len() == 7 => filter.cursor = Some(Cursor::from(e)),
            _ => break,
        }
    }
    if exact {
        let paged: BTreeSet<(i64, &str)> = paged.iter().map(|(t, i)| (*t, i.as_str())).collect();
        assert_eq!(paged, keys, "pages against the scan");
    }

    for id in events
        .iter()
        .map(|e| e.id.as_str())
        .collect::<BTreeSet<_>>()
    {
        let found = readable(engine.get_event(id))?.map(|e| e.id);
        if exact || found.is_some() {
            assert_eq!(found.as_deref(), Some(id), "get_event({id:?})");
        }
    }

    // One filter per dim value and per status present.
    let dims = engine.schema().dims.len();
    for d in 0..dims {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for e in events {
            *counts.entry(e.dims[d].as_str()).or_default() += 1;
        }
        for (value, n) in counts {
            let mut f = DynFilter {
                dims: vec![None; dims],
                ..DynFilter::default()
            };
            f.dims[d] = Some(value.to_string());
            let got = readable(engine.aggregate(&f))?.event_count;
            let page = readable(engine.query_recent(&f, 3))?;
            if exact {
                assert_eq!(got, n, "count of dim {d} = {value:?}");
                assert!(
                    page.iter().all(|e| e.dims[d] == value),
                    "dim {d} = {value:?}"
                );
            }
        }
    }
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for e in events {
        *statuses.entry(e.status).or_default() += 1;
    }
    for (status, n) in statuses {
        // `status_max` is exclusive.
        let f = DynFilter {
            status_min: Some(status),
            status_max: status.checked_add(1),
            ..DynFilter::default()
        };
        let got = readable(engine.aggregate(&f))?.event_count;
        if exact {
            assert_eq!(got, n, "count of status {status}");
        }
    }

    // Rollups over the days the events span.
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        let day = |ts: i64| ts.div_euclid(keplordb::NANOS_PER_DAY);
        let (from, to) = (day(first.ts_ns), day(last.ts_ns));
        let buckets = readable(engine.query_rollups(from, to, &[]))?;
        let total: u64 = buckets.iter().map(|(_, v)| v.event_count).sum();
        if exact {
            assert_eq!(
                total,
                events.len() as u64,
                "rollup counts over days {from}..={to}"
            );
        }
    }
    Ok(())
}

/// The repository's example configurations (`config/`), which the agent targets start from.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}
