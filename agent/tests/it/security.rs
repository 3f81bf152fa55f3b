//! The agent's librdkafka is built with what real clusters need, and the typed `[kafka.tls]` /
//! `[kafka.sasl]` sections produce configurations it accepts.

use std::ffi::{CStr, CString};

use keplor_agent::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

/// librdkafka's `builtin.features`.
fn builtin_features() -> String {
    // SAFETY: a fresh conf object is created, read and destroyed here; the buffer is large
    // enough and librdkafka writes at most `size` bytes (including the NUL) into it.
    unsafe {
        let conf = rdkafka::bindings::rd_kafka_conf_new();
        let name = CString::new("builtin.features").unwrap();
        let mut buf = vec![0 as std::os::raw::c_char; 1024];
        let mut size = buf.len();
        let r =
            rdkafka::bindings::rd_kafka_conf_get(conf, name.as_ptr(), buf.as_mut_ptr(), &mut size);
        rdkafka::bindings::rd_kafka_conf_destroy(conf);
        assert_eq!(r, rdkafka::bindings::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK);
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

#[test]
fn librdkafka_has_tls_sasl_oidc_and_every_codec() {
    let f = builtin_features();
    for want in [
        "gzip",
        "snappy",
        "ssl",
        "sasl_plain",
        "sasl_scram",
        "lz4",
        "zstd",
        "sasl_oauthbearer",
        "oidc",
    ] {
        assert!(f.split(',').any(|x| x == want), "{want} missing from {f}");
    }
    assert_eq!(
        f.split(',').any(|x| x == "sasl_gssapi"),
        cfg!(feature = "gssapi"),
        "GSSAPI only with the gssapi feature: {f}"
    );
}

fn consumer_from(toml_extra: &str, dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join("agent.toml");
    let text = crate::common::config_text(
        "127.0.0.1:1",
        &dir.join("data").to_string_lossy(),
        "g",
        "127.0.0.1:0",
    );
    std::fs::write(&path, format!("{text}\n{toml_extra}")).unwrap();
    let config = Config::load(&path, Vec::new()).map_err(|e| e.to_string())?;
    let mut cc = ClientConfig::new();
    for (k, v) in config.kafka.client_properties() {
        cc.set(k, v);
    }
    cc.set("bootstrap.servers", "127.0.0.1:1")
        .set("group.id", "g");
    cc.create::<BaseConsumer>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_typed_security_setting_is_accepted_by_librdkafka() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let tls = format!("[kafka.tls]\nca_file = {:?}\n", ca.to_string_lossy());
    for (name, sasl) in [
        ("PLAIN", "mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"p\""),
        ("SCRAM-SHA-256", "mechanism = \"SCRAM-SHA-256\"\nusername = \"u\"\npassword = \"p\""),
        ("SCRAM-SHA-512", "mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"p\""),
        (
            "OAUTHBEARER",
            "mechanism = \"OAUTHBEARER\"\noauth_token_endpoint = \"https://127.0.0.1:1/token\"\noauth_client_id = \"c\"\noauth_client_secret = \"s\"",
        ),
    ] {
        // An empty CA file: librdkafka reads it when the client is created, so only the
        // mechanism is checked with TLS off.
        let r = consumer_from(&format!("[kafka.sasl]\n{sasl}\n"), dir.path());
        assert!(r.is_ok(), "{name}: {r:?}");
    }
    // TLS with a CA librdkafka cannot parse: a clear error at client creation.
    let err = consumer_from(&tls, dir.path()).unwrap_err();
    assert!(
        err.to_lowercase().contains("ssl") || err.contains("ca"),
        "{err}"
    );
    let gss = consumer_from("[kafka.sasl]\nmechanism = \"GSSAPI\"\n", dir.path());
    assert_eq!(gss.is_ok(), cfg!(feature = "gssapi"), "{gss:?}");
}

/// Runs `check-config --connect` on a config written from `text`.
fn check_connect(dir: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keplor-agent"))
        .args(["check-config", "--connect", "--connect-timeout", "3s"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_connect_reports_brokers_topics_group_and_names_problems() {
    let kafka = crate::common::Kafka::new(&[("in", 3), ("in.dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = crate::common::config_text(
        &kafka.brokers,
        &data.to_string_lossy(),
        "g-check",
        "127.0.0.1:0",
    );
    let (code, out) = check_connect(dir.path(), &base);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("brokers reached: 1"), "{out}");
    assert!(out.contains("topic in: 3 partitions"), "{out}");
    assert!(
        out.contains("consumer group: no committed offsets yet"),
        "{out}"
    );
    // A topic that does not exist, and a DLQ topic that does not either.
    let bad = base.replace("topics = [\"in\"]", "topics = [\"in\", \"nope\"]")
        + "\n[errors]\npolicy = \"dlq\"\ndlq_topic = \"missing.dlq\"\n";
    let (code, out) = check_connect(dir.path(), &bad);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("problem: topic nope: does not exist"), "{out}");
    assert!(
        out.contains("problem: DLQ topic missing.dlq does not exist"),
        "{out}"
    );
    // Nothing listening: named, within the timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = base.replace(&kafka.brokers, &format!("127.0.0.1:{port}"));
    let (code, out) = check_connect(dir.path(), &gone);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("problem: no broker accepted a connection"),
        "{out}"
    );
}
