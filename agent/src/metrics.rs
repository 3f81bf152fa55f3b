//! Prometheus metrics, rendered by hand in the text exposition format. Names are constants;
//! labels are bounded (reasons, endpoints, assigned partitions).
//!
//! Rendering asks the engine for its figures, which take every shard's lock (held across a
//! WAL fsync during a rotation): [`Metrics::render`] blocks, and `/metrics` runs it on a
//! blocking thread, never on an async worker.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const MESSAGES_CONSUMED: &str = "keplor_messages_consumed_total";
pub const EVENTS_APPENDED: &str = "keplor_events_appended_total";
pub const MESSAGES_REJECTED: &str = "keplor_messages_rejected_total";
pub const DLQ_PRODUCED: &str = "keplor_dlq_produced_total";
pub const APPEND_ERRORS: &str = "keplor_append_errors_total";
pub const COMMITS: &str = "keplor_offset_commits_total";
pub const OFFSETS_SKIPPED: &str = "keplor_offsets_skipped_total";
pub const GAP_REWINDS: &str = "keplor_gap_rewinds_total";
pub const HANDOVER_DECISIONS: &str = "keplor_staged_decisions_total";
pub const PARTITIONS_DEFERRED: &str = "keplor_partitions_deferred";
pub const BYTES_CONSUMED: &str = "keplor_bytes_consumed_total";
pub const COMMIT_FAILURES: &str = "keplor_offset_commit_failures_total";
pub const COMMIT_SECONDS: &str = "keplor_offset_commit_seconds";
pub const REBALANCES: &str = "keplor_rebalances_total";
pub const CONSUMER_ERRORS: &str = "keplor_consumer_errors_total";
pub const STUCK: &str = "keplor_partition_stuck";
pub const COMMITTED_OFFSET: &str = "keplor_partition_committed_offset";
pub const DURABLE_OFFSET: &str = "keplor_partition_durable_offset";
pub const CONSUMER_LAG: &str = "keplor_partition_consumer_lag";
pub const PAUSED: &str = "keplor_partition_paused";
pub const BATCH_EVENTS: &str = "keplor_batch_events";
pub const FSYNC_SECONDS: &str = "keplor_fsync_seconds";
pub const APPEND_SECONDS: &str = "keplor_append_seconds";
pub const QUERY_SECONDS: &str = "keplor_query_seconds";
pub const QUERIES_REJECTED: &str = "keplor_queries_rejected_total";
pub const QUERIES_TIMED_OUT: &str = "keplor_queries_timed_out_total";
pub const QUERIES_IN_FLIGHT: &str = "keplor_queries_in_flight";
pub const QUERIES_CANCELLED: &str = "keplor_queries_cancelled_total";
pub const ENGINE_EVENTS: &str = "keplor_engine_events";
pub const ENGINE_BYTES: &str = "keplor_engine_bytes";
pub const ENGINE_SEGMENTS: &str = "keplor_engine_segments";
pub const ENGINE_SEGMENT_CACHE_BYTES: &str = "keplor_engine_segment_cache_bytes";
pub const ENGINE_SEGMENT_RELOADS: &str = "keplor_engine_segment_reloads_total";
pub const ARCHIVE_LAG: &str = "keplor_archive_lag_segments";
pub const ARCHIVED_SEGMENTS: &str = "keplor_archived_segments_total";
pub const ARCHIVED_BYTES: &str = "keplor_archived_bytes_total";
pub const ARCHIVE_FAILURES: &str = "keplor_archive_failures_total";

/// A histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records a value (seconds for time histograms, a count for size ones).
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let wrap = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            wrap(labels),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            wrap(labels),
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// Per-partition state shown in metrics: a mirror of what the sink keeps (and decides from)
/// in its own state, never read back by it.
#[derive(Debug, Clone, Default)]
pub struct PartitionGauges {
    pub committed: Option<i64>,
    pub durable: Option<i64>,
    pub high_watermark: Option<i64>,
    pub paused: bool,
    /// Messages to read but no progress for `errors.stuck_after`.
    pub stuck: bool,
}

