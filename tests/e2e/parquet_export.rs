//! Issue 15: `DynEngine::export_parquet` writes what the engine answers, in the documented
//! schema, and the engines users already run read it as it lies.
//!
//! - Read back here with the `parquet` crate's column readers: every row of every file equals
//!   the engine's own answer (`query_recent` over the same filter), files are Hive partitions
//!   by UTC day, rows are newest first and row groups never straddle an hour.
//! - Read by DuckDB and pyarrow (Python): the same aggregates, group-bys and newest rows as the
//!   engine, after deletes and gc, and the schema and partition column as documented.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use keplordb::export::{ParquetOptions, FIXED_COLUMNS};
use keplordb::{date_of_day, day_of, DynEngine, DynEvent, DynFilter, EngineConfig, EventFlags};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::file::statistics::Statistics;

const HOUR: i64 = 3_600_000_000_000;
/// 2026-11-24T00:00:00Z.
const DAY0: i64 = 20_781 * 24 * HOUR;

/// Event `i`: three days, uneven hours, users u0..u6, models m0..m2.
pub(crate) fn event(i: u64) -> DynEvent {
    DynEvent {
        id: format!("e{i:05}"),
        ts_ns: DAY0 + (i as i64 * 7_919 % 72) * HOUR + (i as i64 % 1000) * 1_000_003,
        metric: i as i64 * 10 - 500,
        counters: vec![(i % 100) as u32, u32::MAX - i as u32],
        latency_ms: (i * 3) as u32,
        latency_detail_ms: i as u32,
        status: if i.is_multiple_of(10) { 500 } else { 200 },
        flags: EventFlags((i % 4) as u16),
        dims: vec![format!("u{}", i % 7), format!("m{}", i % 3)],
        labels: vec![format!("note {i}")],
    }
}

/// A store of `n` events: most in segments, the rest in memtables, every 13th deleted.
fn store(dir: &Path, n: u64) -> DynEngine {
    let config = EngineConfig::new(dir)
        .with_columns(["user", "model"], ["tokens", "budget"], ["note"])
        .with_bloom_dim(Some(0));
    let engine = DynEngine::open(config).unwrap();
    let events: Vec<DynEvent> = (0..n).map(event).collect();
    let (sealed, fresh) = events.split_at(n as usize * 3 / 4);
    for chunk in sealed.chunks(97) {
        engine.append_batch(chunk).unwrap();
    }
    engine.flush().unwrap();
    engine.append_batch(fresh).unwrap();
    let deleted: Vec<String> = (0..n).step_by(13).map(|i| format!("e{i:05}")).collect();
    let ids: Vec<&str> = deleted.iter().map(String::as_str).collect();
    engine.delete_events(&ids).unwrap();
    engine
}

/// Every event matching `filter`, newest first, as the engine answers it.
fn answer(engine: &DynEngine, filter: &DynFilter) -> Vec<DynEvent> {
    let mut all = Vec::new();
    let mut f = filter.clone();
    loop {
        let page = engine.query_recent(&f, 1000).unwrap();
        let Some(last) = page.last() else { break };
        f.cursor = Some(last.into());
        all.extend(page);
    }
    all
}

fn column<T: DataType>(rg: &dyn RowGroupReader, i: usize) -> Vec<T::T> {
    let mut r = get_typed_column_reader::<T>(rg.get_column_reader(i).unwrap());
    let rows = rg.metadata().num_rows() as usize;
    let mut values = Vec::with_capacity(rows);
    let (records, _, _) = r.read_records(rows, None, None, &mut values).unwrap();
    assert_eq!(records, rows);
    values
}

fn strings(rg: &dyn RowGroupReader, i: usize) -> Vec<String> {
    column::<ByteArrayType>(rg, i)
        .iter()
        .map(|b| b.as_utf8().unwrap().to_string())
        .collect()
}

/// The most bytes of a bloom filter sized for the store's 7 users (arrow-rs rounds a filter
/// up to a power of two of 32-byte blocks); sized for a whole row group's worth of distinct
/// values it was 128 KiB, which tripled the bytes of a 1M-event export.
const MAX_BLOOM_BYTES: i32 = 1024;

/// Checks the user column's bloom filter in row group `rg`: small, and holding every user the
/// row group holds.
fn check_bloom(rg: &dyn RowGroupReader, users: &[String]) {
    let meta = rg.metadata().column(7);
    assert_eq!(meta.column_path().string(), "user");
    let bytes = meta
        .bloom_filter_length()
        .expect("a bloom filter on the bloom dim");
    assert!(
        bytes <= MAX_BLOOM_BYTES,
        "a {bytes}-byte bloom filter for 7 users"
    );
    let bloom = rg.get_column_bloom_filter(7).expect("bloom filter read");
    for u in users {
        assert!(
            bloom.check(&u.as_str()),
            "{u} missing from the bloom filter"
        );
    }
}

