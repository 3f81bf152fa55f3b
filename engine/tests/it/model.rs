//! Model-based test: random operations against the engine and a naive in-memory model; every
//! query must agree, across flushes, deletes, gc and reopen.

use std::collections::{BTreeMap, HashSet};

use keplordb::{
    day_of, Cursor, Engine, EngineConfig, GroupBy, GroupOrder, LogEvent, QueryFilter, NANOS_PER_DAY,
};

use crate::model_group;
use proptest::prelude::*;

type E = Engine<3, 2, 1>;
type Ev = LogEvent<3, 2, 1>;

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const MODELS: [&str; 3] = ["gpt-4o", "claude", "llama"];
const REGIONS: [&str; 2] = ["eu", "us"];
const STATUSES: [u16; 5] = [200, 201, 404, 500, 503];
const BASE: i64 = 20_000 * NANOS_PER_DAY;

#[derive(Clone, Debug)]
struct Proto {
    ts_off: i64,
    user: usize,
    model: usize,
    region: usize,
    status: usize,
    metric: i64,
    c0: u32,
    c1: u32,
    lat: u32,
}

fn proto() -> impl Strategy<Value = Proto> {
    (
        // Few distinct timestamps over three days: plenty of ties.
        prop_oneof![
            0i64..6,
            (0i64..3).prop_map(|d| d * NANOS_PER_DAY + 5),
            0i64..(3 * NANOS_PER_DAY),
            // On a time-series bucket's edge, and just before it.
            (0i64..72, 0i64..2).prop_map(|(h, before)| h * 3_600_000_000_000 - before),
        ],
        0..USERS.len(),
        0..MODELS.len(),
        0..REGIONS.len(),
        0..STATUSES.len(),
        prop_oneof![-1000i64..1000, Just(i64::MAX), Just(i64::MIN)],
        any::<u32>(),
        0u32..100,
        0u32..5000,
    )
        .prop_map(
            |(ts_off, user, model, region, status, metric, c0, c1, lat)| Proto {
                ts_off,
                user,
                model,
                region,
                status,
                metric,
                c0,
                c1,
                lat,
            },
        )
}

#[derive(Clone, Debug)]
struct Filt {
    dims: [Option<usize>; 3],
    from: Option<i64>,
    to: Option<i64>,
    smin: Option<u16>,
    smax: Option<u16>,
    cursor: Option<(i64, usize)>,
}

