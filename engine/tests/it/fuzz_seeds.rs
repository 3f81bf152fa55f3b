//! The seed corpora of the storage fuzz targets (`fuzz/corpus/wal/`, `fuzz/corpus/segment/`)
//! are files this engine wrote with the fuzz targets' schema (`common::config`). They must keep
//! opening to the events they were written with: a seed the reader refuses at its first check
//! would start the fuzzer far from the frame and section decoders.
//!
//! Regenerate (when a format changes) with
//! `KEPLORDB_WRITE_FUZZ_SEEDS=1 cargo test -p keplordb --test it fuzz_seeds`.

use std::fs;
use std::path::{Path, PathBuf};

use keplordb::{DynEngine, DynEvent, SourceCheckpoint};

use crate::common::*;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn dyn_event(i: u64) -> DynEvent {
    event(i).into()
}

fn one_shard(dir: &Path) -> keplordb::EngineConfig {
    let mut c = config(dir);
    c.wal_shard_count = 1;
    c
}

/// Each seed's file, what writes it into a fresh store (the file is then taken from the store),
/// and the events a read-only open of it must give.
struct Seed {
    name: &'static str,
    file: &'static str,
    write: fn(&TestEngine),
    events: fn() -> Vec<DynEvent>,
}

const SEEDS: [Seed; 4] = [
    // Events frames with and without a source checkpoint.
    Seed {
        name: "wal/events.wal",
        file: "shard-000.wal",
        write: |e| {
            let batch: Vec<Ev> = (0..3).map(event).collect();
            let cp = SourceCheckpoint {
                source: "llm-calls/0",
                position: 17,
            };
            e.append_batch_to(0, &batch, Some(cp)).unwrap();
            e.append(&event(3)).unwrap();
        },
        events: || (0..4).map(dyn_event).collect(),
    },
    // After a rotation: a checkpoint snapshot, then staged batches, one published, one
    // retracted.
    Seed {
        name: "wal/staged.wal",
        file: "shard-000.wal",
        write: |e| {
            let cp = |position| SourceCheckpoint {
                source: "llm-calls/1",
                position,
            };
            e.append_batch_to(0, &[event(0)], Some(cp(4))).unwrap();
            e.flush().unwrap();
            e.append_staged_to(0, &[event(1), event(2)], cp(6)).unwrap();
            e.append_staged_to(0, &[event(3)], cp(8)).unwrap();
            e.publish_staged("llm-calls/1", 6).unwrap();
            e.retract_staged("llm-calls/1", 7).unwrap();
        },
        events: || (1..3).map(dyn_event).collect(),
    },
    // One chunk: 12 rows, both dims with posting lists, a bloom filter.
    Seed {
        name: "segment/small.kseg",
        file: "seg-0000000000000001.kseg",
        write: |e| {
            e.append_batch(&(0..12).map(event).collect::<Vec<_>>())
                .unwrap();
            e.flush().unwrap();
        },
        events: || (0..12).map(dyn_event).collect(),
    },
    // Two rows of one timestamp, an empty dim value and label, the extremes of every number.
    Seed {
        name: "segment/edges.kseg",
        file: "seg-0000000000000001.kseg",
        write: |e| {
            let mut a = event(1);
            a.ts_ns = i64::MIN;
            a.metric = i64::MIN;
            a.dims[1] = String::new();
            a.labels[0] = String::new();
            let mut b = event(2);
            b.ts_ns = i64::MAX;
            b.metric = i64::MAX;
            b.counters = [u32::MAX];
            (b.latency_ms, b.latency_detail_ms, b.status) = (u32::MAX, u32::MAX, u16::MAX);
            let mut c = b.clone();
            c.id = "ev-same-ts".into();
            e.append_batch(&[a, b, c]).unwrap();
            e.flush().unwrap();
        },
        events: edges_events,
    },
];

/// The events of the `edges` seeds.
fn edges_events() -> Vec<DynEvent> {
    let mut v: Vec<DynEvent> = [1, 2, 2].map(dyn_event).into();
    v[0].ts_ns = i64::MIN;
    v[0].metric = i64::MIN;
    v[0].dims[1] = String::new();
    v[0].labels[0] = String::new();
    for e in &mut v[1..] {
        e.ts_ns = i64::MAX;
        e.metric = i64::MAX;
        e.counters = vec![u32::MAX];
        (e.latency_ms, e.latency_detail_ms, e.status) = (u32::MAX, u32::MAX, u16::MAX);
    }
    v[2].id = "ev-same-ts".into();
    v
}

/// Segment seeds of format v1, written before format v2 and kept as they are (the engine
/// writes v2 only): they keep the fuzzer on the v1 decoders, which still open old data.
/// The events a seed holds.
type Events = fn() -> Vec<DynEvent>;

const V1_SEEDS: [(&str, Events); 2] = [
    ("segment/v1-small.kseg", || (0..12).map(dyn_event).collect()),
    ("segment/v1-edges.kseg", edges_events),
];

fn write_seed(seed: &Seed) {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TestEngine::open(one_shard(dir.path())).unwrap();
        (seed.write)(&engine);
        engine.sync().unwrap();
    }
    let to = corpus("").join(seed.name);
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(dir.path().join(seed.file), to).unwrap();
}

#[test]
fn fuzz_seeds_open_to_the_events_they_were_written_with() {
    let write = std::env::var_os("KEPLORDB_WRITE_FUZZ_SEEDS").is_some();
    for seed in &SEEDS {
        if write {
            write_seed(seed);
        }
        check_seed(seed.name, seed.file, (seed.events)());
    }
    for (name, events) in V1_SEEDS {
        check_seed(name, "seg-0000000000000001.kseg", events());
    }
}

/// Opens the seed `name` (as the file `file`) read-only: nothing discarded, nothing corrupt,
/// and exactly `want`.
fn check_seed(name: &str, file: &str, want: Vec<DynEvent>) {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(corpus("").join(name), dir.path().join(file)).unwrap();
    let mut c = one_shard(dir.path());
    c.read_only = true;
    let engine = DynEngine::open(c).unwrap();
    let report = engine.recovery_report();
    assert!(
        report.discarded.is_empty() && report.corrupt_segments.is_empty(),
        "{name}: {report:?}"
    );
    let mut events = Vec::new();
    engine.scan_events(|e| events.push(e)).unwrap();
    assert_eq!(dyn_sorted(events), dyn_sorted(want), "{name}");
}
