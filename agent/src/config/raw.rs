//! The configuration file as written: serde structs that reject unknown keys. `super::resolve`
//! turns them into the validated, typed `Config`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A duration or size as written: `"250ms"`, `"64MiB"`, or a bare number.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub kafka: Option<RawKafka>,
    pub format: Option<RawFormat>,
    pub schema: Option<RawSchema>,
    pub engine: Option<RawEngine>,
    pub batch: Option<RawBatch>,
    pub errors: Option<RawErrors>,
    pub http: Option<RawHttp>,
    pub fleet: Option<RawFleet>,
    pub shutdown: Option<RawShutdown>,
    pub log: Option<RawLog>,
    pub archive: Option<RawArchive>,
}

/// `[archive]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
    pub dir: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub row_group_rows: Option<u64>,
    pub interval: Option<Quantity>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub retain_until_archived: Option<bool>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `"text"` or `"json"`.
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `"host:port,host:port"` or a list.
    pub brokers: Option<toml::Value>,
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_list")]
    pub topics: Option<Vec<String>>,
    pub assignment_strategy: Option<String>,
    pub auto_offset_reset: Option<String>,
    /// A topic that keeps the ownership chains, for brokers that drop offset metadata.
    pub ownership_topic: Option<String>,
    /// Any librdkafka property, passed through (timeouts, fetch sizes...).
    pub properties: Option<BTreeMap<String, toml::Value>>,
    pub tls: Option<super::security::RawTls>,
    pub sasl: Option<super::security::RawSasl>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    /// `json`, `avro` or `avro-confluent`.
    pub kind: Option<String>,
    /// Avro: the writer schema (`.avsc`).
    pub schema_file: Option<String>,
    /// Avro with Confluent framing: schema files keyed by schema id.
    pub schemas: Option<BTreeMap<String, String>>,
    /// Avro with Confluent framing: a schema registry to ask for ids not in `schemas`.
    pub registry_url: Option<String>,
    /// PEM file of the CA(s) trusted for an `https` registry (default: the system roots).
    pub registry_ca_file: Option<String>,
    /// Basic auth: the user, with `registry_password` or `registry_password_file`.
    pub registry_username: Option<String>,
    pub registry_password: Option<String>,
    pub registry_password_file: Option<String>,
    /// Bearer auth: the token, inline or in a file (e.g. a mounted secret).
    pub registry_token: Option<String>,
    pub registry_token_file: Option<String>,
    pub registry_connect_timeout: Option<Quantity>,
    /// Longest wait for an answer once connected.
    pub registry_timeout: Option<Quantity>,
    /// Retries after a failed attempt (connection error, timeout, 5xx, 429).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub registry_retries: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchema {
    #[serde(default, deserialize_with = "lenient::opt_u8")]
    pub id: Option<u8>,
    #[serde(default)]
    pub dims: Vec<RawDim>,
    #[serde(default)]
    pub counters: Vec<RawColumn>,
    #[serde(default)]
    pub labels: Vec<RawColumn>,
    pub ts: Option<RawTs>,
    pub event_id: Option<RawId>,
    pub metric: Option<String>,
    pub latency_ms: Option<String>,
    pub latency_detail_ms: Option<String>,
    pub status: Option<String>,
    pub flags: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDim {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub bloom: bool,
    #[serde(default)]
    pub rollup: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTs {
    /// `field` or `kafka` (the message timestamp).
    pub source: Option<String>,
    pub path: Option<String>,
    /// `ns`, `us`, `ms`, `s` or `rfc3339`.
    pub unit: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawId {
    /// `offset` (topic/partition/offset, the default) or `field`.
    pub source: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub data_dir: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub shards: Option<u64>,
    /// Events between fsyncs within a shard (1 = every batch is fsynced on its own).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub sync_interval: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_segment_events: Option<u64>,
    pub retention: Option<Quantity>,
    pub segment_cache: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_events: Option<u64>,
    pub max_bytes: Option<Quantity>,
    pub linger: Option<Quantity>,
    /// Most bytes buffered across all partitions: above it, every partition is flushed at once.
    pub max_pending_bytes: Option<Quantity>,
    /// Threads of the mapping stage's own pool.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub map_threads: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrors {
    /// `dlq`, `skip` or `stop`.
    pub policy: Option<String>,
    pub dlq_topic: Option<String>,
    /// Wait before retrying a failed append (full disk...) or an unreachable registry.
    pub retry_backoff: Option<Quantity>,
    /// A partition behind its high watermark that makes no progress this long is stuck.
    pub stuck_after: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
    pub auth_token: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_limit: Option<u64>,
    pub request_timeout: Option<Quantity>,
    pub max_query_bytes: Option<Quantity>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_concurrent_queries: Option<u64>,
    pub max_page_bytes: Option<Quantity>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_rollup_buckets: Option<u64>,
}

/// The agents that `fleet=true` queries fan out to (every member, this agent included).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `["http://host:port", ...]`.
    pub endpoints: Option<Vec<String>>,
    /// `"host:port"`: every A/AAAA record of `host` is a member, resolved at each query.
    pub endpoints_dns: Option<String>,
    pub connect_timeout: Option<Quantity>,
    pub timeout: Option<Quantity>,
    /// Bearer token sent to the members (default: `http.auth_token`).
    pub token: Option<String>,
    /// A file holding that token (e.g. a mounted secret), read at load.
    pub token_file: Option<String>,
    /// Members there should be (an integer >= 1): fewer found makes every answer partial. Any
    /// TOML value, so that a wrong one is reported under `fleet.expected_members`.
    pub expected_members: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace_period: Option<Quantity>,
}

/// Environment overrides arrive as strings (`KEPLOR_ENGINE__SHARDS=8`): the typed scalar keys
/// accept a string that parses as their type, so no value is ever re-read as TOML.
mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar<T> {
        Typed(T),
        Text(String),
    }

    fn parse<'de, D, T>(d: D, what: &str) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + std::str::FromStr,
    {
        match Option::<Scalar<T>>::deserialize(d)? {
            None => Ok(None),
            Some(Scalar::Typed(v)) => Ok(Some(v)),
            Some(Scalar::Text(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not {what}"))),
        }
    }

    pub fn opt_u8<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        parse(d, "an integer from 0 to 255")
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        parse(d, "a non-negative integer")
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        parse(d, "true or false")
    }

    /// A list, or one string of comma-separated entries.
    pub fn opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum List {
            Many(Vec<String>),
            One(String),
        }
        Ok(Option::<List>::deserialize(d)?.map(|l| match l {
            List::Many(v) => v,
            List::One(s) => s
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        }))
    }
}
