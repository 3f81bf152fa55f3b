//! Kill a writer with SIGKILL at random moments; every acknowledged event must be there
//! exactly once after reopening, and every batch all or nothing.
//!
//! `KEPLOR_CRASH_RUNS` sets the number of kills (default 60; CI runs the default).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keplordb::{Engine, EngineConfig};

#[path = "../bin/crash_child.rs"]
#[allow(dead_code)]
mod child;

fn config(dir: &std::path::Path) -> EngineConfig {
    child::config(dir.to_str().expect("temp dir is UTF-8"))
}

#[test]
fn sigkill_never_loses_or_duplicates_acknowledged_events() {
    let runs: u64 = std::env::var("KEPLOR_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_crash-child");
    // Batches acknowledged so far: (run, batch) -> size.
    let mut acked: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for run in 0..runs {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut child = Command::new(exe)
            .args([
                dir.path().to_str().unwrap(),
                &run.to_string(),
                &(seed >> 1).to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash-child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it run 10 to 250 ms, reading acknowledgements, then kill it mid-flight.
        let life = Duration::from_millis(10 + (seed >> 20) % 240);
        let start = Instant::now();
        while start.elapsed() < life {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
                record(&line, &mut acked);
            }
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(!status.success(), "child exited on its own: {status}");
        reader.join().unwrap();
        // Lines written before the kill are acknowledgements too.
        for line in rx.try_iter() {
            record(&line, &mut acked);
        }
        check(dir.path(), &acked, run);
    }
    assert!(
        acked.len() as u64 > runs,
        "the child made progress ({} batches)",
        acked.len()
    );
}

fn record(line: &str, acked: &mut BTreeMap<(u64, u64), u64>) {
    let parts: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect();
    if let [run, batch, n] = parts[..] {
        acked.insert((run, batch), n);
    }
}

fn check(dir: &std::path::Path, acked: &BTreeMap<(u64, u64), u64>, run: u64) {
    let engine: Engine<2, 1, 1> =
        Engine::open(config(dir)).unwrap_or_else(|e| panic!("reopen after run {run}: {e}"));
    let mut seen: HashMap<String, u32> = HashMap::new();
    engine
        .scan_events(|e| {
            *seen.entry(e.id).or_default() += 1;
        })
        .unwrap();
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(
        dups.is_empty(),
        "after run {run}: duplicated events {dups:?}"
    );
    // Batches present in the store, with how many of their events.
    let mut batches: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for id in seen.keys() {
        let nums: Vec<u64> = id.split('-').filter_map(|p| p[1..].parse().ok()).collect();
        if let [r, b, _] = nums[..] {
            *batches.entry((r, b)).or_default() += 1;
        }
    }
    for (key, n) in acked {
        assert_eq!(
            batches.get(key),
            Some(n),
            "after run {run}: acknowledged batch {key:?} lost or partial"
        );
    }
    for (key, n) in &batches {
        if let Some(want) = acked.get(key) {
            assert_eq!(n, want);
        } else {
            // Written but killed before the acknowledgement: allowed, but only whole, and only
            // the last batches of a run.
            assert!(
                !acked.contains_key(&(key.0, key.1 + 1)),
                "after run {run}: unacknowledged batch {key:?} followed by an acknowledged one"
            );
        }
    }
    assert_eq!(engine.total_events(), seen.len() as u64);
}
