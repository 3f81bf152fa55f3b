use std::path::Path;
use std::time::Duration;

use super::*;

const BASE: &str = r#"
[kafka]
brokers = "b1:9092, b2:9092"
topics = ["llm-calls"]

[schema]
id = 1
dims = [{ name = "user", path = "/user", bloom = true, rollup = true }, { name = "model", path = "/model" }]
counters = [{ name = "tokens", path = "/usage/tokens" }]
"#;

fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml(&format!("{BASE}\n{extra}"), env, Path::new("/etc/keplor"))
}

#[test]
fn defaults_and_resolution() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.kafka.brokers, ["b1:9092", "b2:9092"]);
    assert_eq!(c.kafka.group_id, "keplor-agent");
    assert_eq!(c.kafka.assignment, Assignment::CooperativeSticky);
    assert_eq!(c.format, Format::Json);
    assert_eq!(c.schema.ts, TsSource::Kafka);
    assert_eq!(c.schema.event_id, IdSource::Offset);
    assert_eq!(c.batch.linger, Duration::from_millis(50));
    assert_eq!(c.errors.policy, ErrorPolicy::Skip);
    assert_eq!(c.engine.data_dir, Path::new("/etc/keplor/keplor-data"));
    let e = c.engine_config();
    assert_eq!(e.bloom_dim, Some(0));
    assert_eq!(e.rollup_dims, vec![0]);
    assert!(c.to_toml().contains("group_id = \"keplor-agent\""));
}

