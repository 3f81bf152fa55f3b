//! Partitions changing hands: where a newly assigned partition starts, what happens to a
//! revoked or lost one, and how staged batches are decided from the ownership chain that Kafka
//! keeps with the committed offset (see `crate::ownership`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{shard_of, source_key, AgentContext, Part, Shared};
use crate::config::OffsetReset;
use crate::ownership::{decide, Chain, Decision};

/// How long a rebalance callback waits for the group coordinator or a partition leader.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a deferred partition waits for its previous owner before a warning (and
/// between warnings).
const HANDOVER_WAIT: Duration = Duration::from_secs(15);
/// How often a deferred partition is claimed again (with up to as much again at random, so
/// that two members claiming at once do not meet again).
const DEFERRED_RETRY: Duration = Duration::from_millis(150);

/// `base` plus up to `base` at random.
fn jitter(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let extra = h.finish() % (base.as_millis() as u64 + 1);
    base + Duration::from_millis(extra)
}

/// The group's committed offset and ownership chain of one partition.
#[derive(Debug, Clone, Default)]
pub(super) struct Committed {
    pub offset: Option<i64>,
    pub chain: Chain,
}

/// Reads the committed offsets and chains of `keys` from the group coordinator.
fn read_group(
    consumer: &BaseConsumer<AgentContext>,
    keys: &[(String, i32)],
) -> Option<Vec<Committed>> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in keys {
        tpl.add_partition(t, *p);
    }
    let got = match consumer.committed_offsets(tpl, COORDINATOR_TIMEOUT) {
        Ok(got) => got,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the group's committed offsets");
            return None;
        }
    };
    let out = keys
        .iter()
        .map(|(t, p)| match got.find_partition(t, *p) {
            Some(e) => Committed {
                offset: match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                chain: Chain::parse(e.metadata()),
            },
            None => Committed::default(),
        })
        .collect();
    Some(out)
}

