//! Section Postings (9.7.9): for each posting dim, the rows holding each of its codes.
//!
//! ```text
//! 0        u32  P = number of posting dims
//! 4 + 16j  u16 dim, u16 reserved, u32 n (codes), u32 offsets_at, u32 rows_at
//! ...      per entry: u32[n + 1] offsets, u32[N] rows
//! ```

use super::{first_bad, SectionError};
use crate::le::{self, LeReader};
use crate::segment::{Section, MAX_DIM_VALUES};

/// Bytes of one directory entry.
const ENTRY_LEN: usize = 16;

/// What the writer lists for one posting dim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PostingDim<'a> {
    /// The dim's index in the schema.
    pub dim: usize,
    /// Its number of segment-local codes (its dictionary size).
    pub values: usize,
    /// Its code in every row.
    pub codes: &'a [u16],
}

/// Where one posting dim's lists are in the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Lists given by their offsets (`n + 1`) and the rows of every list.
    pub(crate) fn new(offsets: &'a [u32], rows: &'a [u32]) -> Self {
        Postings { offsets, rows }
    }

    /// The offsets of every list in [`Postings::all_rows`].
    pub(crate) fn offsets(&self) -> &'a [u32] {
        self.offsets
    }

    /// The rows of every list, list after list.
    pub(crate) fn all_rows(&self) -> &'a [u32] {
        self.rows
    }

    /// Rows (ascending, so also in (ts, id) order) whose code is `code`.
    pub(crate) fn rows(&self, code: u16) -> &'a [u32] {
        let c = code as usize;
        match (self.offsets.get(c), self.offsets.get(c + 1)) {
            (Some(&a), Some(&b)) => self.rows.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// The parsed directory of the Postings section.
#[derive(Clone, Debug, Default)]
pub(crate) struct PostingIndex {
    base: usize,
    rows: usize,
    entries: Vec<PostingEntry>,
}

impl PostingIndex {
    #[cfg(test)]
    /// Appends the directory and the lists of `dims` (ascending dim order), all of `rows` rows.
    pub(crate) fn encode(dims: &[PostingDim<'_>], out: &mut Vec<u8>) {
        let dir_len = 4 + ENTRY_LEN * dims.len();
        let mut body = Vec::new();
        le::put_all(out, [dims.len() as u32]);
        for p in dims {
            let (offsets, rows) = lists(p);
            let offsets_at = dir_len + body.len();
            le::put_all(&mut body, offsets);
            let rows_at = dir_len + body.len();
            le::put_all(&mut body, rows);
            le::put_all(out, [p.dim as u16, 0]);
            le::put_all(out, [p.values as u32, offsets_at as u32, rows_at as u32]);
        }
        out.extend_from_slice(&body);
    }

    /// Parses the directory of a segment with `rows` rows and `dims` dims, and checks every
    /// list: dim in range, arrays inside the section and aligned, offsets from 0 to `rows`
    /// without decreasing, every row below `rows`.
    pub(crate) fn parse(
        bytes: &[u8],
        rows: usize,
        dims: usize,
    ) -> Result<PostingIndex, SectionError> {
        let count = le::read_at::<u32>(bytes, 0)
            .map_err(|e| SectionError::read(Section::Postings, "entry count", e))?;
        let mut entries = Vec::new();
        for i in 0..count as usize {
            let at = 4 + ENTRY_LEN * i;
            let e = read_entry(bytes, at)
                .map_err(|e| SectionError::read(Section::Postings, &format!("entry {i}"), e))?;
            if e.dim >= dims || e.ncodes > MAX_DIM_VALUES {
                return Err(SectionError::new(
                    Section::Postings,
                    at,
                    format!(
                        "entry {i} names dim {} of {dims} with {} codes",
                        e.dim, e.ncodes
                    ),
                ));
            }
            check_lists(bytes, &e, rows)?;
            entries.push(e);
        }
        Ok(PostingIndex {
            base: 0,
            rows,
            entries,
        })
    }

    /// Dims that have posting lists.
    pub(crate) fn dims(&self) -> Vec<usize> {
        self.entries.iter().map(|e| e.dim).collect()
    }

    /// The number of codes the lists of dim `d` have, if it is a posting dim.
    pub(crate) fn codes_of(&self, d: usize) -> Option<usize> {
        self.entries.iter().find(|e| e.dim == d).map(|e| e.ncodes)
    }

    /// The lists of dim `d` in the section `bytes`, if it is a posting dim.
    pub(crate) fn lists<'a>(&self, bytes: &'a [u8], d: usize) -> Option<Postings<'a>> {
        let e = self.entries.iter().find(|e| e.dim == d)?;
        Some(Postings {
            offsets: le::view(bytes, self.base + e.offsets_at, e.ncodes + 1).unwrap_or(&[]),
            rows: le::view(bytes, self.base + e.rows_at, self.rows).unwrap_or(&[]),
        })
    }
}

