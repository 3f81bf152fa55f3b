//! Mapping a segment file and viewing its columns in place.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;
use zerocopy::{FromBytes, Immutable};

use super::bloom::Bloom;
use super::codec::{decode_bitset, decode_i64, decompress_bounded};
use super::header::{HeaderError, SegmentHeader, HEADER_LEN, NO_BLOOM, SEGMENT_VERSION};
use super::{Section, Totals, MAX_DIM_VALUES};
use crate::error::{DbError, Result, SchemaSummary};
use crate::hash::{hash64, FastMap};
use crate::le;
use crate::memtable::CHUNK_ROWS;
use crate::schema::SchemaDef;

/// The decoded intern table of one dim.
#[derive(Debug, Default)]
pub(crate) struct SegDict {
    pub values: Vec<Box<str>>,
    map: FastMap<Box<str>, u16>,
}

impl SegDict {
    pub(crate) fn code(&self, value: &str) -> Option<u16> {
        self.map.get(value).copied()
    }
    pub(crate) fn value(&self, code: u16) -> Option<&str> {
        self.values.get(code as usize).map(|v| &**v)
    }
}

/// Where one posting dim's lists are.
#[derive(Clone, Copy, Debug)]
struct PostingEntry {
    dim: usize,
    ncodes: usize,
    offsets_at: usize,
    rows_at: usize,
}

/// The rows holding each code of one dim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Postings<'a> {
    offsets: &'a [u32],
    rows: &'a [u32],
}

impl<'a> Postings<'a> {
    /// Rows (ascending, so also in (ts, id) order) whose code is `code`.
    pub(crate) fn rows(&self, code: u16) -> &'a [u32] {
        let c = code as usize;
        match (self.offsets.get(c), self.offsets.get(c + 1)) {
            (Some(&a), Some(&b)) => self.rows.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LabelCol {
    ends_at: usize,
    bytes_at: usize,
    bytes_len: usize,
}

#[derive(Clone, Copy, Debug)]
struct StatusEntry {
    value: u16,
    count: usize,
    blob_at: usize,
    blob_len: usize,
}

/// Per status value, the bitset of rows holding it.
type StatusBitmaps = Vec<(u16, Vec<u64>)>;

/// A mapped, verified segment.
#[derive(Debug)]
pub(crate) struct SegmentData {
    path: PathBuf,
    mmap: Mmap,
    pub header: SegmentHeader,
    pub rows: usize,
    pub nchunks: usize,
    dims: usize,
    counters: usize,
    /// ts_ns of each row, decoded at open.
    pub ts: Vec<i64>,
    /// metric of each row, decoded at open.
    pub metric: Vec<i64>,
    pub bloom: Option<Bloom>,
    u32_at: usize,
    u16_at: usize,
    zones_at: usize,
    aggs_at: usize,
    ids_ends_at: usize,
    ids_table_at: usize,
    ids_table_size: usize,
    ids_bytes_at: usize,
    postings: Vec<PostingEntry>,
    labels: Vec<LabelCol>,
    status_entries: Vec<StatusEntry>,
    status_at: usize,
    intern_at: usize,
    intern_len: usize,
    intern: OnceLock<std::result::Result<Vec<SegDict>, String>>,
    status: OnceLock<std::result::Result<StatusBitmaps, String>>,
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    le::read_at(b, at).ok()
}
fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    le::read_at(b, at).ok()
}

impl SegmentData {
    /// Maps and verifies `path`: header, every section checksum, and the structure of every
    /// section that is read in place.
    pub(crate) fn open(path: &Path, schema: &SchemaDef) -> Result<SegmentData> {
        let file = File::open(path).map_err(|e| DbError::io("open segment", path, e))?;
        // SAFETY: segment files are immutable once renamed into place: the engine never writes
        // to them again and only unlinks them (which keeps the mapping valid). The data
        // directory is owned by one engine (a lock file guards it); a foreign process writing
        // into a segment is outside what any mmap-based store can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| DbError::io("map segment", path, e))?;
        let corrupt = |section: &'static str, reason: String| DbError::CorruptSegment {
            path: path.to_path_buf(),
            section,
            reason,
        };
        let header = match SegmentHeader::parse(&mmap) {
            Ok(h) => h,
            Err(HeaderError::Version(found)) => {
                return Err(DbError::UnsupportedFormat {
                    path: path.to_path_buf(),
                    found,
                    supported: SEGMENT_VERSION,
                })
            }
            Err(HeaderError::Corrupt(r)) => return Err(corrupt("header", r)),
        };
        if header.schema_id != schema.schema_id || header.fingerprint.get() != schema.fingerprint()
        {
            return Err(DbError::SchemaMismatch {
                expected: schema.summary(),
                found: SchemaSummary {
                    schema_id: header.schema_id,
                    fingerprint: header.fingerprint.get(),
                    columns: None,
                },
                path: path.to_path_buf(),
            });
        }
        let dims = schema.dims.len();
        let counters = schema.counters.len();
        let labels = schema.labels.len();
        if header.dims.get() as usize != dims
            || header.counters as usize != counters
            || header.labels as usize != labels
        {
            return Err(corrupt(
                "header",
                "column counts disagree with the fingerprint".into(),
            ));
        }
        let rows = header.rows.get() as usize;
        if rows > super::MAX_SEGMENT_ROWS || rows > mmap.len() {
            return Err(corrupt(
                "header",
                format!(
                    "row count {rows} is impossible for a {}-byte file",
                    mmap.len()
                ),
            ));
        }
        let nchunks = rows.div_ceil(CHUNK_ROWS);
        let mut ranges = [(0usize, 0usize); super::SECTION_COUNT];
        for s in Section::ALIGN_CHECKED {
            let e = header.section(s);
            let (off, len) = (e.offset.get(), e.len.get() as u64);
            let end = off.saturating_add(len);
            if off < HEADER_LEN as u64
                || end > mmap.len() as u64
                || off % super::SECTION_ALIGN as u64 != 0
            {
                return Err(corrupt(
                    s.name(),
                    format!("section [{off}, {end}) is outside the file"),
                ));
            }
            let bytes = &mmap[off as usize..end as usize];
            if crc32fast::hash(bytes) != e.crc.get() {
                return Err(corrupt(s.name(), "checksum mismatch".into()));
            }
            ranges[s as usize] = (off as usize, len as usize);
        }
        let sect = |s: Section| {
            let (o, l) = ranges[s as usize];
            &mmap[o..o + l]
        };
        let expect_len = |s: Section, want: usize| {
            let got = ranges[s as usize].1;
            if got != want {
                return Err(corrupt(s.name(), format!("{got} bytes, expected {want}")));
            }
            Ok(ranges[s as usize].0)
        };

