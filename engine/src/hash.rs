//! A small, stable 64-bit hash.
//!
//! On-disk structures (bloom filters, id indexes) depend on it, so its output is part of the
//! segment format: changing it needs a new format version. It is also used, with the same code,
//! as the hasher for in-memory maps, where it beats SipHash on short strings.

use std::hash::{BuildHasher, Hasher};

const SEED: u64 = 0x243F_6A88_85A3_08D3;
const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// Murmur3's 64-bit finaliser: full avalanche of the state.
#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

#[inline]
fn absorb(state: u64, word: u64) -> u64 {
    (state ^ word.wrapping_mul(K2))
        .rotate_left(31)
        .wrapping_mul(K1)
}

#[inline]
fn hash_with(mut state: u64, bytes: &[u8]) -> u64 {
    state = absorb(state, bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(w);
        state = absorb(state, u64::from_le_bytes(buf));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        state = absorb(state, u64::from_le_bytes(buf));
    }
    state
}

/// The stable hash of a byte string (part of the on-disk format).
#[inline]
pub fn hash64(bytes: &[u8]) -> u64 {
    fmix(hash_with(SEED, bytes))
}

/// `Hasher` over the same function, for in-memory hash maps.
#[derive(Clone, Copy, Debug)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fmix(self.0)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_with(self.0, bytes);
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = absorb(self.0, i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0 = absorb(self.0, i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = absorb(self.0, i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.0 = absorb(self.0, i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = absorb(self.0, i as u64);
    }
}

/// `BuildHasher` for [`FastHasher`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FastBuild;

impl BuildHasher for FastBuild {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(SEED)
    }
}

/// A `HashMap` using [`FastBuild`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values_do_not_change() {
        // These values are part of the segment format (bloom filters and id indexes).
        assert_eq!(hash64(b""), 0xeb63_515a_0778_78a0, "{:x}", hash64(b""));
        assert_eq!(
            hash64(b"alice"),
            0x61e9_92b9_e85b_af07,
            "{:x}",
            hash64(b"alice")
        );
        assert_eq!(hash64(b"alice"), hash64(b"alice"));
        assert_ne!(hash64(b"alice"), hash64(b"alicf"));
        assert_ne!(hash64(b"a"), hash64(b"a\0"));
    }
}