#[test]
fn env_overrides_every_key() {
    let c = load(
        "",
        &[
            ("KEPLOR_KAFKA__GROUP_ID", "sink-7"),
            ("KEPLOR_BATCH__LINGER", "20ms"),
            ("KEPLOR_ENGINE__SHARDS", "8"),
            ("KEPLOR_KAFKA__TOPICS", "[\"a\", \"b\"]"),
            ("KEPLOR_KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
            ("KEPLOR_HTTP__AUTH_TOKEN", "s3cret"),
            ("KEPLOR_CONFIG", "/ignored"),
            ("KEPLOR_TOKEN", "read by the query CLI"),
            ("KEPLOR_KAFKA__PROPERTIES__SASL_PASSWORD", "hunter2"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.group_id, "sink-7");
    assert_eq!(c.batch.linger, Duration::from_millis(20));
    assert_eq!(c.engine.shards, 8);
    assert_eq!(c.kafka.topics, ["a", "b"]);
    assert_eq!(c.kafka.properties["sasl.mechanism"], "PLAIN");
    assert_eq!(c.http.auth_token.as_deref(), Some("s3cret"));
    assert!(!c.to_toml().contains("s3cret"), "secrets are masked");
    assert_eq!(c.kafka.properties["sasl.password"], "hunter2");
    assert!(
        !c.to_toml().contains("hunter2"),
        "property secrets are masked too"
    );
}

#[test]
fn env_strings_stay_strings_and_typed_keys_parse_theirs() {
    let c = load(
        "",
        &[
            ("KEPLOR_KAFKA__GROUP_ID", "2024"),
            ("KEPLOR_HTTP__AUTH_TOKEN", "12345"),
            ("KEPLOR_KAFKA__PROPERTIES__SASL_PASSWORD", "1e5"),
            ("KEPLOR_KAFKA__PROPERTIES__CLIENT_ID", "0x1F"),
            ("KEPLOR_KAFKA__TOPICS", "a, b"),
            ("KEPLOR_HTTP__ENABLED", "false"),
            ("KEPLOR_BATCH__MAX_EVENTS", "77"),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.group_id, "2024");
    assert_eq!(c.http.auth_token.as_deref(), Some("12345"));
    assert_eq!(c.kafka.properties["sasl.password"], "1e5");
    assert_eq!(c.kafka.properties["client.id"], "0x1F");
    assert_eq!(c.kafka.topics, ["a", "b"]);
    assert!(!c.http.enabled);
    assert_eq!(c.batch.max_events, 77);
    let e = load("", &[("KEPLOR_ENGINE__SHARDS", "many")]).unwrap_err();
    assert!(
        e.message.contains("\"many\" is not a non-negative integer"),
        "{e}"
    );
    // TLS and SASL from the environment: a numeric-looking password is still a password.
    let c = load(
        "",
        &[
            ("KEPLOR_KAFKA__SASL__MECHANISM", "SCRAM-SHA-256"),
            ("KEPLOR_KAFKA__SASL__USERNAME", "keplor"),
            ("KEPLOR_KAFKA__SASL__PASSWORD", "0x1F"),
            ("KEPLOR_KAFKA__TLS__VERIFY_HOSTNAME", "false"),
        ],
    )
    .unwrap();
    let p = c.kafka.client_properties();
    assert_eq!(p["security.protocol"], "SASL_SSL");
    assert_eq!(p["sasl.password"], "0x1F");
    assert!(!c.to_toml().contains("0x1F"), "masked");
    let e = load(
        "[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"p\"\n[kafka.properties]\n\"sasl.password\" = \"q\"",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "kafka.properties.sasl.password");
}

#[test]
fn topic_patterns_are_checked_and_never_match_the_dlq() {
    let c = load(
        "",
        &[("KEPLOR_KAFKA__TOPICS", "[\"^orders-.*\", \"audit\"]")],
    )
    .unwrap();
    assert_eq!(c.kafka.topics, ["^orders-.*", "audit"]);
    let e = load("", &[("KEPLOR_KAFKA__TOPICS", "[\"^orders-(\"]")]).unwrap_err();
    assert_eq!(e.key, "kafka.topics");
    let e = load(
        "[errors]\npolicy = \"dlq\"\ndlq_topic = \"orders-dlq\"",
        &[("KEPLOR_KAFKA__TOPICS", "[\"^orders-.*\"]")],
    )
    .unwrap_err();
    assert_eq!(e.key, "errors.dlq_topic");
}

#[test]
fn unknown_keys_are_rejected() {
    let e = load("[batch]\nlinger_ms = 5", &[]).unwrap_err();
    assert!(e.message.contains("linger_ms"), "{e}");
    assert_eq!(e.key, "batch", "the section is named");
    let e = load("[batches]\nlinger = \"5ms\"", &[]).unwrap_err();
    assert_eq!(e.key, "batches");
    let e = load("[engine]\nshards = \"four\"", &[]).unwrap_err();
    assert_eq!(e.key, "engine");
    let e = load("", &[("KEPLOR_BATCH__LINGER_MS", "5")]).unwrap_err();
    assert!(e.message.contains("linger_ms"), "{e}");
    let e = load("", &[("KEPLOR_BATCH", "5")]).unwrap_err();
    assert_eq!(e.key, "KEPLOR_BATCH");
}

#[test]
fn errors_name_their_keys() {
    let cases: &[(&str, &str, &str)] = &[
        ("[batch]\nlinger = 50", "batch.linger", "no unit"),
        ("[batch]\nlinger = \"50 parsecs\"", "batch.linger", "unit"),
        (
            "[batch]\nmax_bytes = \"8MiB\"\nmax_pending_bytes = \"1MiB\"",
            "batch.max_pending_bytes",
            "batch.max_bytes (8388608)",
        ),
        (
            "[engine]\nsegment_cache = \"64kB\"",
            "engine.segment_cache",
            "below the least, 1MiB",
        ),
        (
            "[engine]\nsegment_cache = \"lots\"",
            "engine.segment_cache",
            "",
        ),
        (
            "[errors]\npolicy = \"dlq\"",
            "errors.dlq_topic",
            "needs errors.dlq_topic",
        ),
        (
            "[errors]\npolicy = \"dlq\"\ndlq_topic = \"llm-calls\"",
            "errors.dlq_topic",
            "also in kafka.topics",
        ),
        (
            "[errors]\npolicy = \"retry\"",
            "errors.policy",
            "dlq, skip or stop",
        ),
        ("[format]\nkind = \"avro\"", "format.schema_file", ".avsc"),
        ("[format]\nkind = \"protobuf\"", "format.kind", "json, avro"),
        (
            "[http]\nlisten = \"everywhere\"",
            "http.listen",
            "not an address",
        ),
        ("[engine]\nshards = 0", "engine.shards", "out of range"),
        (
            "[kafka.properties]\n\"group.id\" = \"x\"",
            "kafka.properties.group.id",
            "set by the agent",
        ),
        (
            "[schema.ts]\nsource = \"field\"",
            "schema.ts.path",
            "needs the field's path",
        ),
        (
            "[engine]\nsync_interval = 0",
            "engine.sync_interval",
            "0 is not a sync interval",
        ),
        (
            "[kafka.properties]\n\"enable.partition.eof\" = true",
            "kafka.properties.enable.partition.eof",
            "set by the agent",
        ),
    ];
    for (extra, key, msg) in cases {
        let e = load(extra, &[]).unwrap_err();
        assert_eq!(&e.key, key, "{extra}: {e}");
        assert!(e.message.contains(msg), "{extra}: {e}");
    }
    let two_blooms = BASE.replace(
        "{ name = \"model\", path = \"/model\" }",
        "{ name = \"model\", path = \"/model\", bloom = true }",
    );
    let e = Config::from_toml(&two_blooms, [], Path::new(".")).unwrap_err();
    assert!(e.message.contains("`user` and `model`"), "{e}");
    let bad_metric = BASE.replace("[schema]\nid = 1", "[schema]\nid = 1\nmetric = \"cost\"");
    let e = Config::from_toml(&bad_metric, [], Path::new(".")).unwrap_err();
    assert_eq!(e.key, "schema.metric", "{e}");
    let bad_pointer = BASE.replace("\"/model\"", "\"model\"");
    let e = Config::from_toml(&bad_pointer, [], Path::new(".")).unwrap_err();
    assert!(e.message.contains("JSON pointer"), "{e}");
    let dup = BASE.replace("\"tokens\"", "\"user\"");
    let e = Config::from_toml(&dup, [], Path::new(".")).unwrap_err();
    assert!(e.message.contains("used twice"), "{e}");
}

#[test]
fn shipped_example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path, []).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "config/ holds the commented examples");
    // The Helm chart's default configuration too.
    let helm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/keplor-agent/files/agent.toml");
    Config::load(&helm, []).unwrap_or_else(|e| panic!("{}: {e}", helm.display()));
}

#[test]
fn fleet_section_resolves_with_defaults_and_the_http_token() {
    assert!(
        load("", &[]).unwrap().http.fleet.is_none(),
        "no section, no fleet"
    );
    let c = load(
        "[http]\nauth_token = \"own\"\n[fleet]\nendpoints = [\"http://10.0.0.7:8686/\"]\nendpoints_dns = \"keplor-agent.ns.svc:8686\"",
        &[],
    )
    .unwrap();
    let f = c.http.fleet.as_ref().unwrap();
    assert_eq!(f.endpoints, ["http://10.0.0.7:8686"]);
    assert_eq!(
        f.endpoints_dns.as_ref().map(|t| t.to_string()).as_deref(),
        Some("keplor-agent.ns.svc:8686")
    );
    assert_eq!(f.connect_timeout, Duration::from_secs(2));
    assert_eq!(f.timeout, Duration::from_secs(30));
    assert_eq!(f.expected_members, None, "no member count by default");
    assert_eq!(
        f.token.as_deref(),
        Some("own"),
        "defaults to http.auth_token"
    );
    let printed = c.to_toml();
    assert!(
        printed.contains("\n[fleet]\n") && printed.contains("keplor-agent.ns.svc:8686"),
        "{printed}"
    );
    assert!(!printed.contains("own\""), "the token is masked\n{printed}");

    let c = load(
        "[fleet]\ntimeout = \"1500ms\"",
        &[
            (
                "KEPLOR_FLEET__ENDPOINTS",
                "[\"http://a:1\", \"http://b:2\"]",
            ),
            ("KEPLOR_FLEET__CONNECT_TIMEOUT", "250ms"),
            ("KEPLOR_FLEET__TOKEN", "fleet-secret"),
        ],
    )
    .unwrap();
    let f = c.http.fleet.unwrap();
    assert_eq!(f.endpoints, ["http://a:1", "http://b:2"]);
    assert_eq!(f.connect_timeout, Duration::from_millis(250));
    assert_eq!(f.timeout, Duration::from_millis(1500));
    assert_eq!(f.token.as_deref(), Some("fleet-secret"));
}

#[test]
fn fleet_token_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
    let text = format!("{BASE}\n[fleet]\nendpoints = [\"http://a:1\"]\ntoken_file = \"token\"");
    let c = Config::from_toml(&text, [], dir.path()).unwrap();
    assert_eq!(c.http.fleet.unwrap().token.as_deref(), Some("from-file"));
    let e = Config::from_toml(&text, [], Path::new("/nonexistent")).unwrap_err();
    assert_eq!(e.key, "fleet.token_file", "{e}");
}