/// Per code, the offset of its first row in the list, and the list: rows ordered by code, then
/// by row.
pub(crate) fn lists(p: &PostingDim<'_>) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; p.values + 1];
    for &c in p.codes {
        offsets[c as usize + 1] += 1;
    }
    for i in 0..p.values {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut rows = vec![0u32; p.codes.len()];
    for (row, &c) in p.codes.iter().enumerate() {
        rows[fill[c as usize] as usize] = row as u32;
        fill[c as usize] += 1;
    }
    (offsets, rows)
}

/// The directory entry at byte `at`.
fn read_entry(bytes: &[u8], at: usize) -> Result<PostingEntry, le::ReadError> {
    let mut r = LeReader::at(bytes, at);
    let dim = r.read::<u16>()? as usize;
    r.take(2)?;
    Ok(PostingEntry {
        dim,
        ncodes: r.read::<u32>()? as usize,
        offsets_at: r.read::<u32>()? as usize,
        rows_at: r.read::<u32>()? as usize,
    })
}

/// Checks the two arrays of entry `e`.
fn check_lists(bytes: &[u8], e: &PostingEntry, rows: usize) -> Result<(), SectionError> {
    let err = |at, reason: String| SectionError::new(Section::Postings, at, reason);
    let offsets = le::view::<u32>(bytes, e.offsets_at, e.ncodes + 1).map_err(|r| {
        SectionError::read(Section::Postings, &format!("offsets of dim {}", e.dim), r)
    })?;
    let list = le::view::<u32>(bytes, e.rows_at, rows)
        .map_err(|r| SectionError::read(Section::Postings, &format!("rows of dim {}", e.dim), r))?;
    if offsets.first() != Some(&0) || offsets.last().copied() != Some(rows as u32) {
        return Err(err(
            e.offsets_at,
            format!("offsets of dim {} do not run from 0 to {rows}", e.dim),
        ));
    }
    if let Some(i) = first_bad(offsets.windows(2), |w| w[0] > w[1]) {
        return Err(err(
            e.offsets_at + 4 * (i + 1),
            format!("offsets of dim {} decrease at code {}", e.dim, i + 1),
        ));
    }
    if let Some(i) = first_bad(list.iter(), |&r| r as usize >= rows) {
        return Err(err(
            e.rows_at + 4 * i,
            format!("list of dim {} holds row {}, of {rows}", e.dim, list[i]),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, with_u32, Aligned};

    const CODES: [u16; 6] = [2, 0, 2, 1, 0, 2];

    fn encoded() -> Vec<u8> {
        let mut b = Vec::new();
        PostingIndex::encode(
            &[
                PostingDim {
                    dim: 1,
                    values: 3,
                    codes: &CODES,
                },
                PostingDim {
                    dim: 3,
                    values: 1,
                    codes: &[0; 6],
                },
            ],
            &mut b,
        );
        b
    }

    #[test]
    fn round_trip() {
        let a = Aligned::new(&encoded());
        let p = PostingIndex::parse(a.bytes(), 6, 4).unwrap();
        assert_eq!(p.dims(), [1, 3]);
        assert_eq!(
            (p.codes_of(1), p.codes_of(3), p.codes_of(0)),
            (Some(3), Some(1), None)
        );
        let l = p.lists(a.bytes(), 1).unwrap();
        assert_eq!(
            (l.rows(0), l.rows(1), l.rows(2)),
            (&[1, 4][..], &[3][..], &[0, 2, 5][..])
        );
        assert_eq!(l.rows(3), &[] as &[u32]);
        assert_eq!(p.lists(a.bytes(), 3).unwrap().rows(0), [0, 1, 2, 3, 4, 5]);
        assert!(p.lists(a.bytes(), 2).is_none());
        let mut none = Vec::new();
        PostingIndex::encode(&[], &mut none);
        assert!(PostingIndex::parse(&none, 6, 4).unwrap().dims().is_empty());
    }

    #[test]
    fn faults_name_the_entry_or_the_array() {
        let b = encoded();
        // Layout: directory 36 bytes; dim 1: offsets at 36 (4 values), rows at 52 (6 values);
        // dim 3: offsets at 76 (2 values), rows at 84.
        let check = |bytes: &[u8], at: usize, reason: &str| {
            let a = Aligned::new(bytes);
            assert_fault(
                PostingIndex::parse(a.bytes(), 6, 4),
                Section::Postings,
                at,
                reason,
            );
        };
        check(&b[..3], 0, "entry count");
        // One entry announced, cut after its dim.
        check(&[1, 0, 0, 0, 1, 0], 6, "entry 0");
        assert_fault(
            PostingIndex::parse(Aligned::new(&b).bytes(), 6, 3),
            Section::Postings,
            20,
            "entry 1 names dim 3 of 3",
        );
        check(&with_u32(&b, 8, 70_000), 4, "with 70000 codes");
        check(
            &with_u32(&b, 12, 100),
            100,
            "offsets of dim 1: 16 bytes needed",
        );
        check(&with_u32(&b, 12, 38), 38, "not aligned");
        check(&b[..100], 84, "rows of dim 3");
        check(&with_u32(&b, 36, 1), 36, "do not run from 0 to 6");
        check(&with_u32(&b, 44, 1), 44, "decrease at code 2");
        check(&with_u32(&b, 60, 6), 60, "holds row 6, of 6");
    }
}