fn filt() -> impl Strategy<Value = Filt> {
    let dim = |n: usize| prop_oneof![3 => Just(None), 2 => (0..n + 1).prop_map(Some)];
    let ts = prop_oneof![
        Just(None),
        (0i64..8).prop_map(Some),
        (0i64..3 * NANOS_PER_DAY).prop_map(Some)
    ];
    let st = prop_oneof![3 => Just(None), 1 => prop::sample::select(vec![0u16, 200, 201, 404, 405, 500, 600]).prop_map(Some)];
    (
        (dim(USERS.len()), dim(MODELS.len()), dim(REGIONS.len())),
        ts.clone(),
        ts,
        st.clone(),
        st,
        prop_oneof![3 => Just(None), 1 => (0i64..8, 0usize..400).prop_map(Some)],
    )
        .prop_map(|((a, b, c), from, to, smin, smax, cursor)| Filt {
            dims: [a, b, c],
            from,
            to,
            smin,
            smax,
            cursor,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Append(Proto),
    AppendDurable(Proto),
    Batch(Vec<Proto>),
    Flush,
    Delete(usize),
    Gc(i64),
    Aggregate(Filt),
    Recent(Filt, usize),
    Page(Filt, usize),
    Get(usize),
    Rollups(i64, i64, Option<usize>),
    /// Group by a choice of dims (`GROUPINGS`), ranked by an order (`ORDERS`), with a limit.
    GroupBy(Filt, usize, usize, usize),
    /// A time series of a width (`WIDTHS`), optionally split like a group-by.
    Series(Filt, usize, Option<(usize, usize, usize)>),
    Reopen,
}

/// The dims a group-by groups by.
const GROUPINGS: [&[usize]; 5] = [&[0], &[1], &[2], &[0, 1], &[2, 0]];
/// The orders of a group-by.
const ORDERS: [GroupOrder; 5] = [
    GroupOrder::Count,
    GroupOrder::Metric,
    GroupOrder::Counter(0),
    GroupOrder::Counter(1),
    GroupOrder::Latency,
];
/// Time-series widths: a second, a minute, an hour, a day, and 7 s (not a divisor of a minute).
const WIDTHS: [i64; 5] = [
    1_000_000_000,
    60_000_000_000,
    3_600_000_000_000,
    NANOS_PER_DAY,
    7_000_000_000,
];

fn group_by(grouping: usize, order: usize, limit: usize) -> GroupBy {
    GroupBy {
        dims: GROUPINGS[grouping].to_vec(),
        order: ORDERS[order],
        limit,
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proto().prop_map(Op::Append),
        2 => proto().prop_map(Op::AppendDurable),
        4 => proptest::collection::vec(proto(), 1..40).prop_map(Op::Batch),
        1 => Just(Op::Flush),
        2 => (0usize..400).prop_map(Op::Delete),
        1 => (0i64..3 * NANOS_PER_DAY).prop_map(Op::Gc),
        3 => filt().prop_map(Op::Aggregate),
        3 => (filt(), 1usize..30).prop_map(|(f, l)| Op::Recent(f, l)),
        1 => (filt(), 1usize..7).prop_map(|(f, l)| Op::Page(f, l)),
        1 => (0usize..400).prop_map(Op::Get),
        2 => (0i64..3, 0i64..3, prop_oneof![Just(None), (0..USERS.len() + 1).prop_map(Some)]).prop_map(|(a, b, u)| Op::Rollups(a, b, u)),
        2 => (filt(), 0..GROUPINGS.len(), 0..ORDERS.len(), prop_oneof![0usize..4, Just(usize::MAX)]).prop_map(|(f, g, o, l)| Op::GroupBy(f, g, o, l)),
        2 => (filt(), 0..WIDTHS.len(), prop_oneof![Just(None), (0..GROUPINGS.len(), 0..ORDERS.len(), 0usize..4).prop_map(Some)]).prop_map(|(f, w, s)| Op::Series(f, w, s)),
        1 => Just(Op::Reopen),
    ]
}

fn value(d: usize, i: usize) -> String {
    let set: &[&str] = match d {
        0 => &USERS,
        1 => &MODELS,
        _ => &REGIONS,
    };
    set.get(i)
        .map_or_else(|| "nobody".to_string(), |s| s.to_string())
}

fn make(p: &Proto, id: usize) -> Ev {
    let mut e = Ev::new(BASE + p.ts_off);
    e.id = format!("id-{id:05}");
    e.metric = p.metric;
    e.counters = [p.c0, p.c1];
    e.latency_ms = p.lat;
    e.latency_detail_ms = p.lat / 3;
    e.status = STATUSES[p.status];
    e.dims = [
        USERS[p.user].into(),
        MODELS[p.model].into(),
        REGIONS[p.region].into(),
    ];
    e.labels = [format!("label {id}")];
    e
}

/// Expected rollup bucket: count, metric sum, counter sums.
type Bucket = (u64, i128, [u64; 2]);

struct Model {
    events: BTreeMap<String, Ev>,
    deleted: HashSet<String>,
    next_id: usize,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &Ev> {
        self.events
            .values()
            .filter(|e| !self.deleted.contains(&e.id))
    }
}

fn to_filter(f: &Filt, model: &Model) -> QueryFilter<3> {
    let mut q = QueryFilter::<3>::new();
    for d in 0..3 {
        q.dims[d] = f.dims[d].map(|i| value(d, i));
    }
    q.from_ts_ns = f.from.map(|o| BASE + o);
    q.to_ts_ns = f.to.map(|o| BASE + o);
    q.status_min = f.smin;
    q.status_max = f.smax;
    q.cursor = f.cursor.map(|(o, id)| {
        // Half the time, a cursor at an existing event.
        match model.events.values().nth(id) {
            Some(e) if id % 2 == 0 => Cursor::new(e.ts_ns, e.id.clone()),
            _ => Cursor::new(BASE + o, format!("id-{id:05}")),
        }
    });
    q
}

fn matches(q: &QueryFilter<3>, e: &Ev) -> bool {
    (0..3).all(|d| q.dims[d].as_ref().is_none_or(|v| &e.dims[d] == v))
        && q.from_ts_ns.is_none_or(|f| e.ts_ns >= f)
        && q.to_ts_ns.is_none_or(|t| e.ts_ns < t)
        && q.status_min.is_none_or(|s| e.status >= s)
        && q.status_max.is_none_or(|s| e.status < s)
        && q.cursor
            .as_ref()
            .is_none_or(|c| (e.ts_ns, e.id.as_str()) < (c.ts_ns, c.id.as_str()))
}

fn newest_first(model: &Model, q: &QueryFilter<3>) -> Vec<Ev> {
    let mut v: Vec<Ev> = model.live().filter(|e| matches(q, e)).cloned().collect();
    v.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
    v
}

fn config(dir: &std::path::Path, sync: u32) -> EngineConfig {
    let mut c =
        EngineConfig::new(dir).with_columns(["user", "model", "region"], ["c0", "c1"], ["note"]);
    c.schema_id = 3;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0, 1];
    c.wal_shard_count = 2;
    c.wal_max_events = 37;
    c.wal_sync_every_events = sync;
    c.rollup_replay_days = 1;
    c.mmap_cache_capacity = 3;
    c
}

fn run(ops: Vec<Op>, sync: u32) -> Result<(), TestCaseError> {
    let dir = tempdir();
    let mut engine = Some(E::open(config(dir.path(), sync)).unwrap());
    let mut model = Model {
        events: BTreeMap::new(),
        deleted: HashSet::new(),
        next_id: 0,
    };
    for op in ops {
        let eng = engine.as_ref().unwrap();
        match op {
            Op::Append(p) => {
                let e = make(&p, model.next_id);
                model.next_id += 1;
                eng.append(&e).unwrap();
                model.events.insert(e.id.clone(), e);
            }
            Op::AppendDurable(p) => {
                let e = make(&p, model.next_id);
                model.next_id += 1;
                let t = eng.append_durable(&e).unwrap();
                prop_assert!(eng.is_durable(&t));
                model.events.insert(e.id.clone(), e);
            }
            Op::Batch(ps) => {
                let evs: Vec<Ev> = ps
                    .iter()
                    .map(|p| {
                        let e = make(p, model.next_id);
                        model.next_id += 1;
                        e
                    })
                    .collect();
                eng.append_batch(&evs).unwrap();
                for e in evs {
                    model.events.insert(e.id.clone(), e);
                }
            }
            Op::Flush => eng.flush().unwrap(),
            Op::Delete(i) => {
                let id = format!("id-{i:05}");
                let expect = model.events.contains_key(&id) && !model.deleted.contains(&id);
                prop_assert_eq!(eng.delete_event(&id).unwrap(), expect, "delete {}", id);
                if expect {
                    model.deleted.insert(id);
                }
            }
            Op::Gc(off) => {
                let cutoff = BASE + off;
                let before: HashSet<String> = model.live().map(|e| e.id.clone()).collect();
                let stats = eng.gc(cutoff).unwrap();
                let mut after = HashSet::new();
                eng.scan_events(|e| {
                    after.insert(e.id);
                })
                .unwrap();
                prop_assert!(after.is_subset(&before));
                let removed: Vec<&String> = before.difference(&after).collect();
                prop_assert_eq!(removed.len() as u64, stats.events_deleted);
                for id in removed {
                    prop_assert!(
                        model.events[id].ts_ns < cutoff,
                        "gc removed {} at or after the cutoff",
                        id
                    );
                    model.events.remove(id);
                }
            }
            Op::Aggregate(f) => {
                let q = to_filter(&f, &model);
                let got = eng.aggregate(&q).unwrap();
                let hits: Vec<&Ev> = model.live().filter(|e| matches(&q, e)).collect();
                prop_assert_eq!(got.event_count, hits.len() as u64, "count for {:?}", q);
                let metric: i128 = hits.iter().map(|e| e.metric as i128).sum();
                prop_assert_eq!(
                    got.metric,
                    metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64
                );
                prop_assert_eq!(
                    got.counters[0],
                    hits.iter().map(|e| e.counters[0] as u64).sum::<u64>()
                );
                prop_assert_eq!(
                    got.counters[1],
                    hits.iter().map(|e| e.counters[1] as u64).sum::<u64>()
                );
                prop_assert_eq!(
                    got.latency_ms_sum,
                    hits.iter().map(|e| e.latency_ms as u64).sum::<u64>()
                );
                prop_assert_eq!(
                    got.latency_detail_ms_sum,
                    hits.iter().map(|e| e.latency_detail_ms as u64).sum::<u64>()
                );
                prop_assert_eq!(got.min_ts_ns, hits.iter().map(|e| e.ts_ns).min());
                prop_assert_eq!(got.max_ts_ns, hits.iter().map(|e| e.ts_ns).max());
            }
            Op::GroupBy(f, grouping, order, limit) => {
                let q = to_filter(&f, &model);
                let by = group_by(grouping, order, limit);
                let hits: Vec<&Ev> = model.live().filter(|e| matches(&q, e)).collect();
                let got = eng.group_by(&q, &by).unwrap();
                prop_assert_eq!(got, model_group::groups(&hits, &by), "{:?} {:?}", q, by);
            }
            Op::Series(f, width, split) => {
                let q = to_filter(&f, &model);
                let every = WIDTHS[width];
                let hits: Vec<&Ev> = model.live().filter(|e| matches(&q, e)).collect();
                match split {
                    None => prop_assert_eq!(
                        eng.time_series(&q, every).unwrap(),
                        model_group::series(&hits, every),
                        "{:?} every {}",
                        q,
                        every
                    ),
                    Some((grouping, order, limit)) => {
                        let by = group_by(grouping, order, limit);
                        prop_assert_eq!(
                            eng.time_series_by(&q, every, &by).unwrap(),
                            model_group::split_series(&hits, every, &by),
                            "{:?} every {} {:?}",
                            q,
                            every,
                            by
                        );
                    }
                }
            }
            Op::Recent(f, limit) => {
                let q = to_filter(&f, &model);
                let got: Vec<Ev> = eng
                    .query_recent(&q, limit)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.into_log_event())
                    .collect();
                let mut want = newest_first(&model, &q);
                want.truncate(limit);
                prop_assert_eq!(got, want, "recent {:?}", q);
            }
            Op::Page(f, limit) => {
                let mut q = to_filter(&f, &model);
                q.cursor = None;
                let want = newest_first(&model, &q);
                let mut got = Vec::new();
                loop {
                    let page = eng.query_recent(&q, limit).unwrap();
                    prop_assert!(page.len() <= limit);
                    let Some(last) = page.last() else { break };
                    q.cursor = Some(Cursor::from(last));
                    got.extend(page.into_iter().map(|e| e.into_log_event()));
                    prop_assert!(got.len() <= want.len());
                }
                prop_assert_eq!(got, want);
            }
            Op::Get(i) => {
                let id = format!("id-{i:05}");
                let got = eng.get_event(&id).unwrap().map(|e| e.into_log_event());
                let want = model.live().find(|e| e.id == id).cloned();
                prop_assert_eq!(got, want);
            }
            Op::Rollups(a, b, user) => {
                let (from, to) = (day_of(BASE) + a.min(b), day_of(BASE) + a.max(b));
                let u = user.map(|i| value(0, i));
                let got = eng.query_rollups(from, to, &[u.as_deref(), None]).unwrap();
                let mut want: BTreeMap<(i64, Vec<String>), Bucket> = BTreeMap::new();
                for e in model.live() {
                    let day = day_of(e.ts_ns);
                    if day < from || day > to || u.as_ref().is_some_and(|u| &e.dims[0] != u) {
                        continue;
                    }
                    let w = want
                        .entry((day, vec![e.dims[0].clone(), e.dims[1].clone()]))
                        .or_default();
                    w.0 += 1;
                    w.1 += e.metric as i128;
                    w.2[0] += e.counters[0] as u64;
                    w.2[1] += e.counters[1] as u64;
                }
                prop_assert_eq!(got.len(), want.len(), "rollup buckets {:?}", got);
                for ((k, v), ((day, dims), (n, m, c))) in got.iter().zip(&want) {
                    prop_assert_eq!(k.day, *day);
                    prop_assert_eq!(&k.dims, dims);
                    prop_assert_eq!(v.event_count, *n);
                    prop_assert_eq!(
                        v.metric,
                        (*m).clamp(i64::MIN as i128, i64::MAX as i128) as i64
                    );
                    prop_assert_eq!(&v.counters, &c.to_vec());
                }
            }
            Op::Reopen => {
                drop(engine.take());
                engine = Some(E::open(config(dir.path(), sync)).unwrap());
            }
        }
        let eng = engine.as_ref().unwrap();
        prop_assert_eq!(eng.total_events(), model.live().count() as u64);
    }
    // Final full comparison, then once more after a reopen.
    for pass in 0..2 {
        let eng = engine.as_ref().unwrap();
        let mut got = Vec::new();
        eng.scan_events(|e| got.push(e)).unwrap();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        let want: Vec<Ev> = model.live().cloned().collect();
        prop_assert_eq!(got, want, "pass {}", pass);
        drop(engine.take());
        engine = Some(E::open(config(dir.path(), sync)).unwrap());
    }
    Ok(())
}

/// A temp dir on tmpfs when there is one: thousands of cases fsync a lot.
fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn cases() -> u32 {
    std::env::var("KEPLORDB_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_model(ops in proptest::collection::vec(op(), 1..45), sync in prop_oneof![Just(1u32), Just(64), Just(u32::MAX)]) {
        run(ops, sync)?;
    }
}
