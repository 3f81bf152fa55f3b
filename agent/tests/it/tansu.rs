//! A real Kafka-protocol broker for the fleet tests, and the processes around it.
//!
//! - [`Tansu`]: the Tansu broker (`cargo install tansu --version 0.6.0 --features dynostore
//!   --locked`, done by `.ci/run`) with in-memory storage on a free loopback port, killed on
//!   drop. The tests fail (never skip) when the binary is missing.
//! - `kafka_tool.py` (kafka-python): creates topics, produces at a rate, reads a group's
//!   committed offsets with their metadata strings. The agent's own librdkafka (the bundled
//!   2.12) reads watermarks and committed offsets in-process; Debian's kcat (librdkafka 2.0.2)
//!   cannot talk to Tansu 0.6.0 (it fails to parse Tansu's ApiVersions v3 response).
//! - [`AgentProc`]: one `keplor-agent run` process with its own data dir, HTTP port and log
//!   file, SIGKILLed or SIGTERMed and restarted on the same data dir and port.
//! - [`query`]: the `keplor-agent query` CLI fanned out over several agents, JSON parsed.
//!
//! What Tansu 0.6.0 does differently from Apache Kafka (seen in these tests and its source):
//! - OffsetCommit metadata is stored but never returned: OffsetFetch answers `""` (v < 8) or
//!   null (v8+) (`fleet_tansu_offset_commit_metadata_probe`).
//! - OffsetCommit is not fenced: no generation or member check, any client may commit.
//! - JoinGroup answers at once (no barrier waiting for the other members to rejoin), so a
//!   partition can be handed to a new owner a few ms before the old one revoked it (eager
//!   `range`), or while it keeps it (`cooperative-sticky`: overlapping owners for seconds).
//! - Members waiting in a rebalance are expelled on their session timeout; after SIGKILLs or
//!   LeaveGroups the group can stall (no assignment for a live member) until it rejoins.
//! - ListOffsets "latest" is the last batch's base offset + 1, not the high watermark.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::common::{wait_until, SCHEMA};

const KAFKA_TOOL: &str = include_str!("kafka_tool.py");
/// The agent binary: cargo's, or `KEPLOR_TEST_AGENT_BIN` (a long campaign runs copies of the
/// test and agent binaries, so that builds meanwhile do not replace them under it).
pub fn agent_bin() -> std::ffi::OsString {
    std::env::var_os("KEPLOR_TEST_AGENT_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_keplor-agent").into())
}

/// A free loopback TCP port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `tansu` binary: `$TANSU_BIN`, then `PATH`, then `~/.cargo/bin`. Panics when missing.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TANSU_BIN={}: no such file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home)
        .map(|d| d.join("tansu"))
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the fleet tests need the Tansu broker and it is not installed: run \
                 `cargo install tansu --version 0.6.0 --features dynostore --locked` \
                 (.ci/run does it) or set TANSU_BIN"
            )
        })
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A test directory that is kept (and printed) when the test panics, for its logs.
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        TestDir(Some(
            tempfile::Builder::new()
                .prefix(&format!("{name}-"))
                .tempdir()
                .unwrap(),
        ))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!("test directory kept for diagnosis: {}", d.keep().display());
            }
        }
    }
}

/// Runs `kafka_tool.py` with `args`; its one JSON answer.
pub fn kafka_tool(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(KAFKA_TOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka_tool.py {args:?} (needs `pip install kafka-python`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("kafka_tool.py {args:?}: {e}: {stdout}"))
}

/// A Tansu broker with in-memory storage on a free loopback port; killed on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:<port>`, for clients.
    pub brokers: String,
    url: String,
    log: PathBuf,
}

impl Tansu {
    /// Starts the broker (log in `dir/tansu.log`) and waits until it answers metadata.
    pub fn start(dir: &Path) -> Tansu {
        let args = ["--storage-engine", "memory://tansu/"];
        Tansu::start_with(dir, &tansu_bin(), free_port(), None, &args)
    }

