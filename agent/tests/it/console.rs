//! The console (`/ui`) in a real browser: `keplor-agent demo --serve` stores a few seconds of
//! LLM calls and keeps its API up; `console.py` drives Debian's Chromium through playwright
//! against it (the page loads and updates live, the charts render and sum to the API's
//! answers, a click on a top value filters everything as the API does, the events page pages
//! to the end without repeats, the sign-in refuses a wrong token, a fleet with a member down
//! is said to be partial), runs axe-core in light and dark mode, and saves screenshots.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, python_json};

/// The demo's API token.
pub(crate) const TOKEN: &str = "console-test-token";

/// A `keplor-agent demo --serve` process, stopped (SIGTERM) when dropped.
pub(crate) struct Demo {
    child: Child,
    pub(crate) url: String,
}

impl Demo {
    /// Starts the demo and waits until it has stored its calls and serves. It needs `TOKEN`,
    /// and its `[fleet]` is itself and `dead`, a port nobody listens on.
    pub(crate) fn start(dir: &std::path::Path, dead: &str) -> Demo {
        let port = free_port();
        let fleet = format!("[\"http://127.0.0.1:{port}\", \"{dead}\"]");
        let mut child = Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
            .env("KEPLOR_HTTP__AUTH_TOKEN", TOKEN)
            .env("KEPLOR_FLEET__ENDPOINTS", fleet)
            .env("KEPLOR_FLEET__CONNECT_TIMEOUT", "2s")
            .args(["demo", "--duration", "6s", "--rate", "1500", "--serve"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("keplor-agent demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = lines
                .next()
                .expect("the demo ended before serving")
                .unwrap();
            if line.starts_with("serving the API and the console") {
                break;
            }
            assert!(Instant::now() < deadline, "the demo did not start serving");
        }
        // Keep draining stdout so the demo never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Demo {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `CONSOLE_SCREENSHOTS`, or `target/console-screenshots`.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CONSOLE_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_console_shows_what_the_api_answers_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let demo = Demo::start(&tmp.path().join("store"), &dead);
    let shots = screenshot_dir();
    let found: Value = python_json(
        include_str!("console.py"),
        &[
            demo.url.as_ref(),
            shots.as_os_str(),
            TOKEN.as_ref(),
            dead.as_ref(),
        ],
        "the console in Chromium",
    );
    eprintln!("console: {found}");
    assert_eq!(found["page_errors"], serde_json::json!([]), "{found}");
    assert!(found["overview_events"].as_u64().unwrap() > 1000, "{found}");
    assert_eq!(found["overview_partitions"], 4, "{found}");
    assert!(
        found["overview_layout_shift"].as_f64().unwrap() < 0.05,
        "the overview moved while it updated: {found}"
    );
    assert!(found["series_bars"].as_u64().unwrap() >= 2, "{found}");
    assert!(found["rollup_bars"].as_u64().unwrap() >= 1, "{found}");
    assert_eq!(
        found["paged_events"], found["filtered_events"],
        "every event of the clicked model, once: {found}"
    );
    assert!(found["pages"].as_u64().unwrap() >= 2, "{found}");
    assert!(found["found_by_id"].as_str().is_some(), "{found}");
    assert_eq!(found["phone_overflow_px"], 0, "wider than a phone: {found}");
    assert_eq!(found["wrong_token_refused"], true, "{found}");
    let fleet = found["fleet_banner"].as_str().unwrap();
    assert!(
        fleet.starts_with("Partial answer: 1 of 2 agents answered") && fleet.contains(&dead),
        "{found}"
    );
    assert_eq!(found["fleet_events"], found["overview_events"], "{found}");
    for (view, axe) in found["axe"].as_object().unwrap() {
        assert_eq!(
            axe["serious"],
            serde_json::json!([]),
            "axe-core: serious violations on {view}: {found}"
        );
    }
    for shot in [
        "overview.png",
        "explore.png",
        "events.png",
        "explore-dark.png",
        "overview-phone.png",
        "explore-phone.png",
        "explore-fleet-partial.png",
    ] {
        let len = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
