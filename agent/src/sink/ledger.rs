//! The ownership ledger (`kafka.ownership_topic`): the ownership chain kept as records of a
//! Kafka topic as well, for brokers that store offset-commit metadata but do not return it
//! (Tansu 0.6). A new owner appends `(partition, store@start)` and flushes it before it
//! consumes anything; with one partition, the topic's order is the order of ownership, so the
//! chain of a partition is its records in order. The metadata chain wins when the broker
//! returns one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::ownership::{Chain, StoreId};

/// How long a ledger write or read may take.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(10);

/// The ledger topic and the clients that write and read it.
pub struct Ledger {
    topic: String,
    producer: ThreadedProducer<DefaultProducerContext>,
    reader: ClientConfig,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Ledger {
    /// Clients for `topic`, with the connection settings of `base`.
    pub fn new(base: &ClientConfig, topic: &str, group: &str) -> Result<Ledger, String> {
        let mut pc = base.clone();
        pc.set("enable.idempotence", "true").set("linger.ms", "0");
        let producer = pc
            .create::<ThreadedProducer<DefaultProducerContext>>()
            .map_err(|e| format!("ownership ledger producer: {e}"))?;
        let mut reader = base.clone();
        reader
            .set("group.id", format!("{group}.ledger-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        Ok(Ledger {
            topic: topic.to_string(),
            producer,
            reader,
        })
    }

    /// Appends that `store` owns `source` from `start` on, durable in Kafka when it returns.
    pub fn record(&self, source: &str, store: &StoreId, start: i64) -> Result<(), String> {
        let value = format!("{}@{start}", store.0);
        let rec: BaseRecord<'_, str, str> = BaseRecord::to(&self.topic)
            .key(source)
            .payload(value.as_str())
            .partition(0);
        self.producer
            .send(rec)
            .map_err(|(e, _)| format!("ownership ledger {}: {e}", self.topic))?;
        self.producer.flush(LEDGER_TIMEOUT).map_err(|e| {
            format!(
                "ownership ledger {}: {e} (does the topic exist?)",
                self.topic
            )
        })
    }

    /// Every partition's chain, read from the start of the topic.
    pub fn chains(&self) -> Result<HashMap<String, Chain>, String> {
        let consumer: BaseConsumer = self
            .reader
            .create()
            .map_err(|e| format!("ownership ledger reader: {e}"))?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, LEDGER_TIMEOUT)
            .map_err(|e| format!("ownership ledger {}: {e}", self.topic))?;
        let mut chains: HashMap<String, Chain> = HashMap::new();
        if high <= low {
            return Ok(chains);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + LEDGER_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(format!(
                    "ownership ledger {}: not read to its end ({high}) within {LEDGER_TIMEOUT:?}",
                    self.topic
                ));
            }
            let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let msg = msg.map_err(|e| format!("ownership ledger {}: {e}", self.topic))?;
            if let (Some(Ok(key)), Some(Ok(value))) =
                (msg.key_view::<str>(), msg.payload_view::<str>())
            {
                if let Some((owner, start)) = value.split_once('@') {
                    if let Ok(start) = start.parse::<i64>() {
                        let chain = chains.entry(key.to_string()).or_default();
                        if chain.last_owner() != Some(owner) {
                            chain.entries.push((owner.to_string(), start));
                        }
                    }
                }
            }
            if msg.offset() + 1 >= high {
                return Ok(chains);
            }
        }
    }
}
