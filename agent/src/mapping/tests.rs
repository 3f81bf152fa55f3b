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
        key: Some(b"k-1"),
        headers: None,
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

// --- Schema registry --------------------------------------------------------------------------

/// What the fake registry does with one connection.
enum Reply {
    /// Answers with this status and JSON body.
    Answer(u16, String),
    /// Reads the request and never answers (until the client hangs up).
    Hang,
}

fn ok(body: serde_json::Value) -> Reply {
    Reply::Answer(200, body.to_string())
}

/// A fake schema registry on 127.0.0.1 serving one connection per reply, in order. The thread
/// returns each request's head; it gives up waiting for a connection after 10 s.
fn fake_registry(replies: Vec<Reply>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for reply in replies {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Err(_) => return heads,
                }
            };
            s.set_nonblocking(false).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            heads.push(String::from_utf8_lossy(&head).into_owned());
            match reply {
                Reply::Answer(status, body) => {
                    let _ = write!(s, "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                }
                // Until the client gives up and closes.
                Reply::Hang => while s.read(&mut buf).is_ok_and(|n| n > 0) {},
            }
        }
        heads
    });
    (url, server)
}

/// The value of header `name` in a request head.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A mapper of Confluent-framed Avro asking the registry at `url`, with more `[format]` lines.
fn registry_mapper(url: &str, extra: &str) -> Result<Mapper, String> {
    let c = Config::from_toml(
        &format!("{KAFKA}[format]\nkind = \"avro-confluent\"\nregistry_url = \"{url}\"\n{extra}\n{AVRO_SCHEMA}"),
        [],
        Path::new("."),
    )
    .map_err(|e| e.to_string())?;
    Mapper::new(&c)
}

/// A datum of `AVSC` framed with schema id `id`.
fn framed(id: u32) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(AVSC).unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&avro_datum(&schema, "/r", 3, None));
    framed
}

fn avsc_answer() -> Reply {
    ok(serde_json::json!({ "schema": AVSC }))
}

#[test]
fn registry_basic_auth_is_sent_and_a_401_is_not_the_messages_fault() {
    let (url, server) = fake_registry(vec![avsc_answer()]);
    let m = registry_mapper(
        &url,
        "registry_username = \"ann\"\nregistry_password = \"s3cret!\"",
    )
    .unwrap();
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().dims, ["/r"]);
    let heads = server.join().unwrap();
    assert!(heads[0].starts_with("GET /schemas/ids/9 "), "{}", heads[0]);
    assert_eq!(
        header(&heads[0], "authorization"),
        Some("Basic YW5uOnMzY3JldCE="),
        "base64 of ann:s3cret!"
    );

    let denied = r#"{"error_code":40101,"message":"Unauthorized"}"#;
    let (url, server) = fake_registry(vec![Reply::Answer(401, denied.into())]);
    let m = registry_mapper(&url, "").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert_eq!(e.reason(), "registry", "{e}");
    assert!(
        e.to_string()
            .contains("HTTP 401: Unauthorized (check format.registry_username"),
        "{e}"
    );
    assert_eq!(header(&server.join().unwrap()[0], "authorization"), None);
}

#[test]
fn registry_bearer_token_comes_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n\n").unwrap();
    let (url, server) = fake_registry(vec![avsc_answer()]);
    let m = registry_mapper(&url, &format!("registry_token_file = {token:?}")).unwrap();
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().counters, [3]);
    let heads = server.join().unwrap();
    assert_eq!(header(&heads[0], "authorization"), Some("Bearer t0k3n"));
}

#[test]
fn registry_retries_a_503_then_succeeds_and_caches() {
    let busy = Reply::Answer(503, r#"{"error_code":50003,"message":"busy"}"#.into());
    let (url, server) = fake_registry(vec![busy, avsc_answer()]);
    let m = registry_mapper(&url, "").unwrap();
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().dims, ["/r"]);
    // Cached: asked no more (the registry would not answer a third connection).
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().dims, ["/r"]);
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn registry_5xx_after_every_retry_is_not_the_messages_fault_and_holds_off_briefly() {
    let down = || Reply::Answer(500, "internal error".into());
    let (url, server) = fake_registry(vec![down(), down(), avsc_answer()]);
    let m = registry_mapper(&url, "registry_retries = 1").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Registry(_)), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("/schemas/ids/9: HTTP 500: internal error (2 attempts)"),
        "{e}"
    );
    // Right after an outage, further misses fail without asking (a batch of thousands of
    // messages must not retry once each); after the hold the next message asks again.
    let again = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(again, MapError::Registry(_)), "{again:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().dims, ["/r"]);
    assert_eq!(server.join().unwrap().len(), 3);
}