impl Shared {
    /// The committed offsets and ownership chains of `keys`: the chain from the commit's
    /// metadata, or from the ownership ledger when the broker returned none.
    pub(super) fn read_committed(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        keys: &[(String, i32)],
    ) -> Option<Vec<Committed>> {
        let mut all = read_group(consumer, keys)?;
        let Some(ledger) = &self.ledger else {
            return Some(all);
        };
        if all.iter().all(|c| !c.chain.entries.is_empty()) {
            return Some(all);
        }
        let chains = match ledger.chains() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the ownership ledger");
                return None;
            }
        };
        for ((t, p), c) in keys.iter().zip(all.iter_mut()) {
            if c.chain.entries.is_empty() {
                c.chain = chains.get(&source_key(t, *p)).cloned().unwrap_or_default();
            }
        }
        Some(all)
    }

    /// Decides the staged batches of one partition. Returns the highest position kept for a
    /// commit (only when `owned_now`), or `None`.
    pub(super) fn resolve(
        &self,
        key: &(String, i32),
        c: &Committed,
        owned_now: bool,
    ) -> Option<i64> {
        let source = source_key(&key.0, key.1);
        let positions = self.engine.staged_positions().remove(&source)?;
        let decisions = decide(&positions, c.offset, &c.chain, &self.store, owned_now);
        let at = |want: Decision| {
            positions
                .iter()
                .zip(&decisions)
                .filter(move |(_, d)| **d == want)
                .map(|(p, _)| *p)
        };
        let first_dropped = at(Decision::Retract).min();
        let first_unknown = at(Decision::Unknown).min();
        if let Some(up_to) = at(Decision::Publish).max() {
            let blocked = [first_dropped, first_unknown]
                .into_iter()
                .flatten()
                .any(|p| p < up_to);
            if blocked {
                tracing::error!(
                    source,
                    up_to,
                    "a staged batch to drop lies below one to publish; leaving both invisible"
                );
            } else if let Err(e) = self.engine.publish_staged(&source, up_to) {
                self.fatal(format!("publishing {source} up to {up_to}: {e}"));
                return None;
            } else {
                self.metrics.add_handover("published");
                tracing::info!(
                    source,
                    up_to,
                    "staged batches published (their commit was accepted)"
                );
            }
        }
        if let Some(from) = first_dropped {
            match self.engine.retract_staged(&source, from) {
                Ok(n) => {
                    self.metrics.add_handover("retracted");
                    tracing::info!(
                        source,
                        from,
                        batches = n,
                        "staged batches retracted (another owner's range, or never accepted)"
                    );
                }
                Err(e) => self.fatal(format!("retracting {source} from {from}: {e}")),
            }
        }
        if let Some(p) = at(Decision::Wait).min() {
            self.metrics.add_handover("waiting");
            tracing::info!(
                source,
                from = p,
                "staged batches left invisible: this store's last commit may still land; decided once the partition is taken again"
            );
        }
        if let Some(p) = first_unknown {
            self.metrics.add_handover("unknown");
            tracing::error!(source, position = p, "the ownership chain no longer reaches this staged batch; it stays invisible until an operator decides");
        }
        at(Decision::Keep).max().map(|p| p as i64)
    }

    /// Decides every staged batch of partitions this store does not hold now.
    pub(super) fn resolve_orphans(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        skip: &[(String, i32)],
    ) {
        let held: Vec<(String, i32)> = self.lock().parts.keys().cloned().collect();
        let keys: Vec<(String, i32)> = self
            .engine
            .staged_positions()
            .keys()
            .filter_map(|s| {
                let (t, p) = s.rsplit_once('/')?;
                Some((t.to_string(), p.parse().ok()?))
            })
            .filter(|k| !held.contains(k) && !skip.contains(k))
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Some(all) = self.read_committed(consumer, &keys) {
            for (k, c) in keys.iter().zip(&all) {
                self.resolve(k, c, false);
            }
        }
    }

    /// Claims `keys` through the agents' HTTP API (when `[fleet]` lists them) and returns
    /// the ones another live member still holds or claims. Kafka's rebalance protocol gives a
    /// partition to one member at a time; brokers that answer a join before the other members
    /// let go, and accept their late commits (Tansu 0.6), do not. So a member announces its
    /// claim first (`GET /v1/partitions` lists it from now on) and only then asks the others:
    /// of two members claiming at once, at least one sees the other. A busy partition's claim
    /// is withdrawn, and it is taken later ([`Shared::take_deferred`]) once nobody holds it.
    /// A member that does not answer holds nothing (it is down).
    fn claim(&self, keys: &[(String, i32)]) -> Vec<(String, i32)> {
        let Some(settings) = &self.config.http.fleet else {
            return Vec::new();
        };
        let wanted: Vec<String> = keys.iter().map(|(t, p)| source_key(t, *p)).collect();
        for w in &wanted {
            self.held.take(w.clone());
        }
        let busy = self.held_elsewhere(settings, &wanted);
        for b in &busy {
            self.held.release(b);
        }
        keys.iter()
            .filter(|(t, p)| busy.contains(&source_key(t, *p)))
            .cloned()
            .collect()
    }

    /// Are deferred partitions due for another claim?
    pub(super) fn deferred_due(&self) -> bool {
        let st = self.lock();
        !st.deferred.is_empty() && st.deferred_retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// Takes the deferred partitions nobody else holds now: decides their staged batches,
    /// seeks each to its start and consumes it from there. The caller has taken every message
    /// polled before (none of this partition's older fetches is still on its way).
    pub(super) fn take_deferred(&self, consumer: &BaseConsumer<AgentContext>) {
        let keys = self.lock().deferred.clone();
        let busy = self.claim(&keys);
        let free: Vec<(String, i32)> = keys.iter().filter(|k| !busy.contains(k)).cloned().collect();
        {
            let mut st = self.lock();
            st.deferred_retry_at = Some(Instant::now() + jitter(DEFERRED_RETRY));
            let since = *st.deferred_since.get_or_insert_with(Instant::now);
            if !busy.is_empty() && since.elapsed() >= HANDOVER_WAIT {
                tracing::warn!(?busy, waited = ?since.elapsed(), "other members still hold these partitions; not consuming them until they let go");
                st.deferred_since = Some(Instant::now());
            }
        }
        if free.is_empty() {
            return;
        }
        let Some(committed) = self.read_committed(consumer, &free) else {
            for (t, p) in &free {
                self.held.release(&source_key(t, *p));
            }
            return;
        };
        for (key, c) in free.iter().zip(&committed) {
            let Some((start, part)) = self.take_partition(consumer, key, c) else {
                self.fatal(format!(
                    "cannot read the committed offset of {}/{}; restart to retry",
                    key.0, key.1
                ));
                return;
            };
            if let Err(e) = consumer.seek(&key.0, key.1, Offset::Offset(start), COORDINATOR_TIMEOUT)
            {
                self.fatal(format!("cannot seek {}/{} to {start}: {e}", key.0, key.1));
                return;
            }
            tracing::info!(
                topic = key.0,
                partition = key.1,
                start,
                "deferred partition taken: its previous owner let go"
            );
            let mut st = self.lock();
            st.parts.insert(key.clone(), part);
            st.deferred.retain(|k| k != key);
            self.metrics
                .deferred
                .store(st.deferred.len() as u64, Ordering::Relaxed);
            if st.deferred.is_empty() {
                st.deferred_since = None;
            }
        }
    }

    /// The partitions of `wanted` that another live member's sink holds now.
    fn held_elsewhere(
        &self,
        settings: &crate::config::FleetSettings,
        wanted: &[String],
    ) -> Vec<String> {
        let mut endpoints = settings.endpoints.clone();
        if let Some(target) = &settings.endpoints_dns {
            endpoints.extend(target.resolve().unwrap_or_default());
        }
        let fleet = match crate::fleet::Fleet::new(
            endpoints,
            settings.token.clone(),
            Duration::from_millis(500),
            Duration::from_secs(2),
        ) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        };
        let Ok(answer) = fleet.holdings() else {
            return Vec::new();
        };
        answer
            .value
            .into_iter()
            .filter(|h| h.store != self.store.0)
            .flat_map(|h| h.partitions)
            .filter(|p| wanted.contains(p))
            .collect()
    }

    /// Where an assigned partition starts: its committed offset, or the log's start or end when
    /// the group has none (per `auto_offset_reset`), as a concrete offset.
    fn start_of(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        key: &(String, i32),
        committed: Option<i64>,
    ) -> Option<i64> {
        if committed.is_some() {
            return committed;
        }
        match consumer.fetch_watermarks(&key.0, key.1, COORDINATOR_TIMEOUT) {
            Ok((low, high)) => Some(match self.config.kafka.auto_offset_reset {
                OffsetReset::Earliest => low,
                OffsetReset::Latest => high,
            }),
            Err(e) => {
                tracing::warn!(topic = key.0, partition = key.1, error = %e, "cannot read the partition's watermarks");
                None
            }
        }
    }

    /// Takes newly assigned partitions: decides their staged batches, picks each start offset
    /// and the ownership chain to commit with.
    pub(super) fn on_assign(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        tpl: &mut TopicPartitionList,
    ) {
        let keys: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let busy = self.claim(&keys);
        if !busy.is_empty() {
            tracing::info!(
                ?busy,
                "another member still holds these partitions; taking them once it lets go"
            );
            let mut st = self.lock();
            st.deferred.extend(busy.iter().cloned());
            self.metrics
                .deferred
                .store(st.deferred.len() as u64, Ordering::Relaxed);
            st.deferred_retry_at = Some(Instant::now() + jitter(DEFERRED_RETRY));
        }
        let keys_now: Vec<(String, i32)> =
            keys.iter().filter(|k| !busy.contains(k)).cloned().collect();
        let committed = self.read_committed(consumer, &keys_now);
        for (i, key) in keys_now.iter().enumerate() {
            let c = committed.as_ref().map(|c| c[i].clone());
            let part = match &c {
                Some(c) => self.take_partition(consumer, key, c),
                None => None,
            };
            let Some((start, part)) = part else {
                // Without the group's offset and chain this store cannot know which of its
                // rows count: take nothing now (the partition is consumed from the committed
                // offset with nothing published until a later rebalance succeeds).
                self.fatal(format!(
                    "cannot read the committed offset of {}/{}; restart to retry",
                    key.0, key.1
                ));
                continue;
            };
            if let Some(mut e) = tpl.find_partition(&key.0, key.1) {
                let _ = e.set_offset(Offset::Offset(start));
            }
            self.held.take(source_key(&key.0, key.1));
            self.lock().parts.insert(key.clone(), part);
        }
        self.resolve_orphans(consumer, &keys);
    }

    fn take_partition(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        key: &(String, i32),
        c: &Committed,
    ) -> Option<(i64, Part)> {
        let kept = self.resolve(key, c, true);
        let published = self
            .engine
            .durable_checkpoint(&source_key(&key.0, key.1))
            .map(|o| o as i64);
        let owned_from = self.start_of(consumer, key, c.offset)?;
        // Resume after what this store holds: its kept tail, or rows published under an
        // earlier protocol beyond the committed offset.
        let start = [
            Some(owned_from),
            published.map(|p| p + 1),
            kept.map(|k| k + 1),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(owned_from);
        let shard = shard_of(&self.engine, &key.0, key.1);
        let mut part = Part::new(shard, (start > 0).then_some(start - 1));
        part.start = start;
        part.seek.sought(start, 0);
        part.chain = c.chain.taken_by(&self.store, owned_from);
        if let Some(ledger) = &self.ledger {
            if c.chain.last_owner() != Some(self.store.0.as_str()) {
                // In the ledger before anything of this ownership is consumed.
                if let Err(e) = ledger.record(&source_key(&key.0, key.1), &self.store, owned_from) {
                    tracing::error!(error = %e, "cannot record the partition's new owner");
                    return None;
                }
            }
        }
        // Kept batches still need their commit; anything else below `start` is accounted for.
        part.commit_sent = if kept.is_some() { None } else { part.durable };
        tracing::info!(topic = key.0, partition = key.1, shard, committed = ?c.offset, start, kept, published, "partition assigned");
        self.metrics
            .partition(&key.0, key.1, |g| g.durable = part.durable);
        Some((start, part))
    }

    /// Gives up revoked partitions: flushes and commits them (unless lost), then decides what
    /// is still staged from what the group committed.
    pub(super) fn on_revoke(
        &self,
        consumer: &BaseConsumer<AgentContext>,
        revoked: &[(String, i32)],
        lost: bool,
    ) {
        if lost {
            tracing::warn!(?revoked, "partitions lost");
        } else {
            tracing::info!(?revoked, "partitions revoked: flushing and committing");
            self.flush_parts(Some(revoked), true);
            // Forced: an earlier commit of the same offsets may have been refused by the
            // rebalance now under way; the next owner starts from this one.
            self.commit(consumer, Some(revoked), CommitMode::Sync, true);
        }
        {
            let mut st = self.lock();
            for k in revoked {
                st.parts.remove(k);
                self.held.release(&source_key(&k.0, k.1));
            }
            st.deferred.retain(|k| !revoked.contains(k));
            self.metrics
                .deferred
                .store(st.deferred.len() as u64, Ordering::Relaxed);
            if st.deferred.is_empty() {
                st.deferred_since = None;
            }
        }
        if self.crashed() {
            return;
        }
        // Whatever is still staged was not published by a commit: ask the group what it took
        // (only then: a closing consumer's coordinator requests time out).
        let staged = self.engine.staged_positions();
        let undecided: Vec<(String, i32)> = revoked
            .iter()
            .filter(|(t, p)| staged.contains_key(&source_key(t, *p)))
            .cloned()
            .collect();
        if undecided.is_empty() {
            return;
        }
        if let Some(all) = self.read_committed(consumer, &undecided) {
            for (k, c) in undecided.iter().zip(&all) {
                self.resolve(k, c, false);
            }
        }
    }
}
