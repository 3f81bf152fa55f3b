//! AVX2 kernels. The only way to them is [`detected`], which hands out `KERNELS` after
//! `is_x86_feature_detected!("avx2")` succeeded: that check is what makes the safe wrappers
//! below sound.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::Kernels;

/// The AVX2 kernels, when this CPU has AVX2.
pub(super) fn detected() -> Option<&'static Kernels> {
    is_x86_feature_detected!("avx2").then_some(&KERNELS)
}

const KERNELS: Kernels = Kernels {
    sum_i64,
    sum_u32,
    masked_sum_i64,
    masked_sum_u32,
    and_eq_u16,
    and_range_u16,
    name: "avx2",
};

fn sum_i64(v: &[i64]) -> i128 {
    // SAFETY: only reachable through KERNELS, which `detected` hands out after AVX2 was
    // detected.
    unsafe { sum_i64_avx2(v) }
}
fn sum_u32(v: &[u32]) -> u64 {
    // SAFETY: as above.
    unsafe { sum_u32_avx2(v) }
}
fn masked_sum_i64(v: &[i64], mask: &[u64]) -> i128 {
    // SAFETY: as above.
    unsafe { masked_sum_i64_avx2(v, mask) }
}
fn masked_sum_u32(v: &[u32], mask: &[u64]) -> u64 {
    // SAFETY: as above.
    unsafe { masked_sum_u32_avx2(v, mask) }
}
fn and_eq_u16(col: &[u16], v: u16, mask: &mut [u64]) {
    // SAFETY: as above.
    unsafe { and_cmp_u16_avx2::<false>(col, v, 0, mask) }
}
fn and_range_u16(col: &[u16], lo: u16, hi: u16, mask: &mut [u64]) {
    // SAFETY: as above.
    unsafe { and_cmp_u16_avx2::<true>(col, lo, hi, mask) }
}

/// Accumulates i64 lanes exactly: unsigned low halves, unsigned high halves, and a count of
/// negative values (each was read as unsigned, i.e. 2^64 too large).
struct I64Acc {
    lo: __m256i,
    hi: __m256i,
    neg: __m256i,
}

impl I64Acc {
    #[target_feature(enable = "avx2")]
    fn new() -> Self {
        I64Acc {
            lo: _mm256_setzero_si256(),
            hi: _mm256_setzero_si256(),
            neg: _mm256_setzero_si256(),
        }
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn add(&mut self, x: __m256i) {
        let low = _mm256_set1_epi64x(0xFFFF_FFFF);
        self.lo = _mm256_add_epi64(self.lo, _mm256_and_si256(x, low));
        self.hi = _mm256_add_epi64(self.hi, _mm256_srli_epi64::<32>(x));
        // cmpgt yields -1 in lanes holding a negative value.
        self.neg = _mm256_sub_epi64(self.neg, _mm256_cmpgt_epi64(_mm256_setzero_si256(), x));
    }

    #[target_feature(enable = "avx2")]
    fn total(&self) -> i128 {
        let (mut lo, mut hi, mut neg) = ([0u64; 4], [0u64; 4], [0u64; 4]);
        // SAFETY: each array is 32 bytes; storeu has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(lo.as_mut_ptr().cast(), self.lo);
            _mm256_storeu_si256(hi.as_mut_ptr().cast(), self.hi);
            _mm256_storeu_si256(neg.as_mut_ptr().cast(), self.neg);
        }
        let mut t: i128 = 0;
        for i in 0..4 {
            t += ((hi[i] as i128) << 32) + lo[i] as i128 - ((neg[i] as i128) << 64);
        }
        t
    }
}

/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn sum_i64_avx2(v: &[i64]) -> i128 {
    let mut acc = I64Acc::new();
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        // SAFETY: `c` holds exactly 4 i64 = 32 bytes; loadu has no alignment requirement.
        acc.add(unsafe { _mm256_loadu_si256(c.as_ptr().cast()) });
    }
    acc.total() + rest.iter().map(|&x| x as i128).sum::<i128>()
}

/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn sum_u32_avx2(v: &[u32]) -> u64 {
    let mut a0 = _mm256_setzero_si256();
    let mut a1 = _mm256_setzero_si256();
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        // SAFETY: `c` holds exactly 8 u32 = 32 bytes.
        let x = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
        a0 = _mm256_add_epi64(a0, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(x)));
        a1 = _mm256_add_epi64(a1, _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(x)));
    }
    let mut out = [0u64; 4];
    // SAFETY: `out` is 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_add_epi64(a0, a1)) };
    out.iter().sum::<u64>() + rest.iter().map(|&x| x as u64).sum::<u64>()
}

/// Lane mask (all ones / all zeros per 64-bit lane) from the low 4 bits of `bits`.
#[target_feature(enable = "avx2")]
#[inline]
fn lanes64(bits: u64) -> __m256i {
    let sel = _mm256_set_epi64x(8, 4, 2, 1);
    let b = _mm256_set1_epi64x(bits as i64);
    _mm256_cmpeq_epi64(_mm256_and_si256(b, sel), sel)
}