#[test]
fn registry_read_timeout_is_bounded() {
    let (url, server) = fake_registry(vec![Reply::Hang, Reply::Hang]);
    let m = registry_mapper(&url, "registry_timeout = \"300ms\"\nregistry_retries = 1").unwrap();
    let started = std::time::Instant::now();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Registry(_)), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("connected, but no answer within 300ms (2 attempts)"),
        "{e}"
    );
    // Two 300 ms waits and a 200 ms backoff, far from the 10 s default.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn registry_unknown_id_is_poison_but_a_foreign_404_is_not() {
    let gone = r#"{"error_code":40403,"message":"Schema 9 not found"}"#;
    let (url, server) = fake_registry(vec![
        Reply::Answer(404, gone.into()),
        Reply::Answer(404, "<html>no such page</html>".into()),
    ]);
    let m = registry_mapper(&url, "").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(
        matches!(e, MapError::Decode(_)),
        "retrying cannot help: {e:?}"
    );
    assert!(
        e.to_string().contains("not found: Schema 9 not found"),
        "{e}"
    );
    // A 404 that is not the registry's "no such schema" (a wrong registry_url, a proxy).
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Registry(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("HTTP 404: <html>no such page</html>"),
        "{e}"
    );
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn registry_schema_that_is_not_avro_is_poison() {
    let (url, server) = fake_registry(vec![
        ok(serde_json::json!({ "schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";" })),
        ok(serde_json::json!({ "schema": "{\"type\": \"record\"}" })),
    ]);
    let m = registry_mapper(&url, "").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert_eq!(
        e,
        MapError::Decode(
            "schema id 9 is a PROTOBUF schema: format.kind = \"avro-confluent\" decodes Avro only"
                .into()
        )
    );
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Decode(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("schema id 9 from the registry is not valid Avro"),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn registry_references_are_resolved() {
    // A (the message) -> com.acme.Address (subject "address value") -> com.acme.Country.
    let root = r#"{"type":"record","name":"A","fields":[
        {"name":"route","type":"string"},
        {"name":"addr","type":"com.acme.Address"}]}"#;
    let address = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[
        {"name":"city","type":"string"},
        {"name":"country","type":"com.acme.Country"}]}"#;
    let country =
        r#"{"type":"enum","name":"Country","namespace":"com.acme","symbols":["FR","JP"]}"#;
    let (url, server) = fake_registry(vec![
        ok(serde_json::json!({ "schema": root, "references": [
            { "name": "com.acme.Address", "subject": "address value", "version": 1 }] })),
        ok(
            serde_json::json!({ "subject": "address value", "version": 1, "id": 2, "schema": address,
            "references": [{ "name": "com.acme.Country", "subject": "country", "version": 3 }] }),
        ),
        ok(serde_json::json!({ "subject": "country", "version": 3, "id": 3, "schema": country })),
    ]);
    let c = Config::from_toml(
        &format!(
            "{KAFKA}[format]\nkind = \"avro-confluent\"\nregistry_url = \"{url}/\"\n[schema]\nid = 3\n\
             dims = [{{ name = \"city\", path = \"addr.city\" }}]\n\
             labels = [{{ name = \"country\", path = \"addr.country\" }}]"
        ),
        [],
        Path::new("."),
    )
    .unwrap();
    let m = Mapper::new(&c).unwrap();
    // The same datum written with every type inline.
    let inline = root.replace(
        "\"com.acme.Address\"",
        &address.replace("\"com.acme.Country\"", country),
    );
    let schema = apache_avro::Schema::parse_str(&inline).unwrap();
    let value = Value::Record(vec![
        ("route".into(), Value::String("/x".into())),
        (
            "addr".into(),
            Value::Record(vec![
                ("city".into(), Value::String("Lyon".into())),
                ("country".into(), Value::Enum(0, "FR".into())),
            ]),
        ),
    ]);
    #[allow(deprecated)]
    let datum = apache_avro::to_avro_datum(&schema, value).unwrap();
    let mut framed = vec![0u8, 0, 0, 0, 11];
    framed.extend_from_slice(&datum);
    let e = m.map(Some(&framed), meta()).unwrap();
    assert_eq!((e.dims, e.labels), (vec!["Lyon".into()], vec!["FR".into()]));
    let heads = server.join().unwrap();
    let paths: Vec<&str> = heads
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        paths,
        [
            "/schemas/ids/11",
            "/subjects/address%20value/versions/1",
            "/subjects/country/versions/3"
        ]
    );
}

#[test]
fn registry_missing_reference_is_poison() {
    let root = r#"{"type":"record","name":"A","fields":[{"name":"addr","type":"Address"}]}"#;
    let (url, server) = fake_registry(vec![
        ok(serde_json::json!({ "schema": root, "references": [
            { "name": "Address", "subject": "address", "version": 4 }] })),
        Reply::Answer(
            404,
            r#"{"error_code":40402,"message":"Version 4 not found."}"#.into(),
        ),
    ]);
    let m = registry_mapper(&url, "").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Decode(_)), "{e:?}");
    assert!(e.to_string().contains("Version 4 not found."), "{e}");
    server.join().unwrap();
}

