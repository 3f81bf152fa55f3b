//! One sealed segment written as Parquet: its live rows in time order, one file per UTC day,
//! read straight from the segment (no query, no paging), for consumers that follow the
//! segments one by one (see [`DynEngine::segments`]).

use std::io::Write;

use super::parquet::{FileStats, ParquetOptions, ParquetWriter};
use crate::engine::DynEngine;
use crate::error::DbError;
use crate::query::read::seg_event;
use crate::time::day_of;

/// The part of a segment that falls on one UTC day, written as one Parquet file.
#[derive(Debug)]
pub struct SegmentFile<W> {
    /// The UTC day (days since 1970-01-01; [`crate::date_of_day`] names it).
    pub day: i64,
    /// What the file holds.
    pub stats: FileStats,
    /// The output the file was written to, footer included.
    pub out: W,
}

impl DynEngine {
    /// Writes the live rows of the sealed segment `id` as Parquet, oldest first (ties in the
    /// order of the file), one file per UTC day: `open(day)` gives the output of each day's
    /// file, called once per day in increasing order. `None` when no segment has that id any
    /// more (gc deleted it, or compaction rewrote it under another id).
    ///
    /// Rows deleted before the call are left out. Nothing is made durable here: the caller
    /// owns the outputs (and whatever temporary names they have).
    pub fn export_segment<W, E>(
        &self,
        id: u64,
        opts: &ParquetOptions,
        mut open: impl FnMut(i64) -> Result<W, E>,
    ) -> Result<Option<Vec<SegmentFile<W>>>, E>
    where
        W: Write + Send,
        E: From<DbError>,
    {
        let view = self.view();
        let Some(s) = view.segments.iter().find(|s| s.seg.id == id) else {
            return Ok(None);
        };
        let data = s.seg.data(&self.schema, &self.cache)?;
        // The segment's dictionary bounds the bloom dim's distinct values in any row group.
        let opts = &match self.schema.bloom_dim {
            Some(d) => {
                let distinct = data.intern()?.get(d).map_or(0, |dict| dict.values.len());
                opts.clone().with_bloom_ndv(distinct as u64)
            }
            None => opts.clone(),
        };
        let mut rows: Vec<usize> = (0..data.rows)
            .filter(|&r| !s.deleted.as_ref().is_some_and(|d| d.contains(r)))
            .collect();
        rows.sort_by_key(|&r| data.ts[r]);
        let (nc, nl) = (self.schema.counters.len(), self.schema.labels.len());
        let mut files = Vec::new();
        let mut current: Option<(i64, ParquetWriter<W>)> = None;
        for r in rows {
            let e = seg_event(&data, r, nc, nl).map_err(|e| e.with_path(&s.seg.path))?;
            let day = day_of(e.ts_ns);
            if current.as_ref().is_some_and(|(d, _)| *d != day) {
                if let Some((d, w)) = current.take() {
                    files.push(finish(d, w)?);
                }
            }
            let (_, writer) = match &mut current {
                Some(c) => c,
                None => current.insert((
                    day,
                    ParquetWriter::new(open(day)?, &self.schema, opts, false)?,
                )),
            };
            writer.write(&e)?;
        }
        if let Some((d, w)) = current {
            files.push(finish(d, w)?);
        }
        Ok(Some(files))
    }
}

fn finish<W: Write + Send>(day: i64, w: ParquetWriter<W>) -> crate::error::Result<SegmentFile<W>> {
    let (stats, out) = w.finish()?;
    Ok(SegmentFile { day, stats, out })
}
