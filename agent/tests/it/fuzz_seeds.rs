//! The seed corpora of the agent's fuzz targets (`fuzz/corpus/{json_mapper,avro_mapper,
//! query_params,config}/`) are real inputs: LLM calls as the demo makes them, Avro datums of
//! `config/access.avsc`, the query parameters of `agent/openapi.yaml`, the example
//! configurations. They must keep being accepted: a seed refused at its first check would start
//! the fuzzer far from the code behind it.
//!
//! Regenerate (when the demo, a schema or a configuration changes) with
//! `KEPLOR_WRITE_FUZZ_SEEDS=1 cargo test -p keplor-agent --test it fuzz_seeds`.

use std::fs;
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use keplor_agent::api::Params;
use keplor_agent::config::Config;
use keplor_agent::mapping::{Mapper, Meta};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(target: &str) -> PathBuf {
    root().join("fuzz/corpus").join(target)
}

fn config_dir() -> PathBuf {
    root().join("config")
}

/// The seeds `(file name, bytes)` of one target as committed: written first when
/// regenerating. Other files of the corpus (inputs the fuzzer found) are left alone.
fn seeds(target: &str, make: impl FnOnce() -> Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let dir = corpus(target);
    let made = make();
    if std::env::var_os("KEPLOR_WRITE_FUZZ_SEEDS").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &made {
            fs::write(dir.join(name), bytes).unwrap();
        }
    }
    made.into_iter()
        .map(|(name, _)| {
            let path = dir.join(&name);
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect()
}

fn example(name: &str) -> Config {
    let text = fs::read_to_string(config_dir().join(name)).unwrap();
    Config::from_toml(&text, [], &config_dir()).unwrap()
}

const META: Meta<'static> = Meta {
    topic: "seeds",
    partition: 0,
    offset: 1,
    timestamp_ms: Some(1_764_028_800_000),
    key: None,
    headers: None,
};

#[test]
fn json_mapper_seeds_map() {
    let mapper = Mapper::new(&example("llm-json.toml")).unwrap();
    let seeds = seeds("json_mapper", || {
        let now_ms = 1_764_028_800_000;
        let mut v: Vec<(String, Vec<u8>)> = (0..3)
            .map(|i| {
                let call = keplor_agent::demo::llm_call(i, now_ms + i as i64);
                (format!("demo-{i}.json"), call.into_bytes())
            })
            .collect();
        // Numbers as strings, booleans and a float for integers, escapes, an extra nested field.
        v.push((
            "loose.json".into(),
            br#"{"request_id":"req-\u00e9\"7","ts":"1764028800000","user":"al\/ice","model":"gpt-4o","provider":null,"usage":{"prompt_tokens":" 12 ","completion_tokens":true,"cached":{"n":[1,2]}},"cost_micros":-250,"latency_ms":1.5e2,"ttft_ms":0,"status":"200","finish_reason":"stop"}"#.to_vec(),
        ));
        // Only what must be there: the id and the time.
        v.push((
            "minimal.json".into(),
            br#"{"request_id":"r","ts":0}"#.to_vec(),
        ));
        v
    });
    for (name, payload) in seeds {
        let e = mapper.map(Some(&payload), META);
        assert!(e.is_ok(), "{name}: {e:?}");
    }
}

