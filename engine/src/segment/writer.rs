//! Turning a frozen memtable into segment files.

use std::path::{Path, PathBuf};

use zerocopy::little_endian::{I64, U16, U32, U64};

use super::header::{
    SectionEntry, SegmentHeader, HEADER_LEN, NO_BLOOM, SEGMENT_MAGIC, SEGMENT_VERSION,
};
use super::section::bloom::Bloom;
use super::section::chunks::{ChunkAggs, Zones};
use super::section::columns::TsColumn;
use super::section::id_blocks::FrontCodedIds;
use super::section::intern::InternTables;
use super::section::labels::LabelColumns;
use super::section::packed_cols::{PackedMetric, PackedU16Cols, PackedU32Cols};
use super::section::posting_lists::PostingDirectory;
use super::section::postings::PostingDim;
use super::section::status::StatusIndex;
use super::{
    segment_name, Section, MAX_DIM_VALUES, MAX_SEGMENT_ROWS, MAX_SEGMENT_STRING_BYTES,
    SECTION_ALIGN, SECTION_COUNT,
};
use crate::error::{DbError, Result};
use crate::fsutil::write_atomic;
use crate::memtable::MemData;
use crate::schema::SchemaDef;

/// What a segment is made from.
pub(crate) struct SegmentInput<'a> {
    pub mem: &'a MemData,
    pub schema: &'a SchemaDef,
    /// Dims that get posting lists (bloom dim and rollup dims).
    pub posting_dims: Vec<usize>,
    pub generation: u64,
    pub shard: usize,
}

/// Live rows of `mem` sorted by (ts, id), cut into parts that each fit one segment: at most
/// 65,536 distinct values per dim, `MAX_SEGMENT_ROWS` rows and `MAX_SEGMENT_STRING_BYTES` of
/// ids and labels.
pub(crate) fn plan_parts(mem: &MemData, is_dead: &dyn Fn(&str) -> bool) -> Vec<Vec<u32>> {
    let mut rows: Vec<u32> = (0..mem.len() as u32)
        .filter(|&r| !mem.is_deleted(r as usize) && !is_dead(mem.ids.get(r as usize)))
        .collect();
    rows.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        mem.ts[a]
            .cmp(&mem.ts[b])
            .then_with(|| mem.ids.get(a).cmp(mem.ids.get(b)))
            .then(a.cmp(&b))
    });
    let mut parts = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    // For each dim, the part number in which each memtable code was last seen.
    let mut seen: Vec<Vec<u32>> = mem.dicts.iter().map(|d| vec![u32::MAX; d.len()]).collect();
    let mut distinct = vec![0usize; mem.dims.len()];
    let mut string_bytes = 0usize;
    let row_bytes =
        |r: usize| mem.ids.get(r).len() + mem.labels.iter().map(|l| l.get(r).len()).sum::<usize>();
    for r in rows {
        let ru = r as usize;
        let part_no = parts.len() as u32;
        let new_values = mem
            .dims
            .iter()
            .enumerate()
            .map(|(d, col)| (seen[d][col[ru] as usize] != part_no) as usize);
        let overflow = new_values
            .zip(&distinct)
            .any(|(n, &have)| have + n > MAX_DIM_VALUES)
            || current.len() >= MAX_SEGMENT_ROWS
            || string_bytes + row_bytes(ru) > MAX_SEGMENT_STRING_BYTES;
        if overflow && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            distinct.iter_mut().for_each(|d| *d = 0);
            string_bytes = 0;
        }
        let part_no = parts.len() as u32;
        for (d, col) in mem.dims.iter().enumerate() {
            let code = col[ru] as usize;
            if seen[d][code] != part_no {
                seen[d][code] = part_no;
                distinct[d] += 1;
            }
        }
        string_bytes += row_bytes(ru);
        current.push(r);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Builds a segment file in memory: the header's room, then each section at its alignment.
struct Assembler {
    out: Vec<u8>,
    sections: [SectionEntry; SECTION_COUNT],
}

impl Assembler {
    fn new() -> Self {
        Assembler {
            out: vec![0u8; HEADER_LEN],
            sections: [SectionEntry::default(); SECTION_COUNT],
        }
    }

    /// Appends section `s`, written by `encode`, and records it in the section table.
    fn add(&mut self, s: Section, encode: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        self.try_add(s, "", |out| {
            encode(out);
            Ok(())
        })
    }

