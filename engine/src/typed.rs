//! `Engine<D, C, L>`: the typed face of [`DynEngine`].
//!
//! Every method forwards to the runtime engine; `LogEvent<D, C, L>` implements [`Row`], so an
//! append reads the typed event in place with no conversion.

use std::collections::BTreeMap;

use crate::config::EngineConfig;
use crate::engine::{
    AppendTicket, DynEngine, EngineStats, GcStats, RecoveryReport, SourceCheckpoint,
};
use crate::error::{DbError, Result};
use crate::event::LogEvent;
use crate::schema::{SchemaDef, MAX_COUNTERS, MAX_DIMS, MAX_LABELS};

/// An engine storing `LogEvent<D, C, L>`: `D` dims, `C` counters, `L` labels.
///
/// `Send + Sync`: share it behind an `Arc` and append from many threads.
#[derive(Debug)]
pub struct Engine<const D: usize, const C: usize, const L: usize> {
    core: DynEngine,
}

fn fill_names(names: &mut Vec<String>, n: usize, prefix: &str, field: &'static str) -> Result<()> {
    if names.is_empty() {
        *names = (0..n).map(|i| format!("{prefix}_{i}")).collect();
    }
    if names.len() != n {
        return Err(DbError::config(
            field,
            format!(
                "{} names given, but the engine type declares {n} columns",
                names.len()
            ),
        ));
    }
    Ok(())
}

impl<const D: usize, const C: usize, const L: usize> Engine<D, C, L> {
    /// Opens (creating if needed) a data directory. Empty column-name lists in `config` are
    /// filled with `dim_0..`, `counter_0..`, `label_0..`; non-empty ones must have `D`, `C` and
    /// `L` entries.
    pub fn open(mut config: EngineConfig) -> Result<Self> {
        for (n, max, field) in [
            (D, MAX_DIMS, "dim_names"),
            (C, MAX_COUNTERS, "counter_names"),
            (L, MAX_LABELS, "label_names"),
        ] {
            if n > max {
                return Err(DbError::config(
                    field,
                    format!("the engine type declares {n} columns, at most {max} are supported"),
                ));
            }
        }
        fill_names(&mut config.dim_names, D, "dim", "dim_names")?;
        fill_names(&mut config.counter_names, C, "counter", "counter_names")?;
        fill_names(&mut config.label_names, L, "label", "label_names")?;
        Ok(Engine {
            core: DynEngine::open(config)?,
        })
    }

    /// Opens a data directory read-only, taking the schema (and column names) from its
    /// `keplordb.schema` file; the engine type's `D`, `C` and `L` must match it. Nothing is
    /// written (see [`DynEngine::open_read_only`]).
    pub fn open_read_only(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let core = DynEngine::open_read_only(dir)?;
        let s = core.schema();
        for (field, n, stored) in [
            ("dim_names", D, s.dims.len()),
            ("counter_names", C, s.counters.len()),
            ("label_names", L, s.labels.len()),
        ] {
            if n != stored {
                return Err(DbError::config(
                    field,
                    format!(
                        "the data directory has {stored} columns, the engine type declares {n}"
                    ),
                ));
            }
        }
        Ok(Engine { core })
    }

    /// The configuration the engine was opened with (column names filled in).
    pub fn config(&self) -> &EngineConfig {
        self.core.config()
    }

