//! `[archive]`: defaults, the directory it needs, and the schema columns it needs.

use std::path::Path;
use std::time::Duration;

use super::*;

const BASE: &str = r#"
[kafka]
brokers = "b1:9092"
topics = ["llm-calls"]

[engine]
data_dir = "/var/lib/keplor"
"#;

const KAFKA_LABELS: &str = r#"[{ name = "kafka_topic", path = "$kafka.topic" }, { name = "kafka_partition", path = "$kafka.partition" }, { name = "kafka_offset", path = "$kafka.offset" }]"#;

/// `BASE`, a schema with `labels`, then `extra`.
fn load(labels: &str, extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let text = format!(
        "{BASE}\n[schema]\nid = 1\ndims = [{{ name = \"user\", path = \"/user\" }}]\nlabels = {labels}\n{extra}"
    );
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml(&text, env, Path::new("/etc/keplor"))
}

#[test]
fn the_archive_is_off_by_default_and_on_with_a_directory() {
    let c = load("[]", "", &[]).unwrap();
    assert!(!c.archive.enabled);
    assert_eq!(c.archive.dir, None);
    assert!(
        c.to_toml().contains("[archive]\nenabled = false"),
        "{}",
        c.to_toml()
    );

    let c = load(KAFKA_LABELS, "[archive]\ndir = \"archive\"", &[]).unwrap();
    assert!(c.archive.enabled, "a directory enables it");
    assert_eq!(
        c.archive.dir.as_deref(),
        Some(Path::new("/etc/keplor/archive"))
    );
    assert_eq!(c.archive.row_group_rows, 128 * 1024);
    assert_eq!(c.archive.interval, Duration::from_secs(1));
    assert!(c.archive.retain_until_archived);

    let c = load(
        KAFKA_LABELS,
        "",
        &[
            ("KEPLOR_ARCHIVE__DIR", "/mnt/archive"),
            ("KEPLOR_ARCHIVE__ROW_GROUP_ROWS", "1000"),
            ("KEPLOR_ARCHIVE__INTERVAL", "250ms"),
            ("KEPLOR_ARCHIVE__RETAIN_UNTIL_ARCHIVED", "false"),
        ],
    )
    .unwrap();
    assert_eq!(c.archive.dir.as_deref(), Some(Path::new("/mnt/archive")));
    assert_eq!(c.archive.row_group_rows, 1000);
    assert_eq!(c.archive.interval, Duration::from_millis(250));
    assert!(!c.archive.retain_until_archived);
    let printed = c.to_toml();
    for line in [
        "enabled = true",
        "dir = \"/mnt/archive\"",
        "row_group_rows = 1000",
        "interval = \"250ms\"",
        "retain_until_archived = false",
    ] {
        assert!(printed.contains(line), "{line}:\n{printed}");
    }
}

#[test]
fn archive_errors_name_their_keys() {
    for (labels, extra, key, says) in [
        (
            KAFKA_LABELS,
            "[archive]\nenabled = true",
            "archive.dir",
            "needs archive.dir",
        ),
        (
            KAFKA_LABELS,
            "[archive]\ndir = \"/var/lib/keplor/pq\"",
            "archive.dir",
            "engine.data_dir",
        ),
        (
            KAFKA_LABELS,
            "[archive]\ndir = \"/var\"",
            "archive.dir",
            "overlap",
        ),
        (
            KAFKA_LABELS,
            "[archive]\ndir = \"/a\"\nrow_group_rows = 0",
            "archive.row_group_rows",
            "at least 1",
        ),
        (
            KAFKA_LABELS,
            "[archive]\ndir = \"/a\"\ninterval = \"0s\"",
            "archive.interval",
            "longer than 0",
        ),
        (
            KAFKA_LABELS,
            "[archive]\ndir = \"/a\"\nbucket = \"b\"",
            "archive",
            "unknown field",
        ),
        (
            "[]",
            "[archive]\ndir = \"/a\"",
            "schema",
            "$kafka.topic, $kafka.partition, $kafka.offset",
        ),
    ] {
        let e = load(labels, extra, &[]).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
        assert!(e.message.contains(says), "{extra}: {e}");
    }
    // The offset in a counter would wrap at 2^32.
    let e = Config::from_toml(
        &format!(
            "{BASE}\n[schema]\nid = 1\nlabels = [{{ name = \"t\", path = \"$kafka.topic\" }}]\n\
             counters = [{{ name = \"p\", path = \"$kafka.partition\" }}, {{ name = \"o\", path = \"$kafka.offset\" }}]\n\
             [archive]\ndir = \"/a\""
        ),
        [],
        Path::new("/"),
    )
    .unwrap_err();
    assert_eq!(e.key, "schema", "{e}");
    assert!(e.message.contains("in a label"), "{e}");
    // Disabled, the archive asks nothing of the schema.
    assert!(load("[]", "[archive]\ndir = \"/a\"\nenabled = false", &[]).is_ok());
}
