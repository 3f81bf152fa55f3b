//! The continuous archive (`[archive]`): every sealed segment of the store also written as
//! Parquet, `dir/dt=YYYY-MM-DD/<store>-<generation>-<part>.parquet` (one file per UTC day the
//! segment spans), on a thread of the agent; the engine has no threads of its own.
//!
//! Crash safety: every file is written under a temporary name, fsynced, renamed into place and
//! its directory fsynced ([`ArchiveStore::commit`]); then the manifest
//! (`dir/_keplor/<store>.json`, see [`manifest`]) is rewritten the same way with the segment
//! added. On start, temporary files are removed, and a file renamed into place but not in the
//! manifest (a crash between the two) is rewritten under the same name when its segment is
//! archived again, or adopted into the manifest when the segment is gone. So a crash at any
//! point neither loses nor duplicates a file, and the archiver resumes where it stopped.
//!
//! Deletes reach the archive: the manifest records how many events each segment's files hold,
//! and a segment whose live rows are fewer now (events deleted after it was archived) is
//! written again under the same names, each file replaced by a rename; a day left with no
//! rows loses its file. Until then retention does not count the segment as archived. Events
//! deleted after gc dropped their segment stay in the archive: the engine no longer knows
//! them.
//!
//! Each event's Kafka source (topic, partition, offset) is in the archive because the schema
//! must map them to columns when the archive is on (`config::archive`).

pub mod manifest;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use keplordb::export::ParquetOptions;
use keplordb::{date_of_day, DynEngine, SegmentInfo};

use crate::config::ArchiveSettings;
use crate::metrics::Metrics;
use manifest::{Entry, Manifest};
use store::{ArchiveStore, LocalDir};

/// The directory of the manifests, ignored by Hive-style readers (a leading `_`).
const MANIFEST_DIR: &str = "_keplor";

/// Which segments are archived and with how many events, shared with retention
/// (`archive.retain_until_archived`). Until the archiver has read its manifest, nothing counts
/// as archived.
#[derive(Debug, Default)]
pub struct Progress {
    archived: Mutex<BTreeMap<(u64, u16), Option<u64>>>,
}

