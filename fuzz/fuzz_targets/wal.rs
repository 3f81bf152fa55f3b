//! The WAL reader: the input is a shard's WAL file (header and frames, checksums rewritten so
//! that mutations reach the frame decoders), opened read-only in both recovery modes.
//!
//! Checks: an open fails only with a typed error; a strict open that succeeds means nothing was
//! discarded and gives what a tolerant open gives; every replayed event reads back through every
//! query, sums included; and the replayed events, appended to a new store and read back from
//! its WAL, are the same events (ids the WAL left empty are given new ones).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use keplor_fuzz::{
    assert_open_error, check_queries, config, fix_wal_checksums, read_only, scan, scratch_dir,
    sorted, Agree,
};
use keplordb::{DynEngine, DynEvent, WalRecoveryMode};
use libfuzzer_sys::fuzz_target;

struct Dirs {
    /// Holds the fuzzed WAL.
    wal: PathBuf,
    /// Where the replayed events are written again.
    again: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| Dirs {
        wal: scratch_dir("wal"),
        again: scratch_dir("wal-again"),
    })
}

/// `events` appended to a new one-shard store, then read back by a read-only open.
fn written_again(events: &[DynEvent]) -> Vec<DynEvent> {
    let dir = &dirs().again;
    let _ = std::fs::remove_dir_all(dir);
    {
        let mut c = config(dir);
        c.wal_shard_count = 1;
        c.wal_sync_every_events = u32::MAX;
        let engine = DynEngine::open(c).expect("open a new store");
        engine
            .append_batch(events)
            .expect("append the replayed events");
    }
    let engine = DynEngine::open(read_only(dir)).expect("reopen the new store");
    scan(&engine).expect("a memtable read cannot fail")
}

fn without_ids(events: &[DynEvent]) -> Vec<DynEvent> {
    sorted(
        events
            .iter()
            .map(|e| DynEvent {
                id: String::new(),
                ..e.clone()
            })
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let dir = &dirs().wal;
    let mut file = data.to_vec();
    fix_wal_checksums(&mut file);
    let path = dir.join("shard-000.wal");
    std::fs::write(&path, &file).expect("write the WAL");

    let tolerant = DynEngine::open(read_only(dir));
    let strict = {
        let mut c = read_only(dir);
        c.wal_recovery = WalRecoveryMode::AbsoluteConsistency;
        DynEngine::open(c)
    };
    let engine = match (tolerant, strict) {
        (Err(e), strict) => {
            assert_open_error(&e);
            assert!(
                strict.is_err(),
                "a strict open succeeded where a tolerant one failed"
            );
            return;
        }
        (Ok(engine), Err(e)) => {
            assert_open_error(&e);
            engine
        }
        (Ok(engine), Ok(strict)) => {
            let report = engine.recovery_report();
            assert!(report.discarded.is_empty(), "{report:?}");
            assert!(report.corrupt_wals.is_empty(), "{report:?}");
            assert_eq!(scan(&strict).unwrap(), scan(&engine).unwrap());
            engine
        }
    };

    let events = scan(&engine).expect("a memtable read cannot fail");
    check_queries(&engine, &events, Agree::Exactly).expect("a memtable read cannot fail");
    drop(engine);
    if events.is_empty() {
        return;
    }

    let again = written_again(&events);
    assert_eq!(again.len(), events.len());
    assert_eq!(without_ids(&again), without_ids(&events));
    let kept = |v: &[DynEvent]| sorted(v.iter().filter(|e| !e.id.is_empty()).cloned().collect());
    let generated = again.iter().filter(|e| {
        !events.iter().any(|o| o.id == e.id) // a new id for an event that had none
    });
    assert_eq!(
        generated.count(),
        events.iter().filter(|e| e.id.is_empty()).count()
    );
    let again_kept: Vec<DynEvent> = again
        .iter()
        .filter(|e| events.iter().any(|o| o.id == e.id))
        .cloned()
        .collect();
    assert_eq!(sorted(again_kept), kept(&events));
});