/// An `Access` record of `config/access.avsc`.
fn access(i: i64, agent: Option<&str>) -> Value {
    let agent = match agent {
        Some(a) => Value::Union(1, Box::new(Value::String(a.into()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    Value::Record(vec![
        ("ts_ms".into(), Value::Long(1_764_028_800_000 + i)),
        ("route".into(), Value::String(format!("/v1/items/{i}"))),
        ("method".into(), Value::String("GET".into())),
        ("status".into(), Value::Int(200 + i as i32)),
        ("bytes".into(), Value::Long(512 * i)),
        ("latency_ms".into(), Value::Int(12)),
        (
            "client".into(),
            Value::Record(vec![
                ("ip".into(), Value::String("10.0.0.7".into())),
                ("agent".into(), agent),
            ]),
        ),
    ])
}

#[test]
fn avro_mapper_seeds_map() {
    let plain = Mapper::new(&example("access-avro.toml")).unwrap();
    let sidecar = Mapper::new(&example("sidecar.toml")).unwrap();
    let seeds = seeds("avro_mapper", || {
        let text = fs::read_to_string(config_dir().join("access.avsc")).unwrap();
        let schema = apache_avro::Schema::parse_str(&text).unwrap();
        let writer = GenericDatumWriter::builder(&schema).build().unwrap();
        let datum = |v: Value| writer.write_value_to_vec(v).unwrap();
        let mut framed = vec![0, 0, 0, 0, 1];
        framed.extend(datum(access(3, Some("curl/8.5"))));
        vec![
            ("plain.avro".into(), datum(access(1, Some("Mozilla/5.0")))),
            ("plain-no-agent.avro".into(), datum(access(2, None))),
            ("framed-id-1.avro".into(), framed),
        ]
    });
    for (name, payload) in seeds {
        let mapper = if payload.starts_with(&[0, 0, 0, 0, 1]) {
            &sidecar
        } else {
            &plain
        };
        let e = mapper.map(Some(&payload), META);
        assert!(e.is_ok(), "{name}: {e:?}");
    }
}

/// The endpoint a `query_params` seed goes to: its first byte, modulo 4 (the fuzz target's
/// order: aggregate, events, rollups, one event by id).
#[test]
fn query_params_seeds_parse() {
    let seeds = seeds("query_params", || {
        [
            (
                "aggregate",
                "0dim.user=alice&from=2026-11-25T00:00:00Z&to=1764115200000000000",
            ),
            ("aggregate-fleet", "0dim.model=gpt-4o&since=15m&fleet=false"),
            (
                "events",
                "1dim.user=user-1&status_min=200&status_max=300&limit=5",
            ),
            (
                "events-cursor",
                "1limit=2&cursor=1764028800000000000:ev-0007",
            ),
            (
                "rollups",
                "2from_day=2026-11-24&to_day=20782&dim.user=user-2",
            ),
            ("event-by-id", "3ev-0005?fleet=false"),
        ]
        .map(|(name, q)| (name.to_string(), q.as_bytes().to_vec()))
        .into()
    });
    for (name, seed) in seeds {
        let query = std::str::from_utf8(&seed[1..]).unwrap();
        if seed[0] % 4 == 3 {
            continue; // an id, then `fleet`
        }
        let pairs = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k != "fleet");
        let p = Params::parse(pairs);
        assert!(p.is_ok(), "{name}: {p:?}");
    }
}

#[test]
fn config_seeds_parse() {
    let seeds = seeds("config", || {
        let mut v: Vec<(String, Vec<u8>)> = ["llm-json.toml", "access-avro.toml", "sidecar.toml"]
            .map(|n| (n.to_string(), fs::read(config_dir().join(n)).unwrap()))
            .into();
        v.push((
            "demo.toml".into(),
            keplor_agent::demo::DEMO_CONFIG.as_bytes().to_vec(),
        ));
        // TOML, a NUL byte, then the environment.
        v.push((
            "env-overrides".into(),
            b"[kafka]\nbrokers = \"k:9092\"\ntopics = [\"t\"]\n[schema]\nid = 1\n\0\
              KEPLOR_BATCH__LINGER=20ms\nKEPLOR_KAFKA__TOPICS=[\"a\", \"b\"]\n\
              KEPLOR_FLEET__ENDPOINTS=[\"http://10.0.0.7:8686\"]\nKEPLOR_HTTP__MAX_LIMIT=10\n"
                .to_vec(),
        ));
        v
    });
    for (name, seed) in seeds {
        let (toml, env) = match seed.iter().position(|&b| b == 0) {
            Some(at) => (&seed[..at], &seed[at + 1..]),
            None => (&seed[..], &[][..]),
        };
        let env = std::str::from_utf8(env)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        let c = Config::from_toml(std::str::from_utf8(toml).unwrap(), env, &config_dir());
        assert!(c.is_ok(), "{name}: {c:?}");
    }
}
