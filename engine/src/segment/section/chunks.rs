//! The per-chunk sections: Zones (9.7.6, minima and maxima) and ChunkAggs (9.7.7, sums). Both
//! are arrays of `K` values one after the other, viewed in place.

use zerocopy::{FromBytes, Immutable};

use super::{expect_len, SectionError, Shape};
use crate::le;
use crate::memtable::CHUNK_ROWS;
use crate::segment::Section;

/// `chunks` values of `T` at byte `at` of `bytes`.
fn array<T: FromBytes + Immutable>(bytes: &[u8], at: usize, chunks: usize) -> &[T] {
    le::view(bytes, at, chunks).unwrap_or(&[])
}

/// Per chunk of `values`, the smallest and the largest value.
fn min_max(values: &[u16]) -> (Vec<u16>, Vec<u16>) {
    values
        .chunks(CHUNK_ROWS)
        .map(|c| {
            let min = c.iter().copied().min().unwrap_or(0);
            let max = c.iter().copied().max().unwrap_or(0);
            (min, max)
        })
        .unzip()
}

/// Per chunk of `values` (one per row, in row order), their sum.
fn sums(values: impl IntoIterator<Item = u32>) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for (row, v) in values.into_iter().enumerate() {
        if row % CHUNK_ROWS == 0 {
            out.push(0);
        }
        if let Some(s) = out.last_mut() {
            *s += v as u64;
        }
    }
    out
}

/// Section Zones: per chunk, min and max ts (of its first and last row), min and max status,
/// and min and max code of each dim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zones {
    base: usize,
    chunks: usize,
}

impl Zones {
    /// The section's length for `shape`.
    pub(crate) fn len(shape: &Shape) -> usize {
        shape.chunks * (8 + 8 + 2 + 2 + 4 * shape.dims)
    }

    /// Appends the zone maps of the rows whose ts, status and dim codes are given.
    pub(crate) fn encode(ts: &[i64], status: &[u16], dims: &[Vec<u16>], out: &mut Vec<u8>) {
        let chunks = || ts.chunks(CHUNK_ROWS);
        le::put_all(out, chunks().map(|c| c.first().copied().unwrap_or(0)));
        le::put_all(out, chunks().map(|c| c.last().copied().unwrap_or(0)));
        let (lo, hi) = min_max(status);
        le::put_all(out, lo);
        le::put_all(out, hi);
        for codes in dims {
            let (lo, hi) = min_max(codes);
            le::put_all(out, lo);
            le::put_all(out, hi);
        }
    }

    /// Checks the length.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<Zones, SectionError> {
        expect_len(Section::Zones, bytes, Self::len(shape))?;
        Ok(Zones {
            base: 0,
            chunks: shape.chunks,
        })
    }

    /// This layout for the section placed at byte `start` of the bytes given to the accessors
    /// (the file, in the reader).
    pub(crate) fn placed_at(self, start: usize) -> Self {
        Self {
            base: start,
            ..self
        }
    }

    /// Per chunk, the ts of its first row.
    pub(crate) fn ts_min<'a>(&self, bytes: &'a [u8]) -> &'a [i64] {
        array(bytes, self.base, self.chunks)
    }
    /// Per chunk, the ts of its last row.
    pub(crate) fn ts_max<'a>(&self, bytes: &'a [u8]) -> &'a [i64] {
        array(bytes, self.base + 8 * self.chunks, self.chunks)
    }
    /// Per chunk, the smallest status.
    pub(crate) fn status_min<'a>(&self, bytes: &'a [u8]) -> &'a [u16] {
        array(bytes, self.base + 16 * self.chunks, self.chunks)
    }
    /// Per chunk, the largest status.
    pub(crate) fn status_max<'a>(&self, bytes: &'a [u8]) -> &'a [u16] {
        array(bytes, self.base + 18 * self.chunks, self.chunks)
    }
    /// Per chunk, the smallest code of dim `d`.
    pub(crate) fn dim_min<'a>(&self, bytes: &'a [u8], d: usize) -> &'a [u16] {
        array(bytes, self.base + (20 + 4 * d) * self.chunks, self.chunks)
    }
    /// Per chunk, the largest code of dim `d`.
    pub(crate) fn dim_max<'a>(&self, bytes: &'a [u8], d: usize) -> &'a [u16] {
        array(bytes, self.base + (22 + 4 * d) * self.chunks, self.chunks)
    }
}

/// Section ChunkAggs: per chunk, the metric sum as an `i128` (low `u64` words, then high `i64`
/// words), then the sums of latency, latency detail and each counter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkAggs {
    base: usize,
    chunks: usize,
}

impl ChunkAggs {
    /// The section's length for `shape`.
    pub(crate) fn len(shape: &Shape) -> usize {
        shape.chunks * (8 * 4 + 8 * shape.counters)
    }

    /// Appends the sums of the rows whose metric and u32 columns (latency, latency detail,
    /// counters, as in U32Cols) are given.
    pub(crate) fn encode<C: IntoIterator<Item = u32>>(
        metric: &[i64],
        u32_columns: impl IntoIterator<Item = C>,
        out: &mut Vec<u8>,
    ) {
        let metric: Vec<i128> = metric
            .chunks(CHUNK_ROWS)
            .map(|c| c.iter().map(|&m| m as i128).sum())
            .collect();
        le::put_all(out, metric.iter().map(|&s| s as u64));
        le::put_all(out, metric.iter().map(|&s| (s >> 64) as i64));
        for col in u32_columns {
            le::put_all(out, sums(col));
        }
    }

