//! `check-config` prints the configuration as a file: the file's own sections and key names,
//! which read back as the same configuration.

use std::path::Path;

use super::*;

/// Every key of `written` (recursively through tables) is in `printed` under the same name.
fn keys_kept(written: &toml::Table, printed: &toml::Table, at: &str) -> Vec<String> {
    let mut lost = Vec::new();
    for (k, v) in written {
        let key = format!("{at}{k}");
        match (v, printed.get(k)) {
            (_, None) => lost.push(key),
            (toml::Value::Table(w), Some(toml::Value::Table(p))) => {
                lost.extend(keys_kept(w, p, &format!("{key}.")))
            }
            _ => {}
        }
    }
    lost
}

#[test]
fn every_example_config_prints_as_a_file_that_reads_back_the_same() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let elsewhere = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension() != Some("toml".as_ref()) {
            continue;
        }
        let c = Config::load(&path, []).unwrap();
        let printed = c.to_toml();
        // Read back from another directory: the printed paths are absolute.
        let copy = elsewhere.path().join("printed.toml");
        std::fs::write(&copy, &printed).unwrap();
        let back = Config::load(&copy, []).unwrap_or_else(|e| {
            panic!(
                "{}: the printout does not load: {e}\n{printed}",
                path.display()
            )
        });
        assert_eq!(format!("{back:?}"), format!("{c:?}"), "{}", path.display());
        assert_eq!(back.to_toml(), printed, "{}", path.display());
        let written: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let lost = keys_kept(&written, &printed.parse().unwrap(), "");
        assert!(
            lost.is_empty(),
            "{}: keys printed under another name or not at all: {lost:?}\n{printed}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 3, "config/*.toml: {checked} files");
}

/// The keys that resolve under another name (`assignment_strategy`, `dlq_topic`, `[fleet]`,
/// `[shutdown] grace_period`, the SASL `oauth_*` keys, secrets) print as they are written.
/// Secrets print as `"<set>"`: written as `"<set>"` here, the round trip is exact.
#[test]
fn renamed_keys_and_secrets_print_as_written() {
    let text = r#"
[kafka]
brokers = ["b1:9092"]
group_id = "g"
topics = ["t"]
assignment_strategy = "range"
auto_offset_reset = "latest"
[kafka.sasl]
mechanism = "OAUTHBEARER"
oauth_token_endpoint = "https://idp/token"
oauth_client_id = "agent"
oauth_client_secret = "<set>"
oauth_scope = "kafka"
[format]
kind = "avro-confluent"
registry_url = "https://registry:8081"
registry_username = "u"
registry_password = "<set>"
[schema]
id = 4
dims = [{ name = "route", path = "route" }]
[engine]
data_dir = "/var/lib/keplor"
retention = "7d"
[errors]
policy = "dlq"
dlq_topic = "t.dlq"
[http]
listen = "0.0.0.0:8686"
auth_token = "<set>"
[fleet]
endpoints_dns = "keplor-agent.obs.svc:8686"
expected_members = 3
[shutdown]
grace_period = "45s"
[log]
format = "json"
"#;
    let c = Config::from_toml(text, [], Path::new("/etc/keplor")).unwrap();
    let printed = c.to_toml();
    let back = Config::from_toml(&printed, [], Path::new("/elsewhere"))
        .unwrap_or_else(|e| panic!("the printout does not load: {e}\n{printed}"));
    assert_eq!(format!("{back:?}"), format!("{c:?}"));
    let lost = keys_kept(&text.parse().unwrap(), &printed.parse().unwrap(), "");
    assert!(lost.is_empty(), "{lost:?}\n{printed}");
    for line in [
        "assignment_strategy = \"range\"",
        "dlq_topic = \"t.dlq\"",
        "\n[fleet]\n",
        "\n[shutdown]\ngrace_period = \"45s\"\n",
        "oauth_client_secret = \"<set>\"",
        "registry_password = \"<set>\"",
        "auth_token = \"<set>\"",
    ] {
        assert!(printed.contains(line), "{line:?} not in\n{printed}");
    }
    // A secret that is not set is not printed (`"<none>"` would read back as a token).
    let c = Config::from_toml(
        &text.replace("auth_token = \"<set>\"", ""),
        [],
        Path::new("/"),
    );
    let printed = c.unwrap().to_toml();
    assert!(
        !printed.contains("\nauth_token") && !printed.contains("<none>"),
        "{printed}"
    );
}
