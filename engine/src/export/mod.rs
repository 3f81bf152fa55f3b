//! Export to Parquet (cargo feature `parquet`), for the engines users already run: DuckDB,
//! Spark, Trino and ClickHouse read the files as they lie. The schema of the files is
//! documented in `engine/FORMAT.md`, "Parquet export"; [`ParquetWriter`] writes any stream of
//! events with it, and [`DynEngine::export_parquet`] writes the events matching a filter in
//! Hive partitions, one directory per UTC day. [`DynEngine::export_segment`] writes one sealed
//! segment, for a consumer that archives segments as they are sealed.
//!
//! The export is a consumer of the query API (pages of `query_recent`, and the query layer's
//! row decoding), like any other reader: storage knows nothing of it.

mod parquet;
mod segment;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub use self::parquet::{FileStats, ParquetOptions, ParquetWriter, FIXED_COLUMNS};
pub use self::segment::SegmentFile;
use crate::engine::DynEngine;
use crate::error::{DbError, Result};
use crate::event::DynEvent;
use crate::fsutil::sync_dir;
use crate::query::{Cursor, DynFilter, GroupBy, GroupOrder};
use crate::time::{date_of_day, day_of};

/// Events read per page of `query_recent`.
const PAGE: usize = 4096;

/// What [`DynEngine::export_parquet`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Events written.
    pub events: u64,
    /// The files written, newest day first.
    pub files: Vec<PathBuf>,
    /// Their bytes.
    pub bytes: u64,
}

/// The file of one UTC day, being written under a temporary name.
struct DayFile {
    day: i64,
    dir: PathBuf,
    tmp: PathBuf,
    writer: ParquetWriter<BufWriter<File>>,
}

impl DayFile {
    fn create(engine: &DynEngine, root: &Path, day: i64, opts: &ParquetOptions) -> Result<DayFile> {
        let dir = root.join(format!("dt={}", date_of_day(day)));
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| DbError::io("create directory", &dir, e))?;
            sync_dir(root)?;
        }
        let tmp = dir.join(format!(".export-{}.parquet.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|e| DbError::io("create", &tmp, e))?;
        let writer = ParquetWriter::new(BufWriter::new(file), engine.schema(), opts, true)?;
        Ok(DayFile {
            day,
            dir,
            tmp,
            writer,
        })
    }

    /// Finishes the file, makes it durable and renames it to its name, which says the times it
    /// holds: `events-<newest ts>-<oldest ts>.parquet`.
    fn seal(self) -> Result<(PathBuf, u64)> {
        let (stats, out) = self.writer.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| DbError::io("write", &self.tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| DbError::io("fsync", &self.tmp, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| DbError::io("stat", &self.tmp, e))?
            .len();
        let (oldest, newest) = stats.ts_range.unwrap_or_default();
        let path = self.dir.join(format!("events-{newest}-{oldest}.parquet"));
        fs::rename(&self.tmp, &path).map_err(|e| DbError::io("rename", &path, e))?;
        sync_dir(&self.dir)?;
        Ok((path, bytes))
    }
}

impl DynEngine {
    /// `opts` with [`ParquetOptions::bloom_ndv`] set, unless the caller set it, to the distinct
    /// values of the bloom dim among the events `filter` matches: no row group holds more.
    fn with_bloom_ndv(&self, filter: &DynFilter, opts: &ParquetOptions) -> Result<ParquetOptions> {
        match self.schema.bloom_dim {
            Some(d) if opts.bloom_ndv.is_none() => {
                let mut all = filter.clone();
                all.cursor = None;
                let groups = self.group_by(&all, &GroupBy::new(d, GroupOrder::Count, 1))?;
                Ok(opts.clone().with_bloom_ndv(groups.total_groups as u64))
            }
            _ => Ok(opts.clone()),
        }
    }

    /// Writes the events matching `filter` under `dir` as Parquet in Hive partitions: one file
    /// per UTC day, `dir/dt=YYYY-MM-DD/events-<newest ts>-<oldest ts>.parquet`, rows newest
    /// first (the order of [`DynEngine::query_recent`], from `filter.cursor` when set).
    ///
    /// Each file is written under a temporary name beside its own, fsynced, renamed and its
    /// directory fsynced: a crash leaves whole files and at most a `.tmp` file, never part of
    /// a `.parquet`. An existing file of the same name (the same times exported again) is
    /// replaced. `progress` is called with the events written so far after each page.
    pub fn export_parquet(
        &self,
        filter: &DynFilter,
        dir: &Path,
        opts: &ParquetOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<ExportStats> {
        fs::create_dir_all(dir).map_err(|e| DbError::io("create directory", dir, e))?;
        let opts = &self.with_bloom_ndv(filter, opts)?;
        let mut page_filter = filter.clone();
        let mut stats = ExportStats::default();
        let mut open: Option<DayFile> = None;
        let result = loop {
            let page = match self.query_recent(&page_filter, PAGE) {
                Ok(page) => page,
                Err(e) => break Err(e),
            };
            let Some(last) = page.last() else {
                break Ok(());
            };
            page_filter.cursor = Some(Cursor::from(last));
            if let Err(e) = self.export_page(&page, dir, opts, &mut open, &mut stats) {
                break Err(e);
            }
            progress(stats.events);
        };
        match (result, open) {
            (Ok(()), Some(f)) => {
                let (path, bytes) = f.seal()?;
                stats.files.push(path);
                stats.bytes += bytes;
                Ok(stats)
            }
            (Ok(()), None) => Ok(stats),
            (Err(e), open) => {
                if let Some(f) = open {
                    let _ = fs::remove_file(&f.tmp);
                }
                Err(e)
            }
        }
    }

    /// Writes one page, sealing the day file whenever the day changes.
    fn export_page(
        &self,
        page: &[DynEvent],
        dir: &Path,
        opts: &ParquetOptions,
        open: &mut Option<DayFile>,
        stats: &mut ExportStats,
    ) -> Result<()> {
        for e in page {
            let day = day_of(e.ts_ns);
            if open.as_ref().is_some_and(|f| f.day != day) {
                let (path, bytes) = open.take().map_or(Ok((PathBuf::new(), 0)), DayFile::seal)?;
                stats.files.push(path);
                stats.bytes += bytes;
            }
            let file = match open {
                Some(f) => f,
                None => open.insert(DayFile::create(self, dir, day, opts)?),
            };
            file.writer.write(e)?;
            stats.events += 1;
        }
        Ok(())
    }
}
