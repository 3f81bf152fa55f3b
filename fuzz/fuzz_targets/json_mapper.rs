//! The JSON mapper of `config/llm-json.toml`: the input is a message payload.
//!
//! Checks: mapping is deterministic; a mapped event has one value per column within the
//! engine's limits; and it agrees with a plain reading of the payload (`serde_json::Value` and
//! its JSON pointers) wherever that reading is unambiguous: strings, booleans, integers, null
//! and missing values. A payload `serde_json` reads is never refused as undecodable.

#![no_main]

use std::sync::OnceLock;

use keplor_agent::config::{Config, IdSource, TsSource, TsUnit};
use keplor_agent::mapping::{MapError, Mapper, Meta};
use keplor_fuzz::config_dir;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn setup() -> &'static (Config, Mapper) {
    static SETUP: OnceLock<(Config, Mapper)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = config_dir();
        let text = std::fs::read_to_string(dir.join("llm-json.toml")).expect("llm-json.toml");
        let config = Config::from_toml(&text, [], &dir).expect("llm-json.toml parses");
        let mapper = Mapper::new(&config).expect("llm-json.toml maps");
        (config, mapper)
    })
}

const META: Meta<'static> = Meta {
    topic: "llm-calls",
    partition: 3,
    offset: 42,
    timestamp_ms: Some(1_764_028_800_000),
    key: None,
    headers: None,
};

/// The text the mapper reads at `v`, when the plain reading is unambiguous.
fn text(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null | Value::Object(_) | Value::Array(_)) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|i| i.to_string())
            .or_else(|| n.as_u64().map(|u| u.to_string())),
    }
}

/// The whole number the mapper reads at `v`: `Some(Err(()))` when it must refuse it, `None`
/// when the plain reading is ambiguous (floats).
fn whole(v: Option<&Value>) -> Option<Result<i128, ()>> {
    match v {
        None | Some(Value::Null | Value::Object(_) | Value::Array(_)) => Some(Ok(0)),
        Some(Value::String(s)) => Some(s.trim().parse::<i128>().map_err(|_| ())),
        Some(Value::Bool(b)) => Some(Ok(*b as i128)),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|i| i as i128)
            .or_else(|| n.as_u64().map(|u| u as i128))
            .map(Ok),
    }
}

fuzz_target!(|data: &[u8]| {
    let (config, mapper) = setup();
    let mapped = mapper.map(Some(data), META);
    assert_eq!(mapped, mapper.map(Some(data), META), "not deterministic");
    let plain = serde_json::from_slice::<Value>(data);
    let (event, plain) = match (mapped, plain) {
        (Err(MapError::Decode(e)), Ok(v)) => panic!("refused as undecodable ({e}): {v}"),
        (Err(_), _) => return,
        // Read by the mapper only (`serde_json::Value` has a nesting limit the mapper's lazy
        // reading does not reach): the shape and limits are still checked.
        (Ok(event), Err(_)) => (event, None),
        (Ok(event), Ok(v)) => (event, Some(v)),
    };
    let s = &config.schema;
    assert_eq!(event.dims.len(), s.dims.len());
    assert_eq!(event.counters.len(), s.counters.len());
    assert_eq!(event.labels.len(), s.labels.len());
    assert!(!event.id.is_empty() && event.id.len() <= keplordb::MAX_VALUE_LEN);
    assert!(event
        .dims
        .iter()
        .all(|d| d.len() <= keplordb::MAX_VALUE_LEN));
    let Some(v) = plain else { return };

    for (d, m) in s.dims.iter().enumerate() {
        if let Some(want) = text(v.pointer(&m.path)) {
            assert_eq!(event.dims[d], want, "dim {}", m.name);
        }
    }
    for (l, m) in s.labels.iter().enumerate() {
        if let Some(want) = text(v.pointer(&m.path)) {
            assert_eq!(event.labels[l], want, "label {}", m.name);
        }
    }
    let number = |path: &str, got: i128, what: &str| {
        if let Some(want) = whole(v.pointer(path)) {
            assert_eq!(Ok(got), want, "{what} at {path}");
        }
    };
    for (c, m) in s.counters.iter().enumerate() {
        number(&m.path, event.counters[c] as i128, &m.name);
    }
    let optional = [
        (&s.metric, event.metric as i128, "metric"),
        (&s.latency_ms, event.latency_ms as i128, "latency_ms"),
        (
            &s.latency_detail_ms,
            event.latency_detail_ms as i128,
            "latency_detail_ms",
        ),
        (&s.status, event.status as i128, "status"),
        (&s.flags, event.flags.0 as i128, "flags"),
    ];
    for (path, got, what) in optional {
        if let Some(path) = path {
            number(path, got, what);
        }
    }
    if let TsSource::Field {
        path,
        unit: TsUnit::Ms,
    } = &s.ts
    {
        if let Some(Ok(ms)) = whole(v.pointer(path)) {
            assert_eq!(event.ts_ns as i128, ms * 1_000_000, "ts at {path}");
        }
    }
    if let IdSource::Field { path } = &s.event_id {
        if let Some(want) = text(v.pointer(path)) {
            assert_eq!(event.id, want, "event_id at {path}");
        }
    }
});
