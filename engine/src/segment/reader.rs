//! Mapping a segment file, verifying it, and viewing its columns in place.
//!
//! [`SegmentData::open`] composes the checks of FORMAT.md section 9.6: the header
//! ([`SegmentHeader::parse`], then the schema and the counts), the section table
//! ([`SectionTable::locate`]: placement and checksums), each section's `parse` in table order,
//! then the checks that span sections. The intern tables and the status bitmaps are decoded,
//! and checked, on first use. Every corruption error names the file, the section and the byte.

use std::fs::File;
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;

use super::column::{Column, Zeroed};
use super::header::{
    HeaderError, SectionTable, SegmentHeader, NO_BLOOM, SEGMENT_VERSION, SEGMENT_VERSION_1,
};
use super::section::bloom::Bloom;
use super::section::chunks::{ChunkAggs, Zones};
use super::section::columns::{MetricColumn, TsColumn, U16Cols, U32Cols};
use super::section::id_blocks::{FrontCodedIds, IdStore};
use super::section::ids::IdIndex;
use super::section::intern::InternTables;
pub(crate) use super::section::intern::SegDict;
use super::section::labels::LabelColumns;
use super::section::packed_cols::{PackedMetric, PackedU16Cols, PackedU32Cols};
use super::section::posting_lists::{PostingDirectory, PostingLists};
use super::section::postings::PostingIndex;
pub(crate) use super::section::postings::Postings;
use super::section::status::{StatusBitmaps, StatusIndex};
use super::section::{first_bad, SectionError, Shape};
use super::{Section, Totals, MAX_SEGMENT_ROWS};
use crate::error::{DbError, Result, SchemaSummary};
use crate::memtable::CHUNK_ROWS;
use crate::schema::SchemaDef;

/// What the reader keeps of the sections it views in place: where their arrays are in the
/// mapping (each placed at its section's file offset).
#[derive(Debug)]
struct Layout {
    zones: Zones,
    aggs: ChunkAggs,
    status: StatusIndex,
    labels: LabelColumns,
}

/// What the reader decodes at open into memory: in version 2 these sections are packed or
/// compressed; version-1 sections are copied into the same form.
#[derive(Debug)]
struct Decoded {
    /// Latency, latency detail, counters.
    u32s: Vec<Column<u32>>,
    /// Status, flags, dim codes.
    u16s: Vec<Column<u16>>,
    postings: PostingLists,
    /// The ids, copied at open (version 1); version 2 decodes them on first use
    /// ([`SegmentData::ids`]).
    ids: Option<IdStore>,
    /// The filter over the ids (version 2).
    id_filter: Option<Bloom>,
}

/// Every section parsed at open.
#[derive(Debug)]
struct Parsed {
    ts: Vec<i64>,
    metric: Vec<i64>,
    bloom: Option<Bloom>,
    layout: Layout,
    decoded: Decoded,
}

/// A mapped, verified segment.
#[derive(Debug)]
pub(crate) struct SegmentData {
    path: PathBuf,
    mmap: Mmap,
    pub header: SegmentHeader,
    pub rows: usize,
    pub nchunks: usize,
    shape: Shape,
    table: SectionTable,
    /// ts_ns of each row, decoded at open.
    pub ts: Vec<i64>,
    /// metric of each row, decoded at open.
    pub metric: Vec<i64>,
    pub bloom: Option<Bloom>,
    layout: Layout,
    decoded: Decoded,
    intern: OnceLock<std::result::Result<Vec<SegDict>, SectionError>>,
    status: OnceLock<std::result::Result<StatusBitmaps, SectionError>>,
    /// Version 2's ids, decompressed on first use: aggregates and group-bys never need them,
    /// and they are the largest part of a decoded segment (about 29 bytes per row with the
    /// lookup table, against 36 for every fixed-width column together).
    ids: OnceLock<std::result::Result<IdStore, SectionError>>,
}

