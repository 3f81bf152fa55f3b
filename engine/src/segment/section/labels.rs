//! Section Labels (9.7.11): the label strings, column after column, behind a directory of
//! `L` entries (`L` from the header; the section has no count field).
//!
//! ```text
//! 12l      u32 ends_at, u32 bytes_at, u32 bytes_len   of label column l
//! 12L      per column: u32[N] ends, the bytes, zero padding to a multiple of 4
//! ```

use super::{first_bad, SectionError};
use crate::le::{self, LeReader};
use crate::segment::Section;

/// Bytes of one directory entry.
const ENTRY_LEN: usize = 12;

/// Where one label column is in the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LabelCol {
    ends_at: usize,
    bytes_at: usize,
    bytes_len: usize,
}

/// The parsed directory of the Labels section.
#[derive(Clone, Debug, Default)]
pub(crate) struct LabelColumns {
    base: usize,
    rows: usize,
    cols: Vec<LabelCol>,
}

impl LabelColumns {
    /// This layout for the section placed at byte `start` of the bytes given to the accessors
    /// (the file, in the reader).
    pub(crate) fn placed_at(self, start: usize) -> Self {
        Self {
            base: start,
            ..self
        }
    }

    /// Appends the label columns; each yields one value per row.
    pub(crate) fn encode<'a, C: IntoIterator<Item = &'a str>>(
        columns: impl ExactSizeIterator<Item = C>,
        out: &mut Vec<u8>,
    ) {
        let dir_len = ENTRY_LEN * columns.len();
        let mut body = Vec::new();
        for col in columns {
            let ends_at = dir_len + body.len();
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for v in col {
                bytes.extend_from_slice(v.as_bytes());
                ends.push(bytes.len() as u32);
            }
            le::put_all(&mut body, ends);
            let bytes_at = dir_len + body.len();
            body.extend_from_slice(&bytes);
            body.resize(body.len().next_multiple_of(4), 0);
            le::put_all(out, [ends_at as u32, bytes_at as u32, bytes.len() as u32]);
        }
        out.extend_from_slice(&body);
    }

    /// Parses the directory of `labels` columns of `rows` rows and checks every column: ends
    /// inside the section and aligned, bytes inside the section, ends never decrease and the
    /// last one is the column's byte length.
    pub(crate) fn parse(
        bytes: &[u8],
        rows: usize,
        labels: usize,
    ) -> Result<LabelColumns, SectionError> {
        let mut cols = Vec::with_capacity(labels);
        for l in 0..labels {
            let at = ENTRY_LEN * l;
            let col = read_entry(bytes, at).map_err(|e| {
                SectionError::read(Section::Labels, &format!("entry of column {l}"), e)
            })?;
            check_column(bytes, l, at, &col, rows)?;
            cols.push(col);
        }
        Ok(LabelColumns {
            base: 0,
            rows,
            cols,
        })
    }

    /// Label `l` of `row` in the section `bytes`; "" if it is not UTF-8.
    pub(crate) fn value<'a>(&self, bytes: &'a [u8], l: usize, row: usize) -> &'a str {
        let Some(col) = self.cols.get(l) else {
            return "";
        };
        let (ends_at, bytes_at) = (self.base + col.ends_at, self.base + col.bytes_at);
        let ends: &[u32] = le::view(bytes, ends_at, self.rows).unwrap_or(&[]);
        let start = match row.checked_sub(1) {
            Some(prev) => ends.get(prev).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = (ends.get(row).copied().unwrap_or(0) as usize).min(col.bytes_len);
        let value = bytes
            .get(bytes_at + start.min(end)..bytes_at + end)
            .unwrap_or(&[]);
        std::str::from_utf8(value).unwrap_or("")
    }
}

