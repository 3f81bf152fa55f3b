//! The `[kafka]` section: brokers, group, topics (names or `^` patterns), assignment, where a
//! new partition starts, the ownership ledger topic, librdkafka pass-through properties, and
//! `[kafka.tls]` / `[kafka.sasl]` (`security.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::raw::RawKafka;
use super::{err, security, ConfigError};

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
    #[serde(rename = "assignment_strategy")]
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

/// Resolves `[kafka]`.
pub(super) fn resolve(
    k: RawKafka,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<KafkaConfig, ConfigError> {
    let brokers = brokers(k.brokers)?;
    let group_id = k.group_id.unwrap_or_else(|| "keplor-agent".to_string());
    let topics = topics(k.topics)?;
    let assignment = assignment(k.assignment_strategy.as_deref())?;
    let auto_offset_reset = offset_reset(k.auto_offset_reset.as_deref())?;
    let secured = k.tls.is_some() || k.sasl.is_some();
    let properties = properties(k.properties.unwrap_or_default(), secured)?;
    let ownership_topic = ownership_topic(k.ownership_topic, &topics)?;
    let security = security::Security {
        tls: security::resolve_tls(k.tls, path_of)?,
        sasl: security::resolve_sasl(k.sasl, path_of)?,
    };
    Ok(KafkaConfig {
        brokers,
        group_id,
        topics,
        assignment,
        auto_offset_reset,
        ownership_topic,
        properties,
        security,
    })
}

/// `kafka.brokers`: a `"host:port,host:port"` string or a list; at least one.
fn brokers(value: Option<toml::Value>) -> Result<Vec<String>, ConfigError> {
    let brokers: Vec<String> = match value {
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
    Ok(brokers)
}

/// `kafka.topics`: required, no blank entry, valid patterns.
fn topics(topics: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let topics = topics.unwrap_or_default();
    if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
        return Err(err(
            "kafka.topics",
            "list the topics to consume, e.g. [\"llm-calls\"]",
        ));
    }
    topic_patterns(&topics)?;
    Ok(topics)
}

/// `kafka.assignment_strategy`.
fn assignment(strategy: Option<&str>) -> Result<Assignment, ConfigError> {
    match strategy.unwrap_or("cooperative-sticky") {
        "cooperative-sticky" => Ok(Assignment::CooperativeSticky),
        "range" => Ok(Assignment::Range),
        "roundrobin" => Ok(Assignment::Roundrobin),
        other => Err(err(
            "kafka.assignment_strategy",
            format!("{other:?}: use cooperative-sticky, range or roundrobin"),
        )),
    }
}

/// `kafka.auto_offset_reset`.
fn offset_reset(reset: Option<&str>) -> Result<OffsetReset, ConfigError> {
    match reset.unwrap_or("earliest") {
        "earliest" => Ok(OffsetReset::Earliest),
        "latest" => Ok(OffsetReset::Latest),
        other => Err(err(
            "kafka.auto_offset_reset",
            format!("{other:?}: use earliest or latest"),
        )),
    }
}

/// librdkafka properties the agent sets itself: refused in `kafka.properties`.
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

/// `kafka.properties`: scalars as text; none the agent owns, nor (with `[kafka.tls]` or
/// `[kafka.sasl]`, `secured`) one those sections set.
fn properties(
    raw: BTreeMap<String, toml::Value>,
    secured: bool,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut properties = BTreeMap::new();
    for (key, v) in raw {
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
        if OWNED.contains(&key.as_str()) {
            return Err(err(
                format!("kafka.properties.{key}"),
                "set by the agent (it owns offsets and assignment); use the kafka section's own keys",
            ));
        }
        if secured && security::SECURITY_PROPERTIES.contains(&key.as_str()) {
            return Err(err(
                format!("kafka.properties.{key}"),
                "set by [kafka.tls] / [kafka.sasl]; configure it there (or drop those sections)",
            ));
        }
        properties.insert(key, s);
    }
    Ok(properties)
}

/// `kafka.ownership_topic`: blank is none; never a consumed topic.
fn ownership_topic(
    topic: Option<String>,
    topics: &[String],
) -> Result<Option<String>, ConfigError> {
    let topic = topic.filter(|t| !t.trim().is_empty());
    if let Some(t) = &topic {
        if topics.contains(t) || topic_patterns(topics)?.iter().any(|re| re.is_match(t)) {
            return Err(err(
                "kafka.ownership_topic",
                format!("{t:?} is also consumed (kafka.topics): use a topic of its own"),
            ));
        }
    }
    Ok(topic)
}

/// The subscriptions that are patterns: librdkafka reads a topic that starts with `^` as a
/// regular expression over topic names (new matching topics are picked up as they appear).
pub(super) fn topic_patterns(topics: &[String]) -> Result<Vec<regex_lite::Regex>, ConfigError> {
    topics
        .iter()
        .filter(|t| t.starts_with('^'))
        .map(|t| {
            regex_lite::Regex::new(t)
                .map_err(|e| err("kafka.topics", format!("{t:?} is not a valid pattern: {e}")))
        })
        .collect()
}