impl SegmentData {
    /// Maps and verifies `path`: header, every section checksum, and the structure of every
    /// section that is read in place.
    pub(crate) fn open(path: &Path, schema: &SchemaDef) -> Result<SegmentData> {
        Self::open_checking(path, schema, true)
    }

    /// [`SegmentData::open`] of a segment the cache dropped after an open verified it: the
    /// same checks, except that version 2's ids are not decoded to check their order (the
    /// file is immutable and its checksums still match; the ids are decoded, with their
    /// faults, on first use). Decoding them was most of the cost of a reload.
    pub(crate) fn reopen(path: &Path, schema: &SchemaDef) -> Result<SegmentData> {
        Self::open_checking(path, schema, false)
    }

    fn open_checking(path: &Path, schema: &SchemaDef, check_ids: bool) -> Result<SegmentData> {
        let mmap = map(path)?;
        let header = verify_header(path, &mmap, schema)?;
        let shape = Shape::new(
            header.rows.get() as usize,
            schema.dims.len(),
            schema.counters.len(),
            schema.labels.len(),
        );
        let table = SectionTable::locate(&header, &mmap).map_err(|e| {
            DbError::corrupt_segment(path, e.section.name(), e.offset as u64, e.reason)
        })?;
        let parsed = parse_sections(&mmap, &table, &header, &shape, check_ids).map_err(|e| {
            let start = table.start(e.section);
            e.into_db(path, start)
        })?;
        Ok(SegmentData {
            path: path.to_path_buf(),
            mmap,
            header,
            rows: shape.rows,
            nchunks: shape.chunks,
            shape,
            table,
            ts: parsed.ts,
            metric: parsed.metric,
            bloom: parsed.bloom,
            layout: parsed.layout,
            decoded: parsed.decoded,
            intern: OnceLock::new(),
            status: OnceLock::new(),
            ids: OnceLock::new(),
        })
    }

    /// Size of the file in bytes.
    pub(crate) fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// The dim with a bloom filter, if any.
    pub(crate) fn bloom_dim(&self) -> Option<usize> {
        let b = self.header.bloom_dim.get();
        (b != NO_BLOOM).then_some(b as usize)
    }

    /// The bytes of section `s`.
    #[inline]
    fn section(&self, s: Section) -> &[u8] {
        self.table.bytes(&self.mmap, s)
    }

    /// The engine's error for a fault found in a section after open.
    fn fault(&self, e: &SectionError) -> DbError {
        e.clone().into_db(&self.path, self.table.start(e.section))
    }

    /// U32Cols column `i` (decoded at open).
    fn u32s(&self, i: usize) -> &[u32] {
        self.decoded.u32s.get(i).map_or(&[], Column::as_slice)
    }
    /// U16Cols column `i` (decoded at open).
    fn u16s(&self, i: usize) -> &[u16] {
        self.decoded.u16s.get(i).map_or(&[], Column::as_slice)
    }
    /// `latency_ms` of every row.
    pub(crate) fn latency(&self) -> &[u32] {
        self.u32s(0)
    }
    /// `latency_detail_ms` of every row.
    pub(crate) fn latency_detail(&self) -> &[u32] {
        self.u32s(1)
    }
    /// Counter `c` of every row.
    pub(crate) fn counter(&self, c: usize) -> &[u32] {
        self.u32s(2 + c)
    }
    /// Status of every row.
    pub(crate) fn status(&self) -> &[u16] {
        self.u16s(0)
    }
    /// Flags of every row.
    pub(crate) fn flags(&self) -> &[u16] {
        self.u16s(1)
    }
    /// Segment-local codes of dim `d`.
    pub(crate) fn dim(&self, d: usize) -> &[u16] {
        self.u16s(2 + d)
    }

