//! The row columns: Ts and Metric (9.7.1, delta + zigzag + zstd, decoded at open) and U32Cols
//! and U16Cols (9.7.2, 9.7.3, fixed width, viewed in place).

use std::io;

use super::{expect_len, first_bad, SectionError, Shape};
use crate::le;
use crate::segment::codec::{decode_i64, encode_i64};
use crate::segment::Section;

/// Section Ts: the `ts_ns` of every row, delta + zigzag + zstd. Rows are sorted by time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TsColumn;

impl TsColumn {
    /// Appends the compressed column.
    pub(crate) fn encode(ts: &[i64], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&encode_i64(ts)?);
        Ok(())
    }

    /// Decodes `rows` values and checks they never decrease.
    pub(crate) fn parse(bytes: &[u8], rows: usize) -> Result<Vec<i64>, SectionError> {
        let ts = decode_i64(bytes, rows).map_err(|r| SectionError::new(Section::Ts, 0, r))?;
        if let Some(r) = first_bad(ts.windows(2), |w| w[0] > w[1]) {
            return Err(SectionError::new(
                Section::Ts,
                0,
                format!("rows are not sorted by time (row {} goes back)", r + 1),
            ));
        }
        Ok(ts)
    }

    /// Checks the first and last ts against the header's min and max.
    pub(crate) fn check_bounds(ts: &[i64], min: i64, max: i64) -> Result<(), SectionError> {
        match (ts.first(), ts.last()) {
            (Some(&lo), Some(&hi)) if (lo, hi) != (min, max) => Err(SectionError::new(
                Section::Ts,
                0,
                format!("rows span {lo}..={hi}, the header says {min}..={max}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Section Metric: the metric of every row, delta + zigzag + zstd.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetricColumn;

impl MetricColumn {
    #[cfg(test)]
    /// Appends the compressed column.
    pub(crate) fn encode(metric: &[i64], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&encode_i64(metric)?);
        Ok(())
    }

    /// Decodes `rows` values.
    pub(crate) fn parse(bytes: &[u8], rows: usize) -> Result<Vec<i64>, SectionError> {
        decode_i64(bytes, rows).map_err(|r| SectionError::new(Section::Metric, 0, r))
    }
}

/// `rows` values of `T` in column `i` of a section of equal-length columns placed at byte
/// `base` of `bytes`.
fn column<T: zerocopy::FromBytes + zerocopy::Immutable>(
    bytes: &[u8],
    base: usize,
    rows: usize,
    i: usize,
) -> &[T] {
    le::view(bytes, base + i * rows * size_of::<T>(), rows).unwrap_or(&[])
}

/// Section U32Cols: `u32[N]` columns latency, latency detail, then each counter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct U32Cols {
    base: usize,
    rows: usize,
}

impl U32Cols {
    /// The section's length for `shape`.
    pub(crate) fn len(shape: &Shape) -> usize {
        (2 + shape.counters) * shape.rows * 4
    }

    #[cfg(test)]
    /// Appends the columns in order: latency, latency detail, counters. Each has every row.
    pub(crate) fn encode<C: IntoIterator<Item = u32>>(
        columns: impl IntoIterator<Item = C>,
        out: &mut Vec<u8>,
    ) {
        for col in columns {
            le::put_all(out, col);
        }
    }

    /// Checks the length.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<U32Cols, SectionError> {
        expect_len(Section::U32Cols, bytes, Self::len(shape))?;
        Ok(U32Cols {
            base: 0,
            rows: shape.rows,
        })
    }

    #[cfg(test)]
    /// This layout for the section placed at byte `start` of the bytes given to the accessors
    /// (the file, in the reader).
    pub(crate) fn placed_at(self, start: usize) -> Self {
        Self {
            base: start,
            ..self
        }
    }

    /// `latency_ms` of every row.
    pub(crate) fn latency<'a>(&self, bytes: &'a [u8]) -> &'a [u32] {
        column(bytes, self.base, self.rows, 0)
    }
    /// `latency_detail_ms` of every row.
    pub(crate) fn latency_detail<'a>(&self, bytes: &'a [u8]) -> &'a [u32] {
        column(bytes, self.base, self.rows, 1)
    }
    /// Counter `c` of every row.
    pub(crate) fn counter<'a>(&self, bytes: &'a [u8], c: usize) -> &'a [u32] {
        column(bytes, self.base, self.rows, 2 + c)
    }
}

/// Section U16Cols: `u16[N]` columns status, flags, then each dim's segment-local codes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct U16Cols {
    base: usize,
    rows: usize,
}

impl U16Cols {
    /// The section's length for `shape`.
    pub(crate) fn len(shape: &Shape) -> usize {
        (2 + shape.dims) * shape.rows * 2
    }

