//! One type per segment section (FORMAT.md section 9.7), each with a paired `encode`, which
//! appends the section's bytes to the file being built, and `parse`, which checks a section's
//! bytes and returns what the reader keeps of it (decoded values, or the offsets of the arrays
//! it then views in place).
//!
//! A section type knows nothing of the file around it: `parse` gets the section's bytes (as
//! located by the section table) and the counts from the header ([`Shape`]); a failure is a
//! [`SectionError`] naming the section and the offset, from the section's start, of the
//! structure that failed. Checks that span sections (the bloom dim against the bloom section,
//! dim codes against the dictionaries, the id order of rows of one time) are made by the
//! reader, which composes them.
//!
//! The types read in place (U32Cols, U16Cols, Zones, ChunkAggs, Status, Postings, Ids, Labels)
//! keep their offsets from a base: 0 after `parse`, so their accessors take the section's bytes;
//! the section's file offset after `placed_at`, so the reader hands them the whole mapping and a
//! column view costs one bounds check.

pub(crate) mod bloom;
pub(crate) mod chunks;
pub(crate) mod columns;
pub(crate) mod id_blocks;
pub(crate) mod ids;
pub(crate) mod intern;
pub(crate) mod labels;
pub(crate) mod packed;
pub(crate) mod packed_cols;
pub(crate) mod posting_lists;
pub(crate) mod postings;
pub(crate) mod status;

use std::fmt;
use std::path::Path;

use super::Section;
use crate::error::DbError;
use crate::le::ReadError;
use crate::memtable::CHUNK_ROWS;

/// The counts a section's layout depends on, all from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Rows (`N`).
    pub rows: usize,
    /// Chunks of `CHUNK_ROWS` rows (`K`).
    pub chunks: usize,
    /// Dims (`D`).
    pub dims: usize,
    /// Counters (`C`).
    pub counters: usize,
    /// Label columns (`L`).
    pub labels: usize,
}

impl Shape {
    /// The shape of a segment of `rows` rows and the given column counts.
    pub(crate) fn new(rows: usize, dims: usize, counters: usize, labels: usize) -> Shape {
        Shape {
            rows,
            chunks: rows.div_ceil(CHUNK_ROWS),
            dims,
            counters,
            labels,
        }
    }
}

/// A section whose bytes do not hold what the format says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SectionError {
    /// The section.
    pub section: Section,
    /// Offset from the start of the section of the first damaged byte, or of the structure
    /// (field, directory entry, array) that failed its check.
    pub at: usize,
    /// What is wrong.
    pub reason: String,
}

impl SectionError {
    /// A fault in `section` at section byte `at`.
    pub(crate) fn new(section: Section, at: usize, reason: impl Into<String>) -> Self {
        SectionError {
            section,
            at,
            reason: reason.into(),
        }
    }

    /// A read of `what` that did not fit, located where the read started.
    pub(crate) fn read(section: Section, what: &str, e: ReadError) -> Self {
        SectionError::new(section, e.at(), format!("{what}: {e}"))
    }

    /// The engine's error for this fault in the segment at `path`, whose section starts at
    /// byte `start` of the file.
    pub(crate) fn into_db(self, path: &Path, start: usize) -> DbError {
        let offset = start.saturating_add(self.at) as u64;
        DbError::corrupt_segment(path, self.section.name(), offset, self.reason)
    }
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at section byte {}: {}",
            self.section.name(),
            self.at,
            self.reason
        )
    }
}

/// The index of the first item for which `bad` holds. The common case, none, is a plain `any`
/// scan (as cheap as the check itself); the index is looked for only when there is one.
pub(crate) fn first_bad<I: Iterator + Clone>(
    items: I,
    bad: impl Fn(I::Item) -> bool,
) -> Option<usize> {
    if items.clone().any(&bad) {
        items.into_iter().position(bad)
    } else {
        None
    }
}

/// Checks that a fixed-size section is exactly `want` bytes long.
fn expect_len(section: Section, bytes: &[u8], want: usize) -> Result<(), SectionError> {
    if bytes.len() == want {
        return Ok(());
    }
    // The first byte that is missing, or the first one too many.
    let at = bytes.len().min(want);
    Err(SectionError::new(
        section,
        at,
        format!("{} bytes, expected {want}", bytes.len()),
    ))
}

#[cfg(test)]
mod tests {
    use super::first_bad;

    #[test]
    fn first_bad_finds_the_first_offender_or_none() {
        let v = [3, 1, 4, 1, 5];
        assert_eq!(first_bad(v.iter(), |&x| x > 3), Some(2));
        assert_eq!(first_bad(v.windows(2), |w| w[0] > w[1]), Some(0));
        assert_eq!(first_bad(v.iter(), |&x| x > 5), None);
        assert_eq!(first_bad([0u8; 0].iter(), |_| true), None);
    }
}

/// Test helpers shared by the section tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::SectionError;
    use crate::segment::Section;

    /// Bytes copied to an 8-byte-aligned buffer, as a section is in a mapped file (sections
    /// start at multiples of 64), so in-place views of them line up.
    #[derive(Debug)]
    pub(crate) struct Aligned {
        words: Vec<u64>,
        len: usize,
    }

    impl Aligned {
        /// A copy of `bytes`.
        pub(crate) fn new(bytes: &[u8]) -> Aligned {
            let mut words = vec![0u64; bytes.len().div_ceil(8)];
            zerocopy::IntoBytes::as_mut_bytes(&mut words[..])[..bytes.len()].copy_from_slice(bytes);
            Aligned {
                words,
                len: bytes.len(),
            }
        }

        /// The copied bytes, 8-byte aligned.
        pub(crate) fn bytes(&self) -> &[u8] {
            &zerocopy::IntoBytes::as_bytes(&self.words[..])[..self.len]
        }
    }

    /// Asserts that `r` failed in `section` at section byte `at`, with a reason containing
    /// `reason`.
    #[track_caller]
    pub(crate) fn assert_fault<T: std::fmt::Debug>(
        r: Result<T, SectionError>,
        section: Section,
        at: usize,
        reason: &str,
    ) {
        let e = r.expect_err("the section must be rejected");
        assert_eq!((e.section, e.at), (section, at), "{e}");
        assert!(e.reason.contains(reason), "{e:?} should say {reason:?}");
    }

    /// `bytes` with the little-endian u32 at `at` replaced by `v`.
    pub(crate) fn with_u32(bytes: &[u8], at: usize, v: u32) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    }
}
