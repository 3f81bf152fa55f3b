//! Packed integer columns of format version 2 (FORMAT.md 9.8.1), used by the Metric, U32Cols
//! and U16Cols sections: each column is stored in the smallest of four encodings, all decoded
//! at open.
//!
//! ```text
//! u8 kind
//! kind 0 (constant):        varint value                       every row holds it
//! kind 1 (frame of ref.):   chunks                             see below
//! kind 2 (dictionary):      varint n (1..=256), n varint values ascending, then chunks of
//!                           indexes into them
//! kind 3 (delta + zstd):    varint length Z, Z bytes: the v1 i64 encoding (9.7.1)
//! chunks: for each chunk of 256 rows (the last may be shorter), varint min, u8 width w
//!         (0..=64), then ceil(rows * w / 8) bytes: value - min of each row, w bits each, least
//!         significant bit first, packed from bit 0 of the first byte
//! ```
//!
//! Varints are unsigned LEB128 of at most 10 bytes. Values are `u64`; the section maps its
//! values to and from `u64` (Metric flips the sign bit so that order is kept) and gives the
//! largest value a column may hold.

use std::io;

use crate::memtable::CHUNK_ROWS;
use crate::segment::codec::{decode_i64, encode_i64};

/// Kind byte: every row holds one value.
const CONSTANT: u8 = 0;
/// Kind byte: per-chunk frame of reference, bit-packed.
const FRAME: u8 = 1;
/// Kind byte: a dictionary of at most 256 values and bit-packed indexes.
const DICTIONARY: u8 = 2;
/// Kind byte: delta + zigzag + zstd, as the v1 i64 columns.
const DELTA_ZSTD: u8 = 3;
/// Most values in a dictionary column.
const MAX_DICTIONARY: usize = 256;

