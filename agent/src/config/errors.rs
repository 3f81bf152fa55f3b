//! The `[errors]` section: what happens to a message that cannot be decoded or mapped, how
//! failed appends are retried, and when a partition counts as stuck.

use std::time::Duration;

use serde::Serialize;

use super::kafka::topic_patterns;
use super::raw::RawErrors;
use super::{duration, err, ser_duration, ConfigError};

/// What to do with a message that fails to decode or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum ErrorPolicy {
    /// Produce it to a dead-letter topic, with headers naming the error and its origin.
    Dlq {
        #[serde(rename = "dlq_topic")]
        topic: String,
    },
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

/// Resolves `[errors]`; a DLQ topic must not be one of the consumed `topics`.
pub(super) fn resolve(r: RawErrors, topics: &[String]) -> Result<ErrorSettings, ConfigError> {
    let policy = policy(&r, topics)?;
    Ok(ErrorSettings {
        policy,
        retry_backoff: duration(
            "errors.retry_backoff",
            r.retry_backoff,
            Duration::from_secs(1),
        )?,
        stuck_after: duration("errors.stuck_after", r.stuck_after, Duration::from_secs(60))?,
    })
}

/// `errors.policy` with `errors.dlq_topic`.
fn policy(r: &RawErrors, topics: &[String]) -> Result<ErrorPolicy, ConfigError> {
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
        let matched = topic_patterns(topics)?.iter().any(|re| re.is_match(topic));
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
    Ok(policy)
}
