//! Turning a frozen memtable into segment files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::IntoBytes;

use super::bloom::Bloom;
use super::codec::{bitset_words, compress, encode_bitset, encode_i64};
use super::header::{
    SectionEntry, SegmentHeader, HEADER_LEN, NO_BLOOM, SEGMENT_MAGIC, SEGMENT_VERSION,
};
use super::{
    segment_name, Section, MAX_DIM_VALUES, MAX_SEGMENT_ROWS, MAX_SEGMENT_STRING_BYTES,
    SECTION_ALIGN, SECTION_COUNT,
};
use crate::error::{DbError, Result};
use crate::fsutil::write_atomic;
use crate::hash::hash64;
use crate::le;
use crate::memtable::{MemData, CHUNK_ROWS};
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

/// Builds a segment file in memory.
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

    fn add(&mut self, s: Section, bytes: &[u8]) -> Result<()> {
        let pad = self.out.len().next_multiple_of(SECTION_ALIGN) - self.out.len();
        self.out.extend(std::iter::repeat_n(0u8, pad));
        let len = u32::try_from(bytes.len()).map_err(|_| DbError::ValueTooLarge {
            column: format!("segment section {}", s.name()),
            len: bytes.len(),
            max: u32::MAX as usize,
        })?;
        self.sections[s as usize] = SectionEntry {
            offset: U64::new(self.out.len() as u64),
            len: U32::new(len),
            crc: U32::new(crc32fast::hash(bytes)),
        };
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

fn put_u32s(out: &mut Vec<u8>, v: impl IntoIterator<Item = u32>) {
    le::put_all(out, v);
}
fn put_u16s(out: &mut Vec<u8>, v: impl IntoIterator<Item = u16>) {
    le::put_all(out, v);
}
fn put_u64s(out: &mut Vec<u8>, v: impl IntoIterator<Item = u64>) {
    le::put_all(out, v);
}
fn put_i64s(out: &mut Vec<u8>, v: impl IntoIterator<Item = i64>) {
    le::put_all(out, v);
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> DbError {
    move |e| DbError::io(what, PathBuf::from("<segment being built>"), e)
}

/// Encodes one segment from `rows` (memtable row numbers in (ts, id) order).
pub(crate) fn encode_segment(
    input: &SegmentInput<'_>,
    rows: &[u32],
    part_index: u16,
    part_count: u16,
) -> Result<Vec<u8>> {
    let mem = input.mem;
    let schema = input.schema;
    let n = rows.len();
    let nchunks = n.div_ceil(CHUNK_ROWS);
    let at = |r: &u32| *r as usize;
    let mut asm = Assembler::new();

    // ts and metric: delta + zigzag + zstd.
    let ts: Vec<i64> = rows.iter().map(|r| mem.ts[at(r)]).collect();
    let metric: Vec<i64> = rows.iter().map(|r| mem.metric[at(r)]).collect();
    asm.add(
        Section::Ts,
        &encode_i64(&ts).map_err(io_err("compress ts"))?,
    )?;
    asm.add(
        Section::Metric,
        &encode_i64(&metric).map_err(io_err("compress metric"))?,
    )?;

    // u32 columns: latency, latency detail, counters.
    let mut u32s = Vec::with_capacity((2 + mem.counters.len()) * n * 4);
    put_u32s(&mut u32s, rows.iter().map(|r| mem.latency[at(r)]));
    put_u32s(&mut u32s, rows.iter().map(|r| mem.latency_detail[at(r)]));
    for col in &mem.counters {
        put_u32s(&mut u32s, rows.iter().map(|r| col[at(r)]));
    }
    asm.add(Section::U32Cols, &u32s)?;
    drop(u32s);

    // Segment dictionaries: the values used by these rows, sorted, so codes follow value order.
    let mut seg_codes: Vec<Vec<u16>> = Vec::with_capacity(mem.dims.len());
    let mut seg_values: Vec<Vec<&str>> = Vec::with_capacity(mem.dims.len());
    for (col, dict) in mem.dims.iter().zip(&mem.dicts) {
        let mut used = vec![false; dict.len()];
        for r in rows {
            used[col[at(r)] as usize] = true;
        }
        let mut codes: Vec<u32> = (0..dict.len() as u32)
            .filter(|&c| used[c as usize])
            .collect();
        codes.sort_unstable_by(|&a, &b| dict.value(a).cmp(dict.value(b)));
        let mut remap = vec![0u16; dict.len()];
        for (i, &c) in codes.iter().enumerate() {
            remap[c as usize] = i as u16;
        }
        seg_codes.push(rows.iter().map(|r| remap[col[at(r)] as usize]).collect());
        seg_values.push(codes.iter().map(|&c| dict.value(c)).collect());
    }

    // u16 columns: status, flags, dim codes.
    let mut u16s = Vec::with_capacity((2 + mem.dims.len()) * n * 2);
    put_u16s(&mut u16s, rows.iter().map(|r| mem.status[at(r)]));
    put_u16s(&mut u16s, rows.iter().map(|r| mem.flags[at(r)]));
    for codes in &seg_codes {
        put_u16s(&mut u16s, codes.iter().copied());
    }
    asm.add(Section::U16Cols, &u16s)?;
    drop(u16s);

    // Bloom filter on the bloom dim.
    let bloom = match schema.bloom_dim {
        Some(b) => Bloom::build(seg_values[b].iter().copied()),
        None => Vec::new(),
    };
    asm.add(Section::Bloom, &bloom)?;

    // Status bitmaps: one compressed bitset per distinct status value.
    let mut by_status: BTreeMap<u16, (u32, Vec<u64>)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let e = by_status
            .entry(mem.status[at(r)])
            .or_insert_with(|| (0, vec![0u64; bitset_words(n)]));
        e.0 += 1;
        e.1[i / 64] |= 1 << (i % 64);
    }
    let mut blobs = Vec::with_capacity(by_status.len());
    for (_, words) in by_status.values() {
        blobs.push(encode_bitset(words).map_err(io_err("compress status bitmap"))?);
    }
    let mut status = Vec::new();
    put_u32s(&mut status, [by_status.len() as u32]);
    let mut blob_at = 4 + 16 * by_status.len();
    for ((&value, (count, _)), blob) in by_status.iter().zip(&blobs) {
        put_u16s(&mut status, [value, 0]);
        put_u32s(&mut status, [*count, blob_at as u32, blob.len() as u32]);
        blob_at += blob.len();
    }
    for blob in &blobs {
        status.extend_from_slice(blob);
    }
    asm.add(Section::Status, &status)?;
    drop((status, blobs, by_status));

    // Zone maps per chunk: ts min/max, status min/max, each dim's code min/max.
    let chunks = || (0..nchunks).map(|c| c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n));
    let mut zones = Vec::new();
    put_i64s(&mut zones, chunks().map(|r| ts[r.start]));
    put_i64s(&mut zones, chunks().map(|r| ts[r.end - 1]));
    let status_of = |i: usize| mem.status[rows[i] as usize];
    put_u16s(
        &mut zones,
        chunks().map(|r| r.map(status_of).min().unwrap_or(0)),
    );
    put_u16s(
        &mut zones,
        chunks().map(|r| r.map(status_of).max().unwrap_or(0)),
    );
    for codes in &seg_codes {
        put_u16s(
            &mut zones,
            chunks().map(|r| codes[r].iter().copied().min().unwrap_or(0)),
        );
        put_u16s(
            &mut zones,
            chunks().map(|r| codes[r].iter().copied().max().unwrap_or(0)),
        );
    }
    asm.add(Section::Zones, &zones)?;
    drop(zones);

    // Chunk pre-aggregates: metric sum as i128 (low u64 words, then high i64 words), latency
    // sums, counter sums.
    let mut aggs = Vec::new();
    let metric_sums: Vec<i128> = chunks()
        .map(|r| metric[r].iter().map(|&m| m as i128).sum())
        .collect();
    put_u64s(&mut aggs, metric_sums.iter().map(|&s| s as u64));
    put_i64s(&mut aggs, metric_sums.iter().map(|&s| (s >> 64) as i64));
    let sum_u32 = |col: &Vec<u32>, r: std::ops::Range<usize>| {
        rows[r].iter().map(|&x| col[x as usize] as u64).sum::<u64>()
    };
    put_u64s(&mut aggs, chunks().map(|r| sum_u32(&mem.latency, r)));
    put_u64s(&mut aggs, chunks().map(|r| sum_u32(&mem.latency_detail, r)));
    for col in &mem.counters {
        put_u64s(&mut aggs, chunks().map(|r| sum_u32(col, r)));
    }
    asm.add(Section::ChunkAggs, &aggs)?;
    drop(aggs);

    // Intern tables: raw length (u64), then zstd of, per dim: count, value lengths, value bytes.
    let mut intern = Vec::new();
    for values in &seg_values {
        put_u32s(&mut intern, [values.len() as u32]);
        put_u32s(&mut intern, values.iter().map(|v| v.len() as u32));
        for v in values {
            intern.extend_from_slice(v.as_bytes());
        }
    }
    let mut section = Vec::new();
    le::put_all(&mut section, [intern.len() as u64]);
    section.extend_from_slice(&compress(&intern).map_err(io_err("compress intern tables"))?);
    asm.add(Section::Intern, &section)?;
    drop(intern);

    // Posting lists: for each posting dim, per code, the rows holding it (ascending).
    let mut postings = Vec::new();
    put_u32s(&mut postings, [input.posting_dims.len() as u32]);
    let mut body = Vec::new();
    let dir_len = 4 + 16 * input.posting_dims.len();
    for &d in &input.posting_dims {
        let ncodes = seg_values[d].len();
        let mut offsets = vec![0u32; ncodes + 1];
        for &c in &seg_codes[d] {
            offsets[c as usize + 1] += 1;
        }
        for i in 0..ncodes {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut list = vec![0u32; n];
        for (row, &c) in seg_codes[d].iter().enumerate() {
            list[fill[c as usize] as usize] = row as u32;
            fill[c as usize] += 1;
        }
        let offsets_at = dir_len + body.len();
        put_u32s(&mut body, offsets.iter().copied());
        let rows_at = dir_len + body.len();
        put_u32s(&mut body, list);
        put_u16s(&mut postings, [d as u16, 0]);
        put_u32s(
            &mut postings,
            [ncodes as u32, offsets_at as u32, rows_at as u32],
        );
    }
    postings.extend_from_slice(&body);
    asm.add(Section::Postings, &postings)?;
    drop((postings, body));

    // Ids: row count, table size, end offsets, open-addressing hash table (row + 1), bytes.
    let table_size = (n * 2).max(16).next_power_of_two();
    let mask = table_size - 1;
    let mut table = vec![0u32; table_size];
    let mut id_bytes = Vec::new();
    let mut ends = Vec::with_capacity(n);
    for (row, r) in rows.iter().enumerate() {
        let id = mem.ids.get(at(r));
        id_bytes.extend_from_slice(id.as_bytes());
        ends.push(id_bytes.len() as u32);
        let mut slot = hash64(id.as_bytes()) as usize & mask;
        while table[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        table[slot] = row as u32 + 1;
    }
    let mut ids = Vec::with_capacity(8 + 4 * (n + table_size) + id_bytes.len());
    put_u32s(&mut ids, [n as u32, table_size as u32]);
    put_u32s(&mut ids, ends);
    put_u32s(&mut ids, table);
    ids.extend_from_slice(&id_bytes);
    asm.add(Section::Ids, &ids)?;
    drop((ids, id_bytes));

    // Labels: directory of (ends offset, bytes offset, bytes length), then per column the end
    // offsets and the bytes (padded to 4).
    let mut labels = Vec::new();
    let mut body = Vec::new();
    let dir_len = 12 * mem.labels.len();
    for col in &mem.labels {
        let ends_at = dir_len + body.len();
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(n);
        for r in rows {
            bytes.extend_from_slice(col.get(at(r)).as_bytes());
            ends.push(bytes.len() as u32);
        }
        put_u32s(&mut body, ends);
        let bytes_at = dir_len + body.len();
        body.extend_from_slice(&bytes);
        body.resize(body.len().next_multiple_of(4), 0);
        put_u32s(
            &mut labels,
            [ends_at as u32, bytes_at as u32, bytes.len() as u32],
        );
    }
    labels.extend_from_slice(&body);
    asm.add(Section::Labels, &labels)?;

    let header = SegmentHeader {
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
        rows: U32::new(n as u32),
        part_index: U16::new(part_index),
        part_count: U16::new(part_count),
        min_ts: I64::new(ts.first().copied().unwrap_or(0)),
        max_ts: I64::new(ts.last().copied().unwrap_or(0)),
        generation: U64::new(input.generation),
        shard: U16::new(input.shard as u16),
        reserved: U16::new(0),
        header_crc: U32::new(0),
        sections: asm.sections,
    };
    let mut header = header;
    header.header_crc = U32::new(header.compute_crc());
    asm.out[..HEADER_LEN].copy_from_slice(header.as_bytes());
    Ok(asm.out)
}

/// Writes segment `id` durably: temp file `seg-<id>.kseg.tmp`, fsync, rename, fsync the
/// directory.
pub(crate) fn write_segment_file(dir: &Path, id: u64, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(segment_name(id));
    let tmp = dir.join(format!("{}.tmp", segment_name(id)));
    write_atomic(dir, &tmp, &path, bytes)?;
    Ok(path)
}