/// Everything the agent measures.
#[derive(Debug)]
pub struct Metrics {
    pub consumed: AtomicU64,
    pub appended: AtomicU64,
    pub dlq_produced: AtomicU64,
    pub append_errors: AtomicU64,
    pub commits: AtomicU64,
    pub offsets_skipped: AtomicU64,
    /// Rewinds to check a gap right after a seek (`sink::seek_check`).
    pub gap_rewinds: AtomicU64,
    /// Payload bytes of the messages read.
    pub bytes_consumed: AtomicU64,
    /// Offset commits Kafka refused or that timed out.
    pub commit_failures: AtomicU64,
    /// Rebalance callbacks: partitions assigned, revoked.
    pub rebalances_assigned: AtomicU64,
    pub rebalances_revoked: AtomicU64,
    /// Partitions assigned to this member that another member's sink still holds.
    pub deferred: AtomicU64,
    /// Queries (and fan-outs) refused with a 429 for `http.max_concurrent_queries`.
    pub queries_rejected: AtomicU64,
    /// Queries answered 503 for `http.request_timeout`.
    pub queries_timed_out: AtomicU64,
    /// Queries holding the engine now (those timed out but still running included).
    pub queries_in_flight: AtomicU64,
    /// Queries that stopped at a check between engine calls after their request timed out or
    /// went away.
    pub queries_cancelled: AtomicU64,
    /// Sealed segments not archived yet; `u64::MAX` while the archive is off or has not
    /// looked yet (the gauge is then absent).
    archive_lag: AtomicU64,
    archived_segments: AtomicU64,
    archived_bytes: AtomicU64,
    archive_failures: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    handover: Mutex<BTreeMap<&'static str, u64>>,
    consumer_errors: Mutex<BTreeMap<String, u64>>,
    pub partitions: Mutex<BTreeMap<(String, i32), PartitionGauges>>,
    pub batch_events: Histogram,
    pub fsync_seconds: Histogram,
    pub append_seconds: Histogram,
    pub commit_seconds: Histogram,
    queries: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Tests: runs where rendering starts asking the engine, to stand for an engine call that
    /// blocks.
    #[cfg(test)]
    pub(crate) before_engine: EngineHook,
}

/// A test hook run where the engine is about to be asked (for its figures, or a query).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct EngineHook(Mutex<Option<std::sync::Arc<dyn Fn() + Send + Sync>>>);

#[cfg(test)]
impl EngineHook {
    /// Runs `f` at every render from now on.
    pub(crate) fn set(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::new(f));
    }

    /// Runs the hook, if set; several threads may be in it at once.
    pub(crate) fn run(&self) {
        let f = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(f) = f {
            f();
        }
    }
}

#[cfg(test)]
impl std::fmt::Debug for EngineHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineHook")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            consumed: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            dlq_produced: AtomicU64::new(0),
            append_errors: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            offsets_skipped: AtomicU64::new(0),
            gap_rewinds: AtomicU64::new(0),
            bytes_consumed: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            rebalances_assigned: AtomicU64::new(0),
            rebalances_revoked: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            queries_rejected: AtomicU64::new(0),
            queries_timed_out: AtomicU64::new(0),
            queries_in_flight: AtomicU64::new(0),
            queries_cancelled: AtomicU64::new(0),
            archive_lag: AtomicU64::new(u64::MAX),
            archived_segments: AtomicU64::new(0),
            archived_bytes: AtomicU64::new(0),
            archive_failures: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            handover: Mutex::new(BTreeMap::new()),
            consumer_errors: Mutex::new(BTreeMap::new()),
            partitions: Mutex::new(BTreeMap::new()),
            batch_events: Histogram::new(SIZE_BUCKETS),
            fsync_seconds: Histogram::new(SECONDS_BUCKETS),
            append_seconds: Histogram::new(SECONDS_BUCKETS),
            commit_seconds: Histogram::new(SECONDS_BUCKETS),
            queries: Mutex::new(BTreeMap::new()),
            #[cfg(test)]
            before_engine: EngineHook::default(),
        }
    }
}

