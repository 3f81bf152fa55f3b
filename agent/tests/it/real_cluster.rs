//! Issue 9's "real Kafka clusters" items against a real broker, Tansu 0.6.0 (`tansu.rs`):
//! kafka-python produces, the agent binary consumes as its own process, `keplor-agent query`
//! reads the figures back, and they must be exact.
//!
//! - Every compression codec (gzip, snappy, lz4, zstd) from kafka-python. Tansu stores the
//!   producer's batches as they come (`DynoStore::produce` keeps the deflated batch) and serves
//!   them as stored, so librdkafka inflates what kafka-python compressed.
//! - TLS through stunnel. Tansu 0.6.0's CLI takes `--cert` and `--key`, but its broker builds
//!   the TLS acceptor and drops it (`let _acceptor = ...` in tansu-broker-0.6.0/src/broker.rs,
//!   then `service.serve(c, stream)` on the plain TCP stream): the listener is always
//!   plaintext. stunnel terminates TLS in front of it and Tansu advertises stunnel's port. CA
//!   file, another CA, a certificate for another name, mutual TLS.
//! - SASL SCRAM-SHA-256 and SCRAM-SHA-512, plain and over TLS. Tansu 0.6.0's in-memory (and S3)
//!   storage, `dynostore`, keeps no SCRAM credentials: `upsert_user_scram_credential` is a
//!   no-op and `user_scram_credential` always answers `None` (tansu-storage-0.6.0/src/
//!   dynostore.rs), so no user can ever authenticate there. Its `libsql` storage
//!   (`sqlite://<file>`) keeps them, so these tests use a Tansu built with it (see
//!   [`tansu_sql_bin`]). Users are created with `tansu user create` while the broker runs without
//!   `--authentication` (Tansu's CLI has no SASL: against `--authentication` it is refused,
//!   `NotAuthenticated`), then the broker restarts with it on the same file. With
//!   `--authentication` Tansu offers SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (whose
//!   validation callback it never installed, so it always fails), not PLAIN (rsasl is built
//!   without it); a SaslHandshake for PLAIN is answered by closing the connection.
//! - JSON, Avro and Confluent-framed Avro, the last with a schema registry over https with
//!   basic auth (`schema_registry.py`), two writer schemas by id.
//!
//! A clean stop (SIGTERM) takes about 10 s here, on the mock cluster too: on the revoke at
//! close the agent asks the group for its committed offsets (`on_revoke` -> `read_committed`)
//! and that request times out (`COORDINATOR_TIMEOUT`). The tests stop agents concurrently.

use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{call, wait_until};
use crate::tansu::{
    free_port, query, tail, tansu_bin, AgentOpts, AgentProc, ProduceOpts, Tansu, TestDir,
};

const REGISTRY: &str = include_str!("schema_registry.py");
const MEMORY: [&str; 2] = ["--storage-engine", "memory://tansu/"];

/// What `common::SCHEMA` makes of `call(i)` messages, as `keplor-agent query aggregate` sums it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    events: u64,
    metric: i64,
    tokens: u64,
    /// Events with status 500..600.
    errors: u64,
    /// Events of user `u3`.
    u3: u64,
}

/// The figures of `call(i)` for every `i` in `range`.
fn figures(range: Range<u64>) -> Figures {
    let mut f = Figures::default();
    for i in range {
        f.events += 1;
        f.metric += i as i64 * 10;
        f.tokens += i % 100;
        f.errors += u64::from(i % 10 == 0);
        f.u3 += u64::from(i % 7 == 3);
    }
    f
}

/// The figures an agent answers.
fn answered(ep: &str) -> Figures {
    let eps = [ep.to_string()];
    let all = query(&eps, &["aggregate"]);
    let count = |args: &[&str]| {
        let mut a = vec!["aggregate"];
        a.extend(args);
        query(&eps, &a)["event_count"].as_u64().unwrap()
    };
    Figures {
        events: all["event_count"].as_u64().unwrap(),
        metric: all["metric"].as_i64().unwrap(),
        tokens: all["counters"]["tokens"].as_u64().unwrap(),
        errors: count(&["--status", "500..600"]),
        u3: count(&["--where", "user=u3"]),
    }
}