        let ts = decode_i64(sect(Section::Ts), rows).map_err(|r| corrupt("ts_ns column", r))?;
        if ts.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt(
                "ts_ns column",
                "rows are not sorted by time".into(),
            ));
        }
        if rows > 0 && (ts[0] != header.min_ts.get() || ts[rows - 1] != header.max_ts.get()) {
            return Err(corrupt(
                "ts_ns column",
                "min/max disagree with the header".into(),
            ));
        }
        let metric =
            decode_i64(sect(Section::Metric), rows).map_err(|r| corrupt("metric column", r))?;
        let u32_at = expect_len(Section::U32Cols, (2 + counters) * rows * 4)?;
        let u16_at = expect_len(Section::U16Cols, (2 + dims) * rows * 2)?;
        let zones_at = expect_len(Section::Zones, nchunks * (8 + 8 + 2 + 2 + 4 * dims))?;
        let aggs_at = expect_len(Section::ChunkAggs, nchunks * (8 * 4 + 8 * counters))?;

        let bloom = Bloom::parse(sect(Section::Bloom)).map_err(|r| corrupt("bloom filter", r))?;
        let bloom_dim = header.bloom_dim.get();
        if (bloom_dim == NO_BLOOM) != bloom.is_none()
            || (bloom_dim != NO_BLOOM && bloom_dim as usize >= dims)
        {
            return Err(corrupt(
                "bloom filter",
                "bloom dim and bloom section disagree".into(),
            ));
        }

        // Status directory.
        let sb = sect(Section::Status);
        let nstatus = rd_u32(sb, 0)
            .ok_or_else(|| corrupt("status bitmaps", "empty section".into()))?
            as usize;
        let mut status_entries = Vec::with_capacity(nstatus.min(1 << 16));
        let mut status_rows = 0u64;
        for i in 0..nstatus {
            let at = 4 + 16 * i;
            let (Some(value), Some(count), Some(blob_at), Some(blob_len)) = (
                rd_u16(sb, at),
                rd_u32(sb, at + 4),
                rd_u32(sb, at + 8),
                rd_u32(sb, at + 12),
            ) else {
                return Err(corrupt("status bitmaps", "directory is cut short".into()));
            };
            let (blob_at, blob_len) = (blob_at as usize, blob_len as usize);
            if blob_at.checked_add(blob_len).is_none_or(|e| e > sb.len()) {
                return Err(corrupt(
                    "status bitmaps",
                    format!("bitmap {i} is outside the section"),
                ));
            }
            status_rows += count as u64;
            status_entries.push(StatusEntry {
                value,
                count: count as usize,
                blob_at,
                blob_len,
            });
        }
        if status_entries.windows(2).any(|w| w[0].value >= w[1].value) {
            return Err(corrupt(
                "status bitmaps",
                "status values are not sorted and unique".into(),
            ));
        }
        if status_rows != rows as u64 {
            return Err(corrupt(
                "status bitmaps",
                format!("bitmaps cover {status_rows} rows, segment has {rows}"),
            ));
        }

        // Posting directory and lists.
        let pb = sect(Section::Postings);
        let npost =
            rd_u32(pb, 0).ok_or_else(|| corrupt("posting lists", "empty section".into()))? as usize;
        let mut postings = Vec::new();
        for i in 0..npost {
            let at = 4 + 16 * i;
            let (Some(dim), Some(ncodes), Some(offsets_at), Some(rows_at)) = (
                rd_u16(pb, at),
                rd_u32(pb, at + 4),
                rd_u32(pb, at + 8),
                rd_u32(pb, at + 12),
            ) else {
                return Err(corrupt("posting lists", "directory is cut short".into()));
            };
            let e = PostingEntry {
                dim: dim as usize,
                ncodes: ncodes as usize,
                offsets_at: offsets_at as usize,
                rows_at: rows_at as usize,
            };
            if e.dim >= dims || e.ncodes > MAX_DIM_VALUES {
                return Err(corrupt(
                    "posting lists",
                    format!("entry {i} names dim {} of {dims}", e.dim),
                ));
            }
            let offsets = slice_in::<u32>(pb, e.offsets_at, e.ncodes + 1)
                .ok_or_else(|| corrupt("posting lists", "offsets outside the section".into()))?;
            let list = slice_in::<u32>(pb, e.rows_at, rows)
                .ok_or_else(|| corrupt("posting lists", "rows outside the section".into()))?;
            if offsets.first() != Some(&0)
                || offsets.last().copied() != Some(rows as u32)
                || offsets.windows(2).any(|w| w[0] > w[1])
                || list.iter().any(|&r| r as usize >= rows)
            {
                return Err(corrupt(
                    "posting lists",
                    format!("lists of dim {} are malformed", e.dim),
                ));
            }
            postings.push(PostingEntry {
                offsets_at: ranges[Section::Postings as usize].0 + e.offsets_at,
                rows_at: ranges[Section::Postings as usize].0 + e.rows_at,
                ..e
            });
        }

        // Ids.
        let ib = sect(Section::Ids);
        let (Some(id_rows), Some(table_size)) = (rd_u32(ib, 0), rd_u32(ib, 4)) else {
            return Err(corrupt("ids", "section is cut short".into()));
        };
        let table_size = table_size as usize;
        if id_rows as usize != rows || !table_size.is_power_of_two() || table_size < rows {
            return Err(corrupt(
                "ids",
                format!("{id_rows} ids, table of {table_size} slots"),
            ));
        }
        let ends = slice_in::<u32>(ib, 8, rows)
            .ok_or_else(|| corrupt("ids", "offsets cut short".into()))?;
        let table = slice_in::<u32>(ib, 8 + 4 * rows, table_size)
            .ok_or_else(|| corrupt("ids", "hash table cut short".into()))?;
        let ids_bytes_rel = 8 + 4 * (rows + table_size);
        let ids_bytes_len = ib.len() - ids_bytes_rel.min(ib.len());
        if ends.windows(2).any(|w| w[0] > w[1])
            || ends.last().is_some_and(|&e| e as usize != ids_bytes_len)
            || table.iter().any(|&s| s as usize > rows)
        {
            return Err(corrupt("ids", "offsets or hash table are malformed".into()));
        }
        let ids_at = ranges[Section::Ids as usize].0;

        // Labels.
        let lb = sect(Section::Labels);
        let mut label_cols = Vec::with_capacity(labels);
        for l in 0..labels {
            let (Some(ends_at), Some(bytes_at), Some(bytes_len)) = (
                rd_u32(lb, 12 * l),
                rd_u32(lb, 12 * l + 4),
                rd_u32(lb, 12 * l + 8),
            ) else {
                return Err(corrupt("labels", "directory is cut short".into()));
            };
            let (ends_at, bytes_at, bytes_len) =
                (ends_at as usize, bytes_at as usize, bytes_len as usize);
            let ends = slice_in::<u32>(lb, ends_at, rows)
                .ok_or_else(|| corrupt("labels", "offsets cut short".into()))?;
            if bytes_at.checked_add(bytes_len).is_none_or(|e| e > lb.len())
                || ends.windows(2).any(|w| w[0] > w[1])
                || ends.last().is_some_and(|&e| e as usize != bytes_len)
            {
                return Err(corrupt("labels", format!("label column {l} is malformed")));
            }
            let base = ranges[Section::Labels as usize].0;
            label_cols.push(LabelCol {
                ends_at: base + ends_at,
                bytes_at: base + bytes_at,
                bytes_len,
            });
        }

        Ok(SegmentData {
            path: path.to_path_buf(),
            header,
            rows,
            nchunks,
            dims,
            counters,
            ts,
            metric,
            bloom,
            u32_at,
            u16_at,
            zones_at,
            aggs_at,
            ids_ends_at: ids_at + 8,
            ids_table_at: ids_at + 8 + 4 * rows,
            ids_table_size: table_size,
            ids_bytes_at: ids_at + ids_bytes_rel,
            postings,
            labels: label_cols,
            status_entries,
            status_at: ranges[Section::Status as usize].0,
            intern_at: ranges[Section::Intern as usize].0,
            intern_len: ranges[Section::Intern as usize].1,
            intern: OnceLock::new(),
            status: OnceLock::new(),
            mmap,
        })
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    pub(crate) fn bloom_dim(&self) -> Option<usize> {
        let b = self.header.bloom_dim.get();
        (b != NO_BLOOM).then_some(b as usize)
    }

    fn corrupt(&self, section: &'static str, reason: String) -> DbError {
        DbError::CorruptSegment {
            path: self.path.clone(),
            section,
            reason,
        }
    }

    /// `n` values of type `T` at byte `at` of the file (validated at open).
    #[inline]
    fn slice<T: FromBytes + Immutable>(&self, at: usize, n: usize) -> &[T] {
        slice_in(&self.mmap, at, n).unwrap_or(&[])
    }

    pub(crate) fn latency(&self) -> &[u32] {
        self.slice(self.u32_at, self.rows)
    }
    pub(crate) fn latency_detail(&self) -> &[u32] {
        self.slice(self.u32_at + 4 * self.rows, self.rows)
    }
    pub(crate) fn counter(&self, c: usize) -> &[u32] {
        self.slice(self.u32_at + 4 * self.rows * (2 + c), self.rows)
    }
    pub(crate) fn status(&self) -> &[u16] {
        self.slice(self.u16_at, self.rows)
    }
    pub(crate) fn flags(&self) -> &[u16] {
        self.slice(self.u16_at + 2 * self.rows, self.rows)
    }
    /// Segment-local codes of dim `d`.
    pub(crate) fn dim(&self, d: usize) -> &[u16] {
        self.slice(self.u16_at + 2 * self.rows * (2 + d), self.rows)
    }

    pub(crate) fn zone_ts_min(&self) -> &[i64] {
        self.slice(self.zones_at, self.nchunks)
    }
    pub(crate) fn zone_ts_max(&self) -> &[i64] {
        self.slice(self.zones_at + 8 * self.nchunks, self.nchunks)
    }
    pub(crate) fn zone_status_min(&self) -> &[u16] {
        self.slice(self.zones_at + 16 * self.nchunks, self.nchunks)
    }
    pub(crate) fn zone_status_max(&self) -> &[u16] {
        self.slice(self.zones_at + 18 * self.nchunks, self.nchunks)
    }
    pub(crate) fn zone_dim_min(&self, d: usize) -> &[u16] {
        self.slice(self.zones_at + (20 + 4 * d) * self.nchunks, self.nchunks)
    }
    pub(crate) fn zone_dim_max(&self, d: usize) -> &[u16] {
        self.slice(self.zones_at + (22 + 4 * d) * self.nchunks, self.nchunks)
    }

    pub(crate) fn agg_metric_lo(&self) -> &[u64] {
        self.slice(self.aggs_at, self.nchunks)
    }
    pub(crate) fn agg_metric_hi(&self) -> &[i64] {
        self.slice(self.aggs_at + 8 * self.nchunks, self.nchunks)
    }
    pub(crate) fn agg_latency(&self) -> &[u64] {
        self.slice(self.aggs_at + 16 * self.nchunks, self.nchunks)
    }
    pub(crate) fn agg_latency_detail(&self) -> &[u64] {
        self.slice(self.aggs_at + 24 * self.nchunks, self.nchunks)
    }
    pub(crate) fn agg_counter(&self, c: usize) -> &[u64] {
        self.slice(self.aggs_at + (32 + 8 * c) * self.nchunks, self.nchunks)
    }

    /// Pre-aggregated totals of chunk `c` (rows `c*256 .. min((c+1)*256, rows)`).
    pub(crate) fn chunk_totals_into(&self, c: usize, t: &mut Totals) {
        let rows = CHUNK_ROWS.min(self.rows - c * CHUNK_ROWS) as u64;
        t.count += rows;
        t.metric += ((self.agg_metric_hi()[c] as i128) << 64) | self.agg_metric_lo()[c] as i128;
        t.latency += self.agg_latency()[c];
        t.latency_detail += self.agg_latency_detail()[c];
        for (i, s) in t.counters.iter_mut().enumerate() {
            *s += self.agg_counter(i)[c];
        }
        t.min_ts = t.min_ts.min(self.zone_ts_min()[c]);
        t.max_ts = t.max_ts.max(self.zone_ts_max()[c]);
    }

    /// Totals of the whole segment, from the chunk pre-aggregates.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::new(self.counters);
        for c in 0..self.nchunks {
            self.chunk_totals_into(c, &mut t);
        }
        t
    }

    /// Dims that have posting lists.
    pub(crate) fn posting_dims(&self) -> Vec<usize> {
        self.postings.iter().map(|e| e.dim).collect()
    }

    /// Posting lists of dim `d`, if the segment has them.
    pub(crate) fn postings(&self, d: usize) -> Option<Postings<'_>> {
        let e = self.postings.iter().find(|e| e.dim == d)?;
        Some(Postings {
            offsets: self.slice(e.offsets_at, e.ncodes + 1),
            rows: self.slice(e.rows_at, self.rows),
        })
    }

    /// The id of `row`.
    pub(crate) fn id(&self, row: usize) -> &str {
        let ends: &[u32] = self.slice(self.ids_ends_at, self.rows);
        let start = if row == 0 {
            0
        } else {
            ends.get(row - 1).copied().unwrap_or(0) as usize
        };
        let end = ends.get(row).copied().unwrap_or(0) as usize;
        let bytes = self
            .mmap
            .get(self.ids_bytes_at + start..self.ids_bytes_at + end)
            .unwrap_or(&[]);
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// Rows whose id is `id`, via the hash index.
    pub(crate) fn rows_with_id(&self, id: &str) -> Vec<usize> {
        let table: &[u32] = self.slice(self.ids_table_at, self.ids_table_size);
        let mask = self.ids_table_size.wrapping_sub(1);
        let mut slot = hash64(id.as_bytes()) as usize & mask;
        let mut out = Vec::new();
        for _ in 0..table.len() {
            match table.get(slot) {
                Some(&0) | None => break,
                Some(&r) => {
                    let row = r as usize - 1;
                    if self.id(row) == id {
                        out.push(row);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        out
    }

    /// Label `l` of `row`.
    pub(crate) fn label(&self, l: usize, row: usize) -> &str {
        let Some(col) = self.labels.get(l) else {
            return "";
        };
        let ends: &[u32] = self.slice(col.ends_at, self.rows);
        let start = if row == 0 {
            0
        } else {
            ends.get(row - 1).copied().unwrap_or(0) as usize
        };
        let end = (ends.get(row).copied().unwrap_or(0) as usize).min(col.bytes_len);
        let bytes = self
            .mmap
            .get(col.bytes_at + start.min(end)..col.bytes_at + end)
            .unwrap_or(&[]);
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// Intern tables, decompressed on first use and cached.
    pub(crate) fn intern(&self) -> Result<&[SegDict]> {
        let r = self.intern.get_or_init(|| self.decode_intern());
        r.as_deref()
            .map_err(|e| self.corrupt("intern tables", e.clone()))
    }

    fn decode_intern(&self) -> std::result::Result<Vec<SegDict>, String> {
        let src = self
            .mmap
            .get(self.intern_at..self.intern_at + self.intern_len)
            .unwrap_or(&[]);
        let raw_len = le::read_at::<u64>(src, 0).map_err(|e| format!("intern section: {e}"))?;
        let body = &src[8..];
        // Decoded as a stream bounded by the declared length, so a hostile length cannot make
        // us reserve memory the data does not back.
        let raw = decompress_bounded(body, raw_len)?;
        if raw.len() as u64 != raw_len {
            return Err(format!(
                "intern tables decode to {} bytes, expected {raw_len}",
                raw.len()
            ));
        }
        let mut at = 0usize;
        let mut dicts = Vec::with_capacity(self.dims);
        for d in 0..self.dims {
            let n = rd_u32(&raw, at).ok_or("intern table cut short")? as usize;
            at += 4;
            if n > MAX_DIM_VALUES {
                return Err(format!("dim {d} has {n} values"));
            }
            let lens_at = at;
            at += 4 * n;
            let mut dict = SegDict {
                values: Vec::with_capacity(n),
                map: FastMap::default(),
            };
            for i in 0..n {
                let len = rd_u32(&raw, lens_at + 4 * i).ok_or("intern lengths cut short")? as usize;
                let bytes = raw.get(at..at + len).ok_or("intern values cut short")?;
                let s = std::str::from_utf8(bytes).map_err(|e| format!("dim {d}: {e}"))?;
                at += len;
                dict.map.insert(s.into(), i as u16);
                dict.values.push(s.into());
            }
            // Codes in the u16 column must resolve, values must be strictly ascending (so each
            // is unique), and posting lists must have one list per value.
            if self.dim(d).iter().any(|&c| c as usize >= n) {
                return Err(format!("dim {d} has codes beyond its {n} values"));
            }
            if dict.values.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("dim {d} values are not sorted and unique"));
            }
            if self.postings.iter().any(|p| p.dim == d && p.ncodes != n) {
                return Err(format!(
                    "dim {d} has {n} values but its posting lists disagree"
                ));
            }
            dicts.push(dict);
        }
        if at != raw.len() {
            return Err("trailing bytes after the intern tables".into());
        }
        Ok(dicts)
    }

    /// Per status value, the bitset of rows holding it; decompressed on first use.
    pub(crate) fn status_bitmaps(&self) -> Result<&[(u16, Vec<u64>)]> {
        let r = self.status.get_or_init(|| {
            let mut union = vec![0u64; self.rows.div_ceil(64)];
            let mut out = Vec::with_capacity(self.status_entries.len());
            for e in &self.status_entries {
                let at = self.status_at + e.blob_at;
                let blob = self.mmap.get(at..at + e.blob_len).unwrap_or(&[]);
                let bits = decode_bitset(blob, self.rows)?;
                let ones: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
                let overlap = bits.iter().zip(&union).any(|(a, b)| a & b != 0);
                let disagrees = bits.iter().zip(self.status().chunks(64)).any(|(w, col)| {
                    col.iter()
                        .enumerate()
                        .any(|(i, &s)| (w >> i & 1 != 0) != (s == e.value))
                });
                if ones != e.count || overlap || disagrees {
                    return Err(format!(
                        "bitmap of status {} disagrees with the status column",
                        e.value
                    ));
                }
                for (u, b) in union.iter_mut().zip(&bits) {
                    *u |= b;
                }
                out.push((e.value, bits));
            }
            Ok(out)
        });
        r.as_deref()
            .map_err(|e| self.corrupt("status bitmaps", e.clone()))
    }

    /// Distinct status values present, with their row counts.
    pub(crate) fn status_values(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        self.status_entries.iter().map(|e| (e.value, e.count))
    }
}

/// `n` values of `T` at byte `at` of `bytes`, if in bounds and aligned.
fn slice_in<T: FromBytes + Immutable>(bytes: &[u8], at: usize, n: usize) -> Option<&[T]> {
    le::view(bytes, at, n).ok()
}

impl Section {
    /// Every section, in the order they are verified at open.
    pub(crate) const ALIGN_CHECKED: [Section; super::SECTION_COUNT] = Section::ALL;
}