    /// The runtime engine underneath.
    pub fn as_dyn(&self) -> &DynEngine {
        &self.core
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaDef {
        self.core.schema()
    }

    /// Appends one event (durable per `wal_sync_every_events` / `wal_sync_bytes`).
    pub fn append(&self, event: &LogEvent<D, C, L>) -> Result<AppendTicket> {
        self.core.append(event)
    }

    /// Appends one event and fsyncs before returning.
    pub fn append_durable(&self, event: &LogEvent<D, C, L>) -> Result<AppendTicket> {
        self.core.append_durable(event)
    }

    /// Appends a batch as one WAL frame on one shard.
    pub fn append_batch(&self, events: &[LogEvent<D, C, L>]) -> Result<AppendTicket> {
        self.core.append_batch(events)
    }

    /// Appends a batch and fsyncs before returning.
    pub fn append_batch_durable(&self, events: &[LogEvent<D, C, L>]) -> Result<AppendTicket> {
        self.core.append_batch_durable(events)
    }

    /// Appends a batch to a chosen shard with an optional source checkpoint in the same frame.
    pub fn append_batch_to(
        &self,
        shard: usize,
        events: &[LogEvent<D, C, L>],
        checkpoint: Option<SourceCheckpoint<'_>>,
    ) -> Result<AppendTicket> {
        self.core.append_batch_to(shard, events, checkpoint)
    }

    /// Appends a staged batch: durable but invisible until published (see
    /// [`DynEngine::append_staged_to`]).
    pub fn append_staged_to(
        &self,
        shard: usize,
        events: &[LogEvent<D, C, L>],
        checkpoint: SourceCheckpoint<'_>,
    ) -> Result<AppendTicket> {
        self.core.append_staged_to(shard, events, checkpoint)
    }

    /// Publishes the staged batches of `source` up to `up_to` (see
    /// [`DynEngine::publish_staged`]).
    pub fn publish_staged(&self, source: &str, up_to: u64) -> Result<usize> {
        self.core.publish_staged(source, up_to)
    }

    /// Drops the staged batches of `source` from `from` on (see
    /// [`DynEngine::retract_staged`]).
    pub fn retract_staged(&self, source: &str, from: u64) -> Result<usize> {
        self.core.retract_staged(source, from)
    }

    /// The staged batches still pending, per source.
    pub fn staged_positions(&self) -> BTreeMap<String, Vec<u64>> {
        self.core.staged_positions()
    }

    /// True once the append identified by `ticket` is on stable storage.
    pub fn is_durable(&self, ticket: &AppendTicket) -> bool {
        self.core.is_durable(ticket)
    }

    /// Makes the append identified by `ticket` durable.
    pub fn wait_durable(&self, ticket: &AppendTicket) -> Result<()> {
        self.core.wait_durable(ticket)
    }

    /// Largest durable position of every source key.
    pub fn durable_checkpoints(&self) -> BTreeMap<String, u64> {
        self.core.durable_checkpoints()
    }

    /// The durable checkpoint of one source, if any.
    pub fn durable_checkpoint(&self, source: &str) -> Option<u64> {
        self.core.durable_checkpoint(source)
    }

    /// Rotates every shard's WAL into segments.
    pub fn flush(&self) -> Result<()> {
        self.core.flush()
    }

    /// fsyncs every shard.
    pub fn sync(&self) -> Result<()> {
        self.core.sync()
    }

    /// Drops whole segments whose newest event is older than `cutoff_ns`.
    pub fn gc(&self, cutoff_ns: i64) -> Result<GcStats> {
        self.core.gc(cutoff_ns)
    }

    /// Rewrites version-1 segments and segments with deleted rows as version-2 segments of
    /// their live rows (see [`DynEngine::compact`]).
    pub fn compact(&self) -> Result<crate::CompactStats> {
        self.core.compact()
    }

    /// Live events stored.
    pub fn total_events(&self) -> u64 {
        self.core.total_events()
    }

    /// Bytes on disk.
    pub fn total_bytes(&self) -> u64 {
        self.core.total_bytes()
    }

    /// Number of WAL shards.
    pub fn shard_count(&self) -> usize {
        self.core.shard_count()
    }

    /// Work counters since open.
    pub fn stats(&self) -> EngineStats {
        self.core.stats()
    }

    /// What open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.core.recovery_report()
    }

    /// Every live event, in no particular order (a full scan).
    pub fn scan_events(&self, mut f: impl FnMut(LogEvent<D, C, L>)) -> Result<()> {
        self.core.scan_events(|e| f(to_typed(e)))
    }
}