#[test]
fn fleet_errors_name_their_keys() {
    let cases: &[(&str, &str, &str)] = &[
        ("[fleet]", "fleet.endpoints", "lists no member"),
        (
            "[fleet]\nendpoints = [\"10.0.0.7:8686\"]",
            "fleet.endpoints",
            "not an endpoint like",
        ),
        (
            "[fleet]\nendpoints = [\"https://a:1\"]",
            "fleet.endpoints",
            "plain HTTP only",
        ),
        (
            "[fleet]\nendpoints_dns = \"keplor-agent.ns.svc\"",
            "fleet.endpoints_dns",
            "HOST:PORT",
        ),
        (
            "[fleet]\nendpoints = [\"http://a:1\"]\ntimeout = \"0s\"",
            "fleet.timeout",
            "longer than 0",
        ),
        (
            "[fleet]\nendpoints = [\"http://a:1\"]\nconnect_timeout = 2",
            "fleet.connect_timeout",
            "no unit",
        ),
        (
            "[fleet]\nendpoints = [\"http://a:1\"]\ntoken = \"t\"\ntoken_file = \"f\"",
            "fleet.token_file",
            "fleet.token and fleet.token_file",
        ),
    ];
    for (extra, key, msg) in cases {
        let e = load(extra, &[]).unwrap_err();
        assert_eq!(&e.key, key, "{extra}: {e}");
        assert!(e.message.contains(msg), "{extra}: {e}");
    }
    let e = load("[fleet]\nmembers = []", &[]).unwrap_err();
    assert_eq!(e.key, "fleet", "unknown keys are rejected: {e}");
}

