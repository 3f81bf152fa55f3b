//! Issue 15's archive crash test: one agent with `[archive]` on, tiny segments (several seal
//! and are archived every second), SIGKILLed while it archives (at a random moment within
//! 200 ms after the manifest grew) while a producer keeps sending to a real broker (Tansu).
//! After every kill: every file the manifest lists exists. At the end
//! (the last events sealed, the agent restarted until the archive has caught up): DuckDB reads
//! the archive and finds every stored event exactly once, each with its Kafka topic, partition
//! and offset, in the partition of its UTC day, and no file the manifest does not list.
//!
//! Sizes: `KEPLOR_ARCHIVE_KILLS` (default 8), `KEPLOR_ARCHIVE_KILLS_SEED` picks the run. A
//! failure keeps the test directory (agent, broker and producer logs, the archive).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use keplordb::DynEngine;

use crate::common::python_json;
use crate::tansu::{AgentOpts, AgentProc, Tansu, TestDir};

const TOPIC: &str = "in";
const GROUP: &str = "archive-kills";
const PARTITIONS: i32 = 2;
/// Messages per second from the producer.
const RATE: f64 = 400.0;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// xorshift64*: the moments and partitions, reproducible from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Message `i`: one a minute of event time from 2025-11-25, so the run spans three UTC days.
fn message(i: u64) -> Vec<u8> {
    format!(
        r#"{{"rid":"r{i}","user":"u{}","model":"m{}","usage":{{"tokens":{}}},"cost":{i},"status":200,"ts":{}}}"#,
        i % 5,
        i % 3,
        i % 900,
        1_764_028_800_000 + i as i64 * 60_000
    )
    .into_bytes()
}

/// The manifest's files (every manifest under `_keplor/`).
fn manifest_files(archive: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let Ok(dir) = std::fs::read_dir(archive.join("_keplor")) else {
        return files;
    };
    for m in dir {
        let path = m.unwrap().path();
        if path.extension() != Some("json".as_ref()) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for s in v["segments"].as_array().unwrap() {
            for f in s["files"].as_array().unwrap() {
                files.push(f.as_str().unwrap().to_string());
            }
        }
    }
    files
}

/// The `.parquet` files under `dt=*/`, as names relative to the archive.
fn parquet_files(archive: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in std::fs::read_dir(archive).unwrap() {
        let d = d.unwrap();
        let dt = d.file_name().to_string_lossy().into_owned();
        if !dt.starts_with("dt=") {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap().file_name().to_string_lossy().into_owned();
            if f.ends_with(".parquet") {
                out.insert(format!("{dt}/{f}"));
            }
        }
    }
    out
}

/// DuckDB's reading of the archive: per row, id, topic, partition, offset, and whether the
/// row lies in the partition of its UTC day.
fn read_archive(archive: &Path) -> Vec<(String, String, u64, u64, bool)> {
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute(
    "SELECT id, kafka_topic, kafka_partition, kafka_offset, "
    "strftime(ts, '%Y-%m-%d') = CAST(dt AS VARCHAR) "
    "FROM read_parquet(?, hive_partitioning = true)",
    [sys.argv[1] + "/dt=*/*.parquet"],
).fetchall()
print(json.dumps(rows))
"#;
    let rows: Vec<(String, String, String, String, bool)> = python_json(
        script,
        &[archive.as_os_str()],
        "reading the archive with DuckDB",
    );
    rows.into_iter()
        .map(|(id, t, p, o, day)| (id, t, p.parse().unwrap(), o.parse().unwrap(), day))
        .collect()
}

