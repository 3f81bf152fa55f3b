//! Flow control and readiness: partitions whose append failed (or whose registry is down)
//! are paused and resumed, rewound to their next offset, once their retry is due; readiness
//! turns false while a partition with messages to read makes no progress.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Key, Sink};

impl Sink {
    /// Readiness: the group was joined, nothing fatal is pending, and no partition with
    /// messages to read has been without progress for `errors.stuck_after`.
    pub(super) fn update_readiness(&self) {
        let limit = self.shared.config.errors.stuck_after;
        // (partition, next offset to take, idle for longer than the limit), then the gauges:
        // the state lock is never held together with the metrics lock.
        let (parts, healthy) = {
            let st = self.shared.lock();
            let parts: Vec<(Key, i64, bool)> = st
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
    pub(super) fn pause_resume(&self, failed: &[Key]) {
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
        let resumable: Vec<(Key, i64)> = {
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
