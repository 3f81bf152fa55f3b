//! Agent configuration: a TOML file, every key overridable from the environment, parsed into
//! raw serde structs that reject unknown keys (`raw`), then resolved into the typed,
//! validated [`Config`] with errors that name the key (and both keys when two disagree).
//!
//! Environment overrides: `KEPLOR_<SECTION>__<KEY>`, e.g. `KEPLOR_KAFKA__BROKERS`,
//! `KEPLOR_BATCH__LINGER=20ms`, `KEPLOR_KAFKA__PROPERTIES__SASL_PASSWORD=...` (property
//! names: lower case, `_` for `.`). Values are strings (typed keys parse them: `8`, `true`,
//! `20ms`); a value that starts with `[` or `{` is read as a TOML list or inline table.

mod fleet;
mod raw;
pub mod security;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raw::{Quantity, RawConfig, RawFormat};
use serde::Serialize;
use units::{fmt_duration, parse_duration, parse_size};

pub use fleet::FleetSettings;

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

/// Partition assignment strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    CooperativeSticky,
    Range,
    Roundrobin,
}

/// Where to start a partition the store and Kafka know nothing about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetReset {
    Earliest,
    Latest,
}

/// Kafka connection.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaConfig {
    pub brokers: Vec<String>,
    pub group_id: String,
    pub topics: Vec<String>,
    pub assignment: Assignment,
    pub auto_offset_reset: OffsetReset,
    /// The ownership ledger topic (`kafka.ownership_topic`), for brokers that store offset
    /// metadata but do not return it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ownership_topic: Option<String>,
    /// librdkafka properties passed through unchanged (printed with secrets masked).
    #[serde(serialize_with = "ser_properties")]
    pub properties: BTreeMap<String, String>,
    /// `[kafka.tls]` and `[kafka.sasl]`.
    #[serde(flatten)]
    pub security: security::Security,
}

impl KafkaConfig {
    /// Every librdkafka property the agent's clients get from the config: the pass-through
    /// ones and those of the security sections.
    pub fn client_properties(&self) -> BTreeMap<String, String> {
        let mut all = self.properties.clone();
        for (k, v) in self.security.properties() {
            all.insert(k.to_string(), v);
        }
        all
    }
}

/// Message encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Format {
    Json,
    Avro {
        schema_file: PathBuf,
    },
    AvroConfluent {
        schemas: BTreeMap<u32, PathBuf>,
        /// Asked for the ids not in `schemas`.
        #[serde(flatten)]
        registry: Option<RegistrySettings>,
    },
}

/// A Confluent-compatible schema registry (`format.registry_*`; printed under those keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrySettings {
    /// `http://` or `https://` base URL, without a trailing `/`.
    #[serde(rename = "registry_url")]
    pub url: String,
    /// PEM CA certificates trusted for `https` (`None`: the system roots).
    #[serde(rename = "registry_ca_file", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(flatten)]
    pub auth: RegistryAuth,
    #[serde(rename = "registry_connect_timeout", serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for an answer once connected.
    #[serde(rename = "registry_timeout", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt (connection error, timeout, HTTP 5xx or 429).
    #[serde(rename = "registry_retries")]
    pub retries: u32,
}

/// How the agent authenticates to the schema registry (printed as the keys that set it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RegistryAuth {
    None,
    /// HTTP basic auth (Confluent Cloud: the API key and secret).
    Basic {
        #[serde(rename = "registry_username")]
        username: String,
        #[serde(rename = "registry_password", serialize_with = "ser_masked")]
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        #[serde(rename = "registry_token", serialize_with = "ser_masked")]
        token: String,
    },
}

/// Unit of a timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TsUnit {
    Ns,
    Us,
    Ms,
    S,
    Rfc3339,
}

/// Where an event's timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum TsSource {
    /// The Kafka message timestamp.
    Kafka,
    Field {
        path: String,
        unit: TsUnit,
    },
}

/// Where an event's id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum IdSource {
    /// `topic/partition/offset`: unique and stable across replays.
    Offset,
    Field {
        path: String,
    },
}

