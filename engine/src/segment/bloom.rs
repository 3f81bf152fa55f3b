//! Per-segment bloom filter on the bloom dim.
//!
//! ```text
//! 0  u32   number of bits m (a power of two, >= 1024)
//! 4  u32   number of probes k
//! 8  [u64; m / 64]  bit words
//! ```
//! Probe `i` of value `v` sets bit `(h1 + i * h2) mod m` where `h = hash64(v)`, `h1 = h`,
//! `h2 = h.rotate_left(32) | 1`.

use crate::hash::hash64;
use crate::le;

const PROBES: u32 = 7;
const BITS_PER_VALUE: usize = 10;
const MIN_BITS: usize = 1024;

/// A loaded bloom filter (kept in memory for every segment, mapped or not).
#[derive(Clone, Debug)]
pub(crate) struct Bloom {
    words: Vec<u64>,
    mask: u64,
    probes: u32,
}

#[inline]
fn positions(value: &str, mask: u64, probes: u32) -> impl Iterator<Item = u64> {
    let h = hash64(value.as_bytes());
    let h2 = h.rotate_left(32) | 1;
    (0..probes as u64).map(move |i| h.wrapping_add(i.wrapping_mul(h2)) & mask)
}

impl Bloom {
    /// Builds the section bytes for the given distinct values.
    pub(crate) fn build<'a>(values: impl ExactSizeIterator<Item = &'a str>) -> Vec<u8> {
        let bits = (values.len() * BITS_PER_VALUE)
            .max(MIN_BITS)
            .next_power_of_two();
        let mask = bits as u64 - 1;
        let mut words = vec![0u64; bits / 64];
        for v in values {
            for p in positions(v, mask, PROBES) {
                words[(p / 64) as usize] |= 1 << (p % 64);
            }
        }
        let mut out = Vec::with_capacity(8 + bits / 8);
        le::put_all(&mut out, [bits as u32, PROBES]);
        le::put_all(&mut out, words);
        out
    }

    /// Parses the section; `None` for an empty section (no bloom dim).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Bloom>, String> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let short = |e| format!("bloom section shorter than its 8-byte header: {e}");
        let bits = le::read_at::<u32>(bytes, 0).map_err(short)? as usize;
        let probes = le::read_at::<u32>(bytes, 4).map_err(short)?;
        if !bits.is_power_of_two() || bits < 64 || probes == 0 || probes > 32 {
            return Err(format!(
                "bloom header invalid: {bits} bits, {probes} probes"
            ));
        }
        if bytes.len() != 8 + bits / 8 {
            return Err(format!(
                "bloom section is {} bytes, expected {}",
                bytes.len(),
                8 + bits / 8
            ));
        }
        let words = le::values(&bytes[8..]).collect();
        Ok(Some(Bloom {
            words,
            mask: bits as u64 - 1,
            probes,
        }))
    }

    /// False means `value` is certainly absent.
    #[inline]
    pub(crate) fn may_contain(&self, value: &str) -> bool {
        positions(value, self.mask, self.probes).all(|p| {
            self.words
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let values: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
        let bytes = Bloom::build(values.iter().map(String::as_str));
        let bloom = Bloom::parse(&bytes).unwrap().unwrap();
        assert!(values.iter().all(|v| bloom.may_contain(v)));
        let fp = (0..10_000)
            .filter(|i| bloom.may_contain(&format!("other-{i}")))
            .count();
        assert!(fp < 300, "false positive rate too high: {fp}/10000");
    }

    #[test]
    fn rejects_bad_sections() {
        assert!(Bloom::parse(&[1, 2, 3]).is_err());
        assert!(Bloom::parse(&[0, 4, 0, 0, 7, 0, 0, 0]).is_err());
        assert!(Bloom::parse(&[]).unwrap().is_none());
    }
}
