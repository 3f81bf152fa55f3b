//! The Kafka sink: consume, map, batch per partition, append each batch with its checkpoint in
//! the same WAL frame, make it durable, and only then commit its offset to Kafka.
//!
//! Delivery guarantee (exactly once into the store): a partition's batch is appended to its WAL
//! shard together with the checkpoint `("<topic>/<partition>", last offset)`; the checkpoint is
//! durable exactly when the batch is. On assignment the consumer starts each partition at the
//! engine's durable checkpoint + 1 when there is one (Kafka's committed offset otherwise), so a
//! crash anywhere (before the fsync, between the fsync and the commit, or mid-commit) neither
//! loses nor duplicates a message. Kafka's committed offset trails the store: it serves lag
//! metrics, other tools, and partitions this store has never seen.
//!
//! Threading: one consumer thread polls, maps and appends; librdkafka fetches in its own
//! threads; rebalance callbacks run on the polling thread, so the per-partition state needs no
//! cross-thread coordination beyond a mutex shared with the rebalance context.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keplordb::{DbError, DynEngine, DynEvent, SourceCheckpoint};
use rayon::prelude::*;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::{Assignment, Config, ErrorPolicy, OffsetReset};
use crate::mapping::{MapError, Mapper, Meta};
use crate::metrics::Metrics;
use crate::ownership::{Chain, Held, StoreId};

mod handover;
pub mod ledger;

/// A polled batch and its mapping results, in poll order.
type Mapped<'c> = (Vec<BorrowedMessage<'c>>, Vec<Result<DynEvent, MapError>>);

/// Messages taken per loop iteration before batching, commit and fault checks run.
const MAX_MESSAGES_PER_ITERATION: usize = 8_000;
/// Below this many fetched messages, mapping stays on the consumer thread.
const PARALLEL_MAP_MIN: usize = 64;

/// The checkpoint key of a partition.
pub fn source_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The stable partition → shard rule: several partitions share a shard when there are more
/// partitions than shards; one partition always lands on the same shard.
pub fn shard_of(topic: &str, partition: i32, shards: usize) -> usize {
    (keplordb::hash::hash64(topic.as_bytes()).wrapping_add(partition as u64) % shards as u64)
        as usize
}

/// Fault injection for crash tests: after `countdown` crash points the sink behaves as if the
/// process died there (no flush, no fsync, no commit, not even on revoke). Crash points: after
/// a message is taken, after an append (before its fsync), after an fsync (before the commit).
#[derive(Debug)]
pub struct CrashPlan {
    countdown: std::sync::atomic::AtomicI64,
    crashed: AtomicBool,
}

impl CrashPlan {
    /// Crash at the `n`-th crash point.
    pub fn after(n: i64) -> Arc<CrashPlan> {
        Arc::new(CrashPlan {
            countdown: std::sync::atomic::AtomicI64::new(n),
            crashed: AtomicBool::new(false),
        })
    }

    /// True once crashed.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    fn point(&self) -> bool {
        if self.countdown.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.crashed.store(true, Ordering::Release);
        }
        self.crashed()
    }
}

/// State of one assigned partition.
#[derive(Debug)]
struct Part {
    shard: usize,
    batch: Vec<DynEvent>,
    batch_bytes: u64,
    first_at: Option<Instant>,
    /// Last offset taken into the batch (mapped, skipped or sent to the DLQ).
    last: Option<i64>,
    /// Last offset durable in the engine.
    durable: Option<i64>,
    /// Last offset whose commit was sent.
    commit_sent: Option<i64>,
    /// Paused after a failed append; retried at this instant.
    retry_at: Option<Instant>,
    /// DLQ messages sent since the last durable append: the producer must flush first.
    dlq_unflushed: bool,
    /// The ownership chain sent with this partition's commits (this store's range last).
    chain: Chain,
    /// Where consumption of this assignment started (the seek target while nothing is
    /// durable yet).
    start: i64,
    /// When a message was last taken (stored, skipped or sent to the DLQ).
    progress_at: Instant,
}