/// One dim: name, where to read it, indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DimMapping {
    pub name: String,
    pub path: String,
    pub bloom: bool,
    pub rollup: bool,
}

/// One counter or label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnMapping {
    pub name: String,
    pub path: String,
}

/// The runtime schema and how each column is read from a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaMapping {
    pub id: u8,
    pub dims: Vec<DimMapping>,
    pub counters: Vec<ColumnMapping>,
    pub labels: Vec<ColumnMapping>,
    pub ts: TsSource,
    pub event_id: IdSource,
    pub metric: Option<String>,
    pub latency_ms: Option<String>,
    pub latency_detail_ms: Option<String>,
    pub status: Option<String>,
    pub flags: Option<String>,
}

/// Storage settings.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSettings {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub sync_interval: u32,
    pub max_segment_events: u64,
    #[serde(serialize_with = "ser_opt_duration")]
    pub retention: Option<Duration>,
}

/// Batching of each partition's messages before an append.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: u64,
    #[serde(serialize_with = "ser_duration")]
    pub linger: Duration,
    pub max_pending_bytes: u64,
}

/// What to do with a message that fails to decode or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum ErrorPolicy {
    /// Produce it to a dead-letter topic, with headers naming the error and its origin.
    Dlq { topic: String },
    /// Count it, log it, move on.
    Skip,
    /// Stop the agent (after committing what is durable before it).
    Stop,
}

/// Errors section.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSettings {
    #[serde(flatten)]
    pub policy: ErrorPolicy,
    #[serde(serialize_with = "ser_duration")]
    pub retry_backoff: Duration,
    /// A partition with messages to read that makes no progress this long turns `/readyz`
    /// false (a batch that cannot be fetched or decoded, a registry or a disk that stays down).
    #[serde(serialize_with = "ser_duration")]
    pub stuck_after: Duration,
}

/// HTTP query endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    #[serde(serialize_with = "ser_secret")]
    pub auth_token: Option<String>,
    pub max_limit: usize,
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    pub max_query_bytes: usize,
    /// The `[fleet]` section, kept with the HTTP settings because only the HTTP API's
    /// `fleet=true` uses it (`check-config` prints it as `[http.fleet]`).
    pub fleet: Option<FleetSettings>,
}

/// The resolved configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub format: Format,
    pub schema: SchemaMapping,
    pub engine: EngineSettings,
    pub batch: BatchSettings,
    pub errors: ErrorSettings,
    pub http: HttpSettings,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
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
/// Properties whose values are secrets (passwords, keys, tokens) are masked when printed.
fn ser_properties<S: serde::Serializer>(
    v: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, x) in v {
        let secret = ["password", "secret", "token", "key", "credential", "jaas"]
            .iter()
            .any(|w| k.contains(w));
        m.serialize_entry(k, if secret { "<set>" } else { x.as_str() })?;
    }
    m.end()
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
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, env, base)
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
        apply_env(&mut table, env)?;
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
                other => {
                    return Err(err(
                        other,
                        "unknown section: use kafka, format, schema, engine, batch, errors, http, fleet or shutdown",
                    ))
                }
            }
        }
        resolve(raw, base)
    }

    /// The resolved configuration as TOML (secrets masked), for `check-config`.
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
        c
    }
}

/// Applies `KEPLOR_A__B__C=value` to `table.a.b.c`.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("KEPLOR_") else {
            continue;
        };
        if rest == "CONFIG" || rest == "LOG" || rest == "TOKEN" {
            continue; // read by the CLI
        }
        let parts: Vec<&str> = rest.split("__").collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(err(
                name.clone(),
                "environment overrides are named KEPLOR_<SECTION>__<KEY>, e.g. KEPLOR_KAFKA__BROKERS",
            ));
        }
        let keys: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // librdkafka property names use dots.
                if i == 2 && parts[0] == "KAFKA" && parts[1] == "PROPERTIES" {
                    p.to_ascii_lowercase().replace('_', ".")
                } else {
                    p.to_ascii_lowercase()
                }
            })
            .collect();
        // A string stays a string (a password of `1e5` or `0x1F` is not a number; typed keys
        // parse their strings themselves); only a list or an inline table is read as TOML.
        let trimmed = value.trim_start();
        let structured = trimmed.starts_with('[') || trimmed.starts_with('{');
        let parsed = structured
            .then(|| toml::from_str::<toml::Table>(&format!("v = {value}")).ok())
            .flatten()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let mut cur = &mut *table;
        for k in &keys[..keys.len() - 1] {
            let entry = cur
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(err(
                        keys.join("."),
                        format!("{name} sets a key inside `{k}`, which is not a table"),
                    ))
                }
            };
        }
        cur.insert(keys[keys.len() - 1].clone(), parsed);
    }
    Ok(())
}

