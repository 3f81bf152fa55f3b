//! Faults below the engine, injected by the shim (`tests/faults/shim.c`) into `crash-child`:
//! failed and short writes, failed fsyncs that drop the dirty pages (PostgreSQL's "fsyncgate"),
//! and crashes of a file system that forgets what was not fsynced. After each, the store is
//! reopened and checked against the model of what was acknowledged (`model.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use keplordb::Engine;

use crate::model::Model;
use crate::shim::{self, logged, Faults};

/// A data directory and the shim's files beside it.
struct Case {
    work: tempfile::TempDir,
    shim: &'static Path,
}

impl Case {
    fn new(test: &str) -> Option<Case> {
        let shim = shim::shim_or_skip(test)?;
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir(work.path().join("data")).unwrap();
        Some(Case { work, shim })
    }

    fn dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn faults(&self, rules: &[&str], forgetful: bool) -> Faults {
        Faults {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            shadow: forgetful.then(|| self.work.path().join("shadow")),
            arm: Some(self.work.path().join("armed")),
            log: Some(self.work.path().join("faults.log")),
        }
    }

    /// Runs the child to its end (`batches` batches, one shard) and feeds its lines to `model`.
    fn run(
        &self,
        model: &mut Model,
        run: u64,
        faults: &Faults,
        batches: u64,
        appends_only: bool,
    ) -> (Vec<String>, ExitStatus) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-child"));
        cmd.args([self.dir().to_str().unwrap(), &run.to_string(), "12345"])
            .env("KEPLOR_CHILD_SHARDS", "1")
            .env("KEPLOR_CHILD_BATCHES", batches.to_string())
            .stderr(Stdio::inherit());
        if appends_only {
            cmd.env("KEPLOR_CHILD_APPENDS_ONLY", "1");
        }
        faults.apply(&mut cmd, self.shim, &self.dir());
        let out = cmd.output().expect("run crash-child");
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        for l in &lines {
            model.feed(l);
        }
        if let Some(shadow) = &faults.shadow {
            shim::crash_rebuild(&self.dir(), shadow);
        }
        (lines, out.status)
    }

    fn injected(&self) -> Vec<(String, String, String)> {
        logged(&self.work.path().join("faults.log"))
    }

    fn open(&self) -> Engine<2, 1, 1> {
        let mut c = crate::child::config(self.dir().to_str().unwrap());
        c.wal_shard_count = 1;
        Engine::open(c).expect("reopen")
    }
}

/// The lines of `lines` that start with `word`.
fn count(lines: &[String], word: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.split(' ').next() == Some(word))
        .count()
}

#[test]
fn failed_and_short_wal_writes_fail_the_append_and_leave_the_wal_recoverable() {
    for rules in [
        &["write:.wal$:5:1:eio"][..],
        &["write:.wal$:5:1:enospc"],
        // Half the frame reaches the file, then the disk is full: the half must be cut off, or
        // every later frame would sit behind a torn one and be lost at recovery.
        &["write:.wal$:5:1:short", "write:.wal$:6:1:enospc"],
        &["write:.wal$:3:3:short"],
    ] {
        let Some(case) = Case::new("failed WAL writes") else {
            return;
        };
        let mut model = Model::default();
        let (lines, status) = case.run(&mut model, 0, &case.faults(rules, false), 40, true);
        assert!(status.success(), "{rules:?}: {status}");
        let injected = case.injected();
        assert!(!injected.is_empty(), "{rules:?}: no fault injected");
        let short_only = rules.iter().all(|r| r.ends_with("short"));
        let errs: Vec<&String> = lines.iter().filter(|l| l.starts_with("err ")).collect();
        if short_only {
            // A short write is no error: the rest is written.
            assert!(errs.is_empty(), "{rules:?}: {errs:?}");
        } else {
            assert_eq!(errs.len(), 1, "{rules:?}: {errs:?}");
            assert!(errs[0].contains("append to WAL"), "{rules:?}: {}", errs[0]);
            assert_eq!(
                count(&lines, "reopen"),
                0,
                "{rules:?}: the WAL was cut back, no reopen"
            );
        }
        assert_eq!(count(&lines, "ack") + errs.len(), 40);
        let store = case.open();
        model.check(&store, &format!("{rules:?}"), 1);
        // The failed batch is not there (it was cut back), and every other one is.
        for e in &errs {
            let b: u64 = e.split(' ').nth(2).unwrap().parse().unwrap();
            let id = format!("r0-b{b}-e0");
            assert!(store.get_event(&id).unwrap().is_none(), "{rules:?}: {id}");
        }
        assert_eq!(model.acks, 40 - errs.len() as u64);
    }
}

