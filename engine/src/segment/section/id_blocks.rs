//! Section Ids, format version 2 (FORMAT.md 9.8.4): a filter over the segment's ids, so a
//! look-up by id skips segments without mapping them, and the ids front-coded and compressed,
//! decoded at open into an [`IdStore`].
//!
//! ```text
//! 0       u32  N
//! 4       u32  F = length of the id filter
//! 8       F    id filter over every id, in the bloom format of 9.7.4 (F = 0: no filter)
//! 8+F     u64  R = length of the front-coded stream
//! 16+F    ...  zstd frame that decompresses to exactly R bytes: per row, varint p = bytes
//!              shared with the previous row's id (0 for row 0), varint s, s bytes
//! ```

use std::io;
use std::sync::OnceLock;

use super::bloom::Bloom;
use super::packed::{put_varint, Cursor};
use super::{first_bad, SectionError};
use crate::hash::hash64;
use crate::le::{self, LeReader};
use crate::segment::codec::{compress, decompress_bounded};
use crate::segment::{Section, MAX_SEGMENT_STRING_BYTES};

/// The ids of a segment's rows, in memory, with a hash index built on first look-up.
#[derive(Debug, Default)]
pub(crate) struct IdStore {
    ends: Vec<u32>,
    bytes: Vec<u8>,
    table: OnceLock<Vec<u32>>,
}

impl IdStore {
    /// Bytes of memory the ids hold (with the hash table, once built).
    pub(crate) fn heap_bytes(&self) -> usize {
        let table = self.table.get().map_or(0, Vec::capacity);
        (self.ends.capacity() + table) * 4 + self.bytes.capacity()
    }

    /// The store of ids whose row `r` ends at `ends[r]` in `bytes`; `ends` is non-decreasing
    /// and its last value is `bytes.len()` (checked by the caller).
    pub(crate) fn new(ends: Vec<u32>, bytes: Vec<u8>) -> IdStore {
        IdStore {
            ends,
            bytes,
            table: OnceLock::new(),
        }
    }

    /// The id of `row`; "" if it is not UTF-8 or there is no such row.
    pub(crate) fn id(&self, row: usize) -> &str {
        let start = row
            .checked_sub(1)
            .and_then(|p| self.ends.get(p))
            .copied()
            .unwrap_or(0) as usize;
        let end = self.ends.get(row).copied().unwrap_or(0) as usize;
        std::str::from_utf8(self.bytes.get(start..end).unwrap_or(&[])).unwrap_or("")
    }

    /// Rows whose id is `id`.
    pub(crate) fn rows_with(&self, id: &str) -> Vec<usize> {
        let table = self.table.get_or_init(|| self.build_table());
        let mask = table.len() - 1;
        let mut slot = hash64(id.as_bytes()) as usize & mask;
        let mut out = Vec::new();
        while let Some(&r) = table.get(slot).filter(|&&r| r != 0) {
            if self.id(r as usize - 1) == id {
                out.push(r as usize - 1);
            }
            slot = (slot + 1) & mask;
        }
        out
    }

