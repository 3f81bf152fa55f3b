use std::path::Path;

use apache_avro::types::{Record, Value};

use super::*;
use crate::config::Config;

const KAFKA: &str = "[kafka]\nbrokers = \"x:1\"\ntopics = [\"t\"]\n";

fn mapper(format: &str, schema: &str, dir: &Path) -> Mapper {
    let c = Config::from_toml(&format!("{KAFKA}{format}\n{schema}"), [], dir).unwrap();
    Mapper::new(&c).unwrap()
}

fn meta() -> Meta<'static> {
    Meta {
        topic: "t",
        partition: 3,
        offset: 42,
        timestamp_ms: Some(1_700_000_000_000),
    }
}

const JSON_SCHEMA: &str = r#"
[schema]
id = 1
dims = [{ name = "user", path = "/user/name", bloom = true }, { name = "model", path = "/model" }]
counters = [{ name = "tokens", path = "/usage/tokens" }]
labels = [{ name = "note", path = "/note" }]
metric = "/cost"
status = "/status"
latency_ms = "/latency"
"#;

#[test]
fn json_columns_by_pointer() {
    let m = mapper("", JSON_SCHEMA, Path::new("."));
    let e = m
        .map(Some(br#"{"user":{"name":"ann"},"model":"gpt","usage":{"tokens":"12"},"cost":-5,"status":404,"latency":7.0,"note":null}"#), meta())
        .unwrap();
    assert_eq!(e.id, "t/3/42", "default id: topic/partition/offset");
    assert_eq!(
        e.ts_ns, 1_700_000_000_000_000_000,
        "default ts: the Kafka timestamp"
    );
    assert_eq!(e.dims, ["ann", "gpt"]);
    assert_eq!(e.counters, [12]);
    assert_eq!((e.metric, e.status, e.latency_ms), (-5, 404, 7));
    assert_eq!(e.labels, [""]);
    // Missing fields are empty / zero.
    let e = m.map(Some(b"{}"), meta()).unwrap();
    assert_eq!(e.dims, ["", ""]);
    assert_eq!(e.counters, [0]);
}

#[test]
fn json_poison_is_typed() {
    let m = mapper("", JSON_SCHEMA, Path::new("."));
    let cases: [(&[u8], &str); 5] = [
        (b"not json", "decode"),
        (br#"{"usage":{"tokens":-1}}"#, "field"),
        (br#"{"usage":{"tokens":"many"}}"#, "field"),
        (br#"{"status":70000}"#, "field"),
        (b"", "empty"),
    ];
    for (payload, reason) in cases {
        let e = m.map(Some(payload), meta()).unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
    }
    let e = m
        .map(Some(br#"{"usage":{"tokens":-1}}"#), meta())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "column `tokens` (at /usage/tokens): -1 is out of range 0..=4294967295"
    );
    assert_eq!(m.map(None, meta()).unwrap_err(), MapError::Empty);
    // A value the engine would refuse is poison, not a failed append.
    let huge = format!(r#"{{"user":{{"name":"{}"}}}}"#, "u".repeat(70_000));
    let e = m.map(Some(huge.as_bytes()), meta()).unwrap_err();
    assert!(
        e.to_string().contains("70000 bytes, the limit is 65535"),
        "{e}"
    );
}

#[test]
fn timestamps_and_ids_from_fields() {
    let schema = r#"
[schema]
id = 1
dims = [{ name = "k", path = "/k" }]
ts = { source = "field", path = "/at", unit = "rfc3339" }
event_id = { source = "field", path = "/rid" }
"#;
    let m = mapper("", schema, Path::new("."));
    let e = m
        .map(
            Some(br#"{"at":"2026-11-25T00:00:01Z","rid":"r-1","k":"x"}"#),
            meta(),
        )
        .unwrap();
    assert_eq!(e.ts_ns, (20_782 * 86_400 + 1) * 1_000_000_000);
    assert_eq!(e.id, "r-1");
    assert_eq!(
        m.map(Some(br#"{"at":"yesterday","rid":"r"}"#), meta())
            .unwrap_err()
            .reason(),
        "field"
    );
    assert_eq!(
        m.map(Some(br#"{"at":"2026-11-25T00:00:01Z"}"#), meta())
            .unwrap_err()
            .reason(),
        "field"
    );
    let s = schema.replace("\"rfc3339\"", "\"us\"");
    let m = mapper("", &s, Path::new("."));
    assert_eq!(
        m.map(Some(br#"{"at":5,"rid":"r"}"#), meta()).unwrap().ts_ns,
        5_000
    );
    let e = m
        .map(
            Some(br#"{"at":170141183460469231731687303715884105727,"rid":"r"}"#),
            meta(),
        )
        .unwrap_err();
    assert_eq!(e.reason(), "field", "{e}");
}

const AVSC: &str = r#"{"type":"record","name":"A","fields":[
  {"name":"route","type":"string"},
  {"name":"bytes","type":"long"},
  {"name":"client","type":{"type":"record","name":"C","fields":[{"name":"agent","type":["null","string"]}]}}]}"#;

const AVRO_SCHEMA: &str = r#"
[schema]
id = 2
dims = [{ name = "route", path = "route" }]
counters = [{ name = "bytes", path = "bytes" }]
labels = [{ name = "agent", path = "client.agent" }]
"#;

fn avro_datum(
    schema: &apache_avro::Schema,
    route: &str,
    bytes: i64,
    agent: Option<&str>,
) -> Vec<u8> {
    let client = match schema {
        apache_avro::Schema::Record(r) => r.fields[2].schema.clone(),
        _ => unreachable!(),
    };
    let mut c = Record::new(&client).unwrap();
    c.put(
        "agent",
        match agent {
            Some(a) => Value::Union(1, Box::new(Value::String(a.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        },
    );
    let mut r = Record::new(schema).unwrap();
    r.put("route", route);
    r.put("bytes", bytes);
    r.put("client", c);
    #[allow(deprecated)]
    let datum = apache_avro::to_avro_datum(schema, r).unwrap();
    datum
}

#[test]
fn avro_plain_and_confluent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.avsc"), AVSC).unwrap();
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    let datum = avro_datum(&schema, "/x", 512, Some("curl"));

    let m = mapper(
        "[format]\nkind = \"avro\"\nschema_file = \"a.avsc\"",
        AVRO_SCHEMA,
        dir.path(),
    );
    let e = m.map(Some(&datum), meta()).unwrap();
    assert_eq!(
        (e.dims[0].as_str(), e.counters[0], e.labels[0].as_str()),
        ("/x", 512, "curl")
    );
    let e = m
        .map(Some(&avro_datum(&schema, "/y", 1, None)), meta())
        .unwrap();
    assert_eq!(e.labels, [""]);
    eprintln!("datum {:?}", datum);
    for cut in 0..datum.len() {
        let r = m.map(Some(&datum[..cut]), meta());
        eprintln!("cut {cut}: {r:?}");
    }
    for cut in 0..datum.len() {
        let r = m.map(Some(&datum[..cut]), meta());
        assert!(
            r.is_err(),
            "datum cut at {cut} of {} decoded: {r:?}",
            datum.len()
        );
    }
    let mut longer = datum.clone();
    longer.push(0);
    assert_eq!(m.map(Some(&longer), meta()).unwrap_err().reason(), "decode");

    let m = mapper(
        "[format]\nkind = \"avro-confluent\"\nschemas = { 7 = \"a.avsc\" }",
        AVRO_SCHEMA,
        dir.path(),
    );
    let mut framed = vec![0u8, 0, 0, 0, 7];
    framed.extend_from_slice(&datum);
    assert_eq!(m.map(Some(&framed), meta()).unwrap().counters, [512]);
    framed[4] = 8;
    assert!(m
        .map(Some(&framed), meta())
        .unwrap_err()
        .to_string()
        .contains("unknown schema id 8"));
    assert_eq!(m.map(Some(&datum), meta()).unwrap_err().reason(), "decode");
}

#[test]
fn confluent_schemas_come_from_the_registry() {
    // A minimal schema registry: answers GET /schemas/ids/9 once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /schemas/ids/9 "));
        let body = serde_json::json!({ "schema": AVSC }).to_string();
        write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    });
    let m = mapper(
        &format!("[format]\nkind = \"avro-confluent\"\nregistry_url = \"{url}\""),
        AVRO_SCHEMA,
        Path::new("."),
    );
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    let mut framed = vec![0u8, 0, 0, 0, 9];
    framed.extend_from_slice(&avro_datum(&schema, "/r", 3, None));
    assert_eq!(m.map(Some(&framed), meta()).unwrap().dims, ["/r"]);
    // Cached: the registry (which answers once) is not asked again.
    assert_eq!(m.map(Some(&framed), meta()).unwrap().counters, [3]);
    server.join().unwrap();
}