impl Part {
    fn new(shard: usize, durable: Option<i64>) -> Part {
        Part {
            shard,
            batch: Vec::new(),
            batch_bytes: 0,
            first_at: None,
            last: durable,
            durable,
            commit_sent: None,
            retry_at: None,
            dlq_unflushed: false,
            chain: Chain::default(),
            start: durable.map_or(0, |d| d + 1),
            progress_at: Instant::now(),
        }
    }

    /// Records that `offset` was taken.
    fn took(&mut self, offset: i64) {
        self.last = Some(offset);
        self.progress_at = Instant::now();
    }
}

/// Shared between the polling loop and the rebalance context.
#[derive(Debug, Default)]
struct State {
    parts: BTreeMap<(String, i32), Part>,
    /// An error that stops the agent (policy `stop`, an engine shard that failed...).
    fatal: Option<String>,
    assigned: bool,
    /// Partitions to pause at the end of this iteration (registry outages).
    to_pause: Vec<(String, i32)>,
    /// Assigned, but another member's sink still holds them: taken once it lets go.
    deferred: Vec<(String, i32)>,
    /// When the deferred partitions are claimed again.
    deferred_retry_at: Option<Instant>,
    /// Since when (or the last warning) partitions are deferred.
    deferred_since: Option<Instant>,
}

/// What the sink needs, shared with the Kafka context.
pub struct Shared {
    engine: Arc<DynEngine>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    mapper: Mapper,
    state: Mutex<State>,
    dlq: Option<ThreadedProducer<DefaultProducerContext>>,
    /// Publish decisions written since the last fsync (made durable when the sink is idle;
    /// under load the next batch's fsync covers them).
    published_unsynced: AtomicBool,
    /// This store's id in the ownership chains.
    store: StoreId,
    /// The partitions held, as the HTTP API reports them.
    held: Arc<Held>,
    /// The ownership ledger, when `kafka.ownership_topic` is set.
    ledger: Option<ledger::Ledger>,
    /// Set once partitions are assigned and consumption runs (readiness).
    pub ready: Arc<AtomicBool>,
    crash: Option<Arc<CrashPlan>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The consumer's context: rebalance handling and commit results.
#[derive(Debug)]
pub struct AgentContext(Arc<Shared>);

impl ClientContext for AgentContext {
    /// librdkafka's statistics (every second): the partitions' high watermarks, for lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let st = self.0.lock();
        for (topic, t) in &statistics.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.hi_offset >= 0 && st.parts.contains_key(&(topic.clone(), *p)) {
                    self.0
                        .metrics
                        .partition(topic, *p, |g| g.high_watermark = Some(part.hi_offset));
                }
            }
        }
    }
}

impl ConsumerContext for AgentContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let shared = &self.0;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                shared.on_assign(consumer, tpl);
                shared.lock().assigned = true;
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assign failed");
                }
                shared.ready.store(true, Ordering::Release);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost() || shared.crashed();
                let revoked: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                shared.on_revoke(consumer, &revoked, lost);
                for (t, p) in &revoked {
                    shared.metrics.remove_partition(t, *p);
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        self.0
                            .metrics
                            .partition(e.topic(), e.partition(), |g| g.committed = Some(o));
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; retrying");
                let mut st = self.0.lock();
                for e in offsets.elements() {
                    if let Some(part) = st.parts.get_mut(&(e.topic().to_string(), e.partition())) {
                        part.commit_sent = None;
                    }
                }
            }
        }
    }
}

impl Shared {
    /// A crash point: true when the (simulated) process is dead.
    fn crash_point(&self) -> bool {
        self.crash.as_ref().is_some_and(|c| c.point())
    }

