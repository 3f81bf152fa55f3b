//! The `[archive]` section: every sealed segment also written as Parquet to a directory (a
//! mounted volume, or a bucket mounted as a file system), and whether retention waits for it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::engine::EngineSettings;
use super::raw::RawArchive;
use super::schema::SchemaMapping;
use super::{err, positive_duration, ser_duration, ConfigError};

/// The Kafka source of each event, as the mapping paths that store it.
pub const KAFKA_SOURCE_PATHS: [&str; 3] = ["$kafka.topic", "$kafka.partition", "$kafka.offset"];

/// Archive settings.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSettings {
    pub enabled: bool,
    /// The archive's root; `None` only when the archive is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Most rows of one Parquet row group (a row group also ends at each UTC hour).
    pub row_group_rows: usize,
    /// How often the archiver looks for newly sealed segments.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Retention (`engine.retention`) deletes a segment only once it is archived.
    pub retain_until_archived: bool,
}

/// Resolves `[archive]`: a directory when enabled, outside the data directory, and a schema
/// that stores each event's Kafka source.
pub(super) fn resolve(
    r: RawArchive,
    engine: &EngineSettings,
    schema: &SchemaMapping,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<ArchiveSettings, ConfigError> {
    let dir = r.dir.as_deref().map(path_of);
    let archive = ArchiveSettings {
        enabled: r.enabled.unwrap_or(dir.is_some()),
        dir,
        row_group_rows: match r.row_group_rows.unwrap_or(128 * 1024) {
            0 => return Err(err("archive.row_group_rows", "must be at least 1")),
            n => usize::try_from(n).map_err(|_| err("archive.row_group_rows", "too large"))?,
        },
        interval: positive_duration("archive.interval", r.interval, Duration::from_secs(1))?,
        retain_until_archived: r.retain_until_archived.unwrap_or(true),
    };
    if !archive.enabled {
        return Ok(archive);
    }
    let Some(dir) = &archive.dir else {
        return Err(err(
            "archive.dir",
            "archive.enabled = true needs archive.dir, the directory the Parquet files go to",
        ));
    };
    if dir.starts_with(&engine.data_dir) || engine.data_dir.starts_with(dir) {
        return Err(err(
            "archive.dir",
            format!(
                "archive.dir ({}) and engine.data_dir ({}) overlap: the archive needs a directory of its own",
                dir.display(),
                engine.data_dir.display()
            ),
        ));
    }
    check_kafka_source(schema)?;
    Ok(archive)
}

/// The archive must tell where each event came from: the schema maps `$kafka.topic`,
/// `$kafka.partition` and `$kafka.offset` to columns, and the offset (up to 2^63) to a label,
/// since a counter holds 32 bits and a dim's values are interned per segment.
fn check_kafka_source(schema: &SchemaMapping) -> Result<(), ConfigError> {
    let dims = schema.dims.iter().map(|d| d.path.as_str());
    let counters = schema.counters.iter().map(|c| c.path.as_str());
    let labels: Vec<&str> = schema.labels.iter().map(|l| l.path.as_str()).collect();
    let all: Vec<&str> = dims.chain(counters).chain(labels.iter().copied()).collect();
    let missing: Vec<&str> = KAFKA_SOURCE_PATHS
        .into_iter()
        .filter(|p| !all.contains(p))
        .collect();
    if !missing.is_empty() {
        return Err(err(
            "schema",
            format!(
                "archive.enabled = true needs the Kafka source of each event in the schema, but \
                 no column reads {}: add e.g. labels {{ name = \"kafka_topic\", path = \"$kafka.topic\" }}, \
                 {{ name = \"kafka_partition\", path = \"$kafka.partition\" }} and \
                 {{ name = \"kafka_offset\", path = \"$kafka.offset\" }}",
                missing.join(", ")
            ),
        ));
    }
    if !labels.contains(&"$kafka.offset") {
        return Err(err(
            "schema",
            "archive.enabled = true needs $kafka.offset in a label: a counter holds 32 bits and \
             a dim interns its values per segment",
        ));
    }
    Ok(())
}
