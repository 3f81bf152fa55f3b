//! The Avro mappers of `config/access-avro.toml` (plain datums) and `config/sidecar.toml`
//! (Confluent framing: magic byte 0, big-endian schema id, datum): the input is a message
//! payload, given to both.
//!
//! Checks: mapping is deterministic; an event is mapped only from a datum that
//! apache-avro's datum reader reads whole with `config/access.avsc` (behind the frame of a
//! known schema id, for the sidecar), and its columns are that datum's fields; a datum read
//! whole that is encoded the one canonical way is never refused as undecodable.

#![no_main]

use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use keplor_agent::config::Config;
use keplor_agent::mapping::{MapError, Mapper, Meta};
use keplor_fuzz::config_dir;
use keplordb::DynEvent;
use libfuzzer_sys::fuzz_target;

struct Setup {
    reader: GenericDatumReader<'static>,
    writer: GenericDatumWriter<'static>,
    plain: Mapper,
    sidecar: Mapper,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = config_dir();
        let mapper = |name: &str| {
            let text = std::fs::read_to_string(dir.join(name)).expect("example config");
            let config = Config::from_toml(&text, [], &dir).expect("example config parses");
            Mapper::new(&config).expect("example config maps")
        };
        let avsc = std::fs::read_to_string(dir.join("access.avsc")).expect("access.avsc");
        let schema: &'static Schema = Box::leak(Box::new(
            Schema::parse_str(&avsc).expect("access.avsc parses"),
        ));
        Setup {
            reader: GenericDatumReader::builder(schema).build().expect("reader"),
            writer: GenericDatumWriter::builder(schema).build().expect("writer"),
            plain: mapper("access-avro.toml"),
            sidecar: mapper("sidecar.toml"),
        }
    })
}

const META: Meta<'static> = Meta {
    topic: "access-logs",
    partition: 1,
    offset: 9,
    timestamp_ms: Some(1_764_028_800_123),
    key: None,
    headers: None,
};

/// The fields of an `Access` record (`config/access.avsc`).
#[derive(Debug)]
struct Access<'a> {
    ts_ms: i64,
    route: &'a str,
    method: &'a str,
    status: i32,
    bytes: i64,
    latency_ms: i32,
    ip: &'a str,
    agent: Option<&'a str>,
}

fn access(v: &Value) -> Access<'_> {
    let Value::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    let field = |name: &str| {
        &fields
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    };
    let (Value::Long(ts_ms), Value::String(route), Value::String(method)) =
        (field("ts_ms"), field("route"), field("method"))
    else {
        panic!("{v:?}")
    };
    let (Value::Int(status), Value::Long(bytes), Value::Int(latency_ms)) =
        (field("status"), field("bytes"), field("latency_ms"))
    else {
        panic!("{v:?}")
    };
    let Value::Record(client) = field("client") else {
        panic!("{v:?}")
    };
    let (Value::String(ip), Value::Union(_, agent)) = (&client[0].1, &client[1].1) else {
        panic!("{v:?}")
    };
    Access {
        ts_ms: *ts_ms,
        route,
        method,
        status: *status,
        bytes: *bytes,
        latency_ms: *latency_ms,
        ip,
        agent: match &**agent {
            Value::String(s) => Some(s),
            _ => None,
        },
    }
}

/// The datum read whole, and whether its bytes are its canonical encoding.
fn read_whole(s: &Setup, datum: &[u8]) -> Option<(Value, bool)> {
    let mut rest = datum;
    let v = s.reader.read_value(&mut rest).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let canonical = s.writer.write_value_to_vec(v.clone()).ok()? == datum;
    Some((v, canonical))
}

fn map_checked(mapper: &Mapper, data: &[u8]) -> Result<DynEvent, MapError> {
    let mapped = mapper.map(Some(data), META);
    assert_eq!(mapped, mapper.map(Some(data), META), "not deterministic");
    mapped
}

fuzz_target!(|data: &[u8]| {
    let s = setup();

    // Plain datums: every column of access-avro.toml.
    let whole = read_whole(s, data);
    match (map_checked(&s.plain, data), &whole) {
        (Ok(e), Some((v, _))) => {
            let a = access(v);
            assert_eq!(e.dims, [a.route, a.method, a.ip], "{a:?}");
            assert_eq!(e.counters, [a.bytes as u32], "{a:?}");
            assert_eq!(a.bytes, e.counters[0] as i64, "{a:?}");
            assert_eq!(e.labels, [a.agent.unwrap_or("")], "{a:?}");
            assert_eq!(
                (e.status as i32, e.latency_ms as i32),
                (a.status, a.latency_ms)
            );
            assert_eq!(e.ts_ns as i128, a.ts_ms as i128 * 1_000_000);
            assert_eq!(e.id, "access-logs/1/9");
        }
        (Ok(e), None) => panic!("mapped from a datum that does not read whole: {e:?}"),
        (Err(MapError::Decode(why)), Some((_, true))) => {
            panic!("a whole, canonical datum refused: {why}")
        }
        (Err(_), _) => {}
    }

    // Confluent framing with schema id 1 (sidecar.toml): route, bytes, status.
    let framed = match data {
        [0, 0, 0, 0, 1, datum @ ..] => read_whole(s, datum),
        _ => None,
    };
    match (map_checked(&s.sidecar, data), &framed) {
        (Ok(e), Some((v, _))) => {
            let a = access(v);
            assert_eq!(e.dims, [a.route], "{a:?}");
            assert_eq!(e.counters, [a.bytes as u32], "{a:?}");
            assert_eq!(a.bytes, e.counters[0] as i64, "{a:?}");
            assert_eq!(e.status as i32, a.status);
            // The Kafka timestamp and the offset id.
            assert_eq!(e.ts_ns, 1_764_028_800_123_000_000);
            assert_eq!(e.id, "access-logs/1/9");
        }
        (Ok(e), None) => panic!("mapped from a payload that is not a whole framed datum: {e:?}"),
        (Err(MapError::Decode(why)), Some((_, true))) => {
            panic!("a whole, canonical framed datum refused: {why}")
        }
        (Err(_), _) => {}
    }
});
