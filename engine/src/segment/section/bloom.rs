//! Section Bloom (9.7.4): the bloom filter over the bloom dim's values in the segment.
//!
//! ```text
//! 0  u32   number of bits m (a power of two; writers use >= 1024)
//! 4  u32   number of probes k
//! 8  [u64; m / 64]  bit words
//! ```
//! Probe `i` of value `v` sets bit `(h1 + i * h2) mod m` where `h = hash64(v)`, `h1 = h`,
//! `h2 = h.rotate_left(32) | 1`. The section is empty when the segment has no bloom dim.

use super::SectionError;
use crate::hash::hash64;
use crate::le::{self, LeReader};
use crate::segment::Section;

const PROBES: u32 = 7;
const BITS_PER_VALUE: usize = 10;
const MIN_BITS: usize = 1024;
/// Bytes before the bit words.
const HEAD_LEN: usize = 8;

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
    /// Appends the filter of the given distinct values.
    pub(crate) fn encode<'a>(values: impl ExactSizeIterator<Item = &'a str>, out: &mut Vec<u8>) {
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
        out.reserve(HEAD_LEN + bits / 8);
        le::put_all(out, [bits as u32, PROBES]);
        le::put_all(out, words);
    }

    /// Parses the section; `None` for an empty section (no bloom dim).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Bloom>, SectionError> {
        Self::parse_in(Section::Bloom, bytes)
    }

    /// Parses a filter in this format held by `section` (the id filter of Ids, version 2);
    /// fault offsets are from the filter's first byte.
    pub(crate) fn parse_in(section: Section, bytes: &[u8]) -> Result<Option<Bloom>, SectionError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let err = |at, reason: String| SectionError::new(section, at, reason);
        let short = |e| SectionError::read(section, "8-byte header", e);
        let mut head = LeReader::new(bytes);
        let bits = head.read::<u32>().map_err(short)? as usize;
        let probes = head.read::<u32>().map_err(short)?;
        if !bits.is_power_of_two() || bits < 64 {
            return Err(err(0, format!("{bits} bits is not a power of two >= 64")));
        }
        if probes == 0 || probes > 32 {
            return Err(err(4, format!("{probes} probes, expected 1 to 32")));
        }
        let want = HEAD_LEN + bits / 8;
        if bytes.len() != want {
            return Err(err(
                bytes.len().min(want),
                format!("{} bytes, expected {want} for {bits} bits", bytes.len()),
            ));
        }
        Ok(Some(Bloom {
            words: le::values(&bytes[HEAD_LEN..]).collect(),
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
    use crate::segment::section::testing::{assert_fault, with_u32};

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let values: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
        let mut bytes = Vec::new();
        Bloom::encode(values.iter().map(String::as_str), &mut bytes);
        let bloom = Bloom::parse(&bytes).unwrap().unwrap();
        assert!(values.iter().all(|v| bloom.may_contain(v)));
        let fp = (0..10_000)
            .filter(|i| bloom.may_contain(&format!("other-{i}")))
            .count();
        assert!(fp < 300, "false positive rate too high: {fp}/10000");
    }

    #[test]
    fn round_trip_keeps_the_writers_sizes() {
        let mut bytes = Vec::new();
        Bloom::encode(["a", "b"].into_iter(), &mut bytes);
        assert_eq!(bytes.len(), 8 + 1024 / 8);
        assert_eq!(&bytes[..8], &[0, 4, 0, 0, 7, 0, 0, 0]);
        let bloom = Bloom::parse(&bytes).unwrap().unwrap();
        assert!(bloom.may_contain("a") && bloom.may_contain("b"));
        assert!(Bloom::parse(&[]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_sections_at_the_bad_field() {
        let mut good = Vec::new();
        Bloom::encode(["x"].into_iter(), &mut good);
        assert_fault(Bloom::parse(&[1, 2, 3]), Section::Bloom, 0, "8-byte header");
        assert_fault(Bloom::parse(&good[..6]), Section::Bloom, 4, "8-byte header");
        assert_fault(
            Bloom::parse(&with_u32(&good, 0, 1000)),
            Section::Bloom,
            0,
            "1000 bits",
        );
        assert_fault(
            Bloom::parse(&with_u32(&good, 4, 33)),
            Section::Bloom,
            4,
            "33 probes",
        );
        assert_fault(
            Bloom::parse(&good[..good.len() - 8]),
            Section::Bloom,
            good.len() - 8,
            "expected 136",
        );
        assert_fault(
            Bloom::parse(&with_u32(&good, 0, 2048)),
            Section::Bloom,
            136,
            "expected 264 for 2048 bits",
        );
    }
}
