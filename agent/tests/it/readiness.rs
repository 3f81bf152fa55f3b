//! `/healthz` answers while the process serves (liveness); `/readyz` only once the group is
//! joined, and no longer once a fatal error is pending (a stuck partition: errors.rs).

use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;

use crate::common::*;

fn status(url: &str) -> u16 {
    ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn not_ready_before_the_group_is_joined_but_alive() {
    // No broker listens there: the group is never joined.
    let brokers = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&brokers, dir.path(), "g-never", &[])).unwrap();
    let url = format!("http://{}", agent.http_addr().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        status(&format!("{url}/healthz")),
        200,
        "liveness is the process"
    );
    assert_eq!(status(&format!("{url}/readyz")), 503, "no group joined");
    assert!(!agent.finished());
    assert!(matches!(agent.stop(), Stopped::Clean));
}

#[test]
fn not_ready_once_a_fatal_error_is_pending() {
    let kafka = Kafka::new(&[("in", 1)]);
    let mut payloads: Vec<Vec<u8>> = (0..20).map(call).collect();
    payloads.push(b"poison".to_vec());
    kafka.produce("in", 1, &payloads);
    let dir = tempfile::tempdir().unwrap();
    let stop = [("KEPLOR_ERRORS__POLICY", "stop")];
    let agent = Agent::start(config(&kafka.brokers, dir.path(), "g-fatal", &stop)).unwrap();
    let url = format!("http://{}", agent.http_addr().unwrap());
    assert!(wait_until(Duration::from_secs(30), || agent.finished()));
    // The sink stopped on the poison message; the HTTP API still answers until `stop`.
    assert_eq!(status(&format!("{url}/healthz")), 200);
    assert_eq!(
        status(&format!("{url}/readyz")),
        503,
        "a fatal error is pending"
    );
    assert!(matches!(agent.stop(), Stopped::Failed(_)));
}
