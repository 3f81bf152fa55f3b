//! A full disk: appends fail, the partition pauses, nothing is committed past what is durable;
//! when space returns the agent resumes and stores everything exactly once.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;

use crate::common::*;

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "this test mounts a small tmpfs to fill the disk; it needs root (CI runs as root)"
        );
        Tmpfs(dir.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args([
                "-o",
                &format!("remount,size={size}"),
                self.0.to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_pauses_then_resumes_without_loss() {
    let kafka = Kafka::new(&[("in", 2)]);
    let mount = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(mount.path(), "3m");
    // ~4 KiB per message: 2,000 of them need ~8 MiB, far more than the 3 MiB disk.
    let payloads: Vec<Vec<u8>> = (0..2000).map(|i| padded_call(i, 4000)).collect();
    kafka.produce("in", 2, &payloads);
    let agent = Agent::start(config(
        &kafka.brokers,
        &mount.path().join("data"),
        "g-full",
        &[("KEPLOR_ERRORS__RETRY_BACKOFF", "200ms")],
    ))
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || agent
            .metrics
            .append_errors
            .load(Ordering::Relaxed)
            > 0),
        "appends never failed"
    );
    let base = format!("http://{}", agent.http_addr().unwrap());
    let metrics = || {
        ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(10), || metrics().contains(
        "keplor_partition_paused{topic=\"in\",partition=\"0\"} 1"
    ) || metrics()
        .contains(
            "keplor_partition_paused{topic=\"in\",partition=\"1\"} 1"
        )));
    // Nothing is committed past what is durable.
    let stored = agent.engine.total_events();
    assert!(stored < 2000);
    let committed: i64 = kafka
        .committed("g-full", "in", 2)
        .iter()
        .map(|&o| o.max(0))
        .sum();
    assert!(
        committed as u64 <= stored,
        "committed {committed} > stored {stored}"
    );

    // Space comes back: the agent resumes on its own.
    fs.resize("64m");
    assert!(
        wait_until(Duration::from_secs(60), || agent.engine.total_events()
            == 2000),
        "stored {}",
        agent.engine.total_events()
    );
    assert!(wait_until(Duration::from_secs(10), || !metrics().contains(
        "keplor_partition_paused{topic=\"in\",partition=\"0\"} 1"
    )));
    let ids = stored_ids(&agent.engine);
    assert!(ids.values().all(|&n| n == 1));
    assert!(matches!(agent.stop(), Stopped::Clean));
    assert_eq!(kafka.committed("g-full", "in", 2), vec![1000, 1000]);
}
