//! Section Intern (9.7.8): the segment-local dictionary of every dim, zstd-compressed, decoded
//! on the first query that needs it.
//!
//! ```text
//! 0  u64  R = length of the uncompressed table
//! 8  ...  zstd frame of R bytes: per dim, u32 n, u32[n] value lengths, the values' bytes
//! ```

use std::io;

use super::SectionError;
use crate::hash::FastMap;
use crate::le::{self, LeReader};
use crate::segment::codec::{compress, decompress_bounded};
use crate::segment::{Section, MAX_DIM_VALUES};

/// The decoded dictionary of one dim: values in code order, and the code of each value.
#[derive(Debug, Default)]
pub(crate) struct SegDict {
    pub values: Vec<Box<str>>,
    map: FastMap<Box<str>, u16>,
}

impl SegDict {
    /// The code of `value`, if the segment has it.
    pub(crate) fn code(&self, value: &str) -> Option<u16> {
        self.map.get(value).copied()
    }
    /// The value of `code`, if the dim has that many values.
    pub(crate) fn value(&self, code: u16) -> Option<&str> {
        self.values.get(code as usize).map(|v| &**v)
    }
}

/// The Intern section's codec.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InternTables;

impl InternTables {
    /// Offset in the section of the zstd frame that holds the tables.
    pub(crate) const TABLE_AT: usize = 8;

    /// Appends the dictionaries: for each dim, its values in code order (sorted, distinct).
    pub(crate) fn encode(dims: &[Vec<&str>], out: &mut Vec<u8>) -> io::Result<()> {
        let mut table = Vec::new();
        for values in dims {
            le::put_all(&mut table, [values.len() as u32]);
            le::put_all(&mut table, values.iter().map(|v| v.len() as u32));
            for v in values {
                table.extend_from_slice(v.as_bytes());
            }
        }
        le::put_all(out, [table.len() as u64]);
        out.extend_from_slice(&compress(&table)?);
        Ok(())
    }

    /// Decodes the dictionaries of `dims` dims: exactly `R` bytes, at most 65,536 values per
    /// dim, valid UTF-8, strictly ascending, the table consumed exactly. Faults inside the
    /// compressed table are reported at the frame's offset, with their offset in the table.
    pub(crate) fn parse(bytes: &[u8], dims: usize) -> Result<Vec<SegDict>, SectionError> {
        let raw_len = le::read_at::<u64>(bytes, 0)
            .map_err(|e| SectionError::read(Section::Intern, "table length", e))?;
        // Decoded as a stream bounded by the declared length, so a hostile length cannot make
        // us reserve memory the data does not back.
        let in_frame = |reason: String| SectionError::new(Section::Intern, Self::TABLE_AT, reason);
        let frame = bytes.get(Self::TABLE_AT..).unwrap_or(&[]);
        let raw = decompress_bounded(frame, raw_len).map_err(in_frame)?;
        if raw.len() as u64 != raw_len {
            return Err(SectionError::new(
                Section::Intern,
                0,
                format!("table decodes to {} bytes, expected {raw_len}", raw.len()),
            ));
        }
        let mut r = LeReader::new(&raw);
        let mut dicts = Vec::with_capacity(dims);
        for d in 0..dims {
            dicts.push(read_dict(&mut r).map_err(|e| in_frame(format!("dim {d}: {e}")))?);
        }
        if !r.is_empty() {
            return Err(in_frame(format!(
                "{} trailing bytes after the tables",
                raw.len() - r.pos()
            )));
        }
        Ok(dicts)
    }
}

/// Reads one dim's dictionary from the uncompressed table.
fn read_dict(r: &mut LeReader<'_>) -> Result<SegDict, String> {
    let at = r.pos();
    let n = r.read::<u32>().map_err(|e| format!("value count: {e}"))? as usize;
    if n > MAX_DIM_VALUES {
        return Err(format!("{n} values at table byte {at}"));
    }
    let lens = r.take(4 * n).map_err(|e| format!("value lengths: {e}"))?;
    let mut dict = SegDict {
        values: Vec::with_capacity(n),
        map: FastMap::default(),
    };
    for (code, len) in le::values::<u32>(lens).enumerate() {
        let at = r.pos();
        let bytes = r
            .take(len as usize)
            .map_err(|e| format!("value {code}: {e}"))?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| format!("value {code} at table byte {at}: {e}"))?;
        if dict.values.last().is_some_and(|p| **p >= *s) {
            return Err(format!("values are not sorted and unique at code {code}"));
        }
        dict.map.insert(s.into(), code as u16);
        dict.values.push(s.into());
    }
    Ok(dict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::assert_fault;

    fn section(dims: &[Vec<&str>]) -> Vec<u8> {
        let mut b = Vec::new();
        InternTables::encode(dims, &mut b).unwrap();
        b
    }

    /// A section whose uncompressed table is `table`, as is.
    fn raw_section(table: &[u8]) -> Vec<u8> {
        let mut b = (table.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(&compress(table).unwrap());
        b
    }

    #[test]
    fn round_trip() {
        let dims = vec![vec!["", "a", "b", "é€😀"], vec![], vec!["only"]];
        let got = InternTables::parse(&section(&dims), 3).unwrap();
        for (dict, want) in got.iter().zip(&dims) {
            assert_eq!(dict.values.iter().map(|v| &**v).collect::<Vec<_>>(), *want);
            for (code, v) in want.iter().enumerate() {
                assert_eq!(dict.code(v), Some(code as u16));
                assert_eq!(dict.value(code as u16), Some(*v));
            }
        }
        assert_eq!(got[0].code("c"), None);
    }

    #[test]
    fn faults_name_the_frame_and_the_table_byte() {
        let good = section(&[vec!["a", "b"]]);
        assert_fault(
            InternTables::parse(&good[..5], 1),
            Section::Intern,
            0,
            "table length",
        );
        assert_fault(
            InternTables::parse(&good[..12], 1),
            Section::Intern,
            8,
            "zstd",
        );
        let mut longer = good.clone();
        longer[0] += 1;
        assert_fault(
            InternTables::parse(&longer, 1),
            Section::Intern,
            0,
            "expected 15",
        );
        assert_fault(
            InternTables::parse(&good, 2),
            Section::Intern,
            8,
            "dim 1: value count",
        );
        assert_fault(
            InternTables::parse(&section(&[vec!["b", "a"]]), 1),
            Section::Intern,
            8,
            "not sorted and unique at code 1",
        );
        let bad_utf8 = raw_section(&[1, 0, 0, 0, 1, 0, 0, 0, 0xFF]);
        assert_fault(
            InternTables::parse(&bad_utf8, 1),
            Section::Intern,
            8,
            "value 0 at table byte 8",
        );
        let too_many = raw_section(&(MAX_DIM_VALUES as u32 + 1).to_le_bytes());
        assert_fault(
            InternTables::parse(&too_many, 1),
            Section::Intern,
            8,
            "65537 values",
        );
        let trailing = raw_section(&[0, 0, 0, 0, 9]);
        assert_fault(
            InternTables::parse(&trailing, 1),
            Section::Intern,
            8,
            "1 trailing",
        );
    }
}
