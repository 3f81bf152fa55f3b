//! The poll/map pipeline. Two stages overlap: the consumer thread polls, takes mapped
//! messages into their partitions' batches (in poll order) and does each round's work
//! (flush, pause/resume, readiness, commit, idle sync, retention); a mapping thread decodes
//! the batch polled before, fanning out over its own rayon pool (`batch.map_threads`), so
//! that queries, which run on the engine's threads, cannot starve it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use keplordb::DynEvent;
use rayon::prelude::*;
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use super::{Key, Shared, Sink, Stopped};
use crate::mapping::MapError;

/// A polled batch and its mapping results, in poll order.
type Mapped<'c> = (Vec<BorrowedMessage<'c>>, Vec<Result<DynEvent, MapError>>);

/// Messages taken per loop iteration before batching, commit and fault checks run.
const MAX_MESSAGES_PER_ITERATION: usize = 8_000;
/// Below this many fetched messages, mapping stays on the consumer thread.
const PARALLEL_MAP_MIN: usize = 64;
/// Polled batches sent to the mapping thread and not taken yet, at most.
const MAX_IN_FLIGHT: usize = 2;

/// The consumer thread's side of the pipeline, and what its rounds keep between them.
struct Pipeline<'c> {
    /// Polled batches to the mapping thread.
    to_map: SyncSender<Vec<BorrowedMessage<'c>>>,
    /// Mapped batches back, in poll order.
    mapped: Receiver<Mapped<'c>>,
    /// Batches sent and not taken back yet.
    in_flight: usize,
    /// The longest wait for a message (`batch.linger`, clamped to 1..100 ms).
    poll_timeout: Duration,
    last_commit: Instant,
    /// Whether the last commit was accepted (after a refused one, wait a second).
    commit_ok: bool,
    last_gc: Instant,
}