    /// Starts `bin` on `port` in `dir` with `args` (`--storage-engine` too), advertising port
    /// `advertised` (a TLS proxy) or its own. With `--authentication`, no metadata wait.
    pub fn start_with(
        dir: &Path,
        bin: &Path,
        port: u16,
        advertised: Option<u16>,
        args: &[&str],
    ) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let log = dir.join("tansu.log");
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(out, "===== tansu {args:?} on {url} as {advertised} =====").unwrap();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .args(args)
            .current_dir(dir)
            // Group coordination at info (joins, missed heartbeats); `KEPLOR_TANSU_LOG` overrides.
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("KEPLOR_TANSU_LOG")
                    .unwrap_or_else(|_| "warn,tansu_broker::coordinator=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let t = Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            url,
            log,
        };
        let auth = args.contains(&"--authentication");
        let client = t.client(None);
        let up = wait_until(Duration::from_secs(30), || {
            if auth {
                return std::net::TcpStream::connect(&t.brokers).is_ok();
            }
            client
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok_and(|m| !m.brokers().is_empty())
        });
        assert!(up, "Tansu did not answer on {}:\n{}", t.url, t.log_tail());
        // Every agent of these tests keeps its ownership chains there (see `OWNERSHIP_TOPIC`).
        if !auth {
            t.create_topic(OWNERSHIP_TOPIC, 1);
        }
        t
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// A consumer handle (never subscribed) for metadata, watermarks and group offsets.
    fn client(&self, group: Option<&str>) -> BaseConsumer {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("log_level", "3");
        if let Some(g) = group {
            c.set("group.id", g);
        }
        c.create().expect("rdkafka client")
    }