impl Progress {
    /// True once `s` is in the archive as it is now: with its deletes, if any came after it
    /// was first archived.
    pub fn is_archived(&self, s: &SegmentInfo) -> bool {
        self.lock()
            .get(&(s.generation, s.part_index))
            .is_some_and(|events| is_current(*events, s))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u16), Option<u64>>> {
        self.archived.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// True when files holding `events` events (`None`: adopted after a crash, counted unknown)
/// are the archive of `s` as it is now.
fn is_current(events: Option<u64>, s: &SegmentInfo) -> bool {
    events.is_none_or(|n| n == s.live_rows)
}

/// Writes sealed segments to an [`ArchiveStore`] and records them in the manifest.
#[derive(Debug)]
pub struct Archiver<S: ArchiveStore> {
    engine: Arc<DynEngine>,
    store: S,
    store_id: String,
    opts: ParquetOptions,
    manifest: Manifest,
    /// Committed files of this store that the manifest does not list, by segment.
    orphans: BTreeMap<(u64, u16), Vec<String>>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
}

impl Archiver<LocalDir> {
    /// The archiver of `settings.dir`, recovered from a crash (see the module's doc).
    pub fn open_local(
        engine: Arc<DynEngine>,
        settings: &ArchiveSettings,
        store_id: &str,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let dir = settings.dir.as_deref().context("archive.dir is not set")?;
        let store = LocalDir::open(dir)
            .with_context(|| format!("opening the archive {}", dir.display()))?;
        let opts = ParquetOptions::default().with_row_group_rows(settings.row_group_rows);
        Archiver::open(engine, store, store_id, opts, progress, metrics)
    }
}

impl<S: ArchiveStore + 'static> Archiver<S> {
    /// The archiver of `store`: temporary files removed, the manifest read, orphans found.
    pub fn open(
        engine: Arc<DynEngine>,
        store: S,
        store_id: &str,
        opts: ParquetOptions,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let removed = store
            .remove_temporaries()
            .context("removing the archive's temporary files")?;
        let name = manifest_name(store_id);
        let manifest = match store.read(&name).context("reading the archive manifest")? {
            Some(bytes) => Manifest::parse(&bytes, store_id)
                .map_err(|e| anyhow::anyhow!("the archive manifest {name}: {e}"))?,
            None => Manifest::new(store_id),
        };
        let listed: BTreeSet<&str> = manifest.files().collect();
        let mut orphans: BTreeMap<(u64, u16), Vec<String>> = BTreeMap::new();
        for file in store.list("dt=").context("listing the archive")? {
            if listed.contains(file.as_str()) {
                continue;
            }
            if let Some(key) = parse_file_name(&file, store_id) {
                orphans.entry(key).or_default().push(file);
            }
        }
        if removed > 0 || !orphans.is_empty() {
            tracing::info!(
                temporaries = removed,
                orphans = orphans.len(),
                "archive recovered after a crash"
            );
        }
        *progress.lock() = manifest.archived();
        Ok(Archiver {
            engine,
            store,
            store_id: store_id.to_string(),
            opts,
            manifest,
            orphans,
            progress,
            metrics,
        })
    }

    /// Archives every sealed segment not archived yet, or archived before some of its events
    /// were deleted, oldest first, until `stop` is set; adopts orphans whose segment is gone.
    /// Returns the segments written.
    pub fn pass(&mut self, stop: &AtomicBool) -> anyhow::Result<usize> {
        let segments = self.engine.segments();
        let present: BTreeSet<(u64, u16)> = segments
            .iter()
            .map(|s| (s.generation, s.part_index))
            .collect();
        let gone: Vec<(u64, u16)> = self
            .orphans
            .keys()
            .filter(|k| !present.contains(k) && !self.manifest.contains(k.0, k.1))
            .copied()
            .collect();
        for key in gone {
            self.adopt(key)?;
        }
        let mut pending: Vec<&SegmentInfo> = segments
            .iter()
            .filter(|s| {
                !self
                    .manifest
                    .events(s.generation, s.part_index)
                    .is_some_and(|events| is_current(events, s))
            })
            .collect();
        pending.reverse();
        let mut lag = pending.len() as u64;
        self.metrics.set_archive_lag(lag);
        let mut done = 0;
        for s in pending {
            if stop.load(Ordering::Acquire) {
                break;
            }
            if self.archive(s)? {
                done += 1;
            }
            lag -= 1;
            self.metrics.set_archive_lag(lag);
        }
        Ok(done)
    }

    /// Writes segment `s` (again, if it was archived before deletes) and records it; false when
    /// the segment went away meanwhile (gc, or compaction under another id: the next pass sees
    /// the new id).
    fn archive(&mut self, s: &SegmentInfo) -> anyhow::Result<bool> {
        let mut names = Vec::new();
        let written = self.engine.export_segment(s.id, &self.opts, |day| {
            let name = file_name(day, &self.store_id, s.generation, s.part_index);
            let pending = self
                .store
                .begin(&name)
                .with_context(|| format!("starting the archive file {name}"))?;
            names.push(name);
            anyhow::Ok(pending)
        })?;
        let Some(files) = written else {
            return Ok(false);
        };
        let mut entry = Entry {
            generation: s.generation,
            part: s.part_index,
            files: Vec::new(),
            events: Some(0),
            bytes: 0,
        };
        for (f, name) in files.into_iter().zip(names) {
            entry.bytes += self
                .store
                .commit(f.out)
                .with_context(|| format!("writing the archive file {name}"))?;
            entry.events = entry.events.map(|n| n + f.stats.rows);
            entry.files.push(name);
        }
        // Files of an earlier write of this segment that this one did not replace: an
        // interrupted attempt's, or an archived day whose rows were all deleted (or dropped by
        // compaction) since. They go before the manifest drops them, so a crash in between
        // leaves a manifest whose count is stale and the segment is written again.
        let key = (s.generation, s.part_index);
        let mut earlier = self.orphans.remove(&key).unwrap_or_default();
        earlier.extend(self.manifest.files_of(key.0, key.1).map(String::from));
        for stale in earlier {
            if !entry.files.contains(&stale) {
                self.store
                    .remove(&stale)
                    .with_context(|| format!("removing the stale archive file {stale}"))?;
            }
        }
        let bytes = entry.bytes;
        self.record(entry)?;
        self.metrics.archived(bytes);
        Ok(true)
    }

    /// Takes the orphans of a segment that is gone into the manifest as they are: they were
    /// renamed into place whole, and nothing is left to write them again from.
    fn adopt(&mut self, key: (u64, u16)) -> anyhow::Result<()> {
        let files = self.orphans.remove(&key).unwrap_or_default();
        tracing::warn!(
            generation = key.0,
            part = key.1,
            files = files.len(),
            "archive files of a segment that is gone adopted as they are"
        );
        self.record(Entry {
            generation: key.0,
            part: key.1,
            files,
            events: None,
            bytes: 0,
        })
    }

    /// Adds `entry` to the manifest and makes it durable.
    fn record(&mut self, entry: Entry) -> anyhow::Result<()> {
        let (key, events) = ((entry.generation, entry.part), entry.events);
        self.manifest.add(entry);
        self.store
            .put(&manifest_name(&self.store_id), &self.manifest.to_bytes())
            .context("writing the archive manifest")?;
        self.progress.lock().insert(key, events);
        Ok(())
    }

    /// Runs passes every `interval` on a thread of its own until `stop` is set.
    pub fn spawn(
        mut self,
        interval: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("keplor-archive".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match self.pass(&stop) {
                        Ok(n) if n > 0 => tracing::debug!(segments = n, "archived"),
                        Ok(_) => {}
                        Err(e) => {
                            self.metrics.archive_failed();
                            tracing::warn!(error = format!("{e:#}"), "archiving failed; retried");
                        }
                    }
                    let until = Instant::now() + interval;
                    while Instant::now() < until && !stop.load(Ordering::Acquire) {
                        std::thread::sleep(interval.min(Duration::from_millis(50)));
                    }
                }
            })
    }
}