impl Metrics {
    /// The archive's lag: sealed segments not archived yet.
    pub fn set_archive_lag(&self, segments: u64) {
        self.archive_lag.store(segments, Ordering::Relaxed);
    }

    /// The archive's lag, once known.
    pub fn archive_lag(&self) -> Option<u64> {
        Some(self.archive_lag.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }

    /// A segment was archived as `bytes` of Parquet.
    pub fn archived(&self, bytes: u64) {
        self.archived_segments.fetch_add(1, Ordering::Relaxed);
        self.archived_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An archiving pass failed (it is retried).
    pub fn archive_failed(&self) {
        self.archive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A message was rejected for `reason` (a bounded label).
    pub fn rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Staged batches of a partition were decided at a handover (`published`, `retracted`, `waiting`,
    /// `unknown`).
    pub fn add_handover(&self, kind: &'static str) {
        *self
            .handover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// A fetch or decode failed (`kind`: librdkafka's error code, or `registry`).
    pub fn consumer_error(&self, kind: &str) {
        *self
            .consumer_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// Consumer errors of `kind` so far.
    pub fn consumer_errors(&self, kind: &str) -> u64 {
        self.consumer_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// A query on `endpoint` took `d`.
    pub fn query(&self, endpoint: &'static str, d: Duration) {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(endpoint)
            .or_insert_with(|| Histogram::new(SECONDS_BUCKETS))
            .observe_duration(d);
    }

    /// Updates one partition's gauges.
    pub fn partition(&self, topic: &str, partition: i32, f: impl FnOnce(&mut PartitionGauges)) {
        let mut map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry((topic.to_string(), partition)).or_default());
    }

    /// Updates the gauges of several partitions under one lock.
    pub fn mirror_partitions(&self, f: impl FnOnce(&mut BTreeMap<(String, i32), PartitionGauges>)) {
        f(&mut self.partitions.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Forgets a partition (revoked).
    pub fn remove_partition(&self, topic: &str, partition: i32) {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_string(), partition));
    }

    /// The text exposition. Blocks on the engine's shard locks: call it from a blocking
    /// thread, not an async worker.
    pub fn render(&self, engine: &keplordb::DynEngine) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        self.render_labelled(&mut out);
        self.render_partitions(&mut out);
        self.render_histograms(&mut out);
        #[cfg(test)]
        self.before_engine.run();
        render_engine(&mut out, engine);
        crate::process_metrics::render(&mut out, &engine.config().data_dir, engine);
        out
    }

    /// The plain counters, and the deferred partitions gauge.
    fn render_counters(&self, out: &mut String) {
        for (name, help, v) in [
            (
                MESSAGES_CONSUMED,
                "Messages read from Kafka.",
                &self.consumed,
            ),
            (
                EVENTS_APPENDED,
                "Events appended to the engine and durable.",
                &self.appended,
            ),
            (
                DLQ_PRODUCED,
                "Poison messages produced to the dead-letter topic.",
                &self.dlq_produced,
            ),
            (
                APPEND_ERRORS,
                "Failed appends (the partition is paused and retried).",
                &self.append_errors,
            ),
            (COMMITS, "Offset commits sent to Kafka.", &self.commits),
            (
                QUERIES_REJECTED,
                "Queries refused (429) because http.max_concurrent_queries were running.",
                &self.queries_rejected,
            ),
            (
                QUERIES_TIMED_OUT,
                "Queries answered 503 after http.request_timeout (their work stops at its next check, or ends holding its slot).",
                &self.queries_timed_out,
            ),
            (
                QUERIES_CANCELLED,
                "Queries that stopped between two engine calls because their request timed out or went away.",
                &self.queries_cancelled,
            ),
            (
                OFFSETS_SKIPPED,
                "Offsets between two consumed messages that the broker did not deliver (retention, compaction).",
                &self.offsets_skipped,
            ),
            (
                GAP_REWINDS,
                "Partitions read again from an earlier offset to check a gap right after a seek (a broker answering from the next batch).",
                &self.gap_rewinds,
            ),
            (
                BYTES_CONSUMED,
                "Payload bytes of the messages read from Kafka.",
                &self.bytes_consumed,
            ),
            (
                COMMIT_FAILURES,
                "Offset commits Kafka refused or that failed (retried; their batches stay staged until one is accepted).",
                &self.commit_failures,
            ),
            (
                ARCHIVED_SEGMENTS,
                "Sealed segments written to the archive as Parquet.",
                &self.archived_segments,
            ),
            (
                ARCHIVED_BYTES,
                "Bytes of the Parquet files written to the archive.",
                &self.archived_bytes,
            ),
            (
                ARCHIVE_FAILURES,
                "Archiving passes that failed (retried at the next archive.interval).",
                &self.archive_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {REBALANCES} Rebalance callbacks, by what they did to this agent's partitions.\n# TYPE {REBALANCES} counter\n{REBALANCES}{{kind=\"assigned\"}} {}\n{REBALANCES}{{kind=\"revoked\"}} {}",
            self.rebalances_assigned.load(Ordering::Relaxed),
            self.rebalances_revoked.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {PARTITIONS_DEFERRED} Partitions assigned to this agent that another member still holds (not consumed until it lets go).\n# TYPE {PARTITIONS_DEFERRED} gauge\n{PARTITIONS_DEFERRED} {}",
            self.deferred.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {QUERIES_IN_FLIGHT} Queries holding one of the http.max_concurrent_queries slots (timed-out ones still running included).\n# TYPE {QUERIES_IN_FLIGHT} gauge\n{QUERIES_IN_FLIGHT} {}",
            self.queries_in_flight.load(Ordering::Relaxed)
        );
        if let Some(lag) = self.archive_lag() {
            let _ = writeln!(
                out,
                "# HELP {ARCHIVE_LAG} Sealed segments not archived yet.\n# TYPE {ARCHIVE_LAG} gauge\n{ARCHIVE_LAG} {lag}"
            );
        }
    }

    /// The counters with a label: rejections by reason, handover decisions by outcome,
    /// consumer errors by kind.
    fn render_labelled(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {MESSAGES_REJECTED} Messages that failed to decode or map, by reason.\n# TYPE {MESSAGES_REJECTED} counter");
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{MESSAGES_REJECTED}{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP {HANDOVER_DECISIONS} Decisions on staged batches taken from the ownership chain when partitions change hands, by outcome.\n# TYPE {HANDOVER_DECISIONS} counter");
        for (kind, n) in self
            .handover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{HANDOVER_DECISIONS}{{outcome=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP {CONSUMER_ERRORS} Fetched batches or messages that could not be used, by kind.\n# TYPE {CONSUMER_ERRORS} counter");
        for (kind, n) in self
            .consumer_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{CONSUMER_ERRORS}{{kind=\"{}\"}} {n}", escape(kind));
        }
    }

    /// The per-partition gauges.
    fn render_partitions(&self, out: &mut String) {
        let parts = self
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, help) in [
            (
                COMMITTED_OFFSET,
                "Last offset committed to Kafka (next offset to read).",
            ),
            (DURABLE_OFFSET, "Last offset durable in the engine."),
            (
                CONSUMER_LAG,
                "Messages between the partition's high watermark and the durable offset.",
            ),
            (
                PAUSED,
                "1 while the partition is paused (backpressure or failed appends).",
            ),
            (
                STUCK,
                "1 while the partition has messages to read and made no progress for errors.stuck_after.",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for ((topic, p), g) in &parts {
                let v = match name {
                    COMMITTED_OFFSET => g.committed,
                    DURABLE_OFFSET => g.durable,
                    // From the next offset to store: after the durable one, else where the
                    // group's commit says consumption starts; unknown before either.
                    CONSUMER_LAG => g
                        .high_watermark
                        .zip(g.durable.map(|d| d + 1).or(g.committed))
                        .map(|(hw, next)| (hw - next).max(0)),
                    PAUSED => Some(g.paused as i64),
                    _ => Some(g.stuck as i64),
                };
                if let Some(v) = v {
                    let _ = writeln!(
                        out,
                        "{name}{{topic=\"{}\",partition=\"{p}\"}} {v}",
                        escape(topic)
                    );
                }
            }
        }
    }

    /// The histograms: batch sizes, fsync and append times, query latency by endpoint.
    fn render_histograms(&self, out: &mut String) {
        for (name, help, h) in [
            (
                BATCH_EVENTS,
                "Events per appended batch.",
                &self.batch_events,
            ),
            (
                FSYNC_SECONDS,
                "Time to make an appended batch durable (fsync).",
                &self.fsync_seconds,
            ),
            (
                APPEND_SECONDS,
                "Time to append a batch (WAL write).",
                &self.append_seconds,
            ),
            (
                COMMIT_SECONDS,
                "Time Kafka took to accept (or refuse) a synchronous offset commit.",
                &self.commit_seconds,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(out, name, "");
        }
        let _ = writeln!(
            out,
            "# HELP {QUERY_SECONDS} Query latency by endpoint.\n# TYPE {QUERY_SECONDS} histogram"
        );
        for (endpoint, h) in self
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            h.render(out, QUERY_SECONDS, &format!("endpoint=\"{endpoint}\""));
        }
    }
}

/// The engine's figures: events, bytes and segments. Takes every shard's lock.
fn render_engine(out: &mut String, engine: &keplordb::DynEngine) {
    let stats = engine.stats();
    for (name, help, v) in [
        (ENGINE_EVENTS, "Live events stored.", engine.total_events()),
        (
            ENGINE_BYTES,
            "Bytes of segments and WAL files.",
            engine.total_bytes(),
        ),
        (
            ENGINE_SEGMENTS,
            "Segments in the engine.",
            stats.segments as u64,
        ),
        (
            ENGINE_SEGMENT_CACHE_BYTES,
            "Bytes of decoded segment columns in memory (bounded by engine.segment_cache).",
            stats.segment_cache_bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let name = ENGINE_SEGMENT_RELOADS;
    let _ = writeln!(
        out,
        "# HELP {name} Segments decoded again because engine.segment_cache had dropped them.\n\
         # TYPE {name} counter\n{name} {}",
        stats.segment_reloads
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod lag_tests {
    use super::*;

    fn lag_line(g: PartitionGauges) -> Option<String> {
        let m = Metrics::default();
        m.partitions.lock().unwrap().insert(("in".into(), 0), g);
        let mut out = String::new();
        m.render_partitions(&mut out);
        out.lines()
            .find(|l| l.starts_with(&format!("{CONSUMER_LAG}{{")))
            .map(str::to_string)
    }

    #[test]
    fn lag_counts_from_the_next_offset_to_store() {
        let g = |committed, durable, hw| PartitionGauges {
            committed,
            durable,
            high_watermark: hw,
            ..Default::default()
        };
        let want = |v: i64| {
            Some(format!(
                "{CONSUMER_LAG}{{topic=\"in\",partition=\"0\"}} {v}"
            ))
        };
        assert_eq!(lag_line(g(Some(90), Some(120), Some(150))), want(29));
        // Nothing durable yet in this store: from the group's committed offset, not from 0.
        assert_eq!(lag_line(g(Some(100), None, Some(150))), want(50));
        assert_eq!(lag_line(g(None, None, Some(150))), None);
        assert_eq!(lag_line(g(None, Some(200), Some(150))), want(0));
    }
}
