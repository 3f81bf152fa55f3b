//! Agent configuration: a TOML file, every key overridable from the environment, parsed into
//! raw serde structs that reject unknown keys (`raw`), then resolved into the typed,
//! validated [`Config`] with errors that name the key (and both keys when two disagree).
//!
//! Environment overrides: `KEPLOR_<SECTION>__<KEY>`, e.g. `KEPLOR_KAFKA__BROKERS`,
//! `KEPLOR_BATCH__LINGER=20ms`, `KEPLOR_KAFKA__PROPERTIES__SASL_PASSWORD=...` (property
//! names: lower case, `_` for `.`). Values are strings (typed keys parse them: `8`, `true`,
//! `20ms`); a value that starts with `[` or `{` is read as a TOML list or inline table
//! (`env.rs`).
//!
//! One resolver per section, each in its own file with the section's types: `kafka.rs` (with
//! `security.rs` for `[kafka.tls]` / `[kafka.sasl]`), `format.rs` (with the schema registry),
//! `schema.rs`, `engine.rs`, `batch.rs`, `errors.rs`, `http.rs` (with `fleet.rs`); `[shutdown]`
//! is one key, resolved here; `archive.rs` for `[archive]`. `resolve` composes them in section order, so the first error
//! reported is the same whatever the split.

mod archive;
mod batch;
mod engine;
mod env;
mod errors;
mod fleet;
mod format;
mod http;
mod kafka;
mod log;
mod raw;
mod schema;
pub mod security;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raw::{Quantity, RawConfig, RawShutdown};
use serde::Serialize;
use units::{fmt_duration, parse_duration, parse_size};

pub use archive::{ArchiveSettings, KAFKA_SOURCE_PATHS};
pub use batch::BatchSettings;
pub use engine::EngineSettings;
pub use errors::{ErrorPolicy, ErrorSettings};
pub use fleet::FleetSettings;
pub use format::{Format, RegistryAuth, RegistrySettings};
pub use http::HttpSettings;
pub use kafka::{Assignment, KafkaConfig, OffsetReset};
pub use log::{LogFormat, LogSettings};
pub use schema::{ColumnMapping, DimMapping, IdSource, SchemaMapping, TsSource, TsUnit};

/// A configuration error naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `kafka.group_id`.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// The resolved configuration. It serializes as the file it could have been read from: the
/// file's sections and key names, every default filled in, secrets as `"<set>"` (see
/// [`Config::to_toml`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub format: Format,
    pub schema: SchemaMapping,
    pub engine: EngineSettings,
    pub batch: BatchSettings,
    pub errors: ErrorSettings,
    pub http: HttpSettings,
    pub shutdown_grace: Duration,
    pub log: LogSettings,
    pub archive: ArchiveSettings,
}

/// [`Config`] laid out as the file: `[fleet]` beside `[http]`, `[shutdown] grace_period`.
#[derive(Serialize)]
struct AsWritten<'a> {
    kafka: &'a KafkaConfig,
    format: &'a Format,
    schema: &'a SchemaMapping,
    engine: &'a EngineSettings,
    batch: &'a BatchSettings,
    errors: &'a ErrorSettings,
    http: &'a HttpSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<&'a FleetSettings>,
    shutdown: ShutdownAsWritten,
    log: &'a LogSettings,
    archive: &'a ArchiveSettings,
}

#[derive(Serialize)]
struct ShutdownAsWritten {
    #[serde(serialize_with = "ser_duration")]
    grace_period: Duration,
}

impl Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AsWritten {
            kafka: &self.kafka,
            format: &self.format,
            schema: &self.schema,
            engine: &self.engine,
            batch: &self.batch,
            errors: &self.errors,
            http: &self.http,
            fleet: self.http.fleet.as_ref(),
            shutdown: ShutdownAsWritten {
                grace_period: self.shutdown_grace,
            },
            log: &self.log,
            archive: &self.archive,
        }
        .serialize(s)
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_duration(*d))
}
fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&fmt_duration(*d)),
        None => s.serialize_str("none"),
    }
}
fn ser_secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_some() { "<set>" } else { "<none>" })
}
fn ser_masked<S: serde::Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<set>")
}

impl Config {
    /// Reads `path`, applies `KEPLOR_*` overrides from `env`, validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("<file>", format!("cannot read {}: {e}", path.display())))?;
        // Absolute, so that the paths resolved against it (and printed) mean the same wherever
        // the configuration is read from next.
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::path::absolute(base.unwrap_or(Path::new(".")))
            .map_err(|e| err("<file>", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, env, &base)
    }

