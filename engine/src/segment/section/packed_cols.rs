//! Format version 2 of the row columns Metric, U32Cols and U16Cols (FORMAT.md 9.8.2): each
//! column a packed column ([`super::packed`]), column after column, decoded at open.

use std::io;

use super::packed::{decode_column, encode_column, Cursor, PackError};
use super::{SectionError, Shape};
use crate::segment::Section;

/// Maps an i64 to a u64 keeping order (the sign bit flipped).
fn ordered(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Decodes `count` columns of `rows` values, each at most `max`, that fill `bytes` exactly.
fn decode_all(
    section: Section,
    bytes: &[u8],
    count: usize,
    rows: usize,
    max: u64,
) -> Result<Vec<Vec<u64>>, SectionError> {
    let fault = |e: PackError| SectionError::new(section, e.at, e.reason);
    let mut c = Cursor::at(bytes, 0);
    let mut cols = Vec::with_capacity(count);
    for _ in 0..count {
        cols.push(decode_column(&mut c, rows, max).map_err(fault)?);
    }
    if c.pos() != bytes.len() {
        return Err(SectionError::new(
            section,
            c.pos(),
            format!("{} bytes after the last column", bytes.len() - c.pos()),
        ));
    }
    Ok(cols)
}

/// Section Metric, version 2: one packed column of the metric, order-preserving as `u64`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedMetric;

impl PackedMetric {
    /// Appends the column.
    pub(crate) fn encode(metric: &[i64], out: &mut Vec<u8>) -> io::Result<()> {
        let v: Vec<u64> = metric.iter().map(|&m| ordered(m)).collect();
        encode_column(&v, true, out)
    }

    /// Decodes `rows` values.
    pub(crate) fn parse(bytes: &[u8], rows: usize) -> Result<Vec<i64>, SectionError> {
        let mut cols = decode_all(Section::Metric, bytes, 1, rows, u64::MAX)?;
        let col = cols.pop().unwrap_or_default();
        Ok(col.into_iter().map(|v| (v ^ (1 << 63)) as i64).collect())
    }
}

/// Section U32Cols, version 2: latency, latency detail, then each counter, packed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedU32Cols;

impl PackedU32Cols {
    /// Appends the columns in order; each has every row.
    pub(crate) fn encode<C: IntoIterator<Item = u32>>(
        columns: impl IntoIterator<Item = C>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        for col in columns {
            let v: Vec<u64> = col.into_iter().map(u64::from).collect();
            encode_column(&v, false, out)?;
        }
        Ok(())
    }

    /// Decodes the `2 + C` columns.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<Vec<Vec<u32>>, SectionError> {
        let cols = decode_all(
            Section::U32Cols,
            bytes,
            2 + shape.counters,
            shape.rows,
            u32::MAX as u64,
        )?;
        Ok(cols
            .into_iter()
            .map(|c| c.into_iter().map(|v| v as u32).collect())
            .collect())
    }
}

/// Section U16Cols, version 2: status, flags, then each dim's codes, packed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedU16Cols;

impl PackedU16Cols {
    /// Appends the columns in order; each has every row.
    pub(crate) fn encode<C: IntoIterator<Item = u16>>(
        columns: impl IntoIterator<Item = C>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        for col in columns {
            let v: Vec<u64> = col.into_iter().map(u64::from).collect();
            encode_column(&v, false, out)?;
        }
        Ok(())
    }

    /// Decodes the `2 + D` columns.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<Vec<Vec<u16>>, SectionError> {
        let cols = decode_all(
            Section::U16Cols,
            bytes,
            2 + shape.dims,
            shape.rows,
            u16::MAX as u64,
        )?;
        Ok(cols
            .into_iter()
            .map(|c| c.into_iter().map(|v| v as u16).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::assert_fault;

    #[test]
    fn round_trips_and_faults() {
        let m = vec![i64::MIN, -1, 0, 3, i64::MAX];
        let mut b = Vec::new();
        PackedMetric::encode(&m, &mut b).unwrap();
        assert_eq!(PackedMetric::parse(&b, 5).unwrap(), m);
        let shape = Shape::new(3, 1, 1, 0);
        let mut b = Vec::new();
        PackedU32Cols::encode([[0u32; 3], [1, 2, 3], [u32::MAX, 0, 7]], &mut b).unwrap();
        assert_eq!(
            PackedU32Cols::parse(&b, &shape).unwrap(),
            [vec![0; 3], vec![1, 2, 3], vec![u32::MAX, 0, 7]]
        );
        assert_fault(
            PackedU32Cols::parse(&b[..b.len() - 1], &shape),
            Section::U32Cols,
            17,
            "packed chunk",
        );
        let long = [&b[..], &[0]].concat();
        assert_fault(
            PackedU32Cols::parse(&long, &shape),
            Section::U32Cols,
            b.len(),
            "1 bytes after",
        );
        let mut b = Vec::new();
        PackedU16Cols::encode([[200u16, 500, 200], [0; 3], [2, 1, 0]], &mut b).unwrap();
        assert_eq!(PackedU16Cols::parse(&b, &shape).unwrap()[2], [2, 1, 0]);
        let wide = [0u8, 0x80, 0x80, 0x04];
        assert_fault(
            PackedU16Cols::parse(&wide, &Shape::new(1, 0, 0, 0)),
            Section::U16Cols,
            1,
            "above 65535",
        );
    }
}