    /// Per chunk, the ts of its first row (Zones, in place).
    pub(crate) fn zone_ts_min(&self) -> &[i64] {
        self.layout.zones.ts_min(&self.mmap)
    }
    /// Per chunk, the ts of its last row (Zones, in place).
    pub(crate) fn zone_ts_max(&self) -> &[i64] {
        self.layout.zones.ts_max(&self.mmap)
    }
    /// Per chunk, the smallest status (Zones, in place).
    pub(crate) fn zone_status_min(&self) -> &[u16] {
        self.layout.zones.status_min(&self.mmap)
    }
    /// Per chunk, the largest status (Zones, in place).
    pub(crate) fn zone_status_max(&self) -> &[u16] {
        self.layout.zones.status_max(&self.mmap)
    }
    /// Per chunk, the smallest code of dim `d` (Zones, in place).
    pub(crate) fn zone_dim_min(&self, d: usize) -> &[u16] {
        self.layout.zones.dim_min(&self.mmap, d)
    }
    /// Per chunk, the largest code of dim `d` (Zones, in place).
    pub(crate) fn zone_dim_max(&self, d: usize) -> &[u16] {
        self.layout.zones.dim_max(&self.mmap, d)
    }

    /// Per chunk, the low 64 bits of the metric sum (ChunkAggs, in place).
    pub(crate) fn agg_metric_lo(&self) -> &[u64] {
        self.layout.aggs.metric_lo(&self.mmap)
    }
    /// Per chunk, the high 64 bits of the metric sum (ChunkAggs, in place).
    pub(crate) fn agg_metric_hi(&self) -> &[i64] {
        self.layout.aggs.metric_hi(&self.mmap)
    }
    /// Per chunk, the sum of `latency_ms` (ChunkAggs, in place).
    pub(crate) fn agg_latency(&self) -> &[u64] {
        self.layout.aggs.latency(&self.mmap)
    }
    /// Per chunk, the sum of `latency_detail_ms` (ChunkAggs, in place).
    pub(crate) fn agg_latency_detail(&self) -> &[u64] {
        self.layout.aggs.latency_detail(&self.mmap)
    }
    /// Per chunk, the sum of counter `c` (ChunkAggs, in place).
    pub(crate) fn agg_counter(&self, c: usize) -> &[u64] {
        self.layout.aggs.counter(&self.mmap, c)
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
        let mut t = Totals::new(self.shape.counters);
        for c in 0..self.nchunks {
            self.chunk_totals_into(c, &mut t);
        }
        t
    }

    /// Dims that have posting lists.
    pub(crate) fn posting_dims(&self) -> Vec<usize> {
        self.decoded.postings.dims()
    }

