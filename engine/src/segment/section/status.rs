//! Section Status (9.7.5): one compressed row bitset per distinct status value, behind a
//! directory. The directory is checked at open; the bitsets are decoded and checked against
//! the status column on first use.

use std::collections::BTreeMap;
use std::io;

use super::SectionError;
use crate::le::{self, LeReader};
use crate::segment::codec::{bitset_words, decode_bitset, encode_bitset};
use crate::segment::Section;

/// Bytes of one directory entry.
const ENTRY_LEN: usize = 16;

/// Per status value, the bitset of rows holding it.
pub(crate) type StatusBitmaps = Vec<(u16, Vec<u64>)>;

/// One directory entry: a status value, its row count and where its bitset is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatusEntry {
    value: u16,
    count: usize,
    blob_at: usize,
    blob_len: usize,
}

/// The parsed directory of the Status section.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusIndex {
    base: usize,
    rows: usize,
    entries: Vec<StatusEntry>,
}

impl StatusIndex {
    /// This layout for the section placed at byte `start` of the bytes given to the accessors
    /// (the file, in the reader).
    pub(crate) fn placed_at(self, start: usize) -> Self {
        Self {
            base: start,
            ..self
        }
    }

    /// Appends the directory and the compressed bitsets of the status column `status`.
    pub(crate) fn encode(status: &[u16], out: &mut Vec<u8>) -> io::Result<()> {
        let mut by_status: BTreeMap<u16, (u32, Vec<u64>)> = BTreeMap::new();
        for (row, &s) in status.iter().enumerate() {
            let e = by_status
                .entry(s)
                .or_insert_with(|| (0, vec![0u64; bitset_words(status.len())]));
            e.0 += 1;
            e.1[row / 64] |= 1 << (row % 64);
        }
        let blobs = by_status
            .values()
            .map(|(_, words)| encode_bitset(words))
            .collect::<io::Result<Vec<_>>>()?;
        le::put_all(out, [by_status.len() as u32]);
        let mut blob_at = 4 + ENTRY_LEN * by_status.len();
        for ((&value, &(count, _)), blob) in by_status.iter().zip(&blobs) {
            le::put_all(out, [value, 0]);
            le::put_all(out, [count, blob_at as u32, blob.len() as u32]);
            blob_at += blob.len();
        }
        for blob in &blobs {
            out.extend_from_slice(blob);
        }
        Ok(())
    }

    /// Parses the directory of a segment of `rows` rows: every bitset inside the section,
    /// values strictly ascending, row counts summing to `rows`.
    pub(crate) fn parse(bytes: &[u8], rows: usize) -> Result<StatusIndex, SectionError> {
        let err = |at, reason: String| SectionError::new(Section::Status, at, reason);
        let count = le::read_at::<u32>(bytes, 0)
            .map_err(|e| SectionError::read(Section::Status, "entry count", e))?
            as usize;
        let mut entries: Vec<StatusEntry> = Vec::with_capacity(count.min(1 << 16));
        let mut total = 0u64;
        for i in 0..count {
            let at = 4 + ENTRY_LEN * i;
            let e = read_entry(bytes, at)
                .map_err(|e| SectionError::read(Section::Status, &format!("entry {i}"), e))?;
            if e.blob_at
                .checked_add(e.blob_len)
                .is_none_or(|end| end > bytes.len())
            {
                return Err(err(at, format!("bitmap {i} is outside the section")));
            }
            if entries.last().is_some_and(|p| p.value >= e.value) {
                return Err(err(at, "status values are not sorted and unique".into()));
            }
            total += e.count as u64;
            entries.push(e);
        }
        if total != rows as u64 {
            return Err(err(
                0,
                format!("bitmaps cover {total} rows, segment has {rows}"),
            ));
        }
        Ok(StatusIndex {
            base: 0,
            rows,
            entries,
        })
    }

    /// Distinct status values, ascending, with their row counts.
    pub(crate) fn values(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        self.entries.iter().map(|e| (e.value, e.count))
    }

