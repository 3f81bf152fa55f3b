//! Building the sink: the consumer's librdkafka configuration (the agent's defaults, the
//! configured properties, then the settings the agent owns), the DLQ producer and the
//! ownership ledger, the mapping threads, and the subscription.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use keplordb::DynEngine;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};

use super::{ledger, AgentContext, CrashPlan, Shared, Sink, State};
use crate::archive::Progress;
use crate::config::{Assignment, Config, ErrorPolicy, KafkaConfig, OffsetReset};
use crate::mapping::Mapper;
use crate::metrics::Metrics;
use crate::ownership::{Held, StoreId};

impl Sink {
    /// Builds the consumer (and the DLQ producer) and subscribes.
    pub fn new(
        engine: Arc<DynEngine>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        held: Arc<Held>,
        archived: Arc<Progress>,
        crash: Option<Arc<CrashPlan>>,
    ) -> Result<Sink, String> {
        let mapper = Mapper::new(&config)?;
        let map_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.batch.map_threads)
            .thread_name(|i| format!("keplor-map-{i}"))
            .build()
            .map_err(|e| format!("mapping threads: {e}"))?;
        let k = &config.kafka;
        let mut cc = client_config(k);
        let ledger = match &k.ownership_topic {
            Some(topic) => Some(ledger::Ledger::new(&cc, topic, &k.group_id)?),
            None => None,
        };
        let dlq = dlq_producer(&cc, &config)?;
        set_owned(&mut cc, k);
        let shared = Arc::new(Shared {
            engine,
            store: StoreId(held.store.clone()),
            held,
            ledger,
            config: config.clone(),
            metrics,
            mapper,
            state: Mutex::new(State::default()),
            dlq,
            published_unsynced: AtomicBool::new(false),
            ready,
            archived,
            crash,
        });
        let consumer: BaseConsumer<AgentContext> = cc
            .create_with_context(AgentContext(shared.clone()))
            .map_err(|e| format!("Kafka consumer: {e}"))?;
        let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("subscribe to {topics:?}: {e}"))?;
        Ok(Sink {
            shared,
            consumer,
            map_pool,
        })
    }
}

/// What every client of the sink shares (consumer, DLQ producer, ledger): the agent's
/// defaults, the configured properties over them, and the brokers.
fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    // Defaults for a sink (a property in the config wins): brokers answer a fetch within
    // 50 ms instead of librdkafka's 500 ms when data trickles in; and when the local fetch
    // queue is over its thresholds (messages still being mapped and appended count), the
    // next fetch waits 10 ms, not librdkafka's 1 s: with its default, a burst stalls the
    // whole consumer for a second at a time.
    cc.set("fetch.wait.max.ms", "50");
    cc.set("fetch.queue.backoff.ms", "10");
    for (key, v) in &k.client_properties() {
        cc.set(key, v);
    }
    cc.set("bootstrap.servers", k.brokers.join(","));
    cc
}

/// The idempotent DLQ producer, with `errors.policy = "dlq"`.
fn dlq_producer(
    cc: &ClientConfig,
    config: &Config,
) -> Result<Option<ThreadedProducer<DefaultProducerContext>>, String> {
    let ErrorPolicy::Dlq { .. } = &config.errors.policy else {
        return Ok(None);
    };
    let mut pc = cc.clone();
    pc.set("enable.idempotence", "true");
    pc.create::<ThreadedProducer<DefaultProducerContext>>()
        .map(Some)
        .map_err(|e| format!("DLQ producer: {e}"))
}

/// The consumer settings the agent owns (the config refuses them as properties): it commits
/// offsets itself, and reads statistics for lag.
fn set_owned(cc: &mut ClientConfig, k: &KafkaConfig) {
    cc.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "1000")
        .set(
            "auto.offset.reset",
            match k.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set(
            "partition.assignment.strategy",
            match k.assignment {
                Assignment::CooperativeSticky => "cooperative-sticky",
                Assignment::Range => "range",
                Assignment::Roundrobin => "roundrobin",
            },
        );
}
