//! Flow control and readiness: partitions whose append failed (or whose registry is down)
//! are paused and resumed, rewound to their next offset, once their retry is due; readiness
//! turns false while a partition with messages to read makes no progress.
//!
//! What decides (paused, stuck, the high watermark) is the sink's own per-partition state;
//! the partition gauges of `crate::metrics` only mirror it for display.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Key, Sink, State};

impl Sink {
    /// Readiness: the group was joined, nothing fatal is pending, and no partition with
    /// messages to read has been without progress for `errors.stuck_after`.
    pub(super) fn update_readiness(&self) {
        let limit = self.shared.config.errors.stuck_after;
        let (stuck, healthy) = {
            let mut st = self.shared.lock();
            let healthy = st.assigned && st.fatal.is_none();
            let State {
                parts,
                fetch_errors,
                ..
            } = &mut *st;
            let last_error = fetch_errors.last.as_deref();
            let stuck: Vec<(Key, bool)> = parts
                .iter_mut()
                .map(|(k, p)| (k.clone(), p.check_stuck(k, limit, last_error)))
                .collect();
            (stuck, healthy)
        };
        // The gauges once the state lock is released: the two are never held together.
        let stuck_any = stuck.iter().any(|(_, s)| *s);
        self.shared.metrics.mirror_partitions(|gauges| {
            for (k, s) in &stuck {
                if let Some(g) = gauges.get_mut(k) {
                    g.stuck = *s;
                }
            }
        });
        self.shared
            .ready
            .store(healthy && !stuck_any, Ordering::Release);
    }

    /// Pauses `keys` in the consumer: partitions whose append failed, that met a registry
    /// outage, or that read again from an earlier offset to check a gap.
    pub(super) fn pause(&self, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let mut paused = Vec::with_capacity(keys.len());
        {
            let mut st = self.shared.lock();
            for (t, p) in keys {
                let _ = tpl.add_partition(t, *p);
                if let Some(part) = st.parts.get_mut(&(t.clone(), *p)) {
                    part.paused = true;
                    paused.push((t, *p));
                }
            }
        }
        for (t, p) in paused {
            self.shared.metrics.partition(t, p, |g| g.paused = true);
        }
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(error = %e, "pause failed");
        }
    }

    /// Paused partitions whose retry is due (durable again, the registry to be asked again,
    /// or a gap to check), with the offset to resume at and whether it is a rewind.
    pub(super) fn resumable(&self) -> Vec<(Key, i64, bool)> {
        let now = Instant::now();
        self.shared
            .lock()
            .parts
            .iter()
            .filter(|(_, p)| p.paused && p.retry_at.is_none_or(|r| now >= r))
            .map(|(k, p)| match p.rewind_to {
                Some(to) => (k.clone(), to, true),
                None => (k.clone(), p.durable.map_or(p.start, |d| d + 1), false),
            })
            .collect()
    }

    /// Resumes a partition at `from` (a rewind: no lower than the log's start).
    pub(super) fn resume(&self, t: &str, p: i32, from: i64, rewind: bool) {
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition(t, p);
        if self.consumer.resume(&tpl).is_err() {
            return;
        }
        let (from, floor) = if rewind {
            self.rewind_floor(t, p, from)
        } else {
            (from, 0)
        };
        if let Some(part) = self.shared.lock().parts.get_mut(&(t.to_string(), p)) {
            part.retry_at = None;
            part.paused = false;
            part.rewind_to = None;
            part.seek.sought(from, floor);
        }
        // Messages fetched while paused were dropped: read them again (what was taken
        // already is skipped by offset).
        if let Err(e) = self
            .consumer
            .seek(t, p, Offset::Offset(from), Duration::from_secs(5))
        {
            tracing::warn!(topic = t, partition = p, error = %e, "seek after resume failed");
        }
        self.shared.metrics.partition(t, p, |g| g.paused = false);
        tracing::info!(topic = t, partition = p, "partition resumed");
    }

    /// A rewind's target no lower than the log's start, and that start. Seeking below it would
    /// hand the partition to `auto.offset.reset`; when the start cannot be read, the rewind
    /// goes no lower than `to`, and a gap after it is believed.
    fn rewind_floor(&self, t: &str, p: i32, to: i64) -> (i64, i64) {
        match self.consumer.fetch_watermarks(t, p, Duration::from_secs(5)) {
            Ok((low, _)) => (to.max(low), low),
            Err(e) => {
                tracing::warn!(topic = t, partition = p, error = %e, "cannot read the log's start to check a gap; believing it");
                (to, to)
            }
        }
    }
}