impl Sink {
    /// Polls until `stop` is set or a fatal error; then flushes, fsyncs and commits.
    ///
    /// Two stages overlap: this thread polls, takes mapped messages into their partitions'
    /// batches and appends; a mapping thread (itself fanning out over the sink's mapping pool)
    /// decodes the batch polled before. Messages are taken in the order they were polled.
    pub fn run(self, stop: &AtomicBool) -> Stopped {
        std::thread::scope(|scope| {
            let (to_map, map_rx) = sync_channel::<Vec<BorrowedMessage<'_>>>(1);
            let (to_take, take_rx) = sync_channel::<Mapped<'_>>(MAX_IN_FLIGHT);
            let (shared, pool) = (&self.shared, &self.map_pool);
            scope.spawn(move || map_stage(shared, pool, map_rx, to_take));
            let poll_timeout = shared
                .config
                .batch
                .linger
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(1));
            let pipeline = Pipeline {
                to_map,
                mapped: take_rx,
                in_flight: 0,
                poll_timeout,
                last_commit: Instant::now(),
                commit_ok: true,
                last_gc: Instant::now(),
            };
            self.poll_loop(stop, pipeline)
        })
    }

    fn poll_loop<'c>(&'c self, stop: &AtomicBool, mut p: Pipeline<'c>) -> Stopped {
        while !stop.load(Ordering::Acquire) {
            if let Err(stopped) = self.round(&mut p) {
                return stopped;
            }
        }
        self.shut_down(p)
    }

    /// One round: poll, take what is mapped, then the work that costs per partition, not per
    /// message. `Err` when the sink stops (a fatal error, or a simulated crash).
    fn round<'c>(&'c self, p: &mut Pipeline<'c>) -> Result<(), Stopped> {
        let timeout = if p.in_flight > 0 {
            Duration::ZERO
        } else {
            p.poll_timeout
        };
        let fetched = self.poll_fetched(timeout);
        let polled_nothing = fetched.is_empty();
        if !polled_nothing {
            if p.to_map.send(fetched).is_err() {
                return Err(mapping_stopped());
            }
            p.in_flight += 1;
        }
        self.take_mapped(p, polled_nothing)?;
        if self.shared.deferred_due() {
            // Everything polled before is taken first: a deferred partition is consumed
            // from the seek on (librdkafka drops its older fetches).
            self.take_in_flight(p)?;
            self.shared.take_deferred(&self.consumer);
        }
        self.stop_if_fatal()?;
        let failed = self.flush_due()?;
        self.pause(&failed);
        let due = self.resumable();
        if !due.is_empty() {
            // Everything polled before the resume's seek is taken (or dropped) first.
            self.take_in_flight(p)?;
            for ((t, partition), from, rewind) in due {
                self.resume(&t, partition, from, rewind);
            }
        }
        self.update_readiness();
        self.commit_due(p)?;
        if polled_nothing {
            self.sync_published();
        }
        self.retention_gc(p);
        Ok(())
    }

    /// Waits up to `timeout` for one message, then drains what is already fetched (up to a
    /// bound): batching decisions, commits and fault checks cost per partition, not per
    /// message.
    fn poll_fetched(&self, mut timeout: Duration) -> Vec<BorrowedMessage<'_>> {
        let mut fetched = Vec::new();
        for _ in 0..MAX_MESSAGES_PER_ITERATION {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => fetched.push(m),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => self.fetch_error(&e),
                None => break,
            }
            timeout = Duration::ZERO;
        }
        fetched
    }

    /// Takes what is mapped: waits when the pipeline is full, or when there is nothing else
    /// to do than wait for the mapping thread.
    fn take_mapped<'c>(
        &'c self,
        p: &mut Pipeline<'c>,
        polled_nothing: bool,
    ) -> Result<(), Stopped> {
        let mut waited = false;
        loop {
            let next =
                if p.in_flight >= MAX_IN_FLIGHT || (p.in_flight > 0 && polled_nothing && !waited) {
                    waited = true;
                    p.mapped.recv_timeout(p.poll_timeout).ok()
                } else {
                    p.mapped.try_recv().ok()
                };
            let Some(mapped) = next else {
                return Ok(());
            };
            p.in_flight -= 1;
            self.take_batch(mapped)?;
        }
    }

    /// Takes every batch still with the mapping thread.
    fn take_in_flight<'c>(&'c self, p: &mut Pipeline<'c>) -> Result<(), Stopped> {
        while p.in_flight > 0 {
            let Ok(mapped) = p.mapped.recv() else {
                return Err(mapping_stopped());
            };
            p.in_flight -= 1;
            self.take_batch(mapped)?;
        }
        Ok(())
    }

    /// Takes a mapped batch message by message; each message is a crash point.
    fn take_batch(&self, (batch, mapped): Mapped<'_>) -> Result<(), Stopped> {
        for (m, r) in batch.iter().zip(mapped) {
            self.shared.take(m, r);
            if self.shared.crash_point() {
                return Err(Stopped::Crashed);
            }
        }
        Ok(())
    }

    /// After a fatal error: commits what is durable before the failure point, then stops.
    fn stop_if_fatal(&self) -> Result<(), Stopped> {
        let shared = &self.shared;
        let fatal = shared.lock().fatal.clone();
        let Some(why) = fatal else {
            return Ok(());
        };
        shared.flush_parts(None, true);
        shared.commit(&self.consumer, None, CommitMode::Sync, true);
        Err(Stopped::Failed(why))
    }

    /// Appends and fsyncs the due batches; everything at once when too much is buffered
    /// (appends failing: backpressure). The partitions to pause: those whose append failed,
    /// and those that met a registry outage.
    fn flush_due(&self) -> Result<Vec<Key>, Stopped> {
        let shared = &self.shared;
        let pending: u64 = shared.lock().parts.values().map(|p| p.batch_bytes).sum();
        let force = pending >= shared.config.batch.max_pending_bytes;
        let mut failed = shared.flush_parts(None, force);
        if shared.crashed() || shared.crash_point() {
            return Err(Stopped::Crashed);
        }
        failed.append(&mut shared.lock().to_pause);
        Ok(failed)
    }

    /// Commits synchronously, right after the batches became durable: their rows count only
    /// once Kafka accepted the commit (see `crate::ownership`). After a refused commit, waits
    /// a second before trying again.
    fn commit_due(&self, p: &mut Pipeline<'_>) -> Result<(), Stopped> {
        if !p.commit_ok && p.last_commit.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        p.commit_ok = self
            .shared
            .commit(&self.consumer, None, CommitMode::Sync, false);
        p.last_commit = Instant::now();
        if self.shared.crashed() {
            return Err(Stopped::Crashed);
        }
        Ok(())
    }

    /// When idle: makes the publish decisions durable, so the store's checkpoints (and a
    /// restart) need not ask Kafka again.
    fn sync_published(&self) {
        let shared = &self.shared;
        if shared.published_unsynced.swap(false, Ordering::AcqRel) {
            if let Err(e) = shared.engine.sync() {
                shared.fatal(format!("sync after publishing: {e}"));
            }
        }
    }

    /// Deletes the segments older than `engine.retention`, once a minute; with
    /// `archive.retain_until_archived`, only those the archive holds.
    fn retention_gc(&self, p: &mut Pipeline<'_>) {
        let shared = &self.shared;
        let Some(retention) = shared.config.engine.retention else {
            return;
        };
        if p.last_gc.elapsed() < Duration::from_secs(60) {
            return;
        }
        let cutoff = retention_cutoff(now_ns(), retention);
        match crate::archive::retention_gc(
            &shared.engine,
            cutoff,
            &shared.config.archive,
            &shared.archived,
        ) {
            Ok(s) if s.segments_deleted > 0 => tracing::info!(
                segments = s.segments_deleted,
                events = s.events_deleted,
                "retention gc"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention gc failed"),
        }
        p.last_gc = Instant::now();
    }

    /// A clean stop: takes what was already polled and mapped, flushes, fsyncs and commits it.
    fn shut_down(&self, p: Pipeline<'_>) -> Stopped {
        let shared = &self.shared;
        let Pipeline {
            to_map,
            mapped,
            mut in_flight,
            ..
        } = p;
        drop(to_map);
        while in_flight > 0 {
            let Ok((batch, results)) = mapped.recv() else {
                break;
            };
            in_flight -= 1;
            for (m, r) in batch.iter().zip(results) {
                shared.take(m, r);
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
}

/// The mapping stage: maps each polled batch (over `pool` when it is large enough) and sends
/// it back with its results, until either side hangs up.
fn map_stage<'c>(
    shared: &Shared,
    pool: &rayon::ThreadPool,
    batches: Receiver<Vec<BorrowedMessage<'c>>>,
    mapped: SyncSender<Mapped<'c>>,
) {
    for batch in batches {
        let results: Vec<Result<DynEvent, MapError>> = if batch.len() >= PARALLEL_MAP_MIN {
            pool.install(|| batch.par_iter().map(|m| shared.map(m)).collect())
        } else {
            batch.iter().map(|m| shared.map(m)).collect()
        };
        if mapped.send((batch, results)).is_err() {
            break;
        }
    }
}

fn mapping_stopped() -> Stopped {
    Stopped::Failed("the mapping thread stopped".into())
}

/// The time before which `retention` deletes segments, at `now_ns`. A retention longer than the
/// nanoseconds an i64 counts back from now (the config takes up to 10^12 s) keeps everything:
/// the cutoff is the earliest time there is.
fn retention_cutoff(now_ns: i64, retention: Duration) -> i64 {
    i64::try_from(now_ns as i128 - retention.as_nanos() as i128).unwrap_or(i64::MIN)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review after the `query_params` fuzz target's `since` overflow, the same cast:
    /// `now - retention.as_nanos() as i64` wrapped for retentions past i64 nanoseconds, and
    /// from about 350 years on (`engine.retention = "200000d"`) the wrapped cutoff was in the
    /// future: retention gc would have deleted every segment.
    #[test]
    fn a_retention_longer_than_the_clock_keeps_everything() {
        let now = 1_764_028_800_000_000_000;
        let day = Duration::from_secs(86_400);
        let days_before = |d: i128| (now as i128 - d * 86_400_000_000_000) as i64;
        assert_eq!(retention_cutoff(now, day * 30), days_before(30));
        // Past i64::MAX nanoseconds, and still a time after i64::MIN.
        assert_eq!(retention_cutoff(now, day * 110_000), days_before(110_000));
        for days in [150_000, 200_000, 11_574_074] {
            assert_eq!(retention_cutoff(now, day * days), i64::MIN, "{days} days");
        }
        assert_eq!(retention_cutoff(now, Duration::ZERO), now);
    }
}