    #[cfg(test)]
    /// Appends the columns in order: status, flags, dim codes. Each has every row.
    pub(crate) fn encode<C: IntoIterator<Item = u16>>(
        columns: impl IntoIterator<Item = C>,
        out: &mut Vec<u8>,
    ) {
        for col in columns {
            le::put_all(out, col);
        }
    }

    /// Checks the length.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<U16Cols, SectionError> {
        expect_len(Section::U16Cols, bytes, Self::len(shape))?;
        Ok(U16Cols {
            base: 0,
            rows: shape.rows,
        })
    }

    /// Status of every row.
    pub(crate) fn status<'a>(&self, bytes: &'a [u8]) -> &'a [u16] {
        column(bytes, self.base, self.rows, 0)
    }
    /// Flags of every row.
    pub(crate) fn flags<'a>(&self, bytes: &'a [u8]) -> &'a [u16] {
        column(bytes, self.base, self.rows, 1)
    }
    /// Segment-local codes of dim `d`.
    pub(crate) fn dim<'a>(&self, bytes: &'a [u8], d: usize) -> &'a [u16] {
        column(bytes, self.base, self.rows, 2 + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, Aligned};

    #[test]
    fn ts_round_trip_and_faults() {
        let ts = vec![-5, 0, 0, 7, i64::MAX];
        let mut b = Vec::new();
        TsColumn::encode(&ts, &mut b).unwrap();
        assert_eq!(TsColumn::parse(&b, 5).unwrap(), ts);
        TsColumn::check_bounds(&ts, -5, i64::MAX).unwrap();
        assert_fault(TsColumn::parse(&b, 6), Section::Ts, 0, "expected 48");
        assert_fault(TsColumn::parse(&b, 4), Section::Ts, 0, "zstd");
        assert_fault(
            TsColumn::parse(&b[..b.len() - 1], 5),
            Section::Ts,
            0,
            "zstd",
        );
        let mut back = Vec::new();
        TsColumn::encode(&[3, 2], &mut back).unwrap();
        assert_fault(TsColumn::parse(&back, 2), Section::Ts, 0, "row 1 goes back");
        assert_fault(
            TsColumn::check_bounds(&ts, -5, 7),
            Section::Ts,
            0,
            "the header says",
        );
        TsColumn::check_bounds(&[], 1, 2).unwrap();
    }

    #[test]
    fn metric_round_trip_and_faults() {
        let m = vec![i64::MIN, 3, -3, i64::MAX];
        let mut b = Vec::new();
        MetricColumn::encode(&m, &mut b).unwrap();
        assert_eq!(MetricColumn::parse(&b, 4).unwrap(), m);
        assert_fault(
            MetricColumn::parse(&b, 5),
            Section::Metric,
            0,
            "expected 40",
        );
        assert_fault(
            MetricColumn::parse(&[1, 2, 3], 1),
            Section::Metric,
            0,
            "zstd",
        );
    }

    #[test]
    fn u32_columns_round_trip_and_faults() {
        let shape = Shape::new(3, 0, 2, 0);
        let cols = [[1u32, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, u32::MAX]];
        let mut b = Vec::new();
        U32Cols::encode(cols, &mut b);
        assert_eq!(b.len(), U32Cols::len(&shape));
        let a = Aligned::new(&b);
        let s = U32Cols::parse(a.bytes(), &shape).unwrap();
        assert_eq!(s.latency(a.bytes()), cols[0]);
        assert_eq!(s.latency_detail(a.bytes()), cols[1]);
        assert_eq!(s.counter(a.bytes(), 1), cols[3]);
        // Placed after 64 other bytes, as in a file.
        let file = Aligned::new(&[&[0xEE; 64][..], &b].concat());
        let placed = s.placed_at(64);
        assert_eq!(placed.latency_detail(file.bytes()), cols[1]);
        assert_eq!(placed.counter(file.bytes(), 0), cols[2]);
        assert_fault(
            U32Cols::parse(&b[..47], &shape),
            Section::U32Cols,
            47,
            "47 bytes, expected 48",
        );
        let long = [&b[..], &[0]].concat();
        assert_fault(
            U32Cols::parse(&long, &shape),
            Section::U32Cols,
            48,
            "49 bytes",
        );
    }

    #[test]
    fn u16_columns_round_trip_and_faults() {
        let shape = Shape::new(2, 1, 0, 0);
        let cols = [[200u16, 503], [1, 0], [0, 1]];
        let mut b = Vec::new();
        U16Cols::encode(cols, &mut b);
        let a = Aligned::new(&b);
        let s = U16Cols::parse(a.bytes(), &shape).unwrap();
        assert_eq!(s.status(a.bytes()), cols[0]);
        assert_eq!(s.flags(a.bytes()), cols[1]);
        assert_eq!(s.dim(a.bytes(), 0), cols[2]);
        assert_fault(
            U16Cols::parse(&b[..10], &shape),
            Section::U16Cols,
            10,
            "expected 12",
        );
    }
}
