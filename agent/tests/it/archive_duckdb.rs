//! Issue 15: DuckDB (the Python package) reads the archive as a user would and gets the
//! engine's own answers (aggregates, group-bys, newest-first rows), also after deletes (the
//! archiver writes the touched segments again) and after gc (the archive keeps what retention
//! dropped from the store).

use std::path::Path;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use keplor_agent::archive::store::LocalDir;
use keplor_agent::archive::{retention_gc, Archiver, Progress};
use keplor_agent::config::ArchiveSettings;
use keplor_agent::metrics::Metrics;
use keplordb::export::ParquetOptions;
use keplordb::{DynEngine, DynEvent, DynFilter, EngineConfig, EventFlags, GroupBy, GroupOrder};
use serde_json::{json, Value};

use crate::common::python_json;

const STORE: &str = "0123456789abcdef";
/// 2026-11-20T00:00:00Z.
const START: i64 = 20_777 * 86_400_000_000_000;
const HALF_HOUR: i64 = 1_800_000_000_000;
/// Events per rotation (a segment spans 60 hours, so three UTC days).
const PER_SEGMENT: u64 = 120;
const SEGMENTS: u64 = 5;

fn event(i: u64) -> DynEvent {
    DynEvent {
        id: format!("req-{i:04}"),
        ts_ns: START + i as i64 * HALF_HOUR,
        metric: (i * 37 % 1000) as i64,
        counters: vec![(i % 90) as u32],
        latency_ms: 0,
        latency_detail_ms: 0,
        status: if i.is_multiple_of(7) { 503 } else { 200 },
        flags: EventFlags(0),
        dims: vec![format!("user-{}", i % 6), format!("model-{}", i % 4)],
        labels: vec![format!("note {i}")],
    }
}

