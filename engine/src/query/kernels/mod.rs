//! Aggregation kernels over contiguous columns: sums, masked (filtered) sums, and predicate
//! masks. Each has a portable implementation (`scalar.rs`, written so the compiler vectorises
//! it) and, on x86-64, an AVX2 one (`avx2.rs`) chosen once at run time. Property tests check
//! every AVX2 kernel against its scalar twin.
//!
//! Masks are bitsets over rows: bit `i % 64` of word `i / 64` is row `i`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
pub(crate) mod scalar;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

/// The kernel set in use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernels {
    pub sum_i64: fn(&[i64]) -> i128,
    pub sum_u32: fn(&[u32]) -> u64,
    pub masked_sum_i64: fn(&[i64], &[u64]) -> i128,
    pub masked_sum_u32: fn(&[u32], &[u64]) -> u64,
    /// ANDs into `mask` the rows where `col[i] == v`.
    pub and_eq_u16: fn(&[u16], u16, &mut [u64]),
    /// ANDs into `mask` the rows where `lo <= col[i] <= hi`.
    pub and_range_u16: fn(&[u16], u16, u16, &mut [u64]),
    /// Name for benches and logs.
    pub name: &'static str,
}

const SCALAR: Kernels = Kernels {
    sum_i64: scalar::sum_i64,
    sum_u32: scalar::sum_u32,
    masked_sum_i64: scalar::masked_sum_i64,
    masked_sum_u32: scalar::masked_sum_u32,
    and_eq_u16: scalar::and_eq_u16,
    and_range_u16: scalar::and_range_u16,
    name: "scalar",
};

/// The best kernels for this CPU, detected once.
pub(crate) fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("KEPLORDB_NO_SIMD").is_none() {
            if let Some(k) = avx2::detected() {
                return *k;
            }
        }
        SCALAR
    })
}

/// The portable kernels (for benches that compare).
#[allow(dead_code)]
pub(crate) fn scalar_kernels() -> &'static Kernels {
    &SCALAR
}

/// Name of the kernel set in use ("avx2" or "scalar").
pub(crate) fn kernel_name() -> &'static str {
    kernels().name
}

/// Sets every bit of `mask` for rows `0..n` (and clears the bits beyond `n`).
pub(crate) fn fill_mask(mask: &mut [u64], n: usize) {
    for (i, w) in mask.iter_mut().enumerate() {
        let start = i * 64;
        *w = if start + 64 <= n {
            u64::MAX
        } else if start >= n {
            0
        } else {
            (1u64 << (n - start)) - 1
        };
    }
}