    /// Posting lists of dim `d`, if the segment has them.
    pub(crate) fn postings(&self, d: usize) -> Option<Postings<'_>> {
        self.decoded.postings.lists(d)
    }

    /// The filter over the segment's ids, if it has one (version 2).
    pub(crate) fn id_filter(&self) -> Option<&Bloom> {
        self.decoded.id_filter.as_ref()
    }

    /// The ids of every row: version 1's copied at open, version 2's decompressed on first use
    /// (checked at open, so a fault here means the file changed under the mapping).
    pub(crate) fn ids(&self) -> Result<&IdStore> {
        if let Some(ids) = &self.decoded.ids {
            return Ok(ids);
        }
        let r = self.ids.get_or_init(|| {
            FrontCodedIds::parse(self.section(Section::Ids), self.rows).map(|(_, ids, _)| ids)
        });
        r.as_ref().map_err(|e| self.fault(e))
    }

    /// The id of `row`.
    pub(crate) fn id(&self, row: usize) -> Result<&str> {
        Ok(self.ids()?.id(row))
    }

    /// Rows whose id is `id`, via a hash index built on first use.
    pub(crate) fn rows_with_id(&self, id: &str) -> Result<Vec<usize>> {
        Ok(self.ids()?.rows_with(id))
    }

    /// Label `l` of `row`.
    pub(crate) fn label(&self, l: usize, row: usize) -> &str {
        self.layout.labels.value(&self.mmap, l, row)
    }

    /// Intern tables, decompressed on first use and cached.
    /// Bytes of memory the decoded columns and indexes hold (the cache's byte budget counts
    /// them; the mapped file is not counted: its pages are the kernel's to drop).
    pub(crate) fn heap_bytes(&self) -> usize {
        fn cols<T: Zeroed>(cols: &[Column<T>]) -> usize {
            cols.iter().map(Column::heap_bytes).sum()
        }
        let d = &self.decoded;
        let intern = match self.intern.get() {
            // Each value twice (the list and the map's key), and a slot of the map.
            Some(Ok(dicts)) => dicts
                .iter()
                .flat_map(|dict| &dict.values)
                .map(|v| 2 * v.len() + 48)
                .sum(),
            _ => 0,
        };
        let status = match self.status.get() {
            Some(Ok(bitmaps)) => bitmaps.iter().map(|(_, bits)| bits.capacity() * 8).sum(),
            _ => 0,
        };
        (self.ts.capacity() + self.metric.capacity()) * 8
            + cols(&d.u32s)
            + cols(&d.u16s)
            + d.postings.heap_bytes()
            + d.ids.as_ref().map_or(0, IdStore::heap_bytes)
            + self
                .ids
                .get()
                .and_then(|r| r.as_ref().ok())
                .map_or(0, IdStore::heap_bytes)
            + intern
            + status
    }

    pub(crate) fn intern(&self) -> Result<&[SegDict]> {
        let r = self.intern.get_or_init(|| self.decode_intern());
        r.as_deref().map_err(|e| self.fault(e))
    }

    /// Decodes the intern tables and checks them against the sections that use their codes:
    /// every code of a dim's column is below its value count, and a posting dim has one list
    /// per value.
    fn decode_intern(&self) -> std::result::Result<Vec<SegDict>, SectionError> {
        let dicts = InternTables::parse(self.section(Section::Intern), self.shape.dims)?;
        let fault = |reason| SectionError::new(Section::Intern, InternTables::TABLE_AT, reason);
        for (d, dict) in dicts.iter().enumerate() {
            let n = dict.values.len();
            if let Some(row) = first_bad(self.dim(d).iter(), |&c| c as usize >= n) {
                return Err(fault(format!(
                    "dim {d} has {n} values, row {row} has code {}",
                    self.dim(d)[row]
                )));
            }
            if let Some(lists) = self.decoded.postings.codes_of(d).filter(|&p| p != n) {
                return Err(fault(format!(
                    "dim {d} has {n} values but {lists} posting lists"
                )));
            }
        }
        Ok(dicts)
    }

    /// Per status value, the bitset of rows holding it; decompressed on first use.
    pub(crate) fn status_bitmaps(&self) -> Result<&[(u16, Vec<u64>)]> {
        let r = self
            .status
            .get_or_init(|| self.layout.status.bitmaps(&self.mmap, self.status()));
        r.as_deref().map_err(|e| self.fault(e))
    }

    /// Distinct status values present, with their row counts.
    pub(crate) fn status_values(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        self.layout.status.values()
    }
}

/// Maps the segment file at `path`.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| DbError::io("open segment", path, e))?;
    // SAFETY: segment files are immutable once renamed into place: the engine never writes to
    // them again and only unlinks them (which keeps the mapping valid). The data directory is
    // owned by one engine (a lock file guards it); a foreign process writing into a segment is
    // outside what any mmap-based store can defend against.
    #[allow(unsafe_code)]
    let mapped = unsafe { Mmap::map(&file) };
    mapped.map_err(|e| DbError::io("map segment", path, e))
}

