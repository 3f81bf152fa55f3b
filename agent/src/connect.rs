//! `keplor-agent check-config --connect`: connects with the configuration's real settings and
//! reports what the agent would see, naming failures plainly (a bad certificate, a wrong
//! password, an unknown topic, a missing ACL) instead of librdkafka's retry loop.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::{Config, ErrorPolicy};

/// Records librdkafka's error callbacks: the reason a connection failed is reported there,
/// while the request itself only times out.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.recorded().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Recorder {}

impl Recorder {
    /// The errors recorded so far.
    fn recorded(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a connection check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Brokers the cluster metadata lists (`id host:port`).
    pub brokers: Vec<String>,
    /// Configured topics found, with their partition count.
    pub topics: Vec<(String, usize)>,
    /// Whether the consumer group has committed offsets for these topics, when known.
    pub group_exists: Option<bool>,
    /// Whether the DLQ topic exists (when the policy is `dlq`).
    pub dlq_exists: Option<bool>,
    /// Problems, each a plain sentence.
    pub problems: Vec<String>,
}

impl Report {
    /// True when nothing stops the agent from consuming.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as printed by the CLI.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "brokers reached: {}", self.brokers.len());
        for b in &self.brokers {
            let _ = writeln!(s, "  {b}");
        }
        for (t, n) in &self.topics {
            let _ = writeln!(s, "topic {t}: {n} partitions");
        }
        match self.group_exists {
            Some(true) => s.push_str("consumer group: has committed offsets\n"),
            Some(false) => s.push_str("consumer group: no committed offsets yet (partitions start per kafka.auto_offset_reset)\n"),
            None => {}
        }
        match self.dlq_exists {
            Some(true) => s.push_str("DLQ topic: exists\n"),
            Some(false) => s.push_str("DLQ topic: missing\n"),
            None => {}
        }
        for p in &self.problems {
            let _ = writeln!(s, "problem: {p}");
        }
        s
    }
}

/// Names the cause of librdkafka's connection errors.
fn explain(errors: &[String]) -> Option<String> {
    let all = errors.join("\n");
    let lower = all.to_ascii_lowercase();
    let why = if lower.contains("certificate required") {
        "TLS: the broker requires a client certificate (kafka.tls.cert_file and key_file)"
    } else if lower.contains("certificate verify failed") || lower.contains("certificate") {
        "TLS: the broker's certificate was refused (wrong CA, expired, or a hostname it does not name; see kafka.tls)"
    } else if lower.contains("handshake") {
        "TLS handshake failed (is the broker's port TLS? see kafka.tls)"
    } else if lower.contains("authentication") || lower.contains("sasl") {
        "SASL authentication failed: wrong username or password, or a mechanism the broker does not enable (see kafka.sasl)"
    } else if lower.contains("connection refused") || lower.contains("connect to") {
        "no broker accepted a connection (check kafka.brokers)"
    } else if lower.contains("disconnected") || lower.contains("brokers are down") {
        "the broker closed the connection before it answered: a TLS or SASL listener reached without kafka.tls / kafka.sasl, or a SASL mechanism it does not offer"
    } else {
        return errors.last().cloned();
    };
    Some(format!("{why}; librdkafka said: {}", errors.last()?))
}

/// Connects with `config`'s Kafka settings and checks brokers, topics, group and DLQ topic.
pub fn check(config: &Config, timeout: Duration) -> Report {
    let mut report = Report::default();
    let consumer = match consumer(config) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(format!(
                "the client cannot be created with these settings: {e}"
            ));
            return report;
        }
    };
    let metadata = match consumer.fetch_metadata(None, timeout) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(connection_problem(&consumer, &e));
            return report;
        }
    };
    for b in metadata.brokers() {
        report
            .brokers
            .push(format!("{} {}:{}", b.id(), b.host(), b.port()));
    }
    check_topics(config, &metadata, &mut report);
    check_dlq(config, &metadata, &mut report);
    check_group(&consumer, config, &mut report, timeout);
    report
}

/// A consumer with the configuration's client properties, brokers and group.
fn consumer(config: &Config) -> Result<BaseConsumer<Recorder>, KafkaError> {
    let mut cc = ClientConfig::new();
    for (k, v) in config.kafka.client_properties() {
        cc.set(k, v);
    }
    cc.set("bootstrap.servers", config.kafka.brokers.join(","))
        .set("group.id", &config.kafka.group_id);
    cc.create_with_context(Recorder::default())
}

/// Why the cluster metadata could not be fetched (`e`). The reason arrives as error events,
/// delivered while polling: they are waited for (one second at most) and explained.
fn connection_problem(consumer: &BaseConsumer<Recorder>, e: &KafkaError) -> String {
    for _ in 0..20 {
        let _ = consumer.poll(Duration::from_millis(50));
        if !consumer.context().recorded().is_empty() {
            break;
        }
    }
    let errors = consumer.context().recorded().clone();
    explain(&errors).unwrap_or_else(|| format!("cluster metadata: {e}"))
}

/// Each configured topic: its partition count when found, or a problem.
fn check_topics(config: &Config, metadata: &Metadata, report: &mut Report) {
    for want in &config.kafka.topics {
        match metadata.topics().iter().find(|t| t.name() == want) {
            Some(t) if t.error().is_none() => {
                report.topics.push((want.clone(), t.partitions().len()));
            }
            Some(t) => report.problems.push(topic_problem(want, t.error())),
            None => report
                .problems
                .push(format!("topic {want}: does not exist (kafka.topics)")),
        }
    }
}

/// Whether the DLQ topic exists, when the error policy is `dlq`.
fn check_dlq(config: &Config, metadata: &Metadata, report: &mut Report) {
    if let ErrorPolicy::Dlq { topic } = &config.errors.policy {
        let found = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none());
        report.dlq_exists = Some(found);
        if !found {
            report.problems.push(format!(
                "DLQ topic {topic} does not exist: create it, or let the brokers auto-create topics (errors.dlq_topic)"
            ));
        }
    }
}

/// Whether the group has committed offsets for the topics found (OffsetFetch: every broker
/// that serves consumer groups answers it, and it needs the group's read ACL).
fn check_group(
    consumer: &BaseConsumer<Recorder>,
    config: &Config,
    report: &mut Report,
    timeout: Duration,
) {
    let mut tpl = TopicPartitionList::new();
    for (t, n) in &report.topics {
        for p in 0..*n as i32 {
            tpl.add_partition(t, p);
        }
    }
    if tpl.count() == 0 {
        return;
    }
    let group = &config.kafka.group_id;
    match consumer.committed_offsets(tpl, timeout) {
        Ok(c) => {
            let any = c
                .elements()
                .iter()
                .any(|e| matches!(e.offset(), Offset::Offset(_)));
            report.group_exists = Some(any);
        }
        Err(e) if format!("{e:?}").contains("Authorization") => report.problems.push(format!(
            "consumer group {group}: not authorised (a missing group ACL)"
        )),
        Err(e) => report.problems.push(format!("consumer group {group}: {e}")),
    }
}

fn topic_problem(topic: &str, err: Option<RDKafkaRespErr>) -> String {
    let Some(code) = err else {
        return format!("topic {topic}: unknown error");
    };
    match code {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED => {
            format!("topic {topic}: not authorised to read it (a missing topic ACL)")
        }
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
            format!("topic {topic}: does not exist (kafka.topics)")
        }
        other => format!("topic {topic}: {other:?}"),
    }
}