/// Lane mask per 32-bit lane from the low 8 bits of `bits`.
#[target_feature(enable = "avx2")]
#[inline]
fn lanes32(bits: u64) -> __m256i {
    let sel = _mm256_set_epi32(128, 64, 32, 16, 8, 4, 2, 1);
    let b = _mm256_set1_epi32(bits as i32);
    _mm256_cmpeq_epi32(_mm256_and_si256(b, sel), sel)
}

/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn masked_sum_i64_avx2(v: &[i64], mask: &[u64]) -> i128 {
    let mut acc = I64Acc::new();
    let mut tail = 0i128;
    for (w, &word) in mask.iter().enumerate() {
        let base = w * 64;
        if base >= v.len() || word == 0 {
            continue;
        }
        let rows = &v[base..(base + 64).min(v.len())];
        let groups = rows.chunks_exact(4);
        let rest = groups.remainder();
        for (g, c) in groups.enumerate() {
            let bits = (word >> (4 * g)) & 0xF;
            if bits == 0 {
                continue;
            }
            // SAFETY: `c` holds exactly 4 i64.
            let x = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
            acc.add(_mm256_and_si256(x, lanes64(bits)));
        }
        let done = rows.len() - rest.len();
        for (j, &x) in rest.iter().enumerate() {
            if word >> (done + j) & 1 != 0 {
                tail += x as i128;
            }
        }
    }
    acc.total() + tail
}

/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn masked_sum_u32_avx2(v: &[u32], mask: &[u64]) -> u64 {
    let mut a0 = _mm256_setzero_si256();
    let mut a1 = _mm256_setzero_si256();
    let mut tail = 0u64;
    for (w, &word) in mask.iter().enumerate() {
        let base = w * 64;
        if base >= v.len() || word == 0 {
            continue;
        }
        let rows = &v[base..(base + 64).min(v.len())];
        let groups = rows.chunks_exact(8);
        let rest = groups.remainder();
        for (g, c) in groups.enumerate() {
            let bits = (word >> (8 * g)) & 0xFF;
            if bits == 0 {
                continue;
            }
            // SAFETY: `c` holds exactly 8 u32.
            let x = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
            let x = _mm256_and_si256(x, lanes32(bits));
            a0 = _mm256_add_epi64(a0, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(x)));
            a1 = _mm256_add_epi64(a1, _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(x)));
        }
        let done = rows.len() - rest.len();
        for (j, &x) in rest.iter().enumerate() {
            if word >> (done + j) & 1 != 0 {
                tail += x as u64;
            }
        }
    }
    let mut out = [0u64; 4];
    // SAFETY: `out` is 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_add_epi64(a0, a1)) };
    out.iter().sum::<u64>() + tail
}

/// Compares 16 u16 lanes: equality with `a` (RANGE = false) or `a <= x <= b` (RANGE = true).
#[target_feature(enable = "avx2")]
#[inline]
fn cmp16<const RANGE: bool>(x: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if RANGE {
        let ge = _mm256_cmpeq_epi16(_mm256_max_epu16(x, a), x);
        let le = _mm256_cmpeq_epi16(_mm256_min_epu16(x, b), x);
        _mm256_and_si256(ge, le)
    } else {
        _mm256_cmpeq_epi16(x, a)
    }
}

/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn and_cmp_u16_avx2<const RANGE: bool>(col: &[u16], a: u16, b: u16, mask: &mut [u64]) {
    let va = _mm256_set1_epi16(a as i16);
    let vb = _mm256_set1_epi16(b as i16);
    for (w, word) in mask.iter_mut().enumerate() {
        let base = w * 64;
        let rows = col.get(base..(base + 64).min(col.len())).unwrap_or(&[]);
        let mut m = 0u64;
        let quads = rows.chunks_exact(32);
        let rest = quads.remainder();
        for (q, c) in quads.enumerate() {
            // SAFETY: `c` holds exactly 32 u16 = 64 bytes, read as two 32-byte loads.
            let (x0, x1) = unsafe {
                (
                    _mm256_loadu_si256(c.as_ptr().cast()),
                    _mm256_loadu_si256(c.as_ptr().add(16).cast()),
                )
            };
            let packed = _mm256_packs_epi16(cmp16::<RANGE>(x0, va, vb), cmp16::<RANGE>(x1, va, vb));
            // packs interleaves 128-bit halves: [x0 lo, x1 lo, x0 hi, x1 hi] -> restore order.
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            m |= (_mm256_movemask_epi8(ordered) as u32 as u64) << (32 * q);
        }
        let done = rows.len() - rest.len();
        for (j, &x) in rest.iter().enumerate() {
            let hit = if RANGE { x >= a && x <= b } else { x == a };
            m |= (hit as u64) << (done + j);
        }
        *word &= m;
    }
}