/// The directory entry at byte `at`.
fn read_entry(bytes: &[u8], at: usize) -> Result<LabelCol, le::ReadError> {
    let mut r = LeReader::at(bytes, at);
    Ok(LabelCol {
        ends_at: r.read::<u32>()? as usize,
        bytes_at: r.read::<u32>()? as usize,
        bytes_len: r.read::<u32>()? as usize,
    })
}

/// Checks column `l`, whose directory entry at `entry_at` is `col`.
fn check_column(
    bytes: &[u8],
    l: usize,
    entry_at: usize,
    col: &LabelCol,
    rows: usize,
) -> Result<(), SectionError> {
    let err = |at, reason: String| SectionError::new(Section::Labels, at, reason);
    let ends = le::view::<u32>(bytes, col.ends_at, rows)
        .map_err(|e| SectionError::read(Section::Labels, &format!("ends of column {l}"), e))?;
    if col
        .bytes_at
        .checked_add(col.bytes_len)
        .is_none_or(|end| end > bytes.len())
    {
        return Err(err(
            entry_at + 4,
            format!("bytes of column {l} are outside the section"),
        ));
    }
    if let Some(r) = first_bad(ends.windows(2), |w| w[0] > w[1]) {
        return Err(err(
            col.ends_at + 4 * (r + 1),
            format!("column {l}: end of row {} goes back", r + 1),
        ));
    }
    if let Some(&last) = ends.last().filter(|&&e| e as usize != col.bytes_len) {
        return Err(err(
            col.ends_at + 4 * (rows - 1),
            format!("column {l} ends at {last}, its length is {}", col.bytes_len),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, with_u32, Aligned};

    const COLS: [[&str; 3]; 2] = [["x", "", "yz"], ["é€😀", "a", ""]];

    fn encoded() -> Vec<u8> {
        let mut b = Vec::new();
        LabelColumns::encode(COLS.iter().map(|c| c.iter().copied()), &mut b);
        b
    }

    #[test]
    fn round_trip() {
        let a = Aligned::new(&encoded());
        let s = LabelColumns::parse(a.bytes(), 3, 2).unwrap();
        for (l, col) in COLS.iter().enumerate() {
            for (row, v) in col.iter().enumerate() {
                assert_eq!(s.value(a.bytes(), l, row), *v);
            }
        }
        assert_eq!(s.value(a.bytes(), 2, 0), "");
        // Placed after 128 other bytes, as in a file.
        let file = Aligned::new(&[&[0xEE; 128][..], a.bytes()].concat());
        assert_eq!(
            s.clone().placed_at(128).value(file.bytes(), 1, 0),
            COLS[1][0]
        );
        let mut none = Vec::new();
        LabelColumns::encode(std::iter::empty::<[&str; 0]>(), &mut none);
        assert!(none.is_empty());
        assert!(LabelColumns::parse(&none, 3, 0).is_ok());
    }

    #[test]
    fn faults_name_the_entry_or_the_array() {
        let b = encoded();
        // Layout: directory 24 bytes; column 0: ends at 24, bytes at 36 (3, padded to 4);
        // column 1: ends at 40, bytes at 52 (10 bytes, padded to 12).
        let check = |bytes: &[u8], at: usize, reason: &str| {
            let a = Aligned::new(bytes);
            assert_fault(
                LabelColumns::parse(a.bytes(), 3, 2),
                Section::Labels,
                at,
                reason,
            );
        };
        check(&b[..6], 4, "entry of column 0");
        check(
            &with_u32(&b, 0, 26),
            26,
            "ends of column 0: byte 26 is not aligned",
        );
        check(
            &with_u32(&b, 12, 60),
            60,
            "ends of column 1: 12 bytes needed",
        );
        check(&with_u32(&b, 20, 13), 16, "bytes of column 1 are outside");
        check(&with_u32(&b, 28, 0), 28, "column 0: end of row 1 goes back");
        check(
            &with_u32(&b, 8, 2),
            32,
            "column 0 ends at 3, its length is 2",
        );
    }
}