#[test]
fn archive_sigkills_lose_and_duplicate_nothing() {
    let _serial = crate::fleet_campaign::serial();
    let kills = env_u64("KEPLOR_ARCHIVE_KILLS").unwrap_or(8);
    let seed = env_u64("KEPLOR_ARCHIVE_KILLS_SEED").unwrap_or(0xa7c4_1fe5);
    let mut rng = seed | 1;
    let dir = TestDir::new("archive-kills");
    let tansu = Tansu::start(dir.path());
    tansu.create_topic(TOPIC, PARTITIONS);
    let opts = AgentOpts {
        group: GROUP.into(),
        topic: TOPIC.into(),
        dlq: None,
        static_member: false,
        assignment: "range".into(),
    };
    let mut agent = AgentProc::new(dir.path(), "agent", &tansu.brokers, &opts);
    let config = agent.dir.join("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let kafka_labels = r#"labels = [{ name = "kafka_topic", path = "$kafka.topic" }, { name = "kafka_partition", path = "$kafka.partition" }, { name = "kafka_offset", path = "$kafka.offset" }]"#;
    let text = text
        .replace(
            r#"labels = [{ name = "note", path = "/note" }]"#,
            kafka_labels,
        )
        .replace("shards = 2\n", "shards = 2\nmax_segment_events = 40\n")
        .replace(
            "\"session.timeout.ms\" = 6000",
            "\"session.timeout.ms\" = 3000",
        );
    assert!(text.contains("$kafka.offset") && text.contains("max_segment_events"));
    assert!(text.contains("= 3000"));
    std::fs::write(&config, text).unwrap();
    agent.append_config("[archive]\ndir = \"archive\"\ninterval = \"50ms\"\nrow_group_rows = 16");
    let archive = agent.dir.join("archive");

    let n = (kills * 2000).max(4000);
    let msgs: Vec<(i32, Vec<u8>)> = (0..n)
        .map(|i| ((next(&mut rng) % PARTITIONS as u64) as i32, message(i)))
        .collect();
    let started = Instant::now();
    agent.start();
    let production = tansu.produce(dir.path(), TOPIC, msgs.clone(), RATE);
    let mut listed_checks = 0;
    for k in 0..kills {
        // Kill while archiving: just after the manifest grew (segments seal about twice a
        // second while the agent consumes; a restart waits for the group to hand the
        // partitions back, which Tansu does after the dead member's session timeout).
        let before = manifest_files(&archive).len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while manifest_files(&archive).len() == before {
            agent.check_alive();
            assert!(
                Instant::now() < deadline,
                "kill {k}: nothing archived for 30 s:\n{}",
                agent.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(next(&mut rng) % 200));
        agent.kill();
        let on_disk = parquet_files(&archive);
        for f in manifest_files(&archive) {
            assert!(
                on_disk.contains(&f),
                "kill {k}: the manifest lists {f}, which is not there"
            );
            listed_checks += 1;
        }
        agent.start();
    }
    let acked = production.finish();
    assert_eq!(acked.len() as u64, n, "the producer lost messages");
    // Where each message went: (partition, offset) of message i.
    let mut ends = vec![0i64; PARTITIONS as usize];
    for (p, o) in &acked {
        ends[*p as usize] = ends[*p as usize].max(o + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut moved_at) = (Vec::new(), Instant::now());
    loop {
        agent.check_alive();
        let c: Vec<i64> = tansu
            .committed(GROUP, TOPIC, PARTITIONS)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        if c.iter().zip(&ends).all(|(c, e)| c >= e) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no catch-up ({c:?} of {ends:?}):\n{}",
            agent.log_tail(30)
        );
        if c != last {
            (last, moved_at) = (c, Instant::now());
        } else if moved_at.elapsed() > Duration::from_secs(15) {
            // Tansu 0.6 can leave a partition with the dead member (see agent_kills.rs).
            assert!(agent.stop().success(), "{}", agent.log_tail(30));
            agent.start();
            moved_at = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Seal the last events (the memtables), then let the agent archive them.
    assert!(agent.stop().success(), "{}", agent.log_tail(30));
    let loaded = keplor_agent::config::Config::load(&config, []).unwrap();
    DynEngine::open(loaded.engine_config())
        .unwrap()
        .flush()
        .unwrap();
    let store = DynEngine::open_read_only(agent.dir.join("data")).unwrap();
    let segments = store.segments().len();
    let mut stored: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    store
        .scan_events(|e| {
            let where_ = (e.labels[1].parse().unwrap(), e.labels[2].parse().unwrap());
            assert!(stored.insert(e.id, where_).is_none(), "stored twice");
        })
        .unwrap();
    drop(store);
    agent.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while manifest_files(&archive).len() < segments && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.stop().success(), "{}", agent.log_tail(30));

    let log = std::fs::read_to_string(agent.dir.join("agent.log")).unwrap();
    let recovered = |what: &str| {
        log.lines()
            .filter(|l| l.contains("archive recovered") && !l.contains(&format!("{what}=0")))
            .count()
    };
    let rows = read_archive(&archive);
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (id, topic, partition, offset, in_its_day) in &rows {
        *seen.entry(id).or_default() += 1;
        assert_eq!(topic, TOPIC);
        assert!(in_its_day, "{id} is not in the partition of its day");
        assert_eq!(
            stored.get(id),
            Some(&(*partition, *offset)),
            "{id}: its Kafka source"
        );
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(
            acked[i],
            (*partition as i32, *offset as i64),
            "{id}: where it was produced"
        );
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
    let missing: Vec<_> = stored
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    let listed: BTreeSet<String> = manifest_files(&archive).into_iter().collect();
    let on_disk = parquet_files(&archive);
    eprintln!(
        "archive kills: seed {seed:#x}, {kills} SIGKILLs, {n} messages, stored {}, {segments} \
         segments, {} files ({} rows), {listed_checks} manifest-vs-disk checks, restarts that \
         found temporary files {}, unrecorded files {}, missing {}, twice {}, elapsed {:.1?}",
        stored.len(),
        on_disk.len(),
        rows.len(),
        recovered("temporaries"),
        recovered("orphans"),
        missing.len(),
        twice.len(),
        started.elapsed()
    );
    assert!(
        twice.is_empty(),
        "archived twice, e.g. {:?}",
        &twice[..twice.len().min(5)]
    );
    assert!(
        missing.is_empty(),
        "not archived, e.g. {:?}",
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored.len() as u64, n, "every produced message stored");
    assert_eq!(
        listed, on_disk,
        "the manifest lists exactly the files there are"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