    fn crashed(&self) -> bool {
        self.crash.as_ref().is_some_and(|c| c.crashed())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fatal(&self, why: String) {
        tracing::error!(error = %why, "stopping");
        self.lock().fatal.get_or_insert(why);
    }

    /// Maps one message to an event (pure: runs on any thread).
    fn map(&self, msg: &BorrowedMessage<'_>) -> Result<DynEvent, MapError> {
        let meta = Meta {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key(),
            headers: msg.headers(),
        };
        self.mapper.map(msg.payload(), meta)
    }

    /// Takes one mapped message into its partition's batch, or applies the error policy.
    fn take(&self, msg: &BorrowedMessage<'_>, mapped: Result<DynEvent, MapError>) {
        let (topic, p, offset) = (msg.topic(), msg.partition(), msg.offset());
        self.metrics.consumed.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if st.fatal.is_some() {
            // Stopping: nothing after the failure point is taken (it is read again later).
            return;
        }
        let Some(part) = st
            .parts
            .iter_mut()
            .find(|((t, q), _)| *q == p && t == topic)
            .map(|(_, v)| v)
        else {
            // Not (or no longer) assigned: it will be consumed again by its owner.
            return;
        };
        if part.retry_at.is_some() || part.last.is_some_and(|l| offset <= l) {
            // Paused (fetched before the pause took effect: read again after resume), or a
            // replay of something already taken.
            return;
        }
        if let Some(l) = part.last {
            if offset > l + 1 {
                // Offsets the broker no longer has (retention) or never will (compaction,
                // transaction markers): nothing to store, but an operator wants to know.
                self.metrics
                    .offsets_skipped
                    .fetch_add((offset - l - 1) as u64, Ordering::Relaxed);
                tracing::warn!(
                    topic,
                    partition = p,
                    from = l + 1,
                    to = offset - 1,
                    "offsets skipped by the broker"
                );
            }
        }
        match mapped {
            Ok(ev) => {
                part.batch_bytes += msg.payload().map_or(0, <[u8]>::len) as u64 + 64;
                part.batch.push(ev);
                part.first_at.get_or_insert_with(Instant::now);
                part.took(offset);
            }
            Err(e @ MapError::Registry(_)) => {
                // Not the message's fault: pause the partition and read it again from here
                // once the registry answers (the batch before it waits too).
                tracing::warn!(topic, partition = p, offset, error = %e, "schema registry unavailable; pausing the partition");
                self.metrics.consumer_error("registry");
                part.retry_at = Some(Instant::now() + self.config.errors.retry_backoff);
                st.to_pause.push((topic.to_string(), p));
            }
            Err(e) => {
                self.metrics.rejected(e.reason());
                match &self.config.errors.policy {
                    ErrorPolicy::Skip => {
                        tracing::warn!(topic, partition = p, offset, error = %e, "message skipped");
                        part.took(offset);
                        part.first_at.get_or_insert_with(Instant::now);
                    }
                    ErrorPolicy::Dlq { topic: dlq } => match self.to_dlq(dlq, msg, &e) {
                        Ok(()) => {
                            part.dlq_unflushed = true;
                            part.took(offset);
                            part.first_at.get_or_insert_with(Instant::now);
                        }
                        Err(err) => {
                            drop(st);
                            self.fatal(format!(
                                "cannot produce {topic}/{p}@{offset} to the DLQ {dlq}: {err}"
                            ));
                        }
                    },
                    ErrorPolicy::Stop => {
                        drop(st);
                        self.fatal(format!("poison message at {topic}/{p}@{offset}: {e} (errors.policy = \"stop\")"));
                    }
                }
            }
        }
    }

    fn to_dlq(&self, dlq: &str, msg: &BorrowedMessage<'_>, e: &MapError) -> Result<(), String> {
        let producer = self.dlq.as_ref().ok_or("no DLQ producer")?;
        let mut headers = msg.headers().map(|h| h.detach()).unwrap_or_default();
        let offset = msg.offset().to_string();
        let partition = msg.partition().to_string();
        let error = e.to_string();
        for (key, value) in [
            ("keplor.error", error.as_str()),
            ("keplor.error.reason", e.reason()),
            ("keplor.source.topic", msg.topic()),
            ("keplor.source.partition", partition.as_str()),
            ("keplor.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq).headers(headers);
        if let Some(k) = msg.key() {
            rec = rec.key(k);
        }
        if let Some(pl) = msg.payload() {
            rec = rec.payload(pl);
        }
        producer.send(rec).map_err(|(e, _)| e.to_string())?;
        self.metrics.dlq_produced.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Appends the ready batches (all of `only`, or those due when `only` is None and `force`
    /// is false) and makes them durable. Failed partitions are paused for a retry.
    fn flush_parts(&self, only: Option<&[(String, i32)]>, force: bool) -> Vec<(String, i32)> {
        let now = Instant::now();
        let cfg = &self.config.batch;
        let mut st = self.lock();
        let keys: Vec<(String, i32)> = st
            .parts
            .iter()
            .filter(|(k, p)| {
                only.is_none_or(|o| o.contains(k))
                    && p.last != p.durable
                    && (force
                        || p.batch.len() >= cfg.max_events
                        || p.batch_bytes >= cfg.max_bytes
                        || p.first_at
                            .is_some_and(|t| now.duration_since(t) >= cfg.linger))
                    && p.retry_at.is_none_or(|r| force || now >= r)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        if keys.iter().any(|k| st.parts[k].dlq_unflushed) {
            // DLQ'd messages must be in Kafka before the checkpoint moves past them.
            if let Some(dlq) = &self.dlq {
                if let Err(e) = dlq.flush(Duration::from_secs(30)) {
                    drop(st);
                    self.fatal(format!("DLQ producer flush failed: {e}"));
                    return Vec::new();
                }
            }
        }
        // Take the batches out, append them in parallel (partitions on different shards do not
        // contend), then put back the ones that failed.
        let mut work = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(part) = st.parts.get_mut(&k) else {
                continue;
            };
            let Some(last) = part.last else { continue };
            work.push((k, part.shard, last, std::mem::take(&mut part.batch)));
        }
        drop(st);
        let appended: Vec<_> = work
            .into_par_iter()
            .map(|(k, shard, last, batch)| {
                let source = source_key(&k.0, k.1);
                let t = Instant::now();
                let checkpoint = SourceCheckpoint {
                    source: &source,
                    position: last as u64,
                };
                // Staged: durable, but counted only once Kafka accepts the commit past it.
                let result = self.engine.append_staged_to(shard, &batch, checkpoint);
                self.metrics.append_seconds.observe_duration(t.elapsed());
                (k, last, batch, result)
            })
            .collect();
        let mut tickets = Vec::new();
        let mut failed = Vec::new();
        let mut st = self.lock();
        for (k, last, batch, result) in appended {
            let Some(part) = st.parts.get_mut(&k) else {
                continue;
            };
            match result {
                Ok(ticket) => {
                    tickets.push((k, ticket, last, batch.len()));
                    part.batch = batch;
                }
                Err(e) => {
                    part.batch = batch;
                    self.metrics.append_errors.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, DbError::ShardFailed { .. }) {
                        drop(st);
                        self.fatal(format!("engine shard failed: {e}; restart recovers it"));
                        return failed;
                    }
                    tracing::error!(topic = k.0, partition = k.1, error = %e, "append failed; pausing the partition");
                    part.retry_at = Some(now + self.config.errors.retry_backoff);
                    failed.push(k);
                }
            }
        }
        drop(st);
        if !tickets.is_empty() && self.crash_point() {
            return failed;
        }
        // One fsync per shard covers every batch appended to it (group commit); the shards'
        // fsyncs run in parallel.
        let t = Instant::now();
        let mut last_per_shard: BTreeMap<usize, keplordb::AppendTicket> = BTreeMap::new();
        for (_, ticket, _, _) in &tickets {
            let e = last_per_shard.entry(ticket.shard).or_insert(*ticket);
            e.lsn = e.lsn.max(ticket.lsn);
        }
        let synced: Vec<_> = last_per_shard
            .values()
            .collect::<Vec<_>>()
            .par_iter()
            .map(|t| (t.shard, self.engine.wait_durable(t)))
            .collect();
        for (shard, r) in synced {
            if let Err(e) = r {
                self.fatal(format!("fsync failed on shard {shard}: {e}"));
                return failed;
            }
        }
        self.metrics.fsync_seconds.observe_duration(t.elapsed());
        let mut st = self.lock();
        for (k, _, last, n) in &tickets {
            self.metrics
                .appended
                .fetch_add(*n as u64, Ordering::Relaxed);
            self.metrics.batch_events.observe(*n as f64);
            if let Some(part) = st.parts.get_mut(k) {
                part.durable = Some(*last);
                part.batch.clear();
                part.batch_bytes = 0;
                part.first_at = None;
                part.dlq_unflushed = false;
                part.retry_at = None;
            }
        }
        drop(st);
        for (k, _, last, _) in &tickets {
            self.metrics
                .partition(&k.0, k.1, |g| g.durable = Some(*last));
        }
        failed
    }

    /// Publishes the staged batches below each offset of an accepted commit.
    fn publish_committed(&self, tpl: &TopicPartitionList) {
        self.published_unsynced.store(true, Ordering::Release);
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                let source = source_key(e.topic(), e.partition());
                if let Err(err) = self.engine.publish_staged(&source, (o - 1) as u64) {
                    self.fatal(format!("publishing {source} up to {}: {err}", o - 1));
                    return;
                }
            }
        }
    }

    /// Commits the durable offsets not yet committed, each with its partition's ownership
    /// chain; publishes what an accepted synchronous commit covers. False when it failed.
    fn commit(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        only: Option<&[(String, i32)]>,
        mode: CommitMode,
        force: bool,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        let mut st = self.lock();
        for ((topic, p), part) in st.parts.iter_mut() {
            if only.is_some_and(|o| !o.contains(&(topic.clone(), *p))) {
                continue;
            }
            if let Some(d) = part.durable {
                if force || part.commit_sent != Some(d) {
                    let mut e = tpl.add_partition(topic, *p);
                    let _ = e.set_offset(Offset::Offset(d + 1));
                    e.set_metadata(part.chain.format());
                    part.commit_sent = Some(d);
                }
            }
        }
        drop(st);
        if tpl.count() == 0 {
            return true;
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        let result = consumer.commit(&tpl, mode);
        if result.is_ok() && matches!(mode, CommitMode::Sync) && !self.crash_point() {
            // Accepted for every partition (librdkafka reports any partition's error): the
            // staged batches up to each committed offset count now.
            self.publish_committed(&tpl);
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed");
            // Try again next time.
            let mut st = self.lock();
            for e in tpl.elements() {
                if let Some(part) = st.parts.get_mut(&(e.topic().to_string(), e.partition())) {
                    part.commit_sent = None;
                }
            }
            return false;
        }
        if matches!(mode, CommitMode::Sync) {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    self.metrics
                        .partition(e.topic(), e.partition(), |g| g.committed = Some(o));
                }
            }
        }
        true
    }
}

/// The running sink.
pub struct Sink {
    shared: Arc<Shared>,
    consumer: BaseConsumer<AgentContext>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// Why the sink stopped.
#[derive(Debug)]
pub enum Stopped {
    /// Asked to stop; everything durable was committed.
    Clean,
    /// A fatal error.
    Failed(String),
    /// A simulated crash (tests): nothing was flushed or committed.
    Crashed,
}

impl Sink {
    /// Builds the consumer (and the DLQ producer) and subscribes.
    pub fn new(
        engine: Arc<DynEngine>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        held: Arc<Held>,
        crash: Option<Arc<CrashPlan>>,
    ) -> Result<Sink, String> {
        let mapper = Mapper::new(&config)?;
        let k = &config.kafka;
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
        let ledger = match &k.ownership_topic {
            Some(topic) => Some(ledger::Ledger::new(&cc, topic, &k.group_id)?),
            None => None,
        };
        let dlq = match &config.errors.policy {
            ErrorPolicy::Dlq { .. } => {
                let mut pc = cc.clone();
                pc.set("enable.idempotence", "true");
                Some(
                    pc.create::<ThreadedProducer<DefaultProducerContext>>()
                        .map_err(|e| format!("DLQ producer: {e}"))?,
                )
            }
            _ => None,
        };
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
            crash,
        });
        let consumer: BaseConsumer<AgentContext> = cc
            .create_with_context(AgentContext(shared.clone()))
            .map_err(|e| format!("Kafka consumer: {e}"))?;
        let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("subscribe to {topics:?}: {e}"))?;
        Ok(Sink { shared, consumer })
    }

