//! `keplor-agent export` on a stopped agent's data directory: Hive-partitioned Parquet that
//! DuckDB reads with the engine's own count; bad usage exits 2, a directory that is not a store 1.

use std::path::Path;
use std::process::Command;

use keplordb::{DynEngine, DynEvent, DynFilter, EngineConfig, EventFlags};

const DAY: i64 = 86_400_000_000_000;

fn export(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .arg("export")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn config(dir: &Path) -> EngineConfig {
    EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], ["note"])
}

/// 600 events over the last three days (of the test's clock), in a segment and a WAL.
fn store(dir: &Path) {
    let engine = DynEngine::open(config(dir)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let events: Vec<DynEvent> = (0..600)
        .map(|i: i64| DynEvent {
            id: format!("r{i}"),
            ts_ns: now - 3 * DAY + i * (3 * DAY / 600),
            metric: i,
            counters: vec![i as u32 % 100],
            latency_ms: 0,
            latency_detail_ms: 0,
            status: 200,
            flags: EventFlags::EMPTY,
            dims: vec![format!("u{}", i % 5), format!("m{}", i % 2)],
            labels: vec![String::new()],
        })
        .collect();
    engine.append_batch(&events[..400]).unwrap();
    engine.flush().unwrap();
    engine.append_batch(&events[400..]).unwrap();
    engine.sync().unwrap();
}

fn duckdb_count(out: &Path) -> u64 {
    let glob = format!("{}/dt=*/*.parquet", out.display());
    let py = format!(
        "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{glob}', \
         hive_partitioning = true)\").fetchall()[0][0])"
    );
    let got = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    String::from_utf8(got.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn export_writes_what_the_stopped_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    store(&data);
    let data_s = data.to_str().unwrap();

    // Everything.
    let all = dir.path().join("all");
    let (code, out, err) = export(&["--data-dir", data_s, "--out", all.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("exported 600 events to "), "{out}");
    assert!(err.is_empty(), "no progress bar off a terminal: {err}");
    assert_eq!(duckdb_count(&all), 600);

    // A filter, as `query` takes it: the engine's own count.
    let some = dir.path().join("some");
    let (code, out, err) = export(&[
        "--data-dir",
        data_s,
        "--out",
        some.to_str().unwrap(),
        "--since",
        "2d",
        "--where",
        "model=m1",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let engine = DynEngine::open_read_only(&data).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let got = duckdb_count(&some);
    let upper = engine
        .aggregate(&DynFilter {
            dims: vec![None, Some("m1".into())],
            from_ts_ns: Some(now - 2 * DAY - 60_000_000_000),
            ..DynFilter::default()
        })
        .unwrap()
        .event_count;
    // The CLI's "now" is a little later than the one taken above, never earlier.
    assert!(
        (upper.saturating_sub(2)..=upper).contains(&got),
        "{got} vs {upper}: {out}"
    );
    assert!(got > 150 && got < 300, "{got}");
    drop(engine);

    // Bad usage: 2, naming the flag.
    let bad = dir.path().join("bad");
    let (code, _, err) = export(&[
        "--data-dir",
        data_s,
        "--out",
        bad.to_str().unwrap(),
        "--where",
        "colour=red",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("colour"), "{err}");
    // No store: 1, naming the directory.
    let none = dir.path().join("none");
    let (code, _, err) = export(&[
        "--data-dir",
        none.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a keplordb data directory"), "{err}");
    assert!(!bad.exists());
}

/// Runs `keplor-agent export ARGS` on a pseudo-terminal (util-linux `script`); what the
/// terminal showed.
fn export_on_a_terminal(args: &[&str]) -> String {
    let mut cmd = vec![env!("CARGO_BIN_EXE_keplor-agent"), "export"];
    cmd.extend(args);
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd.join(" "), "/dev/null"])
        .output()
        .expect("script (util-linux)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn on_a_terminal_a_progress_bar_counts_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    store(&data);
    let data_s = data.to_str().unwrap();
    let out = dir.path().join("tty");
    let shown = export_on_a_terminal(&["--data-dir", data_s, "--out", out.to_str().unwrap()]);
    let full = format!("\r[{}] 100% 600/600 events", "#".repeat(30));
    assert!(shown.contains(&full), "{shown:?}");
    assert!(shown.contains("exported 600 events to "), "{shown:?}");

    let quiet = dir.path().join("quiet");
    let shown =
        export_on_a_terminal(&["--data-dir", data_s, "--out", quiet.to_str().unwrap(), "-q"]);
    assert!(
        !shown.contains("events\r") && !shown.contains('['),
        "{shown:?}"
    );
    assert!(shown.contains("exported 600 events to "), "{shown:?}");
}