    /// Creates `topic` with `partitions` partitions (Tansu's CLI) and waits until it is served.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", "--broker", &self.url])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let client = self.client(None);
        let ok = wait_until(Duration::from_secs(20), || {
            client
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| t.name() == topic && t.partitions().len() == partitions as usize)
                })
        });
        assert!(ok, "topic {topic} not served:\n{}", self.log_tail());
    }

    /// ListOffsets "latest" of `topic`'s partitions, as librdkafka's `fetch_watermarks` reads
    /// it. Not the high watermark on Tansu 0.6.0: it answers the base offset of the batch
    /// written last, plus one, so it falls short when that batch held several records. The
    /// fleet tests take the end of each partition from the producer's acknowledgements.
    pub fn list_offsets_latest(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let c = self.client(None);
        (0..partitions)
            .map(|p| {
                c.fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                    .1
            })
            .collect()
    }

    /// Every message of `topic`, read through Fetch (kafka-python): `(partition, offset, text)`.
    pub fn dump(&self, topic: &str) -> Vec<(i32, i64, String)> {
        let v = kafka_tool(&["dump", &self.brokers, topic]);
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0].as_i64().unwrap() as i32,
                    m[1].as_i64().unwrap(),
                    m[2].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// `group`'s committed offsets for `topic` through librdkafka (-1: none), with metadata.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<(i64, String)> {
        let c = self.client(Some(group));
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
        (0..partitions)
            .map(|p| match got.find_partition(topic, p) {
                Some(e) => (
                    match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    },
                    e.metadata().to_string(),
                ),
                None => (-1, String::new()),
            })
            .collect()
    }

    /// `group`'s committed offsets through kafka-python's `KafkaAdminClient`:
    /// `(topic, partition) -> (offset, metadata)` (`None`: the broker returned null).
    pub fn committed_py(&self, group: &str) -> BTreeMap<(String, i32), (i64, Option<String>)> {
        let v = kafka_tool(&["committed", &self.brokers, group]);
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let (t, p) = k.rsplit_once('/').unwrap();
                (
                    (t.to_string(), p.parse().unwrap()),
                    (v[0].as_i64().unwrap(), v[1].as_str().map(String::from)),
                )
            })
            .collect()
    }

    /// Commits `offset` with `metadata` for `group` through kafka-python (outside any
    /// generation, like an admin tool).
    pub fn commit_py(&self, group: &str, topic: &str, partition: i32, offset: i64, metadata: &str) {
        let (p, o) = (partition.to_string(), offset.to_string());
        kafka_tool(&["commit", &self.brokers, group, topic, &p, &o, metadata]);
    }

    /// Commits `offset` with `metadata` for `group` through librdkafka (the agent's client).
    pub fn commit_rd(&self, group: &str, topic: &str, partition: i32, offset: i64, metadata: &str) {
        let c = self.client(Some(group));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
        tpl.find_partition(topic, partition)
            .unwrap()
            .set_metadata(metadata);
        c.assign(&tpl).unwrap();
        c.commit(&tpl, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("rdkafka commit: {e}"));
    }

    /// Starts producing `msgs` (`(partition, payload)`, no tabs or newlines in payloads) to
    /// `topic` with kafka-python at `rate` messages per second (0: as fast as it can).
    pub fn produce(
        &self,
        dir: &Path,
        topic: &str,
        msgs: Vec<(i32, Vec<u8>)>,
        rate: f64,
    ) -> Production {
        self.produce_with(dir, topic, msgs, rate, &ProduceOpts::default())
    }

    /// [`Tansu::produce`] with `o` (see `kafka_tool.py`).
    pub fn produce_with(
        &self,
        dir: &Path,
        topic: &str,
        msgs: Vec<(i32, Vec<u8>)>,
        rate: f64,
        o: &ProduceOpts,
    ) -> Production {
        let log = dir.join("producer.log");
        let err = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let brokers = o.brokers.as_deref().unwrap_or(&self.brokers);
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(KAFKA_TOOL)
            .args(["produce", brokers, topic, &rate.to_string()])
            .env("KAFKA_TOOL_CLIENT", o.client.to_string())
            .env("KAFKA_TOOL_ENCODE", o.encode.to_string())
            .env("KAFKA_TOOL_BREAK_CODEC", o.break_codec.unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("python3");
        let count = msgs.len();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for (p, m) in msgs {
                assert!(!m.contains(&b'\n') && !m.contains(&b'\t'));
                buf.clear();
                write!(buf, "{p}\t").unwrap();
                buf.extend_from_slice(&m);
                buf.push(b'\n');
                if stdin.write_all(&buf).is_err() {
                    return; // the producer died: `finish` reports it
                }
            }
        });
        Production {
            child,
            writer: Some(writer),
            count,
            log,
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bootstrap servers (default: the broker's port), kafka-python arguments (`KAFKA_TOOL_CLIENT`)
/// and the payloads' encoding (`KAFKA_TOOL_ENCODE`; `null`: as given) of a production;
/// `break_codec` names a codec whose compressed batches are replaced by bytes that do not
/// decompress (`KAFKA_TOOL_BREAK_CODEC`).
#[derive(Clone, Debug, Default)]
pub struct ProduceOpts {
    pub brokers: Option<String>,
    pub client: serde_json::Value,
    pub encode: serde_json::Value,
    pub break_codec: Option<&'static str>,
}

/// A kafka-python producer at work.
pub struct Production {
    child: Child,
    writer: Option<std::thread::JoinHandle<()>>,
    count: usize,
    log: PathBuf,
}

impl Production {
    /// Still sending?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until every message is acknowledged; their `(partition, offset)`s in input order.
    pub fn finish(mut self) -> Vec<(i32, i64)> {
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "kafka-python producer failed ({status}):\n{}",
            tail(&self.log, 30)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["acked"].as_u64(), Some(self.count as u64), "acked");
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|po| (po[0].as_i64().unwrap() as i32, po[1].as_i64().unwrap()))
            .collect()
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The ownership ledger (`kafka.ownership_topic`): Tansu stores offset-commit metadata but
/// does not return it, so the agents keep their ownership chains in this topic as well.
pub const OWNERSHIP_TOPIC: &str = "keplor-ownership";

/// What an agent process consumes and how it joins the group.
#[derive(Clone, Debug)]
pub struct AgentOpts {
    pub group: String,
    pub topic: String,
    /// Poison messages go to this topic (`errors.policy = "dlq"`); `None`: `"skip"`.
    pub dlq: Option<String>,
    /// Static membership: `group.instance.id` = the agent's name (passed through
    /// `[kafka.properties]`, which accepts it).
    pub static_member: bool,
    /// `kafka.assignment_strategy`. The fleet tests use `range`: with `cooperative-sticky`
    /// (the agent's default) Tansu 0.6.0 hands a partition to a second member while the first
    /// still owns it (its JoinGroup answers at once, without waiting for the other members to
    /// rejoin, and never fences commits), which double counts whatever the agent does.
    pub assignment: String,
}

/// The agent's configuration: `common::SCHEMA` with the event id read from `/rid`.
fn agent_config(brokers: &str, name: &str, port: u16, o: &AgentOpts) -> String {
    let instance = if o.static_member {
        format!("\"group.instance.id\" = \"{name}\"")
    } else {
        String::new()
    };
    let errors = match &o.dlq {
        Some(t) => format!("policy = \"dlq\"\ndlq_topic = \"{t}\""),
        None => "policy = \"skip\"".to_string(),
    };
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
assignment_strategy = "{assignment}"
ownership_topic = "{OWNERSHIP_TOPIC}"
[kafka.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
"topic.metadata.refresh.interval.ms" = 1000
{instance}
{SCHEMA}
event_id = {{ source = "field", path = "/rid" }}
[engine]
data_dir = "data"
shards = 2
[batch]
linger = "20ms"
max_events = 300
[errors]
{errors}
[http]
listen = "127.0.0.1:{port}"
[shutdown]
grace_period = "20s"
"#,
        group = o.group,
        topic = o.topic,
        assignment = o.assignment,
    )
}

/// One `keplor-agent run` process: its own directory (`agent.toml`, `data/`, `agent.log`)
/// and HTTP port, kept across restarts.
pub struct AgentProc {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl AgentProc {
    pub fn new(root: &Path, name: &str, brokers: &str, opts: &AgentOpts) -> AgentProc {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("agent.toml"),
            agent_config(brokers, name, port, opts),
        )
        .unwrap();
        AgentProc {
            name: name.to_string(),
            log: dir.join("agent.log"),
            dir,
            port,
            child: None,
            starts: 0,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lists every member of the fleet in this agent's `[fleet]` section: `?fleet=true`
    /// answers for all of them, and a new owner waits there for the old one to let go.
    pub fn join_fleet(&self, endpoints: &[String]) {
        self.append_config(&format!(
            "[fleet]\nendpoints = {endpoints:?}\nconnect_timeout = \"500ms\"\ntimeout = \"5s\""
        ));
    }

    /// Appends `text` (TOML sections: `[kafka.tls]`, `[format]`...) to the agent's config.
    pub fn append_config(&self, text: &str) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.dir.join("agent.toml"))
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }

    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, n)
        )
    }

    /// The partitions the agent was assigned during its `n`th run (from its log).
    pub fn assigned_in_run(&self, n: u32) -> std::collections::BTreeSet<i32> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let marker = format!("===== start #{n} =====");
        let run = log
            .split("===== start #")
            .find_map(|r| r.strip_prefix(&marker["===== start #".len()..]));
        run.unwrap_or_default()
            .lines()
            .filter(|l| l.contains("partition assigned"))
            .filter_map(|l| {
                let p = l.split("partition=").nth(1)?;
                p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            })
            .collect()
    }

    /// Starts the process (output appended to `agent.log`); waits until its HTTP API answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "===== start #{} =====", self.starts).unwrap();
        let mut cmd = Command::new(agent_bin());
        // The agent refuses KEPLOR_* variables that are not overrides (KEPLOR_<SECTION>__<KEY>,
        // which pass through): the tests' own settings (KEPLOR_FLEET_KILLS...) stay here.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("KEPLOR_") && !k.contains("__") {
                cmd.env_remove(k.as_ref());
            }
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(self.dir.join("agent.toml"))
            .current_dir(&self.dir)
            .env("KEPLOR_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            // As the image runs it (Dockerfile), unless the test's environment says otherwise.
            .env(
                "MALLOC_ARENA_MAX",
                std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()),
            )
            .env(
                "GLIBC_TUNABLES",
                std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "glibc.malloc.hugetlb=1".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/healthz", self.endpoint());
        let up = wait_until(Duration::from_secs(30), || {
            self.check_alive();
            ureq::get(&url).call().is_ok()
        });
        assert!(
            up,
            "{} did not serve HTTP:\n{}",
            self.name,
            self.log_tail(30)
        );
    }

    /// The sum of the `/metrics` series `name` (a name, or a name with its labels), and its
    /// series lines.
    pub fn metric_series(&self, name: &str) -> (f64, Vec<String>) {
        let text = ureq::get(&format!("{}/metrics", self.endpoint()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .map(str::to_string)
            .collect();
        let sum = lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (sum, lines)
    }

    /// The sum of the `/metrics` series `name` (any labels).
    pub fn metric(&self, name: &str) -> f64 {
        self.metric_series(name).0
    }

    /// `/readyz` answers 200: the agent has partitions assigned.
    pub fn ready(&self) -> bool {
        ureq::get(&format!("{}/readyz", self.endpoint()))
            .call()
            .is_ok()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id (for `/proc/<pid>`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics (with the log) if the process exited without being asked to.
    pub fn check_alive(&mut self) {
        if let Some(c) = &mut self.child {
            if let Some(s) = c.try_wait().unwrap() {
                self.child = None;
                panic!(
                    "{} exited on its own ({s}):\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
        }
    }

    /// SIGKILL (`Child::kill`), then reaps it.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("not running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM; waits for the clean exit (the grace period is 20 s) and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("not running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.name);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(40) {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!(
            "{} did not stop within 40 s of SIGTERM:\n{}",
            self.name,
            self.log_tail(40)
        );
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `keplor-agent query -e <each endpoint> -o json <args>`, whatever its exit status.
pub fn query_output(endpoints: &[String], args: &[&str]) -> Output {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("query");
    for e in endpoints {
        cmd.args(["-e", e]);
    }
    cmd.args(["-o", "json"]).args(args).output().unwrap()
}

/// `keplor-agent query` that must succeed; its JSON answer.
pub fn query(endpoints: &[String], args: &[&str]) -> serde_json::Value {
    let out = query_output(endpoints, args);
    assert!(
        out.status.success(),
        "keplor-agent query {args:?} over {endpoints:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keplor-agent query {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Does Tansu keep the offset-commit metadata string? Committed through kafka-python and
/// through librdkafka, read back through both. Tansu 0.6.0 stores it (its dynostore keeps the
/// whole OffsetCommit partition as JSON) but its OffsetFetch answers only the offset: the
/// metadata comes back null (OffsetFetch v8+, groups) or "" (older versions). A fleet protocol
/// cannot carry state in the commit metadata on this broker.
#[test]
fn fleet_tansu_offset_commit_metadata_probe() {
    let dir = TestDir::new("fleet-probe");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic("probe", 2);
    tansu.commit_py("g-probe-py", "probe", 1, 5, "probe-metadata");
    tansu.commit_rd("g-probe-rd", "probe", 0, 7, "probe-metadata");

    let py_py = tansu.committed_py("g-probe-py");
    let py_rd = tansu.committed_py("g-probe-rd");
    let rd_py = tansu.committed("g-probe-py", "probe", 2);
    let rd_rd = tansu.committed("g-probe-rd", "probe", 2);
    eprintln!(
        "offset commit metadata \"probe-metadata\" read back from Tansu:\n  \
         kafka-python commit -> kafka-python read: {:?}\n  \
         librdkafka commit   -> kafka-python read: {:?}\n  \
         kafka-python commit -> librdkafka read:   {:?}\n  \
         librdkafka commit   -> librdkafka read:   {:?}",
        py_py, py_rd, rd_py[1], rd_rd[0]
    );
    // The offsets survive, whoever commits and reads.
    let key = |p: i32| ("probe".to_string(), p);
    assert_eq!(py_py.get(&key(1)).map(|v| v.0), Some(5));
    assert_eq!(py_rd.get(&key(0)).map(|v| v.0), Some(7));
    assert_eq!(rd_py[1].0, 5);
    assert_eq!(rd_rd[0].0, 7);
    // The metadata does not: if these fail, Tansu started returning it and a fleet protocol
    // may rely on it (update this test and the fleet design notes).
    let kept = [
        py_py[&key(1)].1.as_deref().unwrap_or(""),
        py_rd[&key(0)].1.as_deref().unwrap_or(""),
        rd_py[1].1.as_str(),
        rd_rd[0].1.as_str(),
    ];
    assert!(
        kept.iter().all(|m| m.is_empty()),
        "Tansu returned commit metadata now: {kept:?}"
    );

    // ListOffsets "latest" against the producer's acknowledgements (reported, not asserted:
    // whether kafka-python batches the records decides it).
    let acked = tansu
        .produce(
            dir.path(),
            "probe",
            (0..50).map(|i| (0, format!("m{i}").into_bytes())).collect(),
            0.0,
        )
        .finish();
    let end = acked.iter().map(|a| a.1).max().unwrap() + 1;
    eprintln!(
        "partition probe/0: {end} records acknowledged; ListOffsets latest answers {}; Fetch reads {}",
        tansu.list_offsets_latest("probe", 2)[0],
        tansu.dump("probe").iter().filter(|m| m.0 == 0).count()
    );
}
