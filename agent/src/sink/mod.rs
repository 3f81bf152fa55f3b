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
//!
//! The pieces: this file holds the shared state ([`Shared`], the per-partition `Part`);
//! `build.rs` creates the consumer and the DLQ producer; `context.rs` is librdkafka's side
//! (rebalance, commit results, statistics); `intake.rs` maps messages and takes them into their
//! partitions' batches (or the DLQ); `flush.rs` appends, fsyncs and commits; `pipeline.rs` is
//! the poll/map loop; `control.rs` pauses and resumes partitions and keeps readiness;
//! `handover.rs` assigns and revokes partitions; `ledger.rs` is the ownership ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use keplordb::{DynEngine, DynEvent};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};

use crate::config::Config;
use crate::mapping::Mapper;
use crate::metrics::Metrics;
use crate::ownership::{Chain, Held, StoreId};
use seek_check::SeekCheck;

mod build;
mod context;
mod control;
mod fetch_errors;
mod flush;
mod handover;
mod intake;
pub mod ledger;
mod pipeline;
mod seek_check;

pub use context::AgentContext;

/// A partition: `(topic, partition)`.
type Key = (String, i32);

/// The checkpoint key of a partition.
pub fn source_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The stable partition → shard rule (the engine's `shard_for`, the topic as the group):
/// several partitions share a shard when there are more partitions than shards; one partition
/// always lands on the same shard.
pub fn shard_of(engine: &keplordb::DynEngine, topic: &str, partition: i32) -> usize {
    engine.shard_for(topic, partition as u64)
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
    /// Paused in the consumer (a failed append, a registry outage) until resumed. The sink
    /// decides from this; the `keplor_partition_paused` gauge only shows it.
    paused: bool,
    /// The partition's high watermark, from librdkafka's statistics.
    high_watermark: Option<i64>,
    /// Behind with no progress for `errors.stuck_after` (readiness; shown as
    /// `keplor_partition_stuck`).
    stuck: bool,
    /// DLQ messages sent since the last durable append: the producer must flush first.
    dlq_unflushed: bool,
    /// The ownership chain sent with this partition's commits (this store's range last).
    chain: Chain,
    /// Where consumption of this assignment started (the seek target while nothing is
    /// durable yet).
    start: i64,
    /// When a message was last taken (stored, skipped or sent to the DLQ).
    progress_at: Instant,
    /// The first message after the last seek, checked before a gap in front of it is believed.
    seek: SeekCheck,
    /// Where to read again once resumed, when a gap after a seek is being checked.
    rewind_to: Option<i64>,
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
            paused: false,
            high_watermark: None,
            stuck: false,
            dlq_unflushed: false,
            chain: Chain::default(),
            start: durable.map_or(0, |d| d + 1),
            progress_at: Instant::now(),
            seek: SeekCheck::default(),
            rewind_to: None,
        }
    }

    /// Records that `offset` was taken.
    fn took(&mut self, offset: i64) {
        self.last = Some(offset);
        self.progress_at = Instant::now();
    }

    /// Takes a mapped message (`bytes` of payload) into the batch.
    fn add(&mut self, event: DynEvent, bytes: usize, offset: i64) {
        self.batch_bytes += bytes as u64 + 64;
        self.batch.push(event);
        self.first_at.get_or_insert_with(Instant::now);
        self.took(offset);
    }

    /// The next offset to take.
    fn next(&self) -> i64 {
        self.last.map_or(self.start, |l| l + 1)
    }

    /// Updates `stuck`: messages to read (paused, or behind the high watermark) and no
    /// progress for `limit`. Warns when it becomes stuck.
    fn check_stuck(
        &mut self,
        key: &Key,
        limit: std::time::Duration,
        last_error: Option<&str>,
    ) -> bool {
        let next = self.next();
        let behind = self.paused || self.high_watermark.is_some_and(|hw| hw > next);
        let stuck = behind && self.progress_at.elapsed() >= limit;
        if stuck && !self.stuck {
            tracing::warn!(
                topic = key.0,
                partition = key.1,
                next,
                high_watermark = self.high_watermark,
                paused = self.paused,
                last_consumer_error = last_error.unwrap_or("none"),
                "partition stuck: no progress for {limit:?}"
            );
        }
        self.stuck = stuck;
        stuck
    }

    /// Takes a message that is not stored (skipped, or sent to the DLQ): the batch's
    /// checkpoint moves past it.
    fn pass(&mut self, offset: i64) {
        self.took(offset);
        self.first_at.get_or_insert_with(Instant::now);
    }
}

/// Shared between the polling loop and the rebalance context.
#[derive(Debug, Default)]
struct State {
    parts: BTreeMap<Key, Part>,
    /// An error that stops the agent (policy `stop`, an engine shard that failed...).
    fatal: Option<String>,
    assigned: bool,
    /// Partitions to pause at the end of this iteration (registry outages).
    to_pause: Vec<Key>,
    /// Assigned, but another member's sink still holds them: taken once it lets go.
    deferred: Vec<Key>,
    /// When the deferred partitions are claimed again.
    deferred_retry_at: Option<Instant>,
    /// Since when (or the last warning) partitions are deferred.
    deferred_since: Option<Instant>,
    /// Consumer errors, as logged.
    fetch_errors: fetch_errors::FetchErrors,
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
    /// Which segments the archive holds (retention waits for them).
    archived: Arc<crate::archive::Progress>,
    crash: Option<Arc<CrashPlan>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
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

    /// Records the error that stops the agent; readiness turns false at once (the HTTP API
    /// still answers until the agent has stopped).
    fn fatal(&self, why: String) {
        tracing::error!(error = %why, "stopping");
        self.lock().fatal.get_or_insert(why);
        self.ready.store(false, Ordering::Release);
    }
}

/// The running sink.
pub struct Sink {
    shared: Arc<Shared>,
    consumer: BaseConsumer<AgentContext>,
    /// The mapping stage's own threads (`batch.map_threads`), apart from rayon's global pool
    /// and the engine's query threads.
    map_pool: rayon::ThreadPool,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_partition_is_stuck_when_behind_without_progress() {
        let key = ("in".to_string(), 0);
        let mut part = Part::new(0, Some(4));
        // Caught up: the next offset (5) is the high watermark.
        part.high_watermark = Some(5);
        assert!(!part.check_stuck(&key, Duration::ZERO, None));
        // Behind, but progress is recent.
        part.high_watermark = Some(9);
        assert!(!part.check_stuck(&key, Duration::from_secs(3600), None));
        assert!(part.check_stuck(&key, Duration::ZERO, None));
        assert!(part.stuck);
        // Taking a message is progress.
        part.took(5);
        assert!(!part.check_stuck(&key, Duration::from_secs(3600), None));
        assert!(!part.stuck);
    }

    #[test]
    fn a_paused_partition_is_behind_without_a_high_watermark() {
        let key = ("in".to_string(), 1);
        let mut part = Part::new(0, None);
        assert!(!part.check_stuck(&key, Duration::ZERO, None));
        part.paused = true;
        assert!(part.check_stuck(&key, Duration::ZERO, None));
    }
}
