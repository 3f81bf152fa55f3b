//! Fixtures for the crate's unit tests: one schema, deterministic events, and the ways to turn
//! them into a memtable or an engine with segments.

use crate::config::EngineConfig;
use crate::engine::DynEngine;
use crate::event::{DynEvent, EventFlags};
use crate::memtable::MemData;
use crate::query::{Cursor, DynFilter};
use crate::schema::SchemaDef;
use crate::wal::frame::{
    encode_events, read_frame, EventsDecoder, FrameBuf, FrameKind, IdSource, RawRow,
};

/// Base timestamp: 2025-11-25T00:00:00Z.
pub(crate) const T0: i64 = 1_764_028_800_000_000_000;
/// Consecutive events are this far apart: 40 events a day, so a few hundred span several days.
pub(crate) const STEP: i64 = 2_160_000_000_000;

/// `user` (bloom dim, rollup dim), `model` (rollup dim); counter `tokens`; label `note`.
pub(crate) fn schema() -> SchemaDef {
    SchemaDef {
        schema_id: 3,
        dims: vec!["user".into(), "model".into()],
        counters: vec!["tokens".into()],
        labels: vec!["note".into()],
        bloom_dim: Some(0),
        rollup_dims: vec![0, 1],
    }
}

/// Event `i`: 7 users, 3 models, statuses 200/404/500, ids `e<i>`.
pub(crate) fn event(i: u64) -> DynEvent {
    DynEvent {
        id: format!("e{i}"),
        ts_ns: T0 + i as i64 * STEP,
        metric: i as i64 * 3 - 100,
        counters: vec![(i % 50) as u32],
        latency_ms: (i % 90) as u32,
        latency_detail_ms: (i % 4) as u32,
        // 503 is rare (1 in 40): selective enough for the status bitmaps.
        status: if i % 40 == 7 {
            503
        } else {
            [200, 200, 404, 500][(i % 4) as usize]
        },
        flags: EventFlags(0),
        dims: vec![format!("u{}", i % 7), format!("m{}", i % 3)],
        labels: vec![format!("n{i}")],
    }
}

/// Events `range`, in order.
pub(crate) fn events(range: std::ops::Range<u64>) -> Vec<DynEvent> {
    range.map(event).collect()
}

struct NoIds;
impl IdSource for NoIds {
    fn next_id(&self, out: &mut String) {
        out.push_str("generated");
    }
}

/// A memtable holding `rows` (through a WAL frame, as the write path fills one).
pub(crate) fn memdata(rows: &[DynEvent]) -> MemData {
    let schema = schema();
    let mut f = FrameBuf::new(FrameKind::Events);
    encode_events(&mut f, &schema, rows, None, &NoIds).unwrap();
    let bytes = f.finish().unwrap().to_vec();
    let (raw, _) = read_frame(&bytes).unwrap();
    let dec = EventsDecoder::new(&raw, &schema).unwrap();
    let mut m = MemData::new(&schema);
    m.push_frame(dec, &mut RawRow::default(), &|_| false)
        .unwrap();
    m
}

/// An engine on `dir` with the test schema (one shard, small WALs).
pub(crate) fn engine(dir: &std::path::Path) -> DynEngine {
    let s = schema();
    let mut c = EngineConfig::new(dir)
        .with_columns(s.dims, s.counters, s.labels)
        .with_schema_id(s.schema_id)
        .with_bloom_dim(s.bloom_dim)
        .with_rollup_dims(s.rollup_dims)
        .with_wal_shard_count(1)
        .with_query_threads(2);
    c.rollup_replay_days = 2;
    DynEngine::open(c).unwrap()
}

/// The naive meaning of a filter for one event.
pub(crate) fn admits(f: &DynFilter, e: &DynEvent) -> bool {
    f.dims
        .iter()
        .zip(&e.dims)
        .all(|(want, v)| want.as_ref().is_none_or(|w| w == v))
        && f.from_ts_ns.is_none_or(|t| e.ts_ns >= t)
        && f.to_ts_ns.is_none_or(|t| e.ts_ns < t)
        && f.status_min.is_none_or(|s| e.status >= s)
        && f.status_max.is_none_or(|s| e.status < s)
        && f.cursor.as_ref().is_none_or(|c| c.admits(e.ts_ns, &e.id))
}

/// The ids of `all` that `f` admits, sorted.
pub(crate) fn ids_admitted(all: &[DynEvent], f: &DynFilter) -> Vec<String> {
    let mut ids: Vec<String> = all
        .iter()
        .filter(|e| admits(f, e))
        .map(|e| e.id.clone())
        .collect();
    ids.sort();
    ids
}

/// A spread of filters: each dim alone, both, absent values, time ranges, status ranges (rare
/// and common), cursors, empty ranges.
pub(crate) fn filters(all: &[DynEvent]) -> Vec<DynFilter> {
    let mid = &all[all.len() / 2];
    let mut out = vec![DynFilter::default()];
    let dims = |u: Option<&str>, m: Option<&str>| vec![u.map(String::from), m.map(String::from)];
    for (u, m) in [
        (Some("u3"), None),
        (None, Some("m1")),
        (Some("u2"), Some("m2")),
        (Some("nobody"), None),
    ] {
        out.push(DynFilter {
            dims: dims(u, m),
            ..Default::default()
        });
    }
    let (t1, t2) = (all[all.len() / 5].ts_ns, mid.ts_ns + 1);
    out.push(DynFilter {
        from_ts_ns: Some(t1),
        to_ts_ns: Some(t2),
        ..Default::default()
    });
    out.push(DynFilter {
        from_ts_ns: Some(t2),
        to_ts_ns: Some(t1),
        ..Default::default()
    });
    out.push(DynFilter {
        status_min: Some(501),
        status_max: Some(600),
        ..Default::default()
    });
    out.push(DynFilter {
        status_min: Some(400),
        ..Default::default()
    });
    out.push(DynFilter {
        status_max: Some(300),
        dims: dims(Some("u5"), None),
        ..Default::default()
    });
    out.push(DynFilter {
        status_min: Some(404),
        status_max: Some(404),
        ..Default::default()
    });
    out.push(DynFilter {
        cursor: Some(Cursor::from(mid)),
        ..Default::default()
    });
    out.push(DynFilter {
        cursor: Some(Cursor::from(mid)),
        dims: dims(None, Some("m0")),
        from_ts_ns: Some(t1),
        status_min: Some(200),
        status_max: Some(405),
        ..Default::default()
    });
    out
}

/// An engine on `dir` holding events `0..n` spread over three segments and a memtable, with
/// every 11th event deleted; the live events, in append order.
pub(crate) fn layered(dir: &std::path::Path, n: u64) -> (DynEngine, Vec<DynEvent>) {
    let e = engine(dir);
    let all = events(0..n);
    let cuts = [
        0,
        n as usize / 4,
        n as usize / 2,
        3 * n as usize / 4,
        n as usize,
    ];
    for (k, w) in cuts.windows(2).enumerate() {
        e.append_batch(&all[w[0]..w[1]]).unwrap();
        if k < 3 {
            e.flush().unwrap();
        }
    }
    let dead: Vec<&str> = all.iter().step_by(11).map(|ev| ev.id.as_str()).collect();
    e.delete_events(&dead).unwrap();
    let live = all
        .iter()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| (i + 1) % 11 != 0)
        .map(|(_, ev)| ev.clone())
        .collect();
    (e, live)
}
