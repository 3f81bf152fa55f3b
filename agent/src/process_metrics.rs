//! Figures about the process and its host rather than the pipeline: build info, the Prometheus
//! client conventions' `process_*` metrics (read from `/proc/self`), free space of the data
//! volume, and event-time freshness. Rendered after the pipeline's metrics, on the same
//! blocking thread (`/metrics` never runs them on an async worker).

use std::fmt::Write;
use std::path::Path;

pub const BUILD_INFO: &str = "keplor_build_info";
pub const FREE_BYTES: &str = "keplor_data_volume_free_bytes";
pub const VOLUME_BYTES: &str = "keplor_data_volume_size_bytes";
pub const FRESHNESS: &str = "keplor_event_freshness_seconds";

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/self/stat` (100 on every
/// architecture Linux supports today).
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends every figure; one that cannot be read (not Linux, a failed `statvfs`) is left out.
pub fn render(out: &mut String, data_dir: &Path, engine: &keplordb::DynEngine) {
    let _ = writeln!(
        out,
        "# HELP {BUILD_INFO} The agent's version (value 1).\n# TYPE {BUILD_INFO} gauge\n{BUILD_INFO}{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    render_process(out);
    render_volume(out, data_dir);
    render_freshness(out, engine);
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// RSS, CPU time, open and allowed file descriptors, start time.
fn render_process(out: &mut String) {
    if let Some(p) = ProcStat::read() {
        gauge(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time.",
            p.cpu_seconds,
        );
        gauge(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident set size.",
            p.rss_bytes,
        );
        gauge(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size.",
            p.vsize_bytes,
        );
        if let Some(start) = p.start_time_seconds {
            gauge(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time since the Unix epoch.",
                start,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        gauge(
            out,
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors.",
            max,
        );
    }
}

/// Free and total bytes of the file system holding the data directory.
fn render_volume(out: &mut String, data_dir: &Path) {
    if let Ok(s) = rustix::fs::statvfs(data_dir) {
        let free = s.f_bavail as f64 * s.f_frsize as f64;
        let size = s.f_blocks as f64 * s.f_frsize as f64;
        gauge(
            out,
            FREE_BYTES,
            "gauge",
            "Bytes available to the agent on the data directory's file system.",
            free,
        );
        gauge(
            out,
            VOLUME_BYTES,
            "gauge",
            "Size of the data directory's file system.",
            size,
        );
    }
}

/// Seconds between now and the newest stored event's timestamp (absent while the store is
/// empty): how far behind the store is in event time.
fn render_freshness(out: &mut String, engine: &keplordb::DynEngine) {
    let Ok(newest) = engine.query_recent(&keplordb::DynFilter::default(), 1) else {
        return;
    };
    let Some(e) = newest.first() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let secs = now.saturating_sub(e.ts_ns) as f64 / 1e9;
    gauge(out, FRESHNESS, "gauge", "Now minus the newest stored event's timestamp (negative when events are stamped in the future).", secs);
}

/// The fields of `/proc/self/stat` this module reports.
struct ProcStat {
    cpu_seconds: f64,
    vsize_bytes: f64,
    rss_bytes: f64,
    start_time_seconds: Option<f64>,
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: split after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field n is f[n - 3].
        let num = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
        let page = 4096.0;
        Some(ProcStat {
            cpu_seconds: (num(14)? + num(15)?) / TICKS_PER_SECOND,
            vsize_bytes: num(23)?,
            rss_bytes: num(24)? * page,
            start_time_seconds: boot_time()
                .zip(num(22))
                .map(|(b, t)| b + t / TICKS_PER_SECOND),
        })
    }
}

/// The host's boot time (`btime` in `/proc/stat`), seconds since the epoch.
fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files (`/proc/self/limits`).
fn max_fds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_and_volume_figures_are_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            keplordb::DynEngine::open(keplordb::EngineConfig::new(dir.path()).with_columns(
                ["user"],
                ["n"],
                Vec::<&str>::new(),
            ))
            .unwrap();
        let mut out = String::new();
        render(&mut out, dir.path(), &engine);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(out.contains(&format!(
            "{BUILD_INFO}{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let start = value("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert!(value(FREE_BYTES) > 0.0 && value(FREE_BYTES) <= value(VOLUME_BYTES));
        // Empty store: no freshness yet.
        assert!(!out.contains(FRESHNESS));
        let ts = (now as i64 - 90) * 1_000_000_000;
        let ev = keplordb::DynEvent {
            ts_ns: ts,
            dims: vec!["u".into()],
            counters: vec![1],
            ..Default::default()
        };
        engine.append_batch(&[ev]).unwrap();
        let mut out2 = String::new();
        render_freshness(&mut out2, &engine);
        let fresh: f64 = out2
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{FRESHNESS} ")))
            .unwrap()
            .parse()
            .unwrap();
        assert!((89.0..200.0).contains(&fresh), "{fresh}");
    }
}