/// Waits until `agent` stored `want.events` events, then asserts every figure.
fn assert_figures(agent: &mut AgentProc, want: &Figures, what: &str) {
    let ep = agent.endpoint();
    let eps = [ep.clone()];
    let count = || query(&eps, &["aggregate"])["event_count"].as_u64().unwrap();
    let start = Instant::now();
    while count() < want.events && start.elapsed() < Duration::from_secs(90) {
        agent.check_alive();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Anything stored twice would show now.
    std::thread::sleep(Duration::from_millis(300));
    let got = answered(&ep);
    assert_eq!(&got, want, "{what}: figures\n{}", agent.log_tail(30));
    eprintln!(
        "{what}: exact ({} events) after {:?}",
        got.events,
        start.elapsed()
    );
}

/// Nothing rejected, no consumer error.
fn assert_clean(agent: &AgentProc) {
    let rejected = agent.metric("keplor_messages_rejected_total");
    let errors = agent.metric("keplor_consumer_errors_total");
    assert_eq!(
        (rejected, errors),
        (0.0, 0.0),
        "rejected, consumer errors\n{}",
        agent.log_tail(30)
    );
}

/// SIGTERMs the agents all at once (a clean stop takes a while); each must exit cleanly.
fn stop_all(agents: Vec<&mut AgentProc>) {
    std::thread::scope(|s| {
        let stops: Vec<_> = agents
            .into_iter()
            .map(|a| s.spawn(move || (a.stop(), a.log_tail(30))))
            .collect();
        for h in stops {
            let (status, log) = h.join().unwrap();
            assert!(status.success(), "{status}\n{log}");
        }
    });
}

/// `(partition, call(i))` for `range`, over two partitions.
fn calls(range: Range<u64>) -> Vec<(i32, Vec<u8>)> {
    range.map(|i| ((i % 2) as i32, call(i))).collect()
}

/// An agent process `name` in `dir` on `brokers`, group `g-<name>`, with `extra` config.
fn agent(dir: &Path, name: &str, brokers: &str, topic: &str, extra: &str) -> AgentProc {
    let opts = AgentOpts {
        group: format!("g-{name}"),
        topic: topic.into(),
        dlq: None,
        static_member: false,
        assignment: "cooperative-sticky".into(),
    };
    let a = AgentProc::new(dir, name, brokers, &opts);
    a.append_config(extra);
    a
}

/// `keplor-agent check-config --connect` on each agent's config, all at once: exit code and
/// output (stdout, then stderr) of each.
fn check_connect(agents: &[&AgentProc]) -> Vec<(i32, String)> {
    let children: Vec<Child> = agents
        .iter()
        .map(|a| {
            let mut cmd = Command::new(crate::tansu::agent_bin());
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("KEPLOR_") && !k.contains("__") {
                    cmd.env_remove(k.as_ref());
                }
            }
            cmd.args(["check-config", "--connect", "--connect-timeout", "6s"])
                .arg(a.dir.join("agent.toml"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .zip(agents)
        .map(|(c, a)| {
            let out = c.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // The resolved configuration it prints first is left out.
            let report = text
                .split("# connection check\n")
                .last()
                .unwrap_or_default();
            eprintln!(
                "check-config --connect {} -> {:?}:\n{report}",
                a.name,
                out.status.code()
            );
            (out.status.code().unwrap_or(-1), text)
        })
        .collect()
}

/// A check that failed naming `words` (each, case-insensitively).
fn assert_problem(r: &(i32, String), words: &[&str], what: &str) {
    assert_eq!(r.0, 1, "{what}: exit code\n{}", r.1);
    let lower = r.1.to_lowercase();
    for w in words {
        assert!(lower.contains(w), "{what}: {w:?} not named:\n{}", r.1);
    }
}

/// A check that passed: the broker and the topic were found.
fn assert_connects(r: &(i32, String), topic: &str, what: &str) {
    assert_eq!(r.0, 0, "{what}: exit code\n{}", r.1);
    assert!(r.1.contains("brokers reached: 1"), "{what}:\n{}", r.1);
    assert!(
        r.1.contains(&format!("topic {topic}: 2 partitions")),
        "{what}:\n{}",
        r.1
    );
}

// ---------------------------------------------------------------------------------------------
// Certificates and stunnel.

/// Runs `openssl` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests need the `openssl` command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA in `dir`: `<name>.pem`, `<name>.key`.
fn make_ca(dir: &Path, name: &str) {
    let (pem, key, subj) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("/CN=keplor test {name}"),
    );
    let args = [
        &["req", "-x509", "-days", "2", "-subj", &subj][..],
        &EC,
        &["-keyout", &key, "-out", &pem],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]
    .concat();
    openssl(dir, &args);
}

/// A certificate `<name>.pem` / `<name>.key` in `dir`, signed by CA `ca`, naming `san`
/// (`IP:127.0.0.1,DNS:localhost`) for `usage` (`serverAuth` or `clientAuth`).
fn make_cert(dir: &Path, ca: &str, name: &str, san: &str, usage: &str) {
    let (pem, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            &["req", "-subj", &subj][..],
            &EC,
            &["-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// The test PKI in `dir`: CA `ca` (and an unrelated `other-ca`), `server` for 127.0.0.1 and
/// localhost, `elsewhere` for `elsewhere.example` only, and `client` (mutual TLS), all but
/// `other-ca` signed by `ca`.
fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_cert(
        dir,
        "ca",
        "server",
        "IP:127.0.0.1,DNS:localhost",
        "serverAuth",
    );
    make_cert(
        dir,
        "ca",
        "elsewhere",
        "DNS:elsewhere.example",
        "serverAuth",
    );
    make_cert(dir, "ca", "client", "DNS:keplor-agent", "clientAuth");
}

/// One stunnel service: TLS on `accept`, plaintext to `connect`.
struct Service<'a> {
    accept: u16,
    connect: &'a str,
    /// The certificate served (`<cert>.pem` / `<cert>.key` of the PKI).
    cert: &'a str,
    /// Require a client certificate signed by the PKI's `ca` (stunnel's `verify = 2`).
    verify_client: bool,
}

/// stunnel (Debian's stunnel4) in the foreground, killed on drop.
struct Stunnel {
    child: Child,
    log: PathBuf,
}

impl Stunnel {
    /// Starts stunnel for `services` (certificates from `pki`) and waits until every port
    /// accepts connections.
    fn start(dir: &Path, pki: &Path, services: &[Service]) -> Stunnel {
        let mut conf = "foreground = yes\npid =\ndebug = notice\n".to_string();
        for (k, s) in services.iter().enumerate() {
            let pem = pki.join(format!("{}.pem", s.cert));
            let key = pki.join(format!("{}.key", s.cert));
            conf += &format!(
                "[s{k}]\naccept = 127.0.0.1:{}\nconnect = {}\ncert = {}\nkey = {}\n",
                s.accept,
                s.connect,
                pem.display(),
                key.display()
            );
            if s.verify_client {
                conf += &format!("CAfile = {}\nverify = 2\n", pki.join("ca.pem").display());
            }
        }
        let path = dir.join("stunnel.conf");
        std::fs::write(&path, conf).unwrap();
        let log = dir.join("stunnel.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("stunnel4")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("these tests need stunnel (Debian package stunnel4)");
        let mut s = Stunnel { child, log };
        let up = wait_until(Duration::from_secs(20), || {
            services
                .iter()
                .all(|sv| std::net::TcpStream::connect(("127.0.0.1", sv.accept)).is_ok())
        });
        assert!(
            up && s.child.try_wait().unwrap().is_none(),
            "stunnel did not start:\n{}",
            tail(&s.log, 30)
        );
        s
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- stunnel ---\n{}", tail(&self.log, 30));
        }
    }
}

/// kafka-python's TLS arguments with the PKI's CA (and its client certificate).
fn py_tls(pki: &Path, client_cert: bool) -> Value {
    let mut v = json!({
        "security_protocol": "SSL",
        "ssl_cafile": pki.join("ca.pem"),
    });
    if client_cert {
        v["ssl_certfile"] = json!(pki.join("client.pem"));
        v["ssl_keyfile"] = json!(pki.join("client.key"));
    }
    v
}

/// The agent's `[kafka.tls]` section.
fn tls_section(ca: &Path, client: Option<&Path>, extra: &str) -> String {
    let mut s = format!("[kafka.tls]\nca_file = {:?}\n", ca.display().to_string());
    if let Some(pki) = client {
        s += &format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            pki.join("client.pem").display().to_string(),
            pki.join("client.key").display().to_string()
        );
    }
    s + extra
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// kafka-python produces JSON with each codec in turn; the agent stores every message once:
/// the figures are exact after each codec.
#[test]
fn real_cluster_every_codec_from_kafka_python() {
    let started = Instant::now();
    let dir = TestDir::new("rc-codecs");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic("codecs", 2);
    let mut a = agent(dir.path(), "codecs", &tansu.brokers, "codecs", "");
    a.start();
    const N: u64 = 250;
    for (k, codec) in ["gzip", "snappy", "lz4", "zstd"].into_iter().enumerate() {
        let k = k as u64;
        let o = ProduceOpts {
            client: json!({ "compression_type": codec }),
            ..ProduceOpts::default()
        };
        let range = k * N..(k + 1) * N;
        let acked = tansu
            .produce_with(dir.path(), "codecs", calls(range), 0.0, &o)
            .finish();
        assert_eq!(acked.len() as u64, N);
        assert_figures(&mut a, &figures(0..(k + 1) * N), codec);
    }
    assert_clean(&a);
    assert!(a.stop().success(), "{}", a.log_tail(30));
    eprintln!(
        "real_cluster_every_codec_from_kafka_python: {:?}",
        started.elapsed()
    );
}

/// TLS in front of Tansu (stunnel): the agent consumes exactly with the CA file, and
/// `check-config --connect` names the certificate when the CA or the name is wrong; mutual TLS
/// with a client certificate.
#[test]
fn real_cluster_tls_through_stunnel() {
    let started = Instant::now();
    let dir = TestDir::new("rc-tls");
    let d = dir.path();
    let pki = d.join("pki");
    make_pki(&pki);
    let (tls, elsewhere, mtls) = (free_port(), free_port(), free_port());
    // One broker behind TLS (and behind a certificate for another name), one behind mutual
    // TLS: each advertises its stunnel port.
    std::fs::create_dir_all(d.join("b1")).unwrap();
    std::fs::create_dir_all(d.join("b2")).unwrap();
    let broker = Tansu::start_with(&d.join("b1"), &tansu_bin(), free_port(), Some(tls), &MEMORY);
    let mutual = Tansu::start_with(
        &d.join("b2"),
        &tansu_bin(),
        free_port(),
        Some(mtls),
        &MEMORY,
    );
    broker.create_topic("secure", 2);
    mutual.create_topic("secure", 2);
    let _stunnel = Stunnel::start(
        d,
        &pki,
        &[
            Service {
                accept: tls,
                connect: &broker.brokers,
                cert: "server",
                verify_client: false,
            },
            Service {
                accept: elsewhere,
                connect: &broker.brokers,
                cert: "elsewhere",
                verify_client: false,
            },
            Service {
                accept: mtls,
                connect: &mutual.brokers,
                cert: "server",
                verify_client: true,
            },
        ],
    );
    let (tls_addr, mtls_addr) = (format!("127.0.0.1:{tls}"), format!("127.0.0.1:{mtls}"));
    let elsewhere_addr = format!("127.0.0.1:{elsewhere}");
    let ca = pki.join("ca.pem");

    // kafka-python produces over TLS, to each broker.
    let want = figures(0..300);
    for (addr, tansu, client) in [(&tls_addr, &broker, false), (&mtls_addr, &mutual, true)] {
        let o = ProduceOpts {
            brokers: Some(addr.clone()),
            client: py_tls(&pki, client),
            ..ProduceOpts::default()
        };
        tansu
            .produce_with(d, "secure", calls(0..300), 0.0, &o)
            .finish();
    }

    // The agent with the CA file, then with a client certificate too.
    let mut one = agent(d, "tls", &tls_addr, "secure", &tls_section(&ca, None, ""));
    let mut two = agent(
        d,
        "mtls",
        &mtls_addr,
        "secure",
        &tls_section(&ca, Some(&pki), ""),
    );
    one.start();
    two.start();
    assert_figures(&mut one, &want, "TLS with ca_file");
    assert_figures(&mut two, &want, "mutual TLS");
    assert_clean(&one);
    assert_clean(&two);
    stop_all(vec![&mut one, &mut two]);

    // check-config --connect, each case against the same brokers.
    let other_ca = pki.join("other-ca.pem");
    let cases = [
        ("right-ca", &tls_addr, tls_section(&ca, None, "")),
        ("localhost", &tls_addr, tls_section(&ca, None, "")),
        ("wrong-ca", &tls_addr, tls_section(&other_ca, None, "")),
        (
            "other-name",
            &elsewhere_addr,
            tls_section(&ca, None, "verify_hostname = true\n"),
        ),
        (
            "other-name-unchecked",
            &elsewhere_addr,
            tls_section(&ca, None, "verify_hostname = false\n"),
        ),
        ("no-tls", &tls_addr, String::new()),
        ("mtls-no-cert", &mtls_addr, tls_section(&ca, None, "")),
        ("mtls-cert", &mtls_addr, tls_section(&ca, Some(&pki), "")),
    ];
    let checkers: Vec<AgentProc> = cases
        .iter()
        .map(|(name, addr, extra)| {
            let addr = if *name == "localhost" {
                format!("localhost:{tls}")
            } else {
                addr.to_string()
            };
            agent(d, &format!("check-{name}"), &addr, "secure", extra)
        })
        .collect();
    let r = check_connect(&checkers.iter().collect::<Vec<_>>());
    assert_connects(&r[0], "secure", "the right CA");
    assert_connects(
        &r[1],
        "secure",
        "localhost (DNS:localhost in the certificate)",
    );
    assert_problem(&r[2], &["tls", "certificate"], "another CA");
    assert_problem(
        &r[3],
        &["tls", "certificate"],
        "a certificate for elsewhere.example",
    );
    assert_connects(
        &r[4],
        "secure",
        "elsewhere.example with verify_hostname = false",
    );
    assert_eq!(r[5].0, 1, "plaintext to a TLS port:\n{}", r[5].1);
    // Named by OpenSSL's alert, though the agent's sentence blames the broker's certificate.
    let what = "mutual TLS without a client certificate";
    assert_problem(&r[6], &["tls", "certificate required"], what);
    assert_connects(&r[7], "secure", "mutual TLS with the client certificate");
    eprintln!("real_cluster_tls_through_stunnel: {:?}", started.elapsed());
}

/// The Tansu binary with `libsql` storage, for the SASL test: `$TANSU_SQL_BIN`, else the
/// `tansu` of [`tansu_bin`] when it has it, else `$CARGO_HOME/tansu-libsql/bin/tansu` (where
/// `.ci/run` installs it beside an older `tansu` without it). Panics when none is found.
pub fn tansu_sql_bin() -> PathBuf {
    let has_libsql = |bin: &Path| {
        Command::new(bin)
            .arg("--help")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libsql"))
    };
    if let Some(p) = std::env::var_os("TANSU_SQL_BIN") {
        return PathBuf::from(p);
    }
    let main = tansu_bin();
    if has_libsql(&main) {
        return main;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let side = home.join("tansu-libsql/bin/tansu");
    assert!(
        side.is_file() && has_libsql(&side),
        "the SASL test needs Tansu with libsql storage (its in-memory storage keeps no SCRAM \
         credentials): `cargo install tansu --version 0.6.0 --features dynostore,libsql \
         --locked` (.ci/run does it), or set TANSU_SQL_BIN"
    );
    side
}

/// kafka-python's SCRAM arguments.
fn py_scram(mechanism: &str, user: &str, password: &str, tls: Option<&Path>) -> Value {
    let mut v = json!({
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    });
    if let Some(pki) = tls {
        v["security_protocol"] = json!("SASL_SSL");
        v["ssl_cafile"] = json!(pki.join("ca.pem"));
    }
    v
}

/// The agent's `[kafka.sasl]` section.
fn sasl_section(mechanism: &str, user: &str, password: &str) -> String {
    format!(
        "[kafka.sasl]\nmechanism = {mechanism:?}\nusername = {user:?}\npassword = {password:?}\n"
    )
}

/// SCRAM-SHA-256 and SCRAM-SHA-512 against Tansu with `--authentication`: the agent consumes
/// exactly, `check-config --connect` names a wrong password; then SASL over TLS (stunnel).
#[test]
fn real_cluster_sasl_scram_plain_and_over_tls() {
    let started = Instant::now();
    let bin = tansu_sql_bin();
    let dir = TestDir::new("rc-sasl");
    let d = dir.path();
    let port = free_port();
    let sqlite = ["--storage-engine", "sqlite://tansu.db"];
    let auth = ["--storage-engine", "sqlite://tansu.db", "--authentication"];
    let (alice, bob) = ("s3cret-alice", "s3cret-bob");
    {
        // Topics and users while the broker runs without authentication.
        let setup = Tansu::start_with(d, &bin, port, None, &sqlite);
        setup.create_topic("scram", 2);
        for (user, password, mechanism) in [("alice", alice, "scram256"), ("bob", bob, "scram512")]
        {
            let out = Command::new(&bin)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &format!("tcp://{}", setup.brokers),
                ])
                .args([user, password, "--mechanism", mechanism])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tansu user create {user}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let want = figures(0..300);
    let brokers = format!("127.0.0.1:{port}");
    {
        let tansu = Tansu::start_with(d, &bin, port, None, &auth);
        let o = ProduceOpts {
            client: py_scram("SCRAM-SHA-256", "alice", alice, None),
            ..ProduceOpts::default()
        };
        tansu
            .produce_with(d, "scram", calls(0..300), 0.0, &o)
            .finish();
        let sasl = sasl_section("SCRAM-SHA-256", "alice", alice);
        let mut a = agent(d, "scram-256", &brokers, "scram", &sasl);
        a.start();
        assert_figures(&mut a, &want, "SASL SCRAM-SHA-256");
        assert_clean(&a);
        // A clean stop (commits over SASL) while the checks run.
        let stopping = std::thread::spawn(move || (a.stop(), a.log_tail(30)));

        let cases = [
            ("bob-512", sasl_section("SCRAM-SHA-512", "bob", bob)),
            (
                "alice-wrong",
                sasl_section("SCRAM-SHA-256", "alice", "wrong"),
            ),
            ("bob-as-256", sasl_section("SCRAM-SHA-256", "bob", bob)),
            ("nobody", sasl_section("SCRAM-SHA-512", "nobody", bob)),
            ("plain", sasl_section("PLAIN", "alice", alice)),
            ("no-sasl", String::new()),
        ];
        let checkers: Vec<AgentProc> = cases
            .iter()
            .map(|(name, extra)| agent(d, &format!("check-{name}"), &brokers, "scram", extra))
            .collect();
        let r = check_connect(&checkers.iter().collect::<Vec<_>>());
        assert_connects(&r[0], "scram", "SCRAM-SHA-512 bob");
        assert_problem(&r[1], &["sasl authentication failed"], "a wrong password");
        assert_problem(
            &r[2],
            &["sasl authentication failed"],
            "bob has no SCRAM-SHA-256 credential",
        );
        assert_problem(&r[3], &["sasl authentication failed"], "an unknown user");
        assert_eq!(r[4].0, 1, "PLAIN (Tansu does not offer it):\n{}", r[4].1);
        assert_eq!(r[5].0, 1, "no SASL at all:\n{}", r[5].1);
        let (status, log) = stopping.join().unwrap();
        assert!(status.success(), "{status}\n{log}");
    }

    // SASL over TLS: the same storage, now behind stunnel, advertising stunnel's port.
    let pki = d.join("pki");
    make_pki(&pki);
    let tls = free_port();
    let behind_tls = Tansu::start_with(d, &bin, port, Some(tls), &auth);
    let _stunnel = Stunnel::start(
        d,
        &pki,
        &[Service {
            accept: tls,
            connect: &brokers,
            cert: "server",
            verify_client: false,
        }],
    );
    let tls_addr = format!("127.0.0.1:{tls}");
    let ca = pki.join("ca.pem");
    let o = ProduceOpts {
        brokers: Some(tls_addr.clone()),
        client: py_scram("SCRAM-SHA-512", "bob", bob, Some(&pki)),
        ..ProduceOpts::default()
    };
    behind_tls
        .produce_with(d, "scram", calls(300..400), 0.0, &o)
        .finish();
    let section = tls_section(&ca, None, "") + &sasl_section("SCRAM-SHA-512", "bob", bob);
    let mut a = agent(d, "sasl-ssl", &tls_addr, "scram", &section);
    a.start();
    assert_figures(&mut a, &figures(0..400), "SASL_SSL SCRAM-SHA-512");
    assert_clean(&a);
    let wrong = tls_section(&ca, None, "") + &sasl_section("SCRAM-SHA-512", "bob", "wrong");
    let checker = agent(d, "check-sasl-ssl-wrong", &tls_addr, "scram", &wrong);
    let r = check_connect(&[&checker]);
    assert_problem(
        &r[0],
        &["sasl authentication failed"],
        "SASL_SSL with a wrong password",
    );
    stop_all(vec![&mut a]);
    eprintln!(
        "real_cluster_sasl_scram_plain_and_over_tls: {:?}",
        started.elapsed()
    );
}

/// The writer schema of `call(i)` (`v2`: fields in another order, one more field).
fn call_schema(v2: bool) -> Value {
    let mut fields = vec![
        json!({"name": "rid", "type": "string"}),
        json!({"name": "user", "type": "string"}),
        json!({"name": "model", "type": "string"}),
        json!({"name": "usage", "type": {"type": "record", "name": "Usage", "fields": [
            {"name": "tokens", "type": "int"}]}}),
        json!({"name": "cost", "type": "long"}),
        json!({"name": "status", "type": "int"}),
        json!({"name": "ts", "type": "long"}),
        json!({"name": "note", "type": ["null", "string"]}),
    ];
    if v2 {
        fields.reverse();
        fields.insert(3, json!({"name": "region", "type": "string"}));
    }
    json!({"type": "record", "name": "Call", "namespace": "keplor.test", "fields": fields})
}

/// A schema registry (`schema_registry.py`) over https, killed on drop.
struct Registry {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Registry {
    fn start(
        dir: &Path,
        pki: &Path,
        user: &str,
        password: &str,
        schemas: &[(u32, &Path)],
    ) -> Registry {
        let log = dir.join("registry.log");
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(REGISTRY)
            .arg(pki.join("server.pem"))
            .arg(pki.join("server.key"))
            .args([user, password]);
        for (id, path) in schemas {
            cmd.arg(format!("{id}={}", path.display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the registry did not start: {line:?}\n{}", tail(&log, 20))
        });
        Registry {
            child,
            url: format!("https://127.0.0.1:{port}"),
            log,
        }
    }

    /// The requests answered so far: `GET <path> <status>`.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// JSON, Avro and Confluent-framed Avro from kafka-python (fastavro), each consumed by an agent
/// process; the Confluent one asks a registry over https with basic auth for two writer schemas.
/// A wrong registry password pauses the partitions: nothing stored, nothing rejected.
#[test]
fn real_cluster_formats_end_to_end() {
    let started = Instant::now();
    let dir = TestDir::new("rc-formats");
    let d = dir.path();
    let pki = d.join("pki");
    make_pki(&pki);
    let (v1, v2) = (d.join("call-v1.avsc"), d.join("call-v2.avsc"));
    std::fs::write(&v1, call_schema(false).to_string()).unwrap();
    std::fs::write(&v2, call_schema(true).to_string()).unwrap();
    let registry = Registry::start(d, &pki, "keplor", "registry-pw", &[(7, &v1), (8, &v2)]);

    let tansu = Tansu::start(d);
    for t in ["f-json", "f-avro", "f-confluent"] {
        tansu.create_topic(t, 2);
    }
    let want = figures(0..300);
    let json_msgs = calls(0..300);
    // Avro: the same records, encoded by fastavro in the producer.
    let avro = ProduceOpts {
        encode: json!({"kind": "avro", "schema": v1}),
        ..ProduceOpts::default()
    };
    // Confluent: even messages with schema id 7, odd ones with id 8 (and a region).
    let framed: Vec<(i32, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let mut v: Value = serde_json::from_slice(&call(i)).unwrap();
            if i % 2 == 0 {
                v["_schema_id"] = json!(7);
            } else {
                v["_schema_id"] = json!(8);
                v["region"] = json!("eu");
            }
            ((i % 2) as i32, v.to_string().into_bytes())
        })
        .collect();
    let confluent = ProduceOpts {
        encode: json!({"kind": "confluent", "schemas": {"7": v1, "8": v2}}),
        ..ProduceOpts::default()
    };
    let p1 = tansu.produce(d, "f-json", json_msgs, 0.0);
    let p2 = tansu.produce_with(d, "f-avro", calls(0..300), 0.0, &avro);
    let p3 = tansu.produce_with(d, "f-confluent", framed, 0.0, &confluent);
    for p in [p1, p2, p3] {
        assert_eq!(p.finish().len(), 300);
    }

    let registry_section = |password: &str| {
        format!(
            "[format]\nkind = \"avro-confluent\"\nregistry_url = {:?}\nregistry_ca_file = {:?}\n\
             registry_username = \"keplor\"\nregistry_password = {password:?}\n",
            registry.url,
            pki.join("ca.pem").display().to_string()
        )
    };
    let avro_section = format!(
        "[format]\nkind = \"avro\"\nschema_file = {:?}\n",
        v1.display().to_string()
    );
    let mut agents = [
        agent(
            d,
            "json",
            &tansu.brokers,
            "f-json",
            "[format]\nkind = \"json\"\n",
        ),
        agent(d, "avro", &tansu.brokers, "f-avro", &avro_section),
        agent(
            d,
            "confluent",
            &tansu.brokers,
            "f-confluent",
            &registry_section("registry-pw"),
        ),
    ];
    for a in &mut agents {
        a.start();
    }
    for a in &mut agents {
        let what = format!("format {}", a.name);
        assert_figures(a, &want, &what);
        assert_clean(a);
    }
    let asked = registry.requests();
    eprintln!("registry requests: {asked:?}");
    for id in [7, 8] {
        assert!(
            asked.contains(&format!("GET /schemas/ids/{id} 200")),
            "schema {id} not fetched: {asked:?}"
        );
    }
    assert!(asked.iter().all(|r| r.ends_with(" 200")), "{asked:?}");

    // The wrong registry password: a registry error (401), not the messages' fault.
    let mut bad = agent(
        d,
        "confluent-bad-auth",
        &tansu.brokers,
        "f-confluent",
        &registry_section("wrong"),
    );
    bad.start();
    let paused = wait_until(Duration::from_secs(30), || {
        bad.check_alive();
        bad.metric("keplor_consumer_errors_total{kind=\"registry\"}") >= 1.0
    });
    assert!(paused, "no registry error counted:\n{}", bad.log_tail(30));
    assert!(
        registry.requests().iter().any(|r| r.ends_with(" 401")),
        "{:?}",
        registry.requests()
    );
    assert_eq!(answered(&bad.endpoint()), Figures::default());
    assert_eq!(bad.metric("keplor_messages_rejected_total"), 0.0);
    let [json, avro, confluent] = &mut agents;
    stop_all(vec![json, avro, confluent, &mut bad]);
    eprintln!("real_cluster_formats_end_to_end: {:?}", started.elapsed());
}