#[test]
fn fleet_expected_members_is_a_count_of_at_least_one() {
    let c = load(
        "[fleet]\nendpoints_dns = \"keplor-agent.ns.svc:8686\"\nexpected_members = 3",
        &[],
    )
    .unwrap();
    assert_eq!(c.http.fleet.as_ref().unwrap().expected_members, Some(3));
    let printed = c.to_toml();
    assert!(printed.contains("expected_members = 3"), "{printed}");
    // As the Helm chart sets it: an environment value read as TOML.
    let c = load(
        "[fleet]\nendpoints = [\"http://a:1\"]",
        &[("KEPLOR_FLEET__EXPECTED_MEMBERS", "2")],
    )
    .unwrap();
    assert_eq!(c.http.fleet.unwrap().expected_members, Some(2));
    for bad in ["0", "-1", "\"three\"", "1.5", "true"] {
        let e = load(
            &format!("[fleet]\nendpoints = [\"http://a:1\"]\nexpected_members = {bad}"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "fleet.expected_members", "{bad}: {e}");
        assert!(e.message.contains("integer >= 1"), "{bad}: {e}");
    }
    let e = load(
        "[fleet]\nendpoints = [\"http://a:1\"]",
        &[("KEPLOR_FLEET__EXPECTED_MEMBERS", "none")],
    )
    .unwrap_err();
    assert_eq!(e.key, "fleet.expected_members", "{e}");
}

const CONFLUENT: &str = "[format]\nkind = \"avro-confluent\"\n";

fn registry(extra: &str, env: &[(&str, &str)]) -> Result<RegistrySettings, ConfigError> {
    match load(&format!("{CONFLUENT}{extra}"), env)?.format {
        Format::AvroConfluent {
            registry: Some(r), ..
        } => Ok(r),
        other => panic!("no registry: {other:?}"),
    }
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("keplor-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn registry_defaults_and_overrides() {
    let r = registry("registry_url = \"http://schema-registry:8081/\"", &[]).unwrap();
    assert_eq!(
        r,
        RegistrySettings {
            url: "http://schema-registry:8081".into(),
            ca_file: None,
            auth: RegistryAuth::None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            retries: 2,
        }
    );
    // From the environment, as the Helm chart sets them: strings.
    let r = registry(
        "registry_url = \"http://r:8081\"",
        &[
            ("KEPLOR_FORMAT__REGISTRY_RETRIES", "5"),
            ("KEPLOR_FORMAT__REGISTRY_TIMEOUT", "3s"),
            ("KEPLOR_FORMAT__REGISTRY_CONNECT_TIMEOUT", "250ms"),
            ("KEPLOR_FORMAT__REGISTRY_TOKEN", "t0k3n"),
        ],
    )
    .unwrap();
    assert_eq!(
        (r.retries, r.timeout, r.connect_timeout),
        (5, Duration::from_secs(3), Duration::from_millis(250))
    );
    assert_eq!(
        r.auth,
        RegistryAuth::Bearer {
            token: "t0k3n".into()
        }
    );
    let c = load(&format!("{CONFLUENT}schemas = {{ 7 = \"a.avsc\" }}"), &[]).unwrap();
    assert!(matches!(
        c.format,
        Format::AvroConfluent { registry: None, .. }
    ));
}

#[test]
fn registry_credentials_and_ca_file_are_read_and_masked() {
    let ca = temp_file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    let password = temp_file("password", "hunter2\n");
    let r = registry(
        &format!(
            "registry_url = \"https://r:8081\"\nregistry_ca_file = {ca:?}\n\
             registry_username = \"ann\"\nregistry_password_file = {password:?}"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(r.ca_file.as_deref(), Some(Path::new(&ca)));
    assert_eq!(
        r.auth,
        RegistryAuth::Basic {
            username: "ann".into(),
            password: "hunter2".into()
        }
    );
    let c = load(
        &format!(
            "{CONFLUENT}registry_url = \"https://r:8081\"\nregistry_username = \"ann\"\n\
             registry_password = \"s3cret\""
        ),
        &[],
    )
    .unwrap();
    let printed = c.to_toml();
    assert!(!printed.contains("s3cret"), "masked: {printed}");
    for line in [
        "registry_url = \"https://r:8081\"",
        "registry_username = \"ann\"",
        "registry_password = \"<set>\"",
        "registry_timeout = \"10s\"",
        "registry_retries = 2",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
}

#[test]
fn registry_errors_name_the_keys() {
    let url = "registry_url = \"https://r:8081\"\n";
    let cases: [(&str, &str, &str); 13] = [
        (
            "registry_url = \"r:8081\"",
            "format.registry_url",
            "http or https",
        ),
        (
            "registry_url = \"https://r\"\nregistry_ca_file = \"/nonexistent/ca.pem\"",
            "format.registry_ca_file",
            "/nonexistent/ca.pem is not a readable file",
        ),
        (
            "registry_url = \"http://r\"\nregistry_ca_file = \"/etc/hosts\"",
            "format.registry_ca_file / format.registry_url",
            "plain http",
        ),
        (
            "registry_username = \"ann\"",
            "format.registry_username / format.registry_password",
            "needs a password",
        ),
        (
            "registry_password = \"p\"",
            "format.registry_username / format.registry_password",
            "needs format.registry_username",
        ),
        (
            "registry_username = \"ann\"\nregistry_password = \"p\"\nregistry_password_file = \"f\"",
            "format.registry_password / format.registry_password_file",
            "not both",
        ),
        (
            "registry_token = \"t\"\nregistry_token_file = \"f\"",
            "format.registry_token / format.registry_token_file",
            "not both",
        ),
        (
            "registry_username = \"ann\"\nregistry_password = \"p\"\nregistry_token = \"t\"",
            "format.registry_username / format.registry_token",
            "not both",
        ),
        (
            "registry_token_file = \"/nonexistent/token\"",
            "format.registry_token_file",
            "cannot read /nonexistent/token",
        ),
        ("registry_timeout = \"0s\"", "format.registry_timeout", "longer than 0"),
        ("registry_connect_timeout = 5", "format.registry_connect_timeout", "no unit"),
        ("registry_retries = 11", "format.registry_retries", "0 to 10"),
        (
            "registry_retries = \"many\"",
            "format",
            "not a non-negative integer",
        ),
    ];
    for (extra, key, msg) in cases {
        let extra = if extra.starts_with("registry_url") {
            extra.to_string()
        } else {
            format!("{url}{extra}")
        };
        let e = load(&format!("{CONFLUENT}{extra}"), &[]).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
        assert!(e.message.contains(msg), "{extra}: {e}");
    }
    let e = load(
        &format!("{CONFLUENT}schemas = {{ 7 = \"a.avsc\" }}\nregistry_token = \"t\""),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "format.registry_url / format.registry_token", "{e}");
}

#[test]
fn batch_map_threads_is_a_thread_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(load("", &[]).unwrap().batch.map_threads, cores);
    let c = load("[batch]\nmap_threads = 3", &[]).unwrap();
    assert_eq!(c.batch.map_threads, 3);
    assert!(c.to_toml().contains("map_threads = 3"), "{}", c.to_toml());
    let c = load("", &[("KEPLOR_BATCH__MAP_THREADS", "2")]).unwrap();
    assert_eq!(c.batch.map_threads, 2);
    for bad in ["0", "1025"] {
        let e = load(&format!("[batch]\nmap_threads = {bad}"), &[]).unwrap_err();
        assert_eq!(e.key, "batch.map_threads", "{bad}: {e}");
        assert!(e.message.contains("use 1 to 1024"), "{bad}: {e}");
    }
    let e = load("", &[("KEPLOR_BATCH__MAP_THREADS", "many")]).unwrap_err();
    assert_eq!(e.key, "batch", "{e}");
    assert!(e.message.contains("non-negative integer"), "{e}");
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(load("", &[]).unwrap().log.format, LogFormat::Text);
    let c = load("[log]\nformat = \"json\"", &[]).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(
        c.to_toml().contains("[log]\nformat = \"json\""),
        "{}",
        c.to_toml()
    );
    let c = load("", &[("KEPLOR_LOG__FORMAT", "json")]).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    let e = load("[log]\nformat = \"yaml\"", &[]).unwrap_err();
    assert_eq!(e.key, "log.format");
    assert!(e.message.contains("\"text\" or \"json\""), "{e}");
    let e = load("[log]\nlevel = \"debug\"", &[]).unwrap_err();
    assert!(e.to_string().contains("level"), "{e}");
}

#[test]
fn http_max_concurrent_queries_is_a_query_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        load("", &[]).unwrap().http.max_concurrent_queries,
        2 * cores
    );
    let c = load("[http]\nmax_concurrent_queries = 3", &[]).unwrap();
    assert_eq!(c.http.max_concurrent_queries, 3);
    assert!(
        c.to_toml().contains("max_concurrent_queries = 3"),
        "{}",
        c.to_toml()
    );
    let c = load("", &[("KEPLOR_HTTP__MAX_CONCURRENT_QUERIES", "7")]).unwrap();
    assert_eq!(c.http.max_concurrent_queries, 7);
    for bad in ["0", "513"] {
        let e = load(&format!("[http]\nmax_concurrent_queries = {bad}"), &[]).unwrap_err();
        assert_eq!(e.key, "http.max_concurrent_queries", "{bad}: {e}");
        assert!(e.message.contains("use 1 to 512"), "{bad}: {e}");
    }
}

#[test]
fn http_answer_caps_have_defaults_and_name_their_keys() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.http.max_page_bytes, 16 << 20);
    assert_eq!(c.http.max_rollup_buckets, 100_000);
    let c = load(
        "[http]\nmax_page_bytes = \"1MiB\"\nmax_rollup_buckets = 500",
        &[],
    )
    .unwrap();
    assert_eq!(
        (c.http.max_page_bytes, c.http.max_rollup_buckets),
        (1 << 20, 500)
    );
    let c = load("", &[("KEPLOR_HTTP__MAX_PAGE_BYTES", "4KiB")]).unwrap();
    assert_eq!(c.http.max_page_bytes, 4096);
    for (extra, key) in [
        ("max_page_bytes = 0", "http.max_page_bytes"),
        ("max_page_bytes = \"lots\"", "http.max_page_bytes"),
        ("max_rollup_buckets = 0", "http.max_rollup_buckets"),
    ] {
        let e = load(&format!("[http]\n{extra}"), &[]).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
    }
}

/// Found writing the config fuzz target's invariants: `http.request_timeout = "0s"` was
/// accepted, and every query then answered 503 `query timed out`. The fleet's and the
/// registry's timeouts already had to be longer than 0.
#[test]
fn a_zero_request_timeout_is_refused() {
    for (text, env) in [
        ("[http]\nrequest_timeout = \"0s\"", vec![]),
        ("", vec![("KEPLOR_HTTP__REQUEST_TIMEOUT", "0ms")]),
    ] {
        let e = load(text, &env).unwrap_err();
        assert_eq!(e.key, "http.request_timeout", "{e}");
        assert!(e.message.contains("longer than 0"), "{e}");
    }
    let c = load("[http]\nrequest_timeout = \"1ms\"", &[]).unwrap();
    assert_eq!(c.http.request_timeout, Duration::from_millis(1));
}