    /// Parses TOML text; relative file paths in it resolve against `base`.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            err(
                e.span()
                    .map(|s| format!("<toml at byte {}>", s.start))
                    .unwrap_or("<toml>".into()),
                e.message().to_string(),
            )
        })?;
        env::apply_env(&mut table, env)?;
        // Each section is deserialized on its own so that an unknown key or a wrong type is
        // reported under its section's name.
        let mut raw = RawConfig::default();
        for (section, value) in table {
            let de = |e: toml::de::Error| err(section.clone(), e.message().trim().to_string());
            match section.as_str() {
                "kafka" => raw.kafka = Some(value.clone().try_into().map_err(de)?),
                "format" => raw.format = Some(value.clone().try_into().map_err(de)?),
                "schema" => raw.schema = Some(value.clone().try_into().map_err(de)?),
                "engine" => raw.engine = Some(value.clone().try_into().map_err(de)?),
                "batch" => raw.batch = Some(value.clone().try_into().map_err(de)?),
                "errors" => raw.errors = Some(value.clone().try_into().map_err(de)?),
                "http" => raw.http = Some(value.clone().try_into().map_err(de)?),
                "fleet" => raw.fleet = Some(value.clone().try_into().map_err(de)?),
                "shutdown" => raw.shutdown = Some(value.clone().try_into().map_err(de)?),
                "log" => raw.log = Some(value.clone().try_into().map_err(de)?),
                "archive" => raw.archive = Some(value.clone().try_into().map_err(de)?),
                other => {
                    return Err(err(
                        other,
                        "unknown section: use kafka, format, schema, engine, batch, errors, http, fleet, shutdown, log or archive",
                    ))
                }
            }
        }
        resolve(raw, base)
    }

    /// The resolved configuration as TOML, for `check-config`: the file's own sections and key
    /// names with every default filled in, so that it reads back as the same configuration.
    /// Secrets (`auth_token`, passwords, tokens, `kafka.properties` named like one) are printed
    /// as `"<set>"` instead; relative paths are joined to the file's directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// The engine configuration this agent opens.
    pub fn engine_config(&self) -> keplordb::EngineConfig {
        let s = &self.schema;
        let mut c = keplordb::EngineConfig::new(&self.engine.data_dir).with_columns(
            s.dims.iter().map(|d| d.name.clone()),
            s.counters.iter().map(|d| d.name.clone()),
            s.labels.iter().map(|d| d.name.clone()),
        );
        c.schema_id = s.id;
        c.bloom_dim = s.dims.iter().position(|d| d.bloom);
        c.rollup_dims = s
            .dims
            .iter()
            .enumerate()
            .filter(|(_, d)| d.rollup)
            .map(|(i, _)| i)
            .collect();
        c.wal_shard_count = self.engine.shards;
        c.wal_sync_every_events = self.engine.sync_interval;
        c.wal_max_events = self.engine.max_segment_events;
        c.segment_cache_bytes = self.engine.segment_cache;
        c
    }
}

fn duration(key: &str, q: Option<Quantity>, default: Duration) -> Result<Duration, ConfigError> {
    match q {
        None => Ok(default),
        Some(Quantity::Text(t)) => parse_duration(&t).map_err(|m| err(key, m)),
        Some(Quantity::Number(n)) => Err(err(
            key,
            format!("{n} has no unit: write \"{n}ms\" or \"{n}s\""),
        )),
    }
}

/// A duration that must be longer than zero (a timeout: zero would fail every attempt).
fn positive_duration(
    key: &str,
    q: Option<Quantity>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(key, q, default)?;
    if d.is_zero() {
        return Err(err(key, "must be longer than 0"));
    }
    Ok(d)
}

fn size(key: &str, q: Option<Quantity>, default: u64) -> Result<u64, ConfigError> {
    match q {
        None => Ok(default),
        Some(Quantity::Number(n)) => Ok(n),
        Some(Quantity::Text(t)) => parse_size(&t).map_err(|m| err(key, m)),
    }
}

/// A secret given inline (`key`) or in a file (`key_file`, newline-trimmed), not both, and
/// not empty. Shared by every section that takes a secret.
fn secret_of(
    key: &str,
    inline: Option<String>,
    file: Option<String>,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<String>, ConfigError> {
    let secret = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{key} / {key}_file"),
                "give the secret inline or in a file, not both",
            ))
        }
        (Some(s), None) => s,
        (None, Some(f)) => {
            let path = path_of(&f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        return Err(err(key, "is empty"));
    }
    Ok(Some(secret))
}

/// Builds the typed configuration, section by section; relative paths resolve against `base`.
fn resolve(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let path_of = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_relative() {
            // Without `.` components: `./data` under `/etc/keplor` is `/etc/keplor/data`.
            base.join(p)
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .collect()
        } else {
            p
        }
    };
    let kafka = kafka::resolve(raw.kafka.unwrap_or_default(), &path_of)?;
    let format = format::resolve(raw.format.unwrap_or_default(), &path_of)?;
    let schema = schema::resolve(raw.schema, &format)?;
    let engine = engine::resolve(raw.engine.unwrap_or_default(), &path_of)?;
    let batch = batch::resolve(raw.batch.unwrap_or_default())?;
    let errors = errors::resolve(raw.errors.unwrap_or_default(), &kafka.topics)?;
    let http = http::resolve(raw.http.unwrap_or_default(), raw.fleet, &path_of)?;
    let shutdown_grace = shutdown_grace(raw.shutdown.unwrap_or_default())?;
    let log = log::resolve(raw.log.unwrap_or_default())?;
    let archive = archive::resolve(raw.archive.unwrap_or_default(), &engine, &schema, &path_of)?;
    let config = Config {
        kafka,
        format,
        schema,
        engine,
        batch,
        errors,
        http,
        shutdown_grace,
        log,
        archive,
    };
    check_with_engine(&config)?;
    Ok(config)
}

/// `[shutdown]`: how long a stop may take to flush, fsync and commit.
fn shutdown_grace(s: RawShutdown) -> Result<Duration, ConfigError> {
    duration(
        "shutdown.grace_period",
        s.grace_period,
        Duration::from_secs(30),
    )
}

/// The engine checks names, caps and index references; its message is reported under our key.
fn check_with_engine(config: &Config) -> Result<(), ConfigError> {
    config.engine_config().validate().map_err(|e| {
        let key = match &e {
            keplordb::DbError::InvalidConfig { field, .. } => match *field {
                "wal_sync_every_events" => "engine.sync_interval",
                "wal_max_events" => "engine.max_segment_events",
                "segment_cache_bytes" => "engine.segment_cache",
                "wal_shard_count" => "engine.shards",
                "bloom_dim" | "rollup_dims" | "dim_names" | "counter_names" | "label_names" => {
                    "schema.dims"
                }
                _ => "engine",
            },
            _ => "schema",
        };
        err(key, e.to_string())
    })
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod printed_tests;
#[cfg(test)]
mod tests;
