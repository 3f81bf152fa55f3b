//! Section Postings, format version 2 (FORMAT.md 9.8.3), and the posting lists the reader
//! keeps in memory for both versions.
//!
//! Version 2 stores only the directory: which dims have lists, and how many codes each has. The
//! lists are a function of the dim's code column (U16Cols), so the reader rebuilds them at open
//! (a counting sort, one pass over the column) instead of reading them from the file.
//!
//! ```text
//! 0      u32  P = number of posting dims
//! 4 + 8j u16  dim of entry j (ascending), u16 reserved (zero), u32 n = its number of codes
//! ```

use super::postings::{lists, PostingDim, PostingIndex, Postings};
use super::{expect_len, first_bad, SectionError};
use crate::le::{self, LeReader};
use crate::segment::{Section, MAX_DIM_VALUES};

/// Bytes of one directory entry.
const ENTRY_LEN: usize = 8;

/// One posting dim in memory: its dim, code count, offsets and rows.
#[derive(Debug)]
struct Lists {
    dim: usize,
    ncodes: usize,
    offsets: Vec<u32>,
    rows: Vec<u32>,
}

/// The posting lists of a segment, in memory.
#[derive(Debug, Default)]
pub(crate) struct PostingLists {
    dims: Vec<Lists>,
}

impl PostingLists {
    /// Bytes of memory the lists hold.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.dims
            .iter()
            .map(|l| (l.offsets.capacity() + l.rows.capacity()) * 4)
            .sum()
    }

    /// A copy of the lists of a version-1 section (`bytes`, as parsed into `index`).
    pub(crate) fn from_v1(index: &PostingIndex, bytes: &[u8]) -> PostingLists {
        let dims = index
            .dims()
            .into_iter()
            .filter_map(|d| {
                let p = index.lists(bytes, d)?;
                Some(Lists {
                    dim: d,
                    ncodes: index.codes_of(d)?,
                    offsets: p.offsets().to_vec(),
                    rows: p.all_rows().to_vec(),
                })
            })
            .collect();
        PostingLists { dims }
    }

    /// The lists of the dims of a version-2 directory, built from their code columns.
    pub(crate) fn from_codes<'a>(
        directory: &[(usize, usize)],
        codes: impl Fn(usize) -> &'a [u16],
    ) -> Result<PostingLists, SectionError> {
        let mut dims = Vec::with_capacity(directory.len());
        for (j, &(dim, ncodes)) in directory.iter().enumerate() {
            let col = codes(dim);
            if let Some(r) = first_bad(col.iter(), |&c| c as usize >= ncodes) {
                return Err(SectionError::new(
                    Section::Postings,
                    4 + ENTRY_LEN * j,
                    format!("dim {dim} has {ncodes} codes, row {r} has code {}", col[r]),
                ));
            }
            let (offsets, rows) = lists(&PostingDim {
                dim,
                values: ncodes,
                codes: col,
            });
            dims.push(Lists {
                dim,
                ncodes,
                offsets,
                rows,
            });
        }
        Ok(PostingLists { dims })
    }

    /// Dims that have posting lists.
    pub(crate) fn dims(&self) -> Vec<usize> {
        self.dims.iter().map(|l| l.dim).collect()
    }

    /// The number of codes of dim `d`, if it is a posting dim.
    pub(crate) fn codes_of(&self, d: usize) -> Option<usize> {
        self.dims.iter().find(|l| l.dim == d).map(|l| l.ncodes)
    }

    /// The lists of dim `d`, if it is a posting dim.
    pub(crate) fn lists(&self, d: usize) -> Option<Postings<'_>> {
        let l = self.dims.iter().find(|l| l.dim == d)?;
        Some(Postings::new(&l.offsets, &l.rows))
    }
}

/// Section Postings, version 2: the directory only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PostingDirectory;

impl PostingDirectory {
    /// Appends the directory of `dims` (ascending dim order).
    pub(crate) fn encode(dims: &[PostingDim<'_>], out: &mut Vec<u8>) {
        le::put_all(out, [dims.len() as u32]);
        for p in dims {
            le::put_all(out, [p.dim as u16, 0]);
            le::put_all(out, [p.values as u32]);
        }
    }

    /// Parses the directory of a segment with `dims` dims: `(dim, codes)` per entry, dims
    /// ascending and in range, at most 65,536 codes.
    pub(crate) fn parse(bytes: &[u8], dims: usize) -> Result<Vec<(usize, usize)>, SectionError> {
        let count = le::read_at::<u32>(bytes, 0)
            .map_err(|e| SectionError::read(Section::Postings, "entry count", e))?
            as usize;
        if count > dims {
            return Err(SectionError::new(
                Section::Postings,
                0,
                format!("{count} posting dims of {dims} dims"),
            ));
        }
        expect_len(Section::Postings, bytes, 4 + ENTRY_LEN * count)?;
        let mut r = LeReader::at(bytes, 4);
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(count);
        for j in 0..count {
            let short = |e| SectionError::read(Section::Postings, "entry", e);
            let dim = r.read::<u16>().map_err(short)? as usize;
            r.take(2).map_err(short)?;
            let ncodes = r.read::<u32>().map_err(short)? as usize;
            let after = out.last().is_none_or(|&(p, _)| p < dim);
            if dim >= dims || ncodes > MAX_DIM_VALUES || !after {
                return Err(SectionError::new(
                    Section::Postings,
                    4 + ENTRY_LEN * j,
                    format!("entry {j} names dim {dim} of {dims} with {ncodes} codes"),
                ));
            }
            out.push((dim, ncodes));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::assert_fault;

    #[test]
    fn lists_are_rebuilt_from_the_codes() {
        let codes = [2u16, 0, 2, 1, 0, 2];
        let mut b = Vec::new();
        PostingDirectory::encode(
            &[PostingDim {
                dim: 1,
                values: 3,
                codes: &codes,
            }],
            &mut b,
        );
        let dir = PostingDirectory::parse(&b, 2).unwrap();
        assert_eq!(dir, [(1, 3)]);
        let lists = PostingLists::from_codes(&dir, |_| &codes[..]).unwrap();
        assert_eq!(lists.dims(), [1]);
        assert_eq!(lists.codes_of(1), Some(3));
        let p = lists.lists(1).unwrap();
        assert_eq!(
            (p.rows(0), p.rows(1), p.rows(2)),
            (&[1, 4][..], &[3][..], &[0, 2, 5][..])
        );
        assert!(lists.lists(0).is_none());
        assert_fault(
            PostingLists::from_codes(&[(1, 2)], |_| &codes[..]),
            Section::Postings,
            4,
            "row 0 has code 2",
        );
        assert_fault(
            PostingDirectory::parse(&b, 1),
            Section::Postings,
            4,
            "names dim 1 of 1",
        );
        assert_fault(
            PostingDirectory::parse(&b[..10], 2),
            Section::Postings,
            10,
            "expected 12",
        );
        assert_fault(
            PostingDirectory::parse(&[5, 0, 0, 0], 2),
            Section::Postings,
            0,
            "5 posting dims",
        );
    }
}