    /// Like [`Assembler::add`] for an encoder that can fail (compression); its error is
    /// reported as `what`.
    fn try_add(
        &mut self,
        s: Section,
        what: &'static str,
        encode: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<()> {
        let start = self.out.len().next_multiple_of(SECTION_ALIGN);
        self.out.resize(start, 0);
        encode(&mut self.out)
            .map_err(|e| DbError::io(what, PathBuf::from("<segment being built>"), e))?;
        let bytes = &self.out[start..];
        let len = u32::try_from(bytes.len()).map_err(|_| DbError::ValueTooLarge {
            column: format!("segment section {}", s.name()),
            len: bytes.len(),
            max: u32::MAX as usize,
        })?;
        self.sections[s as usize] = SectionEntry {
            offset: U64::new(start as u64),
            len: U32::new(len),
            crc: U32::new(crc32fast::hash(bytes)),
        };
        Ok(())
    }

    /// The file, with `header` (given the section table) in front.
    fn finish(
        mut self,
        header: impl FnOnce([SectionEntry; SECTION_COUNT]) -> SegmentHeader,
    ) -> Vec<u8> {
        self.out[..HEADER_LEN].copy_from_slice(&header(self.sections).encode());
        self.out
    }
}

/// The dictionaries of one segment: per dim, the values its rows use, sorted, so codes follow
/// value order; and each row's code.
struct SegmentDicts<'a> {
    values: Vec<Vec<&'a str>>,
    codes: Vec<Vec<u16>>,
}

impl<'a> SegmentDicts<'a> {
    fn build(mem: &'a MemData, rows: &[u32]) -> Self {
        let mut values = Vec::with_capacity(mem.dims.len());
        let mut codes = Vec::with_capacity(mem.dims.len());
        for (col, dict) in mem.dims.iter().zip(&mem.dicts) {
            let mut used = vec![false; dict.len()];
            for &r in rows {
                used[col[r as usize] as usize] = true;
            }
            let mut mem_codes: Vec<u32> = (0..dict.len() as u32)
                .filter(|&c| used[c as usize])
                .collect();
            mem_codes.sort_unstable_by(|&a, &b| dict.value(a).cmp(dict.value(b)));
            let mut remap = vec![0u16; dict.len()];
            for (i, &c) in mem_codes.iter().enumerate() {
                remap[c as usize] = i as u16;
            }
            codes.push(
                rows.iter()
                    .map(|&r| remap[col[r as usize] as usize])
                    .collect(),
            );
            values.push(mem_codes.iter().map(|&c| dict.value(c)).collect());
        }
        SegmentDicts { values, codes }
    }
}

/// The rows of one segment: memtable row numbers in segment order, and the columns the
/// sections read more than once, gathered in that order.
struct SegmentRows<'a> {
    mem: &'a MemData,
    rows: &'a [u32],
    ts: Vec<i64>,
    metric: Vec<i64>,
    status: Vec<u16>,
    flags: Vec<u16>,
    dicts: SegmentDicts<'a>,
}

impl<'a> SegmentRows<'a> {
    fn gather(mem: &'a MemData, rows: &'a [u32]) -> Self {
        fn take<T: Copy>(col: &[T], rows: &[u32]) -> Vec<T> {
            rows.iter().map(|&r| col[r as usize]).collect()
        }
        SegmentRows {
            mem,
            rows,
            ts: take(&mem.ts, rows),
            metric: take(&mem.metric, rows),
            status: take(&mem.status, rows),
            flags: take(&mem.flags, rows),
            dicts: SegmentDicts::build(mem, rows),
        }
    }

    /// Latency, latency detail and each counter, in segment order (the U32Cols order).
    fn u32_columns(&self) -> impl Iterator<Item = impl Iterator<Item = u32> + 'a> + 'a {
        let (mem, rows) = (self.mem, self.rows);
        [&mem.latency, &mem.latency_detail]
            .into_iter()
            .chain(&mem.counters)
            .map(move |col| rows.iter().map(move |&r| col[r as usize]))
    }

    /// Status, flags and each dim's codes (the U16Cols order).
    fn u16_columns(&self) -> impl Iterator<Item = impl Iterator<Item = u16> + '_> + '_ {
        [&self.status, &self.flags]
            .into_iter()
            .chain(&self.dicts.codes)
            .map(|col| col.iter().copied())
    }

    /// The ids, in segment order.
    fn ids(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let (mem, rows) = (self.mem, self.rows);
        rows.iter().map(move |&r| mem.ids.get(r as usize))
    }

