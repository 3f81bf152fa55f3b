//! Flush and commit: due batches are appended (staged, with their checkpoints) in parallel
//! across shards, made durable with one fsync per shard, and their offsets committed to Kafka
//! with each partition's ownership chain. A synchronous commit that Kafka accepted publishes
//! the staged batches it covers (see `crate::ownership`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keplordb::{AppendTicket, DbError, DynEvent, SourceCheckpoint};
use rayon::prelude::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{source_key, AgentContext, Key, Shared};

/// A batch taken out of its partition for an append: partition, shard, last offset, events.
type Work = (Key, usize, i64, Vec<DynEvent>);
/// A batch after its append, with the append's result.
type Appended = (Key, i64, Vec<DynEvent>, keplordb::Result<AppendTicket>);
/// An appended batch waiting for its fsync: partition, ticket, last offset, events.
type Staged = (Key, AppendTicket, i64, usize);

impl Shared {
    /// Appends the ready batches (all of `only`, or those due when `only` is None and `force`
    /// is false) and makes them durable. Failed partitions are paused for a retry.
    pub(super) fn flush_parts(&self, only: Option<&[Key]>, force: bool) -> Vec<Key> {
        let now = Instant::now();
        let work = self.take_due(only, force, now);
        if work.is_empty() {
            return Vec::new();
        }
        let appended = self.append_all(work);
        let (staged, failed) = match self.put_back(appended, now) {
            Ok(settled) => settled,
            Err(failed) => return failed,
        };
        if !staged.is_empty() && self.crash_point() {
            return failed;
        }
        if self.sync_shards(&staged) {
            self.mark_durable(&staged);
        }
        failed
    }

    /// Takes the due batches out of their partitions. The DLQ producer is flushed first when
    /// any of them moves the checkpoint past a message sent there.
    fn take_due(&self, only: Option<&[Key]>, force: bool, now: Instant) -> Vec<Work> {
        let cfg = &self.config.batch;
        let mut st = self.lock();
        let keys: Vec<Key> = st
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
        let mut work = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(part) = st.parts.get_mut(&k) else {
                continue;
            };
            let Some(last) = part.last else { continue };
            work.push((k, part.shard, last, std::mem::take(&mut part.batch)));
        }
        work
    }

    /// Appends the batches in parallel (partitions on different shards do not contend).
    fn append_all(&self, work: Vec<Work>) -> Vec<Appended> {
        work.into_par_iter()
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
            .collect()
    }

    /// Puts the batches back into their partitions: the appended ones wait for their fsync,
    /// the failed ones are retried after `errors.retry_backoff`. `Err` (with the partitions
    /// failed so far) when a shard failed: that is fatal.
    fn put_back(
        &self,
        appended: Vec<Appended>,
        now: Instant,
    ) -> Result<(Vec<Staged>, Vec<Key>), Vec<Key>> {
        let mut staged = Vec::new();
        let mut failed = Vec::new();
        let mut st = self.lock();
        for (k, last, batch, result) in appended {
            let Some(part) = st.parts.get_mut(&k) else {
                continue;
            };
            match result {
                Ok(ticket) => {
                    staged.push((k, ticket, last, batch.len()));
                    part.batch = batch;
                }
                Err(e) => {
                    part.batch = batch;
                    self.metrics.append_errors.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, DbError::ShardFailed { .. }) {
                        drop(st);
                        self.fatal(format!("engine shard failed: {e}; restart recovers it"));
                        return Err(failed);
                    }
                    tracing::error!(topic = k.0, partition = k.1, error = %e, "append failed; pausing the partition");
                    part.retry_at = Some(now + self.config.errors.retry_backoff);
                    failed.push(k);
                }
            }
        }
        Ok((staged, failed))
    }

    /// One fsync per shard covers every batch appended to it (group commit); the shards'
    /// fsyncs run in parallel. False (and fatal) when one failed.
    fn sync_shards(&self, staged: &[Staged]) -> bool {
        let t = Instant::now();
        let mut last_per_shard: BTreeMap<usize, AppendTicket> = BTreeMap::new();
        for (_, ticket, _, _) in staged {
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
                return false;
            }
        }
        self.metrics.fsync_seconds.observe_duration(t.elapsed());
        true
    }

    /// Moves each partition's durable offset to its fsynced batch and empties the batch.
    fn mark_durable(&self, staged: &[Staged]) {
        let mut st = self.lock();
        for (k, _, last, n) in staged {
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
        for (k, _, last, _) in staged {
            self.metrics
                .partition(&k.0, k.1, |g| g.durable = Some(*last));
        }
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
    pub(super) fn commit(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        only: Option<&[Key]>,
        mode: CommitMode,
        force: bool,
    ) -> bool {
        let tpl = self.to_commit(only, force);
        if tpl.count() == 0 {
            return true;
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = consumer.commit(&tpl, mode);
        if matches!(mode, CommitMode::Sync) {
            self.metrics
                .commit_seconds
                .observe_duration(started.elapsed());
        }
        if result.is_ok() && matches!(mode, CommitMode::Sync) && !self.crash_point() {
            // Accepted for every partition (librdkafka reports any partition's error): the
            // staged batches up to each committed offset count now.
            self.publish_committed(&tpl);
        }
        if let Err(e) = result {
            self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "offset commit failed");
            // Try again next time.
            self.forget_commits(&tpl);
            return false;
        }
        if matches!(mode, CommitMode::Sync) {
            self.mirror_committed(&tpl);
        }
        true
    }

    /// The offsets to commit (durable, and not sent yet unless `force`), each with its
    /// partition's chain as metadata; marked as sent.
    fn to_commit(&self, only: Option<&[Key]>, force: bool) -> TopicPartitionList {
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
        tpl
    }

    /// A commit of these offsets failed: they are sent again with the next commit.
    pub(super) fn forget_commits(&self, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        for e in tpl.elements() {
            if let Some(part) = st.parts.get_mut(&(e.topic().to_string(), e.partition())) {
                part.commit_sent = None;
            }
        }
    }

    /// Shows the committed offsets in the partitions' gauges.
    pub(super) fn mirror_committed(&self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                self.metrics
                    .partition(e.topic(), e.partition(), |g| g.committed = Some(o));
            }
        }
    }
}