/// The subscriptions that are patterns: librdkafka reads a topic that starts with `^` as a
/// regular expression over topic names (new matching topics are picked up as they appear).
fn topic_patterns(topics: &[String]) -> Result<Vec<regex_lite::Regex>, ConfigError> {
    topics
        .iter()
        .filter(|t| t.starts_with('^'))
        .map(|t| {
            regex_lite::Regex::new(t)
                .map_err(|e| err("kafka.topics", format!("{t:?} is not a valid pattern: {e}")))
        })
        .collect()
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

fn size(key: &str, q: Option<Quantity>, default: u64) -> Result<u64, ConfigError> {
    match q {
        None => Ok(default),
        Some(Quantity::Number(n)) => Ok(n),
        Some(Quantity::Text(t)) => parse_size(&t).map_err(|m| err(key, m)),
    }
}

/// Resolves `[format]`.
fn resolve_format(f: RawFormat, path_of: &dyn Fn(&str) -> PathBuf) -> Result<Format, ConfigError> {
    match f.kind.as_deref().unwrap_or("json") {
        "json" => Ok(Format::Json),
        "avro" => Ok(Format::Avro {
            schema_file: path_of(f.schema_file.as_deref().ok_or_else(|| {
                err(
                    "format.schema_file",
                    "format.kind = \"avro\" needs the writer schema (.avsc)",
                )
            })?),
        }),
        "avro-confluent" => {
            let mut schemas = BTreeMap::new();
            for (id, file) in f.schemas.clone().unwrap_or_default() {
                let n: u32 = id.parse().map_err(|_| {
                    err(
                        format!("format.schemas.{id}"),
                        "keys are schema ids (numbers)",
                    )
                })?;
                schemas.insert(n, path_of(&file));
            }
            let registry = resolve_registry(f, path_of)?;
            if schemas.is_empty() && registry.is_none() {
                return Err(err(
                    "format.schemas",
                    "format.kind = \"avro-confluent\" needs schema files keyed by id, or format.registry_url",
                ));
            }
            Ok(Format::AvroConfluent { schemas, registry })
        }
        other => Err(err(
            "format.kind",
            format!("{other:?}: use json, avro or avro-confluent"),
        )),
    }
}

/// The `format.registry_*` keys; `None` without `format.registry_url`.
fn resolve_registry(
    f: RawFormat,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<RegistrySettings>, ConfigError> {
    let Some(raw_url) = f.registry_url else {
        let set = [
            ("format.registry_ca_file", f.registry_ca_file.is_some()),
            ("format.registry_username", f.registry_username.is_some()),
            ("format.registry_password", f.registry_password.is_some()),
            (
                "format.registry_password_file",
                f.registry_password_file.is_some(),
            ),
            ("format.registry_token", f.registry_token.is_some()),
            (
                "format.registry_token_file",
                f.registry_token_file.is_some(),
            ),
            (
                "format.registry_connect_timeout",
                f.registry_connect_timeout.is_some(),
            ),
            ("format.registry_timeout", f.registry_timeout.is_some()),
            ("format.registry_retries", f.registry_retries.is_some()),
        ];
        return match set.iter().find(|(_, is_set)| *is_set) {
            Some((key, _)) => Err(err(
                format!("format.registry_url / {key}"),
                format!("{key} is set but format.registry_url is not: give the registry's URL"),
            )),
            None => Ok(None),
        };
    };
    let url = registry_url(&raw_url)?;
    let ca_file = match f.registry_ca_file {
        None => None,
        Some(_) if url.starts_with("http://") => {
            return Err(err(
                "format.registry_ca_file / format.registry_url",
                format!("a CA file is for an https registry, but {url} is plain http"),
            ))
        }
        Some(file) => {
            let p = path_of(&file);
            if !p.is_file() {
                return Err(err(
                    "format.registry_ca_file",
                    format!("{} is not a readable file", p.display()),
                ));
            }
            Some(p)
        }
    };
    let password = secret_of(
        "format.registry_password",
        f.registry_password,
        f.registry_password_file,
        path_of,
    )?;
    let token = secret_of(
        "format.registry_token",
        f.registry_token,
        f.registry_token_file,
        path_of,
    )?;
    let auth = registry_auth(f.registry_username, password, token)?;
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            return Err(err(key, "must be longer than 0"));
        }
        Ok(d)
    };
    let connect_timeout = positive(
        "format.registry_connect_timeout",
        duration(
            "format.registry_connect_timeout",
            f.registry_connect_timeout,
            Duration::from_secs(5),
        )?,
    )?;
    let timeout = positive(
        "format.registry_timeout",
        duration(
            "format.registry_timeout",
            f.registry_timeout,
            Duration::from_secs(10),
        )?,
    )?;
    let retries = match f.registry_retries {
        None => 2,
        Some(n @ 0..=10) => n as u32,
        Some(n) => {
            return Err(err(
                "format.registry_retries",
                format!("{n} retries: use 0 to 10 (the wait doubles after each)"),
            ))
        }
    };
    Ok(Some(RegistrySettings {
        url,
        ca_file,
        auth,
        connect_timeout,
        timeout,
        retries,
    }))
}

