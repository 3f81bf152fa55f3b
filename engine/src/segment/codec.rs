//! Encodings shared by segment sections: delta + zigzag + zstd for i64 columns, zstd bitsets.

use crate::le;

/// zstd level for segment sections: fast to write, still a good ratio on deltas.
const ZSTD_LEVEL: i32 = 1;

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Delta-encodes `values` (first value against 0), zigzags and compresses.
pub(crate) fn encode_i64(values: &[i64]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(values.len() * 8);
    let mut prev = 0i64;
    le::put_all(
        &mut raw,
        values.iter().map(|&v| {
            let d = zigzag(v.wrapping_sub(prev));
            prev = v;
            d
        }),
    );
    compress(&raw)
}

/// Inverse of [`encode_i64`]; `rows` is the expected count.
pub(crate) fn decode_i64(bytes: &[u8], rows: usize) -> Result<Vec<i64>, String> {
    let raw = decompress(bytes, rows * 8)?;
    if raw.len() != rows * 8 {
        return Err(format!(
            "decoded {} bytes, expected {}",
            raw.len(),
            rows * 8
        ));
    }
    let mut out = Vec::with_capacity(rows);
    let mut prev = 0i64;
    for z in le::values::<u64>(&raw) {
        prev = prev.wrapping_add(unzigzag(z));
        out.push(prev);
    }
    Ok(out)
}

/// zstd-compresses a buffer.
pub(crate) fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(raw, ZSTD_LEVEL)
}

/// zstd-decompresses a buffer of known maximum size.
pub(crate) fn decompress(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    zstd::bulk::decompress(bytes, max).map_err(|e| format!("zstd: {e}"))
}

/// zstd-decompresses a stream, reading at most `limit + 1` bytes of output (so a caller can
/// tell "exactly `limit`" from "more"). Memory grows with the data actually decoded.
pub(crate) fn decompress_bounded(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let dec = zstd::stream::read::Decoder::new(bytes).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    dec.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    Ok(out)
}

/// A bitset over rows, as u64 words.
pub(crate) fn bitset_words(rows: usize) -> usize {
    rows.div_ceil(64)
}

/// Compresses a bitset.
pub(crate) fn encode_bitset(words: &[u64]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(words.len() * 8);
    le::put_all(&mut raw, words.iter().copied());
    compress(&raw)
}

/// Decompresses a bitset of `rows` bits.
pub(crate) fn decode_bitset(bytes: &[u8], rows: usize) -> Result<Vec<u64>, String> {
    let n = bitset_words(rows);
    let raw = decompress(bytes, n * 8)?;
    if raw.len() != n * 8 {
        return Err(format!(
            "bitset has {} bytes, expected {}",
            raw.len(),
            n * 8
        ));
    }
    Ok(le::values(&raw).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn i64_round_trip(v in proptest::collection::vec(any::<i64>(), 0..300)) {
            prop_assert_eq!(decode_i64(&encode_i64(&v).unwrap(), v.len()).unwrap(), v);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), rows in 0usize..50) {
            let _ = decode_i64(&bytes, rows);
            let _ = decode_bitset(&bytes, rows);
        }
    }

    #[test]
    fn zigzag_extremes() {
        for v in [0, 1, -1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