    /// Each label column, in segment order.
    fn label_columns(
        &self,
    ) -> impl ExactSizeIterator<Item = impl Iterator<Item = &'a str> + 'a> + 'a {
        let rows = self.rows;
        self.mem
            .labels
            .iter()
            .map(move |col| rows.iter().map(move |&r| col.get(r as usize)))
    }

    /// The posting dims' codes.
    fn posting_dims(&self, dims: &[usize]) -> Vec<PostingDim<'_>> {
        dims.iter()
            .map(|&dim| PostingDim {
                dim,
                values: self.dicts.values[dim].len(),
                codes: &self.dicts.codes[dim],
            })
            .collect()
    }
}

/// Encodes one segment from `rows` (memtable row numbers in (ts, id) order).
pub(crate) fn encode_segment(
    input: &SegmentInput<'_>,
    rows: &[u32],
    part_index: u16,
    part_count: u16,
) -> Result<Vec<u8>> {
    let seg = SegmentRows::gather(input.mem, rows);
    let mut asm = Assembler::new();
    asm.try_add(Section::Ts, "compress ts", |out| {
        TsColumn::encode(&seg.ts, out)
    })?;
    asm.try_add(Section::Metric, "compress metric", |out| {
        PackedMetric::encode(&seg.metric, out)
    })?;
    asm.try_add(Section::U32Cols, "pack u32 columns", |out| {
        PackedU32Cols::encode(seg.u32_columns(), out)
    })?;
    asm.try_add(Section::U16Cols, "pack u16 columns", |out| {
        PackedU16Cols::encode(seg.u16_columns(), out)
    })?;
    asm.add(Section::Bloom, |out| {
        if let Some(b) = input.schema.bloom_dim {
            Bloom::encode(seg.dicts.values[b].iter().copied(), out);
        }
    })?;
    asm.try_add(Section::Status, "compress status bitmap", |out| {
        StatusIndex::encode(&seg.status, out)
    })?;
    asm.add(Section::Zones, |out| {
        Zones::encode(&seg.ts, &seg.status, &seg.dicts.codes, out)
    })?;
    asm.add(Section::ChunkAggs, |out| {
        ChunkAggs::encode(&seg.metric, seg.u32_columns(), out)
    })?;
    asm.try_add(Section::Intern, "compress intern tables", |out| {
        InternTables::encode(&seg.dicts.values, out)
    })?;
    asm.add(Section::Postings, |out| {
        PostingDirectory::encode(&seg.posting_dims(&input.posting_dims), out)
    })?;
    let ids: Vec<&str> = seg.ids().collect();
    asm.try_add(Section::Ids, "compress ids", |out| {
        FrontCodedIds::encode(ids.iter().copied(), out)
    })?;
    asm.add(Section::Labels, |out| {
        LabelColumns::encode(seg.label_columns(), out)
    })?;
    Ok(asm.finish(|sections| header(input, &seg.ts, part_index, part_count, sections)))
}

/// The header of a segment of rows whose ts are `ts`.
fn header(
    input: &SegmentInput<'_>,
    ts: &[i64],
    part_index: u16,
    part_count: u16,
    sections: [SectionEntry; SECTION_COUNT],
) -> SegmentHeader {
    let schema = input.schema;
    SegmentHeader {
        magic: SEGMENT_MAGIC,
        version: U16::new(SEGMENT_VERSION),
        header_len: U16::new(HEADER_LEN as u16),
        schema_id: schema.schema_id,
        section_count: SECTION_COUNT as u8,
        bloom_dim: U16::new(schema.bloom_dim.map_or(NO_BLOOM, |b| b as u16)),
        dims: U16::new(schema.dims.len() as u16),
        counters: schema.counters.len() as u8,
        labels: schema.labels.len() as u8,
        fingerprint: U64::new(schema.fingerprint()),
        rows: U32::new(ts.len() as u32),
        part_index: U16::new(part_index),
        part_count: U16::new(part_count),
        min_ts: I64::new(ts.first().copied().unwrap_or(0)),
        max_ts: I64::new(ts.last().copied().unwrap_or(0)),
        generation: U64::new(input.generation),
        shard: U16::new(input.shard as u16),
        reserved: U16::new(0),
        header_crc: U32::new(0),
        sections,
    }
}

/// Writes segment `id` durably: temp file `seg-<id>.kseg.tmp`, fsync, rename, fsync the
/// directory.
pub(crate) fn write_segment_file(dir: &Path, id: u64, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(segment_name(id));
    let tmp = dir.join(format!("{}.tmp", segment_name(id)));
    write_atomic(dir, &tmp, &path, bytes)?;
    Ok(path)
}