/// Deletes the segments whose newest event is older than `cutoff_ns`; while the archive is on
/// with `retain_until_archived`, only those it holds (the rest wait for a later gc).
pub fn retention_gc(
    engine: &DynEngine,
    cutoff_ns: i64,
    settings: &ArchiveSettings,
    archived: &Progress,
) -> keplordb::Result<keplordb::GcStats> {
    if settings.enabled && settings.retain_until_archived {
        engine.gc_where(cutoff_ns, |s| archived.is_archived(s))
    } else {
        engine.gc(cutoff_ns)
    }
}

/// `_keplor/<store>.json`.
fn manifest_name(store_id: &str) -> String {
    format!("{MANIFEST_DIR}/{store_id}.json")
}

/// `dt=YYYY-MM-DD/<store>-<generation>-<part>.parquet`.
fn file_name(day: i64, store_id: &str, generation: u64, part: u16) -> String {
    format!(
        "dt={}/{store_id}-{generation}-{part}.parquet",
        date_of_day(day)
    )
}

/// The segment of a file named by [`file_name`] for `store_id`.
fn parse_file_name(name: &str, store_id: &str) -> Option<(u64, u16)> {
    let (_, base) = name.rsplit_once('/')?;
    let rest = base.strip_prefix(store_id)?.strip_prefix('-')?;
    let (generation, part) = rest.strip_suffix(".parquet")?.split_once('-')?;
    Some((generation.parse().ok()?, part.parse().ok()?))
}

#[cfg(test)]
mod tests;