    /// An open-addressing table (linear probing, at most half full) of row + 1.
    fn build_table(&self) -> Vec<u32> {
        let size = (self.ends.len() * 2).max(16).next_power_of_two();
        let mut table = vec![0u32; size];
        for row in 0..self.ends.len() {
            let mut slot = hash64(self.id(row).as_bytes()) as usize & (size - 1);
            while table[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = row as u32 + 1;
        }
        table
    }

    /// Checks that rows of one timestamp are in id order (FORMAT.md 9.1); a fault is reported
    /// at byte `at` of the section.
    pub(crate) fn check_order(&self, ts: &[i64], at: usize) -> Result<(), SectionError> {
        let pairs = 0..ts.len().min(self.ends.len()).saturating_sub(1);
        let back = |r: usize| ts[r] == ts[r + 1] && self.id(r) > self.id(r + 1);
        match first_bad(pairs, back) {
            Some(r) => Err(SectionError::new(
                Section::Ids,
                at,
                format!(
                    "row {} has the time of row {r} but its id sorts before row {r}'s",
                    r + 1
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Section Ids, version 2.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrontCodedIds;

impl FrontCodedIds {
    /// Appends the filter and the front-coded, compressed ids (one per row, in row order).
    pub(crate) fn encode<'a>(
        ids: impl ExactSizeIterator<Item = &'a str> + Clone,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut filter = Vec::new();
        Bloom::encode(ids.clone(), &mut filter);
        let mut raw = Vec::new();
        let mut prev: &[u8] = &[];
        le::put_all(out, [ids.len() as u32, filter.len() as u32]);
        for id in ids {
            let id = id.as_bytes();
            let p = prev.iter().zip(id).take_while(|(a, b)| a == b).count();
            put_varint(&mut raw, p as u64);
            put_varint(&mut raw, (id.len() - p) as u64);
            raw.extend_from_slice(&id[p..]);
            prev = id;
        }
        out.extend_from_slice(&filter);
        le::put_all(out, [raw.len() as u64]);
        out.extend_from_slice(&compress(&raw)?);
        Ok(())
    }

    /// Parses the filter of the section of a segment of `rows` rows.
    pub(crate) fn parse_filter(bytes: &[u8], rows: usize) -> Result<Option<Bloom>, SectionError> {
        Self::filter_and_rest(bytes, rows).map(|(filter, _)| filter)
    }

    /// The filter, and the reader past it.
    fn filter_and_rest(
        bytes: &[u8],
        rows: usize,
    ) -> Result<(Option<Bloom>, LeReader<'_>), SectionError> {
        let err = |at, reason: String| SectionError::new(Section::Ids, at, reason);
        let short = |what| move |e| SectionError::read(Section::Ids, what, e);
        let mut head = LeReader::new(bytes);
        let count = head.read::<u32>().map_err(short("row count"))? as usize;
        if count != rows {
            return Err(err(0, format!("{count} ids, the segment has {rows} rows")));
        }
        let flen = head.read::<u32>().map_err(short("filter length"))? as usize;
        let fbytes = head.take(flen).map_err(short("id filter"))?;
        let filter = Bloom::parse_in(Section::Ids, fbytes)
            .map_err(|e| SectionError { at: e.at + 8, ..e })?;
        Ok((filter, head))
    }

    /// Parses the section of a segment of `rows` rows: the filter, and every id.
    pub(crate) fn parse(
        bytes: &[u8],
        rows: usize,
    ) -> Result<(Option<Bloom>, IdStore, usize), SectionError> {
        let err = |at, reason: String| SectionError::new(Section::Ids, at, reason);
        let short = |what| move |e| SectionError::read(Section::Ids, what, e);
        let (filter, mut head) = Self::filter_and_rest(bytes, rows)?;
        let raw_at = head.pos();
        let raw_len = head.read::<u64>().map_err(short("stream length"))?;
        if raw_len > 2 * MAX_SEGMENT_STRING_BYTES as u64 {
            return Err(err(
                raw_at,
                format!("stream of {raw_len} bytes is too long"),
            ));
        }
        let z_at = head.pos();
        let raw = decompress_bounded(&bytes[z_at..], raw_len).map_err(|r| err(z_at, r))?;
        if raw.len() as u64 != raw_len {
            return Err(err(
                z_at,
                format!(
                    "stream decodes to {} bytes or more, expected {raw_len}",
                    raw.len()
                ),
            ));
        }
        let store = unfront(&raw, rows)
            .map_err(|(at, r)| err(z_at, format!("at stream byte {at}: {r}")))?;
        Ok((filter, store, z_at))
    }
}

/// Rebuilds `rows` ids from the front-coded stream, which it must consume exactly.
fn unfront(raw: &[u8], rows: usize) -> Result<IdStore, (usize, String)> {
    let mut c = Cursor::at(raw, 0);
    let mut ends = Vec::with_capacity(rows);
    let mut bytes: Vec<u8> = Vec::new();
    let mut prev_start = 0usize;
    for r in 0..rows {
        let at = c.pos();
        let fail = |e: super::packed::PackError| (e.at, e.reason);
        let prev_len = bytes.len() - prev_start;
        let p = c
            .varint_at_most(prev_len as u64, "shared prefix")
            .map_err(fail)? as usize;
        let s = c.varint("suffix length").map_err(fail)?;
        let suffix = c
            .take(usize::try_from(s).unwrap_or(usize::MAX), "suffix")
            .map_err(fail)?;
        if bytes.len() + p + suffix.len() > MAX_SEGMENT_STRING_BYTES {
            return Err((
                at,
                format!("id of row {r} takes the ids past {MAX_SEGMENT_STRING_BYTES} bytes"),
            ));
        }
        let start = bytes.len();
        bytes.extend_from_within(prev_start..prev_start + p);
        bytes.extend_from_slice(suffix);
        prev_start = start;
        ends.push(bytes.len() as u32);
    }
    if c.pos() != raw.len() {
        return Err((
            c.pos(),
            format!("{} bytes after the last id", raw.len() - c.pos()),
        ));
    }
    Ok(IdStore::new(ends, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::assert_fault;

    const IDS: [&str; 6] = ["b", "", "a", "b", "é€", "é€x"];

    fn encoded() -> Vec<u8> {
        let mut b = Vec::new();
        FrontCodedIds::encode(IDS.into_iter(), &mut b).unwrap();
        b
    }

    #[test]
    fn round_trip() {
        let (filter, ids, _) = FrontCodedIds::parse(&encoded(), 6).unwrap();
        for (row, id) in IDS.iter().enumerate() {
            assert_eq!(ids.id(row), *id);
            assert!(filter.as_ref().unwrap().may_contain(id));
        }
        assert_eq!(ids.id(6), "");
        assert_eq!(ids.rows_with("b"), [0, 3]);
        assert_eq!(ids.rows_with("é€x"), [5]);
        assert!(ids.rows_with("c").is_empty());
        assert!(ids.check_order(&[1, 2, 2, 2, 3, 4], 0).is_ok());
        assert_fault(
            ids.check_order(&[5, 5, 6, 7, 8, 9], 3),
            Section::Ids,
            3,
            "row 1 has the time",
        );
    }

    #[test]
    fn faults_name_the_field() {
        let b = encoded();
        assert_fault(
            FrontCodedIds::parse(&b, 5),
            Section::Ids,
            0,
            "6 ids, the segment has 5",
        );
        assert_fault(
            FrontCodedIds::parse(&b[..6], 6),
            Section::Ids,
            4,
            "filter length",
        );
        let flen = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_fault(
            FrontCodedIds::parse(&b[..8 + flen - 1], 6),
            Section::Ids,
            8,
            "id filter",
        );
        let mut bad_bits = b.clone();
        bad_bits[8] = 3;
        assert_fault(
            FrontCodedIds::parse(&bad_bits, 6),
            Section::Ids,
            8,
            "power of two",
        );
        let z = 16 + flen;
        assert_fault(
            FrontCodedIds::parse(&b[..z + 3], 6),
            Section::Ids,
            z,
            "zstd",
        );
        let mut longer = b.clone();
        longer[8 + flen] += 1;
        assert_fault(
            FrontCodedIds::parse(&longer, 6),
            Section::Ids,
            z,
            "expected",
        );
        let bad = |raw: &[u8], rows| unfront(raw, rows).unwrap_err().1;
        assert!(bad(&[1, 0], 1).contains("shared prefix"));
        assert!(bad(&[0, 2, b'a'], 1).contains("suffix"));
        assert!(bad(&[0, 0, 7], 1).contains("after the last id"));
    }
}