/// The events of one file, and the (min, max) ts of each of its row groups; checks the bloom
/// filters on the way.
pub(crate) fn read_file(path: &Path) -> (Vec<DynEvent>, Vec<(i64, i64)>) {
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(File::open(path).unwrap(), options).unwrap();
    let mut events = Vec::new();
    let mut groups = Vec::new();
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).unwrap();
        match rg.metadata().column(0).statistics() {
            Some(Statistics::Int64(s)) => {
                groups.push((*s.min_opt().unwrap(), *s.max_opt().unwrap()))
            }
            other => panic!("ts statistics: {other:?}"),
        }
        let ts = column::<Int64Type>(&*rg, 0);
        let id = strings(&*rg, 1);
        let metric = column::<Int64Type>(&*rg, 2);
        let fixed: Vec<Vec<i32>> = (3..7).map(|c| column::<Int32Type>(&*rg, c)).collect();
        let dims: Vec<Vec<String>> = (7..9).map(|c| strings(&*rg, c)).collect();
        check_bloom(&*rg, &dims[0]);
        let counters: Vec<Vec<i32>> = (9..11).map(|c| column::<Int32Type>(&*rg, c)).collect();
        let notes = strings(&*rg, 11);
        for r in 0..ts.len() {
            events.push(DynEvent {
                id: id[r].clone(),
                ts_ns: ts[r],
                metric: metric[r],
                counters: counters.iter().map(|c| c[r] as u32).collect(),
                latency_ms: fixed[0][r] as u32,
                latency_detail_ms: fixed[1][r] as u32,
                status: fixed[2][r] as u16,
                flags: EventFlags(fixed[3][r] as u16),
                dims: dims.iter().map(|d| d[r].clone()).collect(),
                labels: vec![notes[r].clone()],
            });
        }
    }
    (events, groups)
}

/// Exports `filter` to a new directory under `root` and checks every file against the engine.
fn export_and_check(engine: &DynEngine, filter: &DynFilter, root: &Path, name: &str) -> PathBuf {
    let out = root.join(name);
    let opts = ParquetOptions::default().with_row_group_rows(40);
    let mut progress = Vec::new();
    let stats = engine
        .export_parquet(filter, &out, &opts, |n| progress.push(n))
        .unwrap();
    let want = answer(engine, filter);
    assert_eq!(stats.events, want.len() as u64, "{name}");
    assert_eq!(
        progress.last().copied().unwrap_or(0),
        stats.events,
        "{name}"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{name}");
    let mut got = Vec::new();
    let mut bytes = 0;
    for path in &stats.files {
        bytes += std::fs::metadata(path).unwrap().len();
        let (events, groups) = read_file(path);
        // In dt=<the UTC day of every row>; row groups of at most 40 rows within one hour.
        let dt = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        for e in &events {
            assert_eq!(dt, format!("dt={}", date_of_day(day_of(e.ts_ns))), "{name}");
        }
        for (lo, hi) in groups {
            assert_eq!(lo.div_euclid(HOUR), hi.div_euclid(HOUR), "{name}: {path:?}");
        }
        got.extend(events);
    }
    assert_eq!(bytes, stats.bytes, "{name}");
    assert_eq!(got.len(), want.len(), "{name}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{name}");
    }
    // Nothing else was left in the directory: no temporary file.
    for day in std::fs::read_dir(&out).unwrap() {
        for f in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            assert!(stats.files.contains(&f), "{name}: {f:?} was left behind");
        }
    }
    out
}

#[test]
fn an_export_holds_exactly_what_the_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(&dir.path().join("data"), 2_000);
    let out = export_and_check(&engine, &DynFilter::default(), dir.path(), "all");
    let days: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(days.len(), 3, "{days:?}");
    let filtered = DynFilter {
        dims: vec![Some("u3".into()), None],
        from_ts_ns: Some(DAY0 + 20 * HOUR),
        to_ts_ns: Some(DAY0 + 50 * HOUR),
        status_min: Some(200),
        status_max: Some(300),
        ..DynFilter::default()
    };
    export_and_check(&engine, &filtered, dir.path(), "filtered");
    // Exported again, the same files are replaced, not doubled.
    let again = export_and_check(&engine, &DynFilter::default(), dir.path(), "all");
    assert_eq!(again, out);
    let empty = DynFilter {
        dims: vec![Some("nobody".into()), None],
        ..DynFilter::default()
    };
    let stats = engine
        .export_parquet(
            &empty,
            &dir.path().join("none"),
            &ParquetOptions::default(),
            |_| {},
        )
        .unwrap();
    assert_eq!((stats.events, stats.files.len()), (0, 0));

    // With whole row groups, the bloom filter is sized for the 7 users, not for the rows.
    let whole = engine
        .export_parquet(
            &DynFilter::default(),
            &dir.path().join("whole"),
            &ParquetOptions::default(),
            |_| {},
        )
        .unwrap();
    assert!(!whole.files.is_empty());
    for f in &whole.files {
        read_file(f);
    }
}