#[test]
fn basic_auth_header_is_rfc_4648_base64() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(registry::base64(plain.as_bytes()), encoded);
    }
}

/// An https schema registry: a Python `http.server` behind `ssl`, answering every GET with
/// the schema given as its first argument. Killed when dropped.
struct TlsRegistry {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TLS_SERVER_PY: &str = r#"
import http.server, json, ssl, sys
schema, cert, key = sys.argv[1:4]
class Registry(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"schema": schema}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/vnd.schemaregistry.v1+json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Registry)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Runs the `openssl` command line tool in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the https test needs the `openssl` command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate it signed for the IP address 127.0.0.1 only
/// (`server.pem`, `server.key`).
fn test_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=keplor test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
            &["-subj", "/CN=registry"],
        ]
        .concat(),
    );
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

fn tls_registry(dir: &Path) -> TlsRegistry {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args(["-c", TLS_SERVER_PY, AVSC, "server.pem", "server.key"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the https test needs python3");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the Python registry did not print its port: {line:?}")
    });
    TlsRegistry { child, port }
}

#[test]
fn registry_over_https_verifies_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    test_pki(dir.path());
    let server = tls_registry(dir.path());
    let ca = dir.path().join("ca.pem");
    let with_ca = format!("registry_ca_file = {ca:?}\nregistry_retries = 0");

    let url = format!("https://127.0.0.1:{}", server.port);
    let m = registry_mapper(&url, &with_ca).unwrap();
    assert_eq!(m.map(Some(&framed(9)), meta()).unwrap().dims, ["/r"]);

    // The system roots do not know the test CA.
    let m = registry_mapper(&url, "registry_retries = 0").unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Registry(_)), "{e:?}");
    assert!(e.to_string().contains("certificate verify failed"), "{e}");
    assert!(e.to_string().contains("format.registry_ca_file"), "{e}");

    // The certificate names 127.0.0.1, not localhost.
    let url = format!("https://localhost:{}", server.port);
    let m = registry_mapper(&url, &with_ca).unwrap();
    let e = m.map(Some(&framed(9)), meta()).unwrap_err();
    assert!(matches!(e, MapError::Registry(_)), "{e:?}");
    assert!(e.to_string().contains("(hostname mismatch)"), "{e}");
}

#[test]
fn registry_ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let e =
        registry_mapper("https://127.0.0.1:1", &format!("registry_ca_file = {ca:?}")).unwrap_err();
    assert!(
        e.starts_with("format.registry_ca_file: ") && e.ends_with("holds no PEM certificate"),
        "{e}"
    );
}

#[test]
fn message_metadata_is_usable_as_columns_in_any_format() {
    let schema = r#"
[schema]
id = 1
dims = [{ name = "topic", path = "$kafka.topic" }, { name = "key", path = "$kafka.key" }]
counters = [{ name = "partition", path = "$kafka.partition" }]
labels = [{ name = "trace", path = "$kafka.header.trace" }]
metric = "$kafka.offset"
[schema.ts]
source = "field"
path = "$kafka.timestamp"
unit = "ms"
"#;
    let m = mapper("", schema, Path::new("."));
    let e = m.map(Some(b"{}"), meta()).unwrap();
    assert_eq!(e.dims, ["t", "k-1"]);
    assert_eq!(e.counters, [3]);
    assert_eq!(e.metric, 42);
    assert_eq!(e.ts_ns, 1_700_000_000_000_000_000);
    assert_eq!(e.labels, [""], "no headers: empty");
    // Unknown metadata is a config error naming the column kind.
    let bad = Config::from_toml(
        &format!(
            "{KAFKA}{}",
            schema.replace("$kafka.header.trace", "$kafka.headers")
        ),
        [],
        Path::new("."),
    )
    .unwrap_err();
    assert_eq!(bad.key, "schema.labels");
    assert!(bad.message.contains("$kafka.headers"), "{bad}");
}
