//! Portable kernels. Independent accumulators over `chunks_exact` let LLVM vectorise them on
//! any target.

const LANES: usize = 8;

/// Sum of i64 values, exact (i128).
pub(crate) fn sum_i64(v: &[i64]) -> i128 {
    // Split each value into a signed high half and an unsigned low half; both sums fit in i64 /
    // u64 for any slice shorter than 2^31 values, and the split vectorises.
    let mut hi = [0i64; LANES];
    let mut lo = [0u64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            hi[i] += c[i] >> 32;
            lo[i] += c[i] as u64 & 0xFFFF_FFFF;
        }
    }
    let mut total: i128 = 0;
    for i in 0..LANES {
        total += ((hi[i] as i128) << 32) + lo[i] as i128;
    }
    total + rest.iter().map(|&x| x as i128).sum::<i128>()
}

/// Sum of u32 values.
pub(crate) fn sum_u32(v: &[u32]) -> u64 {
    let mut acc = [0u64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i] as u64;
        }
    }
    acc.iter().sum::<u64>() + rest.iter().map(|&x| x as u64).sum::<u64>()
}

#[inline]
fn bit(mask: &[u64], i: usize) -> bool {
    mask[i / 64] >> (i % 64) & 1 != 0
}

/// Sum of the i64 values whose mask bit is set.
pub(crate) fn masked_sum_i64(v: &[i64], mask: &[u64]) -> i128 {
    let mut total = 0i128;
    for (w, word) in mask.iter().enumerate() {
        let base = w * 64;
        if base >= v.len() {
            break;
        }
        let end = (base + 64).min(v.len());
        if *word == u64::MAX && end - base == 64 {
            total += sum_i64(&v[base..end]);
            continue;
        }
        let mut m = *word;
        while m != 0 {
            let i = base + m.trailing_zeros() as usize;
            if i >= end {
                break;
            }
            total += v[i] as i128;
            m &= m - 1;
        }
    }
    total
}

/// Sum of the u32 values whose mask bit is set.
pub(crate) fn masked_sum_u32(v: &[u32], mask: &[u64]) -> u64 {
    let n = v.len().min(mask.len() * 64);
    // Branch-free select vectorises better than skipping.
    v[..n]
        .iter()
        .enumerate()
        .map(|(i, &x)| x as u64 * bit(mask, i) as u64)
        .sum()
}

/// ANDs into `mask` the rows where `col[i] == v`.
pub(crate) fn and_eq_u16(col: &[u16], v: u16, mask: &mut [u64]) {
    for (w, word) in mask.iter_mut().enumerate() {
        let base = w * 64;
        let end = (base + 64).min(col.len());
        let mut m = 0u64;
        for (j, &c) in col.get(base..end).unwrap_or(&[]).iter().enumerate() {
            m |= ((c == v) as u64) << j;
        }
        *word &= m;
    }
}

/// ANDs into `mask` the rows where `lo <= col[i] <= hi`.
pub(crate) fn and_range_u16(col: &[u16], lo: u16, hi: u16, mask: &mut [u64]) {
    for (w, word) in mask.iter_mut().enumerate() {
        let base = w * 64;
        let end = (base + 64).min(col.len());
        let mut m = 0u64;
        for (j, &c) in col.get(base..end).unwrap_or(&[]).iter().enumerate() {
            m |= ((c >= lo && c <= hi) as u64) << j;
        }
        *word &= m;
    }
}