    /// Decodes every bitset of the section `bytes` and checks it against `column`, the status
    /// column: as many rows as its entry says, no row in two bitsets, bit `r` set iff row `r`
    /// has the entry's value.
    pub(crate) fn bitmaps(
        &self,
        bytes: &[u8],
        column: &[u16],
    ) -> Result<StatusBitmaps, SectionError> {
        let mut union = vec![0u64; bitset_words(self.rows)];
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let err = |reason: String| SectionError::new(Section::Status, e.blob_at, reason);
            let at = self.base + e.blob_at;
            let blob = bytes.get(at..at + e.blob_len).unwrap_or(&[]);
            let bits = decode_bitset(blob, self.rows).map_err(err)?;
            let ones: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
            let overlap = bits.iter().zip(&union).any(|(a, b)| a & b != 0);
            let disagrees = bits.iter().zip(column.chunks(64)).any(|(w, col)| {
                col.iter()
                    .enumerate()
                    .any(|(i, &s)| (w >> i & 1 != 0) != (s == e.value))
            });
            if ones != e.count || overlap || disagrees {
                return Err(err(format!(
                    "bitmap of status {} disagrees with the status column",
                    e.value
                )));
            }
            for (u, b) in union.iter_mut().zip(&bits) {
                *u |= b;
            }
            out.push((e.value, bits));
        }
        Ok(out)
    }
}

/// The directory entry at byte `at`.
fn read_entry(bytes: &[u8], at: usize) -> Result<StatusEntry, le::ReadError> {
    let mut r = LeReader::at(bytes, at);
    let value = r.read::<u16>()?;
    r.take(2)?;
    Ok(StatusEntry {
        value,
        count: r.read::<u32>()? as usize,
        blob_at: r.read::<u32>()? as usize,
        blob_len: r.read::<u32>()? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, with_u32};

    const STATUS: [u16; 5] = [503, 200, 200, 404, 200];

    fn encoded() -> Vec<u8> {
        let mut b = Vec::new();
        StatusIndex::encode(&STATUS, &mut b).unwrap();
        b
    }

    #[test]
    fn round_trip() {
        let b = encoded();
        let s = StatusIndex::parse(&b, 5).unwrap();
        assert_eq!(
            s.values().collect::<Vec<_>>(),
            [(200, 3), (404, 1), (503, 1)]
        );
        let maps = s.bitmaps(&b, &STATUS).unwrap();
        assert_eq!(
            maps,
            [(200, vec![0b10110]), (404, vec![0b01000]), (503, vec![1])]
        );
        let mut empty = Vec::new();
        StatusIndex::encode(&[], &mut empty).unwrap();
        assert_eq!(empty, [0, 0, 0, 0]);
        assert_eq!(StatusIndex::parse(&empty, 0).unwrap().values().count(), 0);
    }

    #[test]
    fn directory_faults_name_the_entry() {
        let b = encoded();
        assert_fault(
            StatusIndex::parse(&[], 5),
            Section::Status,
            0,
            "entry count",
        );
        // Cut inside entry 0: the read of its row count fails.
        assert_fault(
            StatusIndex::parse(&b[..10], 5),
            Section::Status,
            8,
            "entry 0",
        );
        // Entry 1's bitmap offset points past the end.
        assert_fault(
            StatusIndex::parse(&with_u32(&b, 4 + 16 + 8, 9999), 5),
            Section::Status,
            20,
            "bitmap 1 is outside",
        );
        // Entry 1 gets the value of entry 0.
        let mut dup = b.clone();
        dup[20..22].copy_from_slice(&200u16.to_le_bytes());
        assert_fault(
            StatusIndex::parse(&dup, 5),
            Section::Status,
            20,
            "not sorted",
        );
        assert_fault(
            StatusIndex::parse(&b, 6),
            Section::Status,
            0,
            "cover 5 rows",
        );
    }

    #[test]
    fn bitmap_faults_name_the_bitmap() {
        let b = encoded();
        let s = StatusIndex::parse(&b, 5).unwrap();
        let blob_at = |i: usize| le::read_at::<u32>(&b, 12 + 16 * i).unwrap();
        // A status column that says otherwise: the first bitmap that disagrees is named.
        let other = [503, 200, 404, 200, 200];
        assert_fault(
            s.bitmaps(&b, &other),
            Section::Status,
            blob_at(0) as usize,
            "status 200 disagrees",
        );
        // A damaged blob.
        let mut bad = b.clone();
        let last = blob_at(2) as usize;
        bad[last..].fill(0);
        assert_fault(s.bitmaps(&bad, &STATUS), Section::Status, last, "zstd");
    }
}