#[test]
fn a_failed_wal_fsync_is_never_durable_and_the_shard_refuses_appends_until_reopened() {
    let Some(case) = Case::new("failed WAL fsync") else {
        return;
    };
    let mut model = Model::default();
    // The 4th fsync fails and the kernel drops the dirty pages (the file goes back to its size
    // at the last good fsync); later fsyncs succeed with nothing to write, as Linux's do.
    let faults = case.faults(&["fsync:.wal$:4:1:eiodrop"], false);
    let (lines, status) = case.run(&mut model, 0, &faults, 30, true);
    assert!(status.success(), "{status}");
    assert_eq!(case.injected().len(), 1);
    let first = lines
        .iter()
        .position(|l| l.starts_with("err "))
        .expect("an error");
    assert!(lines[first].contains("fsync WAL"), "{}", lines[first]);
    let reopen = lines.iter().position(|l| l == "reopen").expect("a reopen");
    for l in &lines[first + 1..reopen] {
        assert!(
            !l.starts_with("ack "),
            "acknowledged after a failed fsync, before reopen: {l}"
        );
        if l.starts_with("err ") {
            assert!(l.contains("unusable after an earlier failure"), "{l}");
        }
    }
    assert!(
        lines[reopen..].iter().any(|l| l.starts_with("ack ")),
        "appends resume after reopen"
    );
    let store = case.open();
    model.check(&store, "after a failed fsync", 1);
    let b: u64 = lines[first].split(' ').nth(2).unwrap().parse().unwrap();
    assert!(store.get_event(&format!("r0-b{b}-e0")).unwrap().is_none());
}

#[test]
fn a_failed_tombstone_fsync_refuses_deletes_until_reopened_and_loses_no_acknowledged_delete() {
    let Some(case) = Case::new("failed tombstone fsync") else {
        return;
    };
    let mut model = Model::default();
    let faults = case.faults(&["fsync:tombstones.log$:3:1:eiodrop"], false);
    let (lines, status) = case.run(&mut model, 0, &faults, 400, false);
    assert!(status.success(), "{status}");
    assert_eq!(case.injected().len(), 1);
    let first = lines
        .iter()
        .position(|l| l.starts_with("delerr "))
        .expect("a failed delete");
    assert!(lines[first].contains("fsync WAL"), "{}", lines[first]);
    let reopen = lines.iter().position(|l| l == "reopen").expect("a reopen");
    for l in &lines[first + 1..reopen] {
        assert_ne!(l, "deleted", "a delete acknowledged before reopen");
        if l.starts_with("delerr ") {
            assert!(l.contains("tombstone log is unusable"), "{l}");
        }
    }
    assert!(lines[reopen..].iter().any(|l| l == "deleted"));
    let store = case.open();
    model.check(&store, "after a failed tombstone fsync", 2);
}

#[test]
fn kills_while_the_tombstone_log_is_created_lose_no_acknowledged_delete() {
    let points = [
        "write:tombstones.log.tmp$:1:1:kill",
        "fsync:tombstones.log.tmp$:1:1:kill",
        "fsync:tombstones.log.tmp$:1:1:killafter",
        "rename:tombstones.log$:1:1:kill",
        "rename:tombstones.log$:1:1:killafter",
        "write:tombstones.log$:1:1:killafter",
        "fsync:tombstones.log$:1:1:killafter",
    ];
    for (k, point) in points.iter().enumerate() {
        for forgetful in [false, true] {
            let Some(case) = Case::new("tombstone log creation") else {
                return;
            };
            let mut model = Model::default();
            let (_, status) =
                case.run(&mut model, 0, &case.faults(&[point], forgetful), 400, false);
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{point}: {status}");
            let store = case.open();
            model.check(&store, point, k as u64);
            drop(store);
            // And the store goes on: more deletes, then a last check.
            let (_, status) = case.run(&mut model, 1, &case.faults(&[], false), 200, false);
            assert!(status.success());
            model.check(&case.open(), point, k as u64 + 1);
            assert!(model.deletes_acked > 0, "{point}");
        }
    }
}

#[test]
fn without_the_directory_fsync_a_rotated_wal_is_lost_with_it_nothing_is() {
    for skip in [false, true] {
        let Some(case) = Case::new("directory fsync") else {
            return;
        };
        let mut model = Model::default();
        let rules: &[&str] = if skip { &["dirsync::1:0:skip"] } else { &[] };
        let (lines, status) = case.run(&mut model, 0, &case.faults(rules, true), 60, true);
        assert!(status.success());
        assert!(count(&lines, "ack") == 60);
        let store = case.open();
        if skip {
            assert!(case.injected().len() > 3, "dir fsyncs skipped");
            // The renames of rotation phase 1 never became durable: the events appended to
            // the new WAL afterwards are gone with it.
            let mut lost = 0;
            for b in 0..60 {
                if store.get_event(&format!("r0-b{b}-e0")).unwrap().is_none() {
                    lost += 1;
                }
            }
            assert!(lost > 0, "skipping every directory fsync lost nothing");
        } else {
            assert!(store.stats().segments > 0, "rotations happened");
            model.check(&store, "forgetful file system", 3);
        }
    }
}