#[test]
fn a_schema_name_that_is_a_fixed_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::new(dir.path().join("data")).with_columns(
        ["status"],
        Vec::<&str>::new(),
        Vec::<&str>::new(),
    );
    let engine = DynEngine::open(config).unwrap();
    let mut e = event(1);
    e.dims = vec!["x".into()];
    e.counters = vec![];
    e.labels = vec![];
    engine.append_batch(&[e]).unwrap();
    let err = engine
        .export_parquet(
            &DynFilter::default(),
            &dir.path().join("out"),
            &ParquetOptions::default(),
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, keplordb::DbError::Export { .. }), "{err}");
    assert!(err.to_string().contains("\"status\""), "{err}");
    assert!(FIXED_COLUMNS.contains(&"status"));
}

/// DuckDB and pyarrow read the Hive partitions as they lie (`parquet_read.py`), after deletes
/// and gc, and answer what the engine answers.
#[test]
fn duckdb_and_pyarrow_read_the_export_as_the_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(&dir.path().join("data"), 3_000);
    // A segment wholly on the first day, which gc then drops.
    engine.flush().unwrap();
    let early: Vec<DynEvent> = (10_000..10_300)
        .map(|i| DynEvent {
            ts_ns: DAY0 + (i as i64 % 20) * HOUR,
            ..event(i)
        })
        .collect();
    engine.append_batch(&early).unwrap();
    engine.flush().unwrap();
    let before = engine.aggregate(&DynFilter::default()).unwrap().event_count;
    let gc = engine.gc(DAY0 + 24 * HOUR).unwrap();
    assert!(
        gc.segments_deleted >= 1 && gc.events_deleted >= 300,
        "{gc:?}"
    );
    let after = engine.aggregate(&DynFilter::default()).unwrap().event_count;
    assert_eq!(before - after, gc.events_deleted);
    let out = dir.path().join("out");
    engine
        .export_parquet(
            &DynFilter::default(),
            &out,
            &ParquetOptions::default(),
            |_| {},
        )
        .unwrap();
    let events = answer(&engine, &DynFilter::default());
    let all = engine.aggregate(&DynFilter::default()).unwrap();
    let mut want = serde_like_json(&events, &all);
    want.push('\n');
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/parquet_read.py");
    let got = Command::new("python3")
        .arg(script)
        .arg(&out)
        .output()
        .expect("python3");
    assert!(
        got.status.success(),
        "parquet_read.py: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got = String::from_utf8(got.stdout).unwrap();
    assert_eq!(got, want);
}

/// What `parquet_read.py` prints for the engine's own answer: one JSON object.
fn serde_like_json(events: &[DynEvent], all: &keplordb::DynAggregate) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut by_user: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for e in events {
        let g = by_user.entry(&e.dims[0]).or_default();
        g.0 += 1;
        g.1 += e.metric;
    }
    let mut s = String::new();
    write!(
        s,
        "{{\"count\": {}, \"metric\": {}, \"tokens\": {}, \"budget\": {}, \"errors\": {}",
        all.event_count,
        all.metric,
        all.counters[0],
        all.counters[1],
        events.iter().filter(|e| e.status >= 500).count()
    )
    .unwrap();
    let groups: Vec<String> = by_user
        .iter()
        .map(|(u, (n, m))| format!("[\"{u}\", {n}, {m}]"))
        .collect();
    write!(s, ", \"by_user\": [{}]", groups.join(", ")).unwrap();
    let newest: Vec<String> = events
        .iter()
        .take(5)
        .map(|e| format!("\"{}\"", e.id))
        .collect();
    write!(s, ", \"newest\": [{}]", newest.join(", ")).unwrap();
    let mut days: Vec<String> = events
        .iter()
        .map(|e| date_of_day(day_of(e.ts_ns)))
        .collect();
    days.dedup();
    days.sort();
    days.dedup();
    let days: Vec<String> = days.iter().map(|d| format!("\"{d}\"")).collect();
    write!(s, ", \"days\": [{}]}}", days.join(", ")).unwrap();
    s
}
