//! `keplor-agent query` against an agent behind TLS (stunnel4 in front of its HTTP API, with a
//! CA made here), its exit codes and its output flags.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use keplor_agent::agent::Agent;
use keplor_agent::sink::Stopped;
use serde_json::Value;

use crate::common::*;

/// Runs the `openssl` command line tool in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the TLS test needs the `openssl` command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate it signed for 127.0.0.1 only (`server.pem`, `server.key`).
fn test_pki(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let ca = [
        &["req", "-x509", "-nodes"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        &["-subj", "/CN=keplor test CA"],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ];
    openssl(dir, &ca.concat());
    let csr = [
        &["req", "-nodes"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=agent",
        ],
    ];
    openssl(dir, &csr.concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// stunnel4 serving TLS on a free port of 127.0.0.1 in front of `backend`; killed on drop.
struct Stunnel {
    child: Child,
    port: u16,
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stunnel(dir: &Path, backend: &str) -> Stunnel {
    let port = free_port();
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[agent]\naccept = 127.0.0.1:{port}\nconnect = {backend}\ncert = {}\nkey = {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .unwrap();
    let child = Command::new("stunnel4")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the TLS test needs stunnel4 (Debian package stunnel4)");
    let s = Stunnel { child, port };
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "stunnel4 did not listen on {port}"
    );
    s
}

fn query(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .arg("query")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn query_over_https_trusts_the_ca_file_and_names_a_refused_certificate() {
    let kafka = Kafka::new(&[("in", 2)]);
    kafka.produce("in", 2, &(0..100).map(call).collect::<Vec<_>>());
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&kafka.brokers, data.path(), "g-tls", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 100));
    let pki = tempfile::tempdir().unwrap();
    test_pki(pki.path());
    let tunnel = stunnel(pki.path(), &agent.http_addr().unwrap().to_string());
    let https = format!("https://127.0.0.1:{}", tunnel.port);
    let ca = pki.path().join("ca.pem");
    let ca = ca.to_str().unwrap();

    let o = query(&["-e", &https, "--ca-file", ca, "-o", "json", "aggregate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["event_count"], 100, "{v}");

    // Without the CA: the system roots refuse the certificate, and the error says so.
    let o = query(&["-e", &https, "-o", "json", "aggregate"]);
    assert_eq!(o.status.code(), Some(1), "no endpoint answered");
    let err = stderr(&o);
    assert!(
        err.contains("certificate was refused") && err.contains("--ca-file"),
        "{err}"
    );
    // A CA file that is not one: a usage error before any request.
    let o = query(&["-e", &https, "--ca-file", "/dev/null", "aggregate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--ca-file: /dev/null holds no PEM certificate"));

    drop(tunnel);
    assert!(matches!(agent.stop(), Stopped::Clean));
}

#[test]
fn query_exit_codes_and_output_flags() {
    let kafka = Kafka::new(&[("in", 1)]);
    kafka.produce("in", 1, &(0..10).map(call).collect::<Vec<_>>());
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&kafka.brokers, data.path(), "g-codes", &[])).unwrap();
    assert!(wait_until(Duration::from_secs(30), || agent
        .engine
        .total_events()
        == 10));
    let e = format!("http://{}", agent.http_addr().unwrap());

    // `--output` and its alias `--format`, `get` and its alias `event`.
    for flag in ["--output", "--format", "-o"] {
        let o = query(&["-e", &e, flag, "csv", "event", "in/0/3"]);
        assert_eq!(o.status.code(), Some(0), "{flag}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with("id,") && out.contains("in/0/3"),
            "{flag}: {out}"
        );
    }
    // Not found is its own code, distinct from a run-time failure (1).
    let o = query(&["-e", &e, "get", "in/0/999"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("no event with id \"in/0/999\""));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let o = query(&["-e", &dead, "get", "in/0/3"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // --since with --from: a usage error naming both, not a silent override.
    for args in [
        ["aggregate", "--since", "1h", "--from", "0"],
        ["recent", "--from", "0", "--since", "1h"],
    ] {
        let o = query(&[&["-e", &e][..], &args].concat());
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("cannot be used with")
                && err.contains("--since")
                && err.contains("--from"),
            "{err}"
        );
    }
    // The help lists the exit codes.
    let o = query(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("4  get: no event with that id"),
        "{help}"
    );
    assert!(matches!(agent.stop(), Stopped::Clean));
}