/// A fault in a packed column: the byte of the section where it was found, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PackError {
    pub at: usize,
    pub reason: String,
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads packed structures from a byte slice, naming the offset of every failure.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at byte `pos` of `bytes`.
    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Cursor { bytes, pos }
    }

    /// The offset of the next byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn fail<T>(&self, at: usize, reason: impl Into<String>) -> Result<T, PackError> {
        Err(PackError {
            at,
            reason: reason.into(),
        })
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PackError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.fail(
                self.pos,
                format!(
                    "{what}: {n} bytes needed, {} left",
                    self.bytes.len() - self.pos
                ),
            ),
        }
    }

    /// The next byte.
    pub(crate) fn byte(&mut self, what: &str) -> Result<u8, PackError> {
        Ok(self.take(1, what)?[0])
    }

    /// The next varint.
    pub(crate) fn varint(&mut self, what: &str) -> Result<u64, PackError> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte(what)?;
            let bits = (b & 0x7F) as u64;
            if i == 9 && bits > 1 {
                return self.fail(start, format!("{what}: varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail(start, format!("{what}: varint longer than 10 bytes"))
    }

    /// The next varint, which must be at most `max`.
    pub(crate) fn varint_at_most(&mut self, max: u64, what: &str) -> Result<u64, PackError> {
        let start = self.pos;
        let v = self.varint(what)?;
        if v > max {
            return self.fail(start, format!("{what} {v} is above {max}"));
        }
        Ok(v)
    }
}

/// Bits needed for values up to `span`.
fn width(span: u64) -> u8 {
    (64 - span.leading_zeros()) as u8
}

/// Appends `values` minus `min`, `w` bits each, least significant bit first.
fn pack(values: &[u64], min: u64, w: u8, out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u128, 0u32);
    for &v in values {
        acc |= ((v - min) as u128) << bits;
        bits += w as u32;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Appends `values` as chunks of `CHUNK_ROWS`, each with its own minimum and width.
fn put_chunks(values: &[u64], out: &mut Vec<u8>) {
    for chunk in values.chunks(CHUNK_ROWS) {
        let min = chunk.iter().copied().min().unwrap_or(0);
        let max = chunk.iter().copied().max().unwrap_or(0);
        let w = width(max - min);
        put_varint(out, min);
        out.push(w);
        pack(chunk, min, w, out);
    }
}

/// Reads `rows` values written by [`put_chunks`], each at most `max`, into `out`.
fn read_chunks(
    c: &mut Cursor<'_>,
    rows: usize,
    max: u64,
    out: &mut Vec<u64>,
) -> Result<(), PackError> {
    let mut left = rows;
    while left > 0 {
        let n = left.min(CHUNK_ROWS);
        let at = c.pos();
        let min = c.varint("chunk minimum")?;
        let w = c.byte("chunk width")?;
        if w > 64 {
            return c.fail(at, format!("chunk width {w} is above 64"));
        }
        let bytes = c.take((n * w as usize).div_ceil(8), "packed chunk")?;
        if !unpack(bytes, n, w, min, max, out) {
            return c.fail(at, format!("chunk holds a value above {max}"));
        }
        left -= n;
    }
    Ok(())
}

/// Appends the `n` values of `w` bits (at most 64) packed in `bytes`, each plus `min`, to
/// `out`; false when one is above `max` (or overflows).
///
/// Widths up to 56 read each value from one unaligned little-endian `u64` at its first byte,
/// so a value costs a load, a shift and a mask; the check against `max` is made once per chunk
/// when no value of the width can pass it.
fn unpack(bytes: &[u8], n: usize, w: u8, min: u64, max: u64, out: &mut Vec<u64>) -> bool {
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    let always_ok = min.checked_add(mask).is_some_and(|top| top <= max);
    if w == 0 {
        out.extend(std::iter::repeat_n(min, n));
        return min <= max;
    }
    if w > 56 {
        return unpack_wide(bytes, n, w, min, max, out);
    }
    out.reserve(n);
    let word_at = |byte: usize| -> u64 {
        match bytes.get(byte..byte + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            None => {
                let mut b = [0u8; 8];
                let tail = bytes.get(byte..).unwrap_or(&[]);
                b[..tail.len()].copy_from_slice(tail);
                u64::from_le_bytes(b)
            }
        }
    };
    let w = w as usize;
    for i in 0..n {
        let bit = i * w;
        let v = (word_at(bit / 8) >> (bit % 8)) & mask;
        if always_ok {
            out.push(min + v);
        } else {
            match min.checked_add(v).filter(|&v| v <= max) {
                Some(v) => out.push(v),
                None => return false,
            }
        }
    }
    true
}

/// [`unpack`] for widths above 56, whose values can span nine bytes.
fn unpack_wide(bytes: &[u8], n: usize, w: u8, min: u64, max: u64, out: &mut Vec<u64>) -> bool {
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    let (mut acc, mut bits, mut next) = (0u128, 0u32, bytes.iter());
    for _ in 0..n {
        while bits < w as u32 {
            acc |= (*next.next().unwrap_or(&0) as u128) << bits;
            bits += 8;
        }
        match min.checked_add(acc as u64 & mask).filter(|&v| v <= max) {
            Some(v) => out.push(v),
            None => return false,
        }
        acc >>= w;
        bits -= w as u32;
    }
    true
}

/// Appends `values` in the smallest encoding; `delta` allows kind 3 (for i64 columns).
pub(crate) fn encode_column(values: &[u64], delta: bool, out: &mut Vec<u8>) -> io::Result<()> {
    let first = values.first().copied().unwrap_or(0);
    if values.iter().all(|&v| v == first) {
        out.push(CONSTANT);
        put_varint(out, first);
        return Ok(());
    }
    let mut best = vec![FRAME];
    put_chunks(values, &mut best);
    let mut distinct: Vec<u64> = Vec::new();
    for &v in values {
        if let Err(i) = distinct.binary_search(&v) {
            if distinct.len() == MAX_DICTIONARY {
                distinct.clear();
                break;
            }
            distinct.insert(i, v);
        }
    }
    if !distinct.is_empty() {
        let mut dict = vec![DICTIONARY];
        put_varint(&mut dict, distinct.len() as u64);
        distinct.iter().for_each(|&v| put_varint(&mut dict, v));
        let indexes: Vec<u64> = values
            .iter()
            .map(|v| distinct.binary_search(v).unwrap_or(0) as u64)
            .collect();
        put_chunks(&indexes, &mut dict);
        if dict.len() < best.len() {
            best = dict;
        }
    }
    if delta {
        let signed: Vec<i64> = values.iter().map(|&v| v as i64).collect();
        let z = encode_i64(&signed)?;
        let mut d = vec![DELTA_ZSTD];
        put_varint(&mut d, z.len() as u64);
        d.extend_from_slice(&z);
        if d.len() < best.len() {
            best = d;
        }
    }
    out.extend_from_slice(&best);
    Ok(())
}

/// Reads one column of `rows` values, each at most `max`, written by [`encode_column`].
pub(crate) fn decode_column(
    c: &mut Cursor<'_>,
    rows: usize,
    max: u64,
) -> Result<Vec<u64>, PackError> {
    let at = c.pos();
    let kind = c.byte("column kind")?;
    let mut out = Vec::with_capacity(rows);
    match kind {
        CONSTANT => {
            let v = c.varint_at_most(max, "constant")?;
            out.resize(rows, v);
        }
        FRAME => read_chunks(c, rows, max, &mut out)?,
        DICTIONARY => {
            let n = c.varint_at_most(MAX_DICTIONARY as u64, "dictionary size")? as usize;
            let mut dict = Vec::with_capacity(n);
            for _ in 0..n {
                let vat = c.pos();
                let v = c.varint_at_most(max, "dictionary value")?;
                if dict.last().is_some_and(|&p| p >= v) {
                    return c.fail(vat, "dictionary values are not ascending");
                }
                dict.push(v);
            }
            let last = (n as u64).checked_sub(1);
            let Some(last) = last else {
                return c.fail(at, "empty dictionary");
            };
            read_chunks(c, rows, last, &mut out)?;
            out.iter_mut().for_each(|i| *i = dict[*i as usize]);
        }
        DELTA_ZSTD => {
            let len = c.varint("compressed length")?;
            let zat = c.pos();
            let z = c.take(
                usize::try_from(len).unwrap_or(usize::MAX),
                "compressed column",
            )?;
            let v = decode_i64(z, rows).map_err(|reason| PackError { at: zat, reason })?;
            if let Some(r) = v.iter().position(|&x| x as u64 > max) {
                return c.fail(zat, format!("row {r} holds a value above {max}"));
            }
            out.extend(v.into_iter().map(|x| x as u64));
        }
        k => return c.fail(at, format!("unknown column kind {k}")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[u64], delta: bool) -> Vec<u8> {
        let mut b = Vec::new();
        encode_column(values, delta, &mut b).unwrap();
        let mut c = Cursor::at(&b, 0);
        assert_eq!(
            decode_column(&mut c, values.len(), u64::MAX).unwrap(),
            values
        );
        assert_eq!(c.pos(), b.len());
        b
    }

    #[test]
    fn constant_columns_cost_two_bytes() {
        assert_eq!(round_trip(&[0; 1000], false), [CONSTANT, 0]);
        assert_eq!(round_trip(&[], true), [CONSTANT, 0]);
    }

    #[test]
    fn each_kind_is_chosen_where_smallest() {
        let status: Vec<u64> = (0..1000)
            .map(|i| if i % 20 == 0 { 500 } else { 200 })
            .collect();
        assert_eq!(round_trip(&status, false)[0], DICTIONARY);
        let codes: Vec<u64> = (0..1000).map(|i| i * 7919 % 1000).collect();
        assert_eq!(round_trip(&codes, false)[0], FRAME);
        let ramp: Vec<u64> = (0..1000).map(|i| (1 << 40) | (i * 3)).collect();
        assert_eq!(round_trip(&ramp, true)[0], DELTA_ZSTD);
        round_trip(&[u64::MAX, 0, 5, u64::MAX - 1], true);
    }

    #[test]
    fn format_md_example_decodes() {
        let b = [DICTIONARY, 2, 0xC8, 0x01, 0xF7, 0x03, 0, 1, 0b010];
        let mut c = Cursor::at(&b, 0);
        assert_eq!(
            decode_column(&mut c, 3, u16::MAX as u64).unwrap(),
            [200, 503, 200]
        );
        assert_eq!(c.pos(), b.len());
    }

    #[test]
    fn faults_name_the_byte() {
        let fault =
            |b: &[u8], rows, max| decode_column(&mut Cursor::at(b, 0), rows, max).unwrap_err();
        assert_eq!(fault(&[9], 1, 9).at, 0);
        assert!(fault(&[CONSTANT, 10], 1, 9).reason.contains("above 9"));
        assert_eq!(fault(&[FRAME, 0, 65], 1, 9).at, 1);
        assert!(fault(&[FRAME, 0, 8], 2, 9).reason.contains("packed chunk"));
        assert!(fault(&[FRAME, 0, 8, 200], 1, 9).reason.contains("above 9"));
        assert!(fault(&[DICTIONARY, 2, 5, 5, 0, 1, 0], 1, 9)
            .reason
            .contains("ascending"));
        assert!(fault(&[DICTIONARY, 1, 5, 0, 1, 0b10], 2, 9)
            .reason
            .contains("above 0"));
        assert!(fault(
            &[CONSTANT, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            1,
            u64::MAX
        )
        .reason
        .contains("overflows"));
    }

    proptest! {
        #[test]
        fn any_column_round_trips(v in proptest::collection::vec(any::<u64>(), 0..600), small in 0u64..40) {
            round_trip(&v, true);
            let low: Vec<u64> = v.iter().map(|x| x % (small + 1)).collect();
            round_trip(&low, false);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), rows in 0usize..600) {
            let _ = decode_column(&mut Cursor::at(&bytes, 0), rows, u32::MAX as u64);
        }
    }
}