/// `http(s)://host[:port][/path]`, trailing `/` dropped.
fn registry_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(url.to_string()),
        _ => Err(err(
            "format.registry_url",
            format!("{raw:?} is not a URL like \"https://schema-registry:8081\" (http or https)"),
        )),
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

/// Basic auth (username and password) or a bearer token, not both.
fn registry_auth(
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> Result<RegistryAuth, ConfigError> {
    match (username.filter(|u| !u.is_empty()), password, token) {
        (None, None, None) => Ok(RegistryAuth::None),
        (Some(username), Some(password), None) => Ok(RegistryAuth::Basic { username, password }),
        (None, None, Some(token)) => Ok(RegistryAuth::Bearer { token }),
        (Some(_), None, None) => Err(err(
            "format.registry_username / format.registry_password",
            "basic auth needs a password: set format.registry_password or format.registry_password_file",
        )),
        (None, Some(_), None) => Err(err(
            "format.registry_username / format.registry_password",
            "a registry password needs format.registry_username",
        )),
        (_, _, Some(_)) => Err(err(
            "format.registry_username / format.registry_token",
            "choose basic auth (username and password) or a bearer token, not both",
        )),
    }
}

fn resolve(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let path_of = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_relative() {
            base.join(p)
        } else {
            p
        }
    };

    // kafka
    let k = raw.kafka.unwrap_or_default();
    let brokers: Vec<String> = match k.brokers {
        None => {
            return Err(err(
                "kafka.brokers",
                "required: the bootstrap servers, e.g. \"127.0.0.1:9092\"",
            ))
        }
        Some(toml::Value::String(s)) => s
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect(),
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err("kafka.brokers", "list entries must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(err(
                "kafka.brokers",
                "a string \"host:port,host:port\" or a list of them",
            ))
        }
    };
    if brokers.is_empty() {
        return Err(err("kafka.brokers", "no broker given"));
    }
    let group_id = k.group_id.unwrap_or_else(|| "keplor-agent".to_string());
    let topics = k.topics.unwrap_or_default();
    if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
        return Err(err(
            "kafka.topics",
            "list the topics to consume, e.g. [\"llm-calls\"]",
        ));
    }
    topic_patterns(&topics)?;
    let assignment = match k
        .assignment_strategy
        .as_deref()
        .unwrap_or("cooperative-sticky")
    {
        "cooperative-sticky" => Assignment::CooperativeSticky,
        "range" => Assignment::Range,
        "roundrobin" => Assignment::Roundrobin,
        other => {
            return Err(err(
                "kafka.assignment_strategy",
                format!("{other:?}: use cooperative-sticky, range or roundrobin"),
            ))
        }
    };
    let auto_offset_reset = match k.auto_offset_reset.as_deref().unwrap_or("earliest") {
        "earliest" => OffsetReset::Earliest,
        "latest" => OffsetReset::Latest,
        other => {
            return Err(err(
                "kafka.auto_offset_reset",
                format!("{other:?}: use earliest or latest"),
            ))
        }
    };
    let mut properties = BTreeMap::new();
    for (key, v) in k.properties.unwrap_or_default() {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(err(
                    format!("kafka.properties.{key}"),
                    "a string, number or boolean",
                ))
            }
        };
        const OWNED: [&str; 8] = [
            "enable.partition.eof",
            "statistics.interval.ms",
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "partition.assignment.strategy",
            "auto.offset.reset",
        ];
        if OWNED.contains(&key.as_str()) {
            return Err(err(
                format!("kafka.properties.{key}"),
                "set by the agent (it owns offsets and assignment); use the kafka section's own keys",
            ));
        }
        if (k.tls.is_some() || k.sasl.is_some())
            && security::SECURITY_PROPERTIES.contains(&key.as_str())
        {
            return Err(err(
                format!("kafka.properties.{key}"),
                "set by [kafka.tls] / [kafka.sasl]; configure it there (or drop those sections)",
            ));
        }
        properties.insert(key, s);
    }
    let ownership_topic = k.ownership_topic.filter(|t| !t.trim().is_empty());
    if let Some(t) = &ownership_topic {
        if topics.contains(t) || topic_patterns(&topics)?.iter().any(|re| re.is_match(t)) {
            return Err(err(
                "kafka.ownership_topic",
                format!("{t:?} is also consumed (kafka.topics): use a topic of its own"),
            ));
        }
    }
    let security = security::Security {
        tls: security::resolve_tls(k.tls, &path_of)?,
        sasl: security::resolve_sasl(k.sasl, &path_of)?,
    };

    // format
    let format = resolve_format(raw.format.unwrap_or_default(), &path_of)?;

    // schema
    let s = raw
        .schema
        .ok_or_else(|| err("schema", "required: the dims, counters and labels to store"))?;
    let id = s.id.ok_or_else(|| {
        err(
            "schema.id",
            "required: a schema id 0..=255 recorded in the data files",
        )
    })?;
    let blooms: Vec<&str> = s
        .dims
        .iter()
        .filter(|d| d.bloom)
        .map(|d| d.name.as_str())
        .collect();
    if blooms.len() > 1 {
        return Err(err(
            "schema.dims",
            format!(
                "dims `{}` and `{}` are both marked bloom; only one dim carries the bloom filter",
                blooms[0], blooms[1]
            ),
        ));
    }
    let ts =
        match s.ts {
            None => TsSource::Kafka,
            Some(t) => match t.source.as_deref().unwrap_or(if t.path.is_some() {
                "field"
            } else {
                "kafka"
            }) {
                "kafka" => TsSource::Kafka,
                "field" => TsSource::Field {
                    path: t.path.ok_or_else(|| {
                        err(
                            "schema.ts.path",
                            "schema.ts.source = \"field\" needs the field's path",
                        )
                    })?,
                    unit: match t.unit.as_deref().unwrap_or("ms") {
                        "ns" => TsUnit::Ns,
                        "us" => TsUnit::Us,
                        "ms" => TsUnit::Ms,
                        "s" => TsUnit::S,
                        "rfc3339" => TsUnit::Rfc3339,
                        other => {
                            return Err(err(
                                "schema.ts.unit",
                                format!("{other:?}: use ns, us, ms, s or rfc3339"),
                            ))
                        }
                    },
                },
                other => {
                    return Err(err(
                        "schema.ts.source",
                        format!("{other:?}: use field or kafka"),
                    ))
                }
            },
        };
    let event_id =
        match s.event_id {
            None => IdSource::Offset,
            Some(i) => match i.source.as_deref().unwrap_or(if i.path.is_some() {
                "field"
            } else {
                "offset"
            }) {
                "offset" => IdSource::Offset,
                "field" => IdSource::Field {
                    path: i.path.ok_or_else(|| {
                        err(
                            "schema.event_id.path",
                            "source = \"field\" needs the field's path",
                        )
                    })?,
                },
                other => {
                    return Err(err(
                        "schema.event_id.source",
                        format!("{other:?}: use offset or field"),
                    ))
                }
            },
        };
    let schema = SchemaMapping {
        id,
        dims: s
            .dims
            .into_iter()
            .map(|d| DimMapping {
                name: d.name,
                path: d.path,
                bloom: d.bloom,
                rollup: d.rollup,
            })
            .collect(),
        counters: s
            .counters
            .into_iter()
            .map(|c| ColumnMapping {
                name: c.name,
                path: c.path,
            })
            .collect(),
        labels: s
            .labels
            .into_iter()
            .map(|c| ColumnMapping {
                name: c.name,
                path: c.path,
            })
            .collect(),
        ts,
        event_id,
        metric: s.metric,
        latency_ms: s.latency_ms,
        latency_detail_ms: s.latency_detail_ms,
        status: s.status,
        flags: s.flags,
    };
    let ts_path = match &schema.ts {
        TsSource::Field { path, .. } => Some(path),
        TsSource::Kafka => None,
    };
    let id_path = match &schema.event_id {
        IdSource::Field { path } => Some(path),
        IdSource::Offset => None,
    };
    let fixed = [
        ("metric", schema.metric.as_ref()),
        ("latency_ms", schema.latency_ms.as_ref()),
        ("latency_detail_ms", schema.latency_detail_ms.as_ref()),
        ("status", schema.status.as_ref()),
        ("flags", schema.flags.as_ref()),
        ("ts.path", ts_path),
        ("event_id.path", id_path),
    ];
    for (kind, p) in schema
        .dims
        .iter()
        .map(|d| ("dims", &d.path))
        .chain(schema.counters.iter().map(|c| ("counters", &c.path)))
        .chain(schema.labels.iter().map(|c| ("labels", &c.path)))
        .chain(fixed.into_iter().filter_map(|(k, p)| p.map(|p| (k, p))))
    {
        if let Some(rest) = p.strip_prefix("$kafka.") {
            crate::mapping::check_kafka_path(rest).map_err(|m| err(format!("schema.{kind}"), m))?;
            continue;
        }
        if matches!(format, Format::Json) && !p.is_empty() && !p.starts_with('/') {
            return Err(err(
                format!("schema.{kind}"),
                format!(
                    "{p:?} is not a JSON pointer: JSON paths start with '/', e.g. \"/user/id\""
                ),
            ));
        }
    }

    // engine
    let e = raw.engine.unwrap_or_default();
    let engine = EngineSettings {
        data_dir: path_of(e.data_dir.as_deref().unwrap_or("keplor-data")),
        shards: e.shards.unwrap_or(4) as usize,
        sync_interval: u32::try_from(e.sync_interval.unwrap_or(u32::MAX as u64))
            .map_err(|_| err("engine.sync_interval", "at most 4294967295"))?,
        max_segment_events: e.max_segment_events.unwrap_or(262_144),
        retention: match e.retention {
            None => None,
            Some(Quantity::Text(t)) if t == "none" => None,
            q => Some(duration("engine.retention", q, Duration::ZERO)?),
        },
    };
    if engine.shards == 0 || engine.shards > keplordb::MAX_SHARDS {
        return Err(err(
            "engine.shards",
            format!(
                "{} is out of range 1..={}",
                engine.shards,
                keplordb::MAX_SHARDS
            ),
        ));
    }

    // batch
    let b = raw.batch.unwrap_or_default();
    let batch = BatchSettings {
        max_events: b.max_events.unwrap_or(5_000) as usize,
        max_bytes: size("batch.max_bytes", b.max_bytes, 4 << 20)?,
        linger: duration("batch.linger", b.linger, Duration::from_millis(50))?,
        max_pending_bytes: size("batch.max_pending_bytes", b.max_pending_bytes, 256 << 20)?,
    };
    if batch.max_events == 0 {
        return Err(err("batch.max_events", "must be at least 1"));
    }
    if batch.max_pending_bytes < batch.max_bytes {
        return Err(err(
            "batch.max_pending_bytes",
            format!(
                "batch.max_pending_bytes ({}) is smaller than batch.max_bytes ({}): one batch would never fit",
                batch.max_pending_bytes, batch.max_bytes
            ),
        ));
    }

    // errors
    let r = raw.errors.unwrap_or_default();
    let policy = match r.policy.as_deref().unwrap_or("skip") {
        "dlq" => ErrorPolicy::Dlq {
            topic: r.dlq_topic.clone().ok_or_else(|| {
                err("errors.dlq_topic", "errors.policy = \"dlq\" needs errors.dlq_topic, the topic poison messages go to")
            })?,
        },
        "skip" => ErrorPolicy::Skip,
        "stop" => ErrorPolicy::Stop,
        other => return Err(err("errors.policy", format!("{other:?}: use dlq, skip or stop"))),
    };
    if let ErrorPolicy::Dlq { topic } = &policy {
        let matched = topic_patterns(&topics)?.iter().any(|re| re.is_match(topic));
        if topics.contains(topic) || matched {
            return Err(err(
                "errors.dlq_topic",
                format!("errors.dlq_topic ({topic:?}) is also in kafka.topics: poison messages would be consumed again"),
            ));
        }
    }
    if r.dlq_topic.is_some() && !matches!(policy, ErrorPolicy::Dlq { .. }) {
        return Err(err(
            "errors.dlq_topic",
            "set, but errors.policy is not \"dlq\"",
        ));
    }
    let errors = ErrorSettings {
        policy,
        retry_backoff: duration(
            "errors.retry_backoff",
            r.retry_backoff,
            Duration::from_secs(1),
        )?,
        stuck_after: duration("errors.stuck_after", r.stuck_after, Duration::from_secs(60))?,
    };

    // http
    let h = raw.http.unwrap_or_default();
    let listen = h.listen.as_deref().unwrap_or("127.0.0.1:8686");
    let auth_token = h.auth_token.filter(|t| !t.is_empty());
    let http = HttpSettings {
        enabled: h.enabled.unwrap_or(true),
        listen: listen.parse().map_err(|_| {
            err(
                "http.listen",
                format!("{listen:?} is not an address like \"127.0.0.1:8686\""),
            )
        })?,
        fleet: fleet::resolve(raw.fleet, auth_token.as_deref(), path_of)?,
        auth_token,
        max_limit: h.max_limit.unwrap_or(1000) as usize,
        request_timeout: duration(
            "http.request_timeout",
            h.request_timeout,
            Duration::from_secs(10),
        )?,
        max_query_bytes: size("http.max_query_bytes", h.max_query_bytes, 8 * 1024)? as usize,
    };
    if http.max_limit == 0 {
        return Err(err("http.max_limit", "must be at least 1"));
    }

    let shutdown_grace = duration(
        "shutdown.grace_period",
        raw.shutdown.unwrap_or_default().grace_period,
        Duration::from_secs(30),
    )?;

    let config = Config {
        kafka: KafkaConfig {
            brokers,
            group_id,
            topics,
            assignment,
            auto_offset_reset,
            ownership_topic,
            properties,
            security,
        },
        format,
        schema,
        engine,
        batch,
        errors,
        http,
        shutdown_grace,
    };
    // The engine checks names, caps and index references; surface its message under our key.
    config.engine_config().validate().map_err(|e| {
        let key = match &e {
            keplordb::DbError::InvalidConfig { field, .. } => match *field {
                "wal_sync_every_events" => "engine.sync_interval",
                "wal_max_events" => "engine.max_segment_events",
                "wal_shard_count" => "engine.shards",
                "bloom_dim" | "rollup_dims" | "dim_names" | "counter_names" | "label_names" => {
                    "schema.dims"
                }
                _ => "engine",
            },
            _ => "schema",
        };
        err(key, e.to_string())
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests;