    /// Checks the length.
    pub(crate) fn parse(bytes: &[u8], shape: &Shape) -> Result<ChunkAggs, SectionError> {
        expect_len(Section::ChunkAggs, bytes, Self::len(shape))?;
        Ok(ChunkAggs {
            base: 0,
            chunks: shape.chunks,
        })
    }

    /// This layout for the section placed at byte `start` of the bytes given to the accessors
    /// (the file, in the reader).
    pub(crate) fn placed_at(self, start: usize) -> Self {
        Self {
            base: start,
            ..self
        }
    }

    /// Per chunk, the low 64 bits of the metric sum.
    pub(crate) fn metric_lo<'a>(&self, bytes: &'a [u8]) -> &'a [u64] {
        array(bytes, self.base, self.chunks)
    }
    /// Per chunk, the high 64 bits of the metric sum (signed).
    pub(crate) fn metric_hi<'a>(&self, bytes: &'a [u8]) -> &'a [i64] {
        array(bytes, self.base + 8 * self.chunks, self.chunks)
    }
    /// Per chunk, the sum of `latency_ms`.
    pub(crate) fn latency<'a>(&self, bytes: &'a [u8]) -> &'a [u64] {
        array(bytes, self.base + 16 * self.chunks, self.chunks)
    }
    /// Per chunk, the sum of `latency_detail_ms`.
    pub(crate) fn latency_detail<'a>(&self, bytes: &'a [u8]) -> &'a [u64] {
        array(bytes, self.base + 24 * self.chunks, self.chunks)
    }
    /// Per chunk, the sum of counter `c`.
    pub(crate) fn counter<'a>(&self, bytes: &'a [u8], c: usize) -> &'a [u64] {
        array(bytes, self.base + (32 + 8 * c) * self.chunks, self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, Aligned};

    /// 300 rows: two chunks, the second of 44 rows.
    const ROWS: usize = 300;

    #[test]
    fn zones_round_trip_and_faults() {
        let shape = Shape::new(ROWS, 2, 0, 0);
        let ts: Vec<i64> = (0..ROWS as i64).map(|r| r * 10 - 1000).collect();
        let status: Vec<u16> = (0..ROWS).map(|r| [200, 503, 404][r % 3]).collect();
        let dims = vec![
            (0..ROWS).map(|r| (r / 100) as u16).collect::<Vec<_>>(),
            vec![7u16; ROWS],
        ];
        let mut b = Vec::new();
        Zones::encode(&ts, &status, &dims, &mut b);
        assert_eq!(b.len(), Zones::len(&shape));
        let a = Aligned::new(&b);
        let z = Zones::parse(a.bytes(), &shape).unwrap();
        let b = a.bytes();
        assert_eq!(z.ts_min(b), [-1000, 1560]);
        assert_eq!(z.ts_max(b), [1550, 1990]);
        assert_eq!(z.status_min(b), [200, 200]);
        assert_eq!(z.status_max(b), [503, 503]);
        assert_eq!(
            (z.dim_min(b, 0), z.dim_max(b, 0)),
            (&[0, 2][..], &[2, 2][..])
        );
        assert_eq!(
            (z.dim_min(b, 1), z.dim_max(b, 1)),
            (&[7, 7][..], &[7, 7][..])
        );
        assert_fault(
            Zones::parse(&b[..b.len() - 2], &shape),
            Section::Zones,
            b.len() - 2,
            "expected 56",
        );
        assert_fault(
            Zones::parse(b, &Shape::new(ROWS + 1000, 2, 0, 0)),
            Section::Zones,
            56,
            "56 bytes, expected 168",
        );
    }

    #[test]
    fn chunk_aggs_round_trip_and_faults() {
        let shape = Shape::new(ROWS, 0, 1, 0);
        let metric: Vec<i64> = (0..ROWS)
            .map(|r| if r < 2 { i64::MAX } else { -1 })
            .collect();
        let latency: Vec<u32> = vec![u32::MAX; ROWS];
        let detail: Vec<u32> = (0..ROWS as u32).collect();
        let counter: Vec<u32> = vec![1; ROWS];
        let mut b = Vec::new();
        ChunkAggs::encode(
            &metric,
            [&latency, &detail, &counter].map(|c| c.iter().copied()),
            &mut b,
        );
        let a = Aligned::new(&b);
        let s = ChunkAggs::parse(a.bytes(), &shape).unwrap();
        let b = a.bytes();
        let first = 2 * i64::MAX as i128 - 254;
        assert_eq!(s.metric_lo(b), [first as u64, -44i128 as u64]);
        assert_eq!(s.metric_hi(b), [(first >> 64) as i64, -1]);
        assert_eq!(s.latency(b), [256 * u32::MAX as u64, 44 * u32::MAX as u64]);
        assert_eq!(s.latency_detail(b), [255 * 128, (256..300).sum::<u64>()]);
        assert_eq!(s.counter(b, 0), [256, 44]);
        assert_fault(
            ChunkAggs::parse(&b[..79], &shape),
            Section::ChunkAggs,
            79,
            "79 bytes, expected 80",
        );
    }
}