    /// Polls until `stop` is set or a fatal error; then flushes, fsyncs and commits.
    ///
    /// Two stages overlap: this thread polls, takes mapped messages into their partitions'
    /// batches and appends; a mapping thread (itself fanning out over rayon) decodes the batch
    /// polled before. Messages are taken in the order they were polled.
    pub fn run(self, stop: &AtomicBool) -> Stopped {
        std::thread::scope(|scope| {
            let (to_map, map_rx) = std::sync::mpsc::sync_channel::<Vec<BorrowedMessage<'_>>>(1);
            let (to_take, take_rx) = std::sync::mpsc::sync_channel::<Mapped<'_>>(2);
            let shared = &self.shared;
            scope.spawn(move || {
                for batch in map_rx {
                    let mapped: Vec<Result<DynEvent, MapError>> = if batch.len() >= PARALLEL_MAP_MIN
                    {
                        batch.par_iter().map(|m| shared.map(m)).collect()
                    } else {
                        batch.iter().map(|m| shared.map(m)).collect()
                    };
                    if to_take.send((batch, mapped)).is_err() {
                        break;
                    }
                }
            });
            self.poll_loop(stop, to_map, take_rx)
        })
    }

    fn poll_loop<'c>(
        &'c self,
        stop: &AtomicBool,
        to_map: std::sync::mpsc::SyncSender<Vec<BorrowedMessage<'c>>>,
        take_rx: std::sync::mpsc::Receiver<Mapped<'c>>,
    ) -> Stopped {
        let shared = &self.shared;
        let mut last_commit = Instant::now();
        let mut commit_ok = true;
        let mut last_gc = Instant::now();
        let poll_timeout = shared
            .config
            .batch
            .linger
            .min(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        let mut in_flight = 0usize;
        while !stop.load(Ordering::Acquire) {
            // Wait for one message, then drain what is already fetched (up to a bound) before
            // the per-iteration work: batching decisions, commits and fault checks cost per
            // partition, not per message.
            let mut timeout = if in_flight > 0 {
                Duration::ZERO
            } else {
                poll_timeout
            };
            let mut fetched: Vec<BorrowedMessage<'_>> = Vec::new();
            for _ in 0..MAX_MESSAGES_PER_ITERATION {
                match self.consumer.poll(timeout) {
                    Some(Ok(m)) => fetched.push(m),
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        // A fetched batch that cannot be used (corrupt, an unsupported codec,
                        // a broker error): counted and logged; a partition it keeps from
                        // progressing turns readiness false (`errors.stuck_after`).
                        self.shared.metrics.consumer_error(&consumer_error_kind(&e));
                        tracing::warn!(error = %e, "consumer error");
                    }
                    None => break,
                }
                timeout = Duration::ZERO;
            }
            let polled_nothing = fetched.is_empty();
            if !polled_nothing {
                if to_map.send(fetched).is_err() {
                    return Stopped::Failed("the mapping thread stopped".into());
                }
                in_flight += 1;
            }
            // Take what is mapped: wait when the pipeline is full, or when there is nothing else
            // to do than wait for the mapping thread.
            let mut waited = false;
            loop {
                let next = if in_flight >= 2 || (in_flight > 0 && polled_nothing && !waited) {
                    waited = true;
                    take_rx.recv_timeout(poll_timeout).map_err(|_| ())
                } else {
                    take_rx.try_recv().map_err(|_| ())
                };
                let Ok((batch, mapped)) = next else { break };
                in_flight -= 1;
                for (m, r) in batch.iter().zip(mapped) {
                    shared.take(m, r);
                    if shared.crash_point() {
                        return Stopped::Crashed;
                    }
                }
            }
            if shared.deferred_due() {
                // Everything polled before is taken first: a deferred partition is consumed
                // from the seek on (librdkafka drops its older fetches).
                while in_flight > 0 {
                    let Ok((batch, mapped)) = take_rx.recv() else {
                        return Stopped::Failed("the mapping thread stopped".into());
                    };
                    in_flight -= 1;
                    for (m, r) in batch.iter().zip(mapped) {
                        shared.take(m, r);
                        if shared.crash_point() {
                            return Stopped::Crashed;
                        }
                    }
                }
                shared.take_deferred(&self.consumer);
            }
            let fatal = shared.lock().fatal.clone();
            if let Some(why) = fatal {
                // Commit what is durable before the failure point, then stop.
                shared.flush_parts(None, true);
                shared.commit(&self.consumer, None, CommitMode::Sync, true);
                return Stopped::Failed(why);
            }
            // Backpressure: too much buffered (appends failing) → flush everything now.
            let pending: u64 = shared.lock().parts.values().map(|p| p.batch_bytes).sum();
            let force = pending >= shared.config.batch.max_pending_bytes;
            let failed = shared.flush_parts(None, force);
            if shared.crashed() || shared.crash_point() {
                return Stopped::Crashed;
            }
            let mut failed = failed;
            failed.append(&mut shared.lock().to_pause);
            self.pause_resume(&failed);
            self.update_readiness();
            // Synchronous, right after the batches became durable: their rows count only once
            // Kafka accepted the commit (see `crate::ownership`). After a refused commit, wait
            // a second before trying again.
            if commit_ok || last_commit.elapsed() >= Duration::from_secs(1) {
                commit_ok = shared.commit(&self.consumer, None, CommitMode::Sync, false);
                last_commit = Instant::now();
                if shared.crashed() {
                    return Stopped::Crashed;
                }
            }
            if polled_nothing && shared.published_unsynced.swap(false, Ordering::AcqRel) {
                // Idle: make the publish decisions durable, so the store's checkpoints (and a
                // restart) need not ask Kafka again.
                if let Err(e) = shared.engine.sync() {
                    shared.fatal(format!("sync after publishing: {e}"));
                }
            }
            if let Some(retention) = shared.config.engine.retention {
                if last_gc.elapsed() >= Duration::from_secs(60) {
                    let cutoff = now_ns() - retention.as_nanos() as i64;
                    match shared.engine.gc(cutoff) {
                        Ok(s) if s.segments_deleted > 0 => tracing::info!(
                            segments = s.segments_deleted,
                            events = s.events_deleted,
                            "retention gc"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "retention gc failed"),
                    }
                    last_gc = Instant::now();
                }
            }
        }
        // Take what was already polled and mapped: it is flushed with the rest.
        drop(to_map);
        while in_flight > 0 {
            let Ok((batch, mapped)) = take_rx.recv() else {
                break;
            };
            in_flight -= 1;
            for (m, r) in batch.iter().zip(mapped) {
                self.shared.take(m, r);
            }
        }
        tracing::info!("stopping: flushing, syncing and committing");
        shared.flush_parts(None, true);
        shared.commit(&self.consumer, None, CommitMode::Sync, true);
        // The publish decisions are re-derived from Kafka after a crash; on a clean stop make
        // them durable so the store's checkpoints reflect what it counts.
        if let Err(e) = shared.engine.sync() {
            shared.fatal(format!("final sync: {e}"));
        }
        let unflushed = shared.lock().parts.values().any(|p| p.last != p.durable);
        let fatal = shared.lock().fatal.clone();
        if let Some(why) = fatal {
            return Stopped::Failed(why);
        }
        if unflushed {
            return Stopped::Failed(
                "some batches could not be made durable before shutdown".into(),
            );
        }
        Stopped::Clean
    }

    /// Readiness: the group was joined, nothing fatal is pending, and no partition with
    /// messages to read has been without progress for `errors.stuck_after`.
    fn update_readiness(&self) {
        let limit = self.shared.config.errors.stuck_after;
        // (partition, next offset to take, idle for longer than the limit), then the gauges:
        // the state lock is never held together with the metrics lock.
        let (parts, healthy) = {
            let st = self.shared.lock();
            let parts: Vec<((String, i32), i64, bool)> = st
                .parts
                .iter()
                .map(|(k, p)| {
                    let next = p.last.map_or(p.start, |l| l + 1);
                    (k.clone(), next, p.progress_at.elapsed() >= limit)
                })
                .collect();
            (parts, st.assigned && st.fatal.is_none())
        };
        let mut stuck_any = false;
        let mut gauges = self
            .shared
            .metrics
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, next, idle) in parts {
            let Some(g) = gauges.get_mut(&k) else {
                continue;
            };
            let behind = g.paused || g.high_watermark.is_some_and(|hw| hw > next);
            let stuck = behind && idle;
            if stuck && !g.stuck {
                tracing::warn!(
                    topic = k.0,
                    partition = k.1,
                    next,
                    "partition stuck: no progress for {limit:?}"
                );
            }
            g.stuck = stuck;
            stuck_any |= stuck;
        }
        self.shared
            .ready
            .store(healthy && !stuck_any, Ordering::Release);
    }

    /// Pauses partitions whose append failed; resumes (and rewinds) those whose retry succeeded.
    fn pause_resume(&self, failed: &[(String, i32)]) {
        let mut pause = TopicPartitionList::new();
        for (t, p) in failed {
            let _ = pause.add_partition(t, *p);
            self.shared.metrics.partition(t, *p, |g| g.paused = true);
        }
        if pause.count() > 0 {
            if let Err(e) = self.consumer.pause(&pause) {
                tracing::warn!(error = %e, "pause failed");
            }
        }
        // Partitions that were paused and are now durable again: resume at the next offset.
        let resumable: Vec<((String, i32), i64)> = {
            let metrics = self
                .shared
                .metrics
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let st = self.shared.lock();
            st.parts
                .iter()
                .filter(|(k, p)| {
                    p.retry_at.is_none_or(|r| Instant::now() >= r)
                        && metrics.get(k).is_some_and(|g| g.paused)
                })
                .map(|(k, p)| (k.clone(), p.durable.map_or(p.start, |d| d + 1)))
                .collect()
        };
        for ((t, p), from) in resumable {
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition(&t, p);
            if self.consumer.resume(&tpl).is_ok() {
                if let Some(part) = self.shared.lock().parts.get_mut(&(t.clone(), p)) {
                    part.retry_at = None;
                }
                // Messages fetched while paused were dropped: read them again (what was taken
                // already is skipped by offset).
                if let Err(e) =
                    self.consumer
                        .seek(&t, p, Offset::Offset(from), Duration::from_secs(5))
                {
                    tracing::warn!(topic = t, partition = p, error = %e, "seek after resume failed");
                }
                self.shared.metrics.partition(&t, p, |g| g.paused = false);
                tracing::info!(topic = t, partition = p, "partition resumed");
            }
        }
    }
}

/// A bounded label for a consumer error.
fn consumer_error_kind(e: &KafkaError) -> String {
    match e {
        KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code) => {
            format!("{code:?}").to_ascii_lowercase()
        }
        _ => "client".into(),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