/// Parses the header of `file` and checks it against `schema`: the same schema (else
/// `SchemaMismatch`), the same column counts, and a row count the file can hold.
fn verify_header(path: &Path, file: &[u8], schema: &SchemaDef) -> Result<SegmentHeader> {
    let corrupt =
        |at: usize, reason: String| DbError::corrupt_segment(path, "header", at as u64, reason);
    let header = match SegmentHeader::parse(file) {
        Ok(h) => h,
        Err(HeaderError::Version(found)) => {
            return Err(DbError::UnsupportedFormat {
                path: path.to_path_buf(),
                found,
                supported: SEGMENT_VERSION,
            })
        }
        Err(HeaderError::Corrupt { at, reason }) => return Err(corrupt(at, reason)),
    };
    check_schema(path, &header, schema)?;
    if header.dims.get() as usize != schema.dims.len()
        || header.counters as usize != schema.counters.len()
        || header.labels as usize != schema.labels.len()
    {
        return Err(corrupt(
            offset_of!(SegmentHeader, dims),
            "column counts disagree with the fingerprint".into(),
        ));
    }
    let generation = header.generation.get();
    if generation == u64::MAX {
        // See `WalHeader::decode`: no WAL of this generation can exist.
        return Err(corrupt(
            offset_of!(SegmentHeader, generation),
            format!("generation {generation} leaves no generation for a next WAL"),
        ));
    }
    let rows = header.rows.get() as usize;
    if rows > MAX_SEGMENT_ROWS || rows > file.len() {
        return Err(corrupt(
            offset_of!(SegmentHeader, rows),
            format!(
                "row count {rows} is impossible for a {}-byte file",
                file.len()
            ),
        ));
    }
    Ok(header)
}

/// The header was written with `schema` (its id and fingerprint), else `SchemaMismatch`.
fn check_schema(path: &Path, header: &SegmentHeader, schema: &SchemaDef) -> Result<()> {
    if header.schema_id == schema.schema_id && header.fingerprint.get() == schema.fingerprint() {
        return Ok(());
    }
    Err(DbError::SchemaMismatch {
        expected: schema.summary(),
        found: SchemaSummary {
            schema_id: header.schema_id,
            fingerprint: header.fingerprint.get(),
            columns: None,
        },
        path: path.to_path_buf(),
    })
}

/// Parses every section of `file` in table order, then checks the bloom dim against the bloom
/// section.
fn parse_sections(
    file: &[u8],
    table: &SectionTable,
    header: &SegmentHeader,
    shape: &Shape,
    check_ids: bool,
) -> std::result::Result<Parsed, SectionError> {
    let bytes = |s: Section| table.bytes(file, s);
    let at = |s| table.start(s);
    let rows = shape.rows;
    let ts = TsColumn::parse(bytes(Section::Ts), rows)?;
    TsColumn::check_bounds(&ts, header.min_ts.get(), header.max_ts.get())?;
    let v1 = header.version.get() == SEGMENT_VERSION_1;
    let metric = if v1 {
        MetricColumn::parse(bytes(Section::Metric), rows)?
    } else {
        PackedMetric::parse(bytes(Section::Metric), rows)?
    };
    let zones = Zones::parse(bytes(Section::Zones), shape)?;
    let aggs = ChunkAggs::parse(bytes(Section::ChunkAggs), shape)?;
    let bloom = Bloom::parse(bytes(Section::Bloom))?;
    check_bloom_dim(header.bloom_dim.get(), bloom.is_some(), shape.dims)?;
    let status = StatusIndex::parse(bytes(Section::Status), rows)?;
    let decoded = if v1 {
        decode_v1(&bytes, shape, &ts)?
    } else {
        decode_v2(&bytes, shape, &ts, check_ids)?
    };
    let labels = LabelColumns::parse(bytes(Section::Labels), rows, shape.labels)?;
    // The reader views them in the whole mapping: one bounds check per column view.
    let layout = Layout {
        zones: zones.placed_at(at(Section::Zones)),
        aggs: aggs.placed_at(at(Section::ChunkAggs)),
        status: status.placed_at(at(Section::Status)),
        labels: labels.placed_at(at(Section::Labels)),
    };
    Ok(Parsed {
        ts,
        metric,
        bloom,
        layout,
        decoded,
    })
}

