//! `keplor-agent top` in a real terminal: tmux runs it against `keplor-agent demo --serve`,
//! `capture-pane` reads the screen, and `q` ends it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{free_port, wait_until};
use crate::console::{Demo, TOKEN};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ends the tmux session when dropped, whatever the test did.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn top_shows_the_agent_live_in_a_terminal_and_quits_on_q() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let demo = Demo::start(&tmp.path().join("store"), &dead);
    let exited = tmp.path().join("exited");
    let session = Session(format!("keplor-top-{}", std::process::id()));
    let command = format!(
        "{} top --endpoint {} --token {TOKEN} --interval 300ms --window 1h; echo $? > {}",
        env!("CARGO_BIN_EXE_keplor-agent"),
        demo.url,
        exited.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "160",
        "-y",
        "45",
        "sh",
        "-c",
        &command,
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session.0]);
    let shown = wait_until(Duration::from_secs(30), || {
        let s = screen();
        // Two refreshes: the rate is a number, not the first refresh's "…".
        s.contains("events/s") && !s.contains("…") && s.contains("gpt-4o") && s.contains("req-")
    });
    let s = screen();
    eprintln!("keplor-agent top, as tmux shows it:\n{s}");
    assert!(shown, "top never showed the agent:\n{s}");
    for want in [
        "keplor-agent top",
        "llm-calls/0",
        "llm-calls/3",
        " Top user by cost, last 1h ",
        " Top model by cost, last 1h ",
        "user-",
        "Recent errors (status >= 400), last 1h",
        "stored ",
    ] {
        assert!(s.contains(want), "{want:?} missing from\n{s}");
    }
    assert!(!s.contains("! "), "a query failed:\n{s}");
    tmux(&["send-keys", "-t", &session.0, "q"]);
    let quit = wait_until(Duration::from_secs(10), || exited.exists());
    assert!(quit, "q did not end top:\n{}", screen());
    assert_eq!(read(&exited), "0", "top's exit status");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}