/// The engine's answers, in the shape `ANSWERS` prints them.
fn engine_answers(engine: &DynEngine) -> Value {
    let all = DynFilter::default();
    let a = engine.aggregate(&all).unwrap();
    let errors = engine
        .aggregate(&DynFilter {
            status_min: Some(500),
            ..DynFilter::default()
        })
        .unwrap()
        .event_count;
    let mut users = engine
        .group_by(&all, &GroupBy::new(0, GroupOrder::Count, usize::MAX))
        .unwrap()
        .groups;
    users.sort_by(|x, y| x.values.cmp(&y.values));
    let models = engine
        .group_by(&all, &GroupBy::new(1, GroupOrder::Metric, 3))
        .unwrap()
        .groups;
    let newest: Vec<String> = engine
        .query_recent(&all, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let group =
        |g: &keplordb::Group| json!([g.values[0], g.aggregate.event_count, g.aggregate.metric]);
    json!({
        "count": a.event_count,
        "metric": a.metric,
        "tokens": a.counters[0],
        "errors": errors,
        "by_user": users.iter().map(group).collect::<Vec<_>>(),
        "top_models": models.iter().map(group).collect::<Vec<_>>(),
        "newest": newest,
    })
}

/// DuckDB's answers over the archive's rows at or after `from_ns`.
const ANSWERS: &str = r#"
import duckdb, json, sys
root, lo = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
glob = (root + "/dt=*/*.parquet").replace("'", "''")
con.execute(
    f"CREATE VIEW a AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true) "
    f"WHERE epoch_ns(ts) >= {lo}"
)
count, metric, tokens, errors = con.execute(
    "SELECT count(*), coalesce(sum(metric), 0), coalesce(sum(tokens), 0), "
    "count(*) FILTER (WHERE status >= 500) FROM a"
).fetchone()
by_user = con.execute(
    'SELECT "user", count(*), sum(metric) FROM a GROUP BY "user" ORDER BY "user"'
).fetchall()
top_models = con.execute(
    "SELECT model, count(*), sum(metric) FROM a GROUP BY model "
    "ORDER BY sum(metric) DESC, model LIMIT 3"
).fetchall()
newest = [r[0] for r in con.execute("SELECT id FROM a ORDER BY ts DESC, id DESC LIMIT 10").fetchall()]
# pyarrow: the documented types, dt as a Hive partition, the manifest (_keplor/) skipped.
import pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds
d = ds.dataset(root, format="parquet", partitioning="hive")
for name, t in {"ts": pa.timestamp("ns", tz="UTC"), "id": pa.string(), "user": pa.string(),
                "model": pa.string(), "tokens": pa.uint32(), "note": pa.string()}.items():
    assert d.schema.field(name).type == t, (name, d.schema.field(name).type)
assert "dt" in d.schema.names, d.schema.names
ts = d.to_table(columns=["ts"])["ts"].cast(pa.int64())
assert (pc.sum(pc.greater_equal(ts, lo)).as_py() or 0) == count, "pyarrow and DuckDB count alike"
print(json.dumps({
    "count": count, "metric": int(metric), "tokens": int(tokens), "errors": errors,
    "by_user": [[u, n, int(m)] for u, n, m in by_user],
    "top_models": [[u, n, int(m)] for u, n, m in top_models],
    "newest": newest,
}))
"#;

fn duckdb_answers(root: &Path, from_ns: i64) -> Value {
    let from = from_ns.to_string();
    python_json(
        ANSWERS,
        &[root.as_os_str(), from.as_ref()],
        "reading the archive with DuckDB",
    )
}

#[test]
fn duckdb_reads_the_engines_answers_from_the_archive_after_deletes_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let config = EngineConfig::new(dir.path().join("db"))
        .with_columns(["user", "model"], ["tokens"], ["note"])
        .with_bloom_dim(Some(0));
    let engine = Arc::new(DynEngine::open(config).unwrap());
    for r in 0..SEGMENTS {
        let batch: Vec<DynEvent> = (r * PER_SEGMENT..(r + 1) * PER_SEGMENT)
            .map(event)
            .collect();
        engine.append_batch(&batch).unwrap();
        engine.flush().unwrap();
    }
    let progress = Arc::new(Progress::default());
    let mut archiver = Archiver::open(
        engine.clone(),
        LocalDir::open(&root).unwrap(),
        STORE,
        ParquetOptions::default().with_row_group_rows(50),
        progress.clone(),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let go = AtomicBool::new(false);
    assert_eq!(archiver.pass(&go).unwrap(), SEGMENTS as usize);
    let whole = engine_answers(&engine);
    assert_eq!(whole["count"], json!(SEGMENTS * PER_SEGMENT));
    assert_eq!(duckdb_answers(&root, i64::MIN), whole, "as archived");

    // Deletes in three segments, the newest event among them: the archive follows.
    let deleted: Vec<String> = (0..SEGMENTS * PER_SEGMENT)
        .filter(|i| (i % 13 == 5 && *i < 360) || *i == SEGMENTS * PER_SEGMENT - 1)
        .map(|i| event(i).id)
        .collect();
    let ids: Vec<&str> = deleted.iter().map(String::as_str).collect();
    assert_eq!(engine.delete_events(&ids).unwrap(), deleted.len());
    let after_deletes = engine_answers(&engine);
    assert_ne!(after_deletes, whole);
    assert_eq!(archiver.pass(&go).unwrap(), 4, "the segments with deletes");
    assert_eq!(
        duckdb_answers(&root, i64::MIN),
        after_deletes,
        "after deletes"
    );

    // Retention drops the two oldest segments from the store; the archive keeps them.
    let cutoff = event(2 * PER_SEGMENT).ts_ns;
    let settings = ArchiveSettings {
        enabled: true,
        dir: Some(root.clone()),
        row_group_rows: 50,
        interval: Duration::from_secs(1),
        retain_until_archived: true,
    };
    let gc = retention_gc(&engine, cutoff, &settings, &progress).unwrap();
    assert_eq!(gc.segments_deleted, 2);
    assert_eq!(archiver.pass(&go).unwrap(), 0);
    assert_eq!(
        duckdb_answers(&root, i64::MIN),
        after_deletes,
        "the archive after gc holds what the store held before it"
    );
    assert_eq!(
        duckdb_answers(&root, cutoff),
        engine_answers(&engine),
        "the archive's newer part is what the store holds after gc"
    );
}