/// Copies the version-1 sections U32Cols, U16Cols, Postings and Ids (`bytes` gives a section's
/// bytes) into memory, after checking them and the id order of rows of one time (`ts`).
fn decode_v1<'a>(
    bytes: &impl Fn(Section) -> &'a [u8],
    shape: &Shape,
    ts: &[i64],
) -> std::result::Result<Decoded, SectionError> {
    let (u32b, u16b) = (bytes(Section::U32Cols), bytes(Section::U16Cols));
    let u32c = U32Cols::parse(u32b, shape)?;
    let u16c = U16Cols::parse(u16b, shape)?;
    let mut u32s = vec![
        u32c.latency(u32b).to_vec(),
        u32c.latency_detail(u32b).to_vec(),
    ];
    u32s.extend((0..shape.counters).map(|c| u32c.counter(u32b, c).to_vec()));
    let mut u16s = vec![u16c.status(u16b).to_vec(), u16c.flags(u16b).to_vec()];
    u16s.extend((0..shape.dims).map(|d| u16c.dim(u16b, d).to_vec()));
    let pb = bytes(Section::Postings);
    let postings = PostingIndex::parse(pb, shape.rows, shape.dims)?;
    let ib = bytes(Section::Ids);
    let ids = IdIndex::parse(ib, shape.rows)?;
    ids.check_order(ib, ts)?;
    Ok(Decoded {
        u32s: u32s.into_iter().map(Column::new).collect(),
        u16s: u16s.into_iter().map(Column::new).collect(),
        postings: PostingLists::from_v1(&postings, pb),
        ids: Some(ids.copy_to_store(ib)),
        id_filter: None,
    })
}

/// Decodes the version-2 sections U32Cols, U16Cols and Postings (lists rebuilt from the codes),
/// and, with `check_ids`, checks Ids: every id decodes and rows of one time (`ts`) are in id
/// order. The ids are then dropped, to be decoded again on first use ([`SegmentData::ids`]);
/// only their filter is kept.
fn decode_v2<'a>(
    bytes: &impl Fn(Section) -> &'a [u8],
    shape: &Shape,
    ts: &[i64],
    check_ids: bool,
) -> std::result::Result<Decoded, SectionError> {
    let u32s = PackedU32Cols::parse(bytes(Section::U32Cols), shape)?;
    let u16s = PackedU16Cols::parse(bytes(Section::U16Cols), shape)?;
    let directory = PostingDirectory::parse(bytes(Section::Postings), shape.dims)?;
    let postings =
        PostingLists::from_codes(&directory, |d| u16s.get(2 + d).map_or(&[][..], |c| c))?;
    let (u32s, u16s) = (
        u32s.into_iter().map(Column::new).collect(),
        u16s.into_iter().map(Column::new).collect(),
    );
    let id_filter = if check_ids {
        let (id_filter, ids, stream_at) = FrontCodedIds::parse(bytes(Section::Ids), shape.rows)?;
        ids.check_order(ts, stream_at)?;
        id_filter
    } else {
        FrontCodedIds::parse_filter(bytes(Section::Ids), shape.rows)?
    };
    Ok(Decoded {
        u32s,
        u16s,
        postings,
        ids: None,
        id_filter,
    })
}

/// The header's bloom dim and the bloom section agree: a filter iff there is a bloom dim, and
/// the bloom dim is a dim.
fn check_bloom_dim(
    bloom_dim: u16,
    has_filter: bool,
    dims: usize,
) -> std::result::Result<(), SectionError> {
    if (bloom_dim == NO_BLOOM) == has_filter
        || (bloom_dim != NO_BLOOM && bloom_dim as usize >= dims)
    {
        let filter = if has_filter { "a filter" } else { "no filter" };
        return Err(SectionError::new(
            Section::Bloom,
            0,
            format!("the header's bloom dim {bloom_dim} of {dims} dims disagrees with {filter}"),
        ));
    }
    Ok(())
}