/// Converts a runtime event of this engine's own shape into its typed form.
pub(crate) fn to_typed<const D: usize, const C: usize, const L: usize>(
    e: crate::event::DynEvent,
) -> LogEvent<D, C, L> {
    let mut counters = [0u32; C];
    for (a, b) in counters.iter_mut().zip(e.counters) {
        *a = b;
    }
    let mut dims = e.dims.into_iter();
    let mut labels = e.labels.into_iter();
    LogEvent {
        id: e.id,
        ts_ns: e.ts_ns,
        metric: e.metric,
        counters,
        latency_ms: e.latency_ms,
        latency_detail_ms: e.latency_detail_ms,
        status: e.status,
        flags: e.flags,
        dims: std::array::from_fn(|_| dims.next().unwrap_or_default()),
        labels: std::array::from_fn(|_| labels.next().unwrap_or_default()),
    }
}

use crate::query::{
    self, Aggregate, Bucket, EventRef, GroupBy, Groups, QueryFilter, RollupKey, RollupValue,
    SplitSeries,
};

impl<const D: usize, const C: usize, const L: usize> Engine<D, C, L> {
    /// Exact sums over the events matching `filter`.
    pub fn aggregate(&self, filter: &QueryFilter<D>) -> Result<Aggregate<C>> {
        let totals = query::aggregate(&self.core.snapshot(), &filter.as_ref())?;
        Ok(crate::query::DynAggregate::from_totals(totals).typed::<C>())
    }

    /// The newest `limit` events matching `filter`, newest first. Page on with
    /// `filter.cursor = Some(Cursor::from(&page[page.len() - 1]))`.
    pub fn query_recent(
        &self,
        filter: &QueryFilter<D>,
        limit: usize,
    ) -> Result<Vec<EventRef<D, C, L>>> {
        query::recent(&self.core.snapshot(), &filter.as_ref(), limit)
    }

    /// The event with id `id` (the newest, if several share it).
    pub fn get_event(&self, id: &str) -> Result<Option<EventRef<D, C, L>>> {
        query::get_event(&self.core.snapshot(), id)
    }

    /// The aggregate per value of `by.dims` over the events matching `filter`, the largest
    /// `by.limit` groups by `by.order` and the rest in `others`. See [`DynEngine::group_by`].
    pub fn group_by(&self, filter: &QueryFilter<D>, by: &GroupBy) -> Result<Groups> {
        self.core.group_by_ref(&filter.as_ref(), by)
    }

    /// The aggregate per UTC-aligned bucket of `every_ns`. See [`DynEngine::time_series`].
    pub fn time_series(&self, filter: &QueryFilter<D>, every_ns: i64) -> Result<Vec<Bucket>> {
        self.core.time_series_ref(&filter.as_ref(), every_ns)
    }

    /// A time series per largest group of `by.dims`, and the rest summed. See
    /// [`DynEngine::time_series_by`].
    pub fn time_series_by(
        &self,
        filter: &QueryFilter<D>,
        every_ns: i64,
        by: &GroupBy,
    ) -> Result<SplitSeries> {
        self.core.time_series_by_ref(&filter.as_ref(), every_ns, by)
    }

    /// Deletes every event with id `id`; false when none was live.
    pub fn delete_event(&self, id: &str) -> Result<bool> {
        self.core.delete_event(id)
    }

    /// Deletes every event carrying one of `ids`; returns how many ids matched.
    pub fn delete_events(&self, ids: &[&str]) -> Result<usize> {
        self.core.delete_events(ids)
    }

    /// Rollup buckets of UTC days `from_day..=to_day`, one optional filter per rollup dim.
    pub fn query_rollups(
        &self,
        from_day: i64,
        to_day: i64,
        filters: &[Option<&str>],
    ) -> Result<Vec<(RollupKey, RollupValue)>> {
        self.core.query_rollups(from_day, to_day, filters)
    }
}
