//! Helpers shared by the integration tests.

use keplordb::{DynEvent, Engine, EngineConfig, LogEvent};
use std::path::Path;

pub type TestEngine = Engine<2, 1, 1>;
pub type Ev = LogEvent<2, 1, 1>;

pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir).with_columns(["user", "model"], ["tokens"], ["note"]);
    c.schema_id = 1;
    c.bloom_dim = Some(0);
    c.rollup_dims = vec![0, 1];
    c
}

pub fn event(i: u64) -> Ev {
    let mut e = Ev::new(1_700_000_000_000_000_000 + i as i64 * 1_000_000);
    e.id = format!("ev-{i:08}");
    e.metric = i as i64 * 10 - 500;
    e.counters = [i as u32 % 1000];
    e.latency_ms = (i % 300) as u32;
    e.latency_detail_ms = (i % 7) as u32;
    e.status = [200, 200, 200, 404, 500][(i % 5) as usize];
    e.flags = keplordb::EventFlags((i % 4) as u16);
    e.dims = [format!("user-{}", i % 17), format!("model-{}", i % 3)];
    e.labels = [format!("note {i}")];
    e
}

pub fn all_events<const D: usize, const C: usize, const L: usize>(
    engine: &Engine<D, C, L>,
) -> Vec<LogEvent<D, C, L>> {
    let mut v = Vec::new();
    engine.scan_events(|e| v.push(e)).unwrap();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

#[allow(dead_code)]
pub fn dyn_sorted(mut v: Vec<DynEvent>) -> Vec<DynEvent> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// CRC-32/IEEE (FORMAT.md section 1), bitwise: independent of the engine's dependency.
pub fn crc32(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
