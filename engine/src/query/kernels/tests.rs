//! Every AVX2 kernel agrees with its scalar twin on random inputs. The tests take the AVX2
//! kernels whenever the CPU has them, even with `KEPLORDB_NO_SIMD` set (which only changes what
//! queries use).

use proptest::prelude::*;

use super::{fill_mask, scalar, Kernels};

/// The kernels under test: AVX2 when the CPU has it, else the selected (scalar) set.
fn simd() -> &'static Kernels {
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = super::avx2::detected() {
        return k;
    }
    super::kernels()
}

#[test]
#[cfg(target_arch = "x86_64")]
fn avx2_is_tested_whenever_the_cpu_has_it() {
    if is_x86_feature_detected!("avx2") {
        assert_eq!(simd().name, "avx2");
    }
}

fn mask_strategy(n: usize) -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), n.div_ceil(64).max(1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sums_agree(v in proptest::collection::vec(any::<i64>(), 0..700), u in proptest::collection::vec(any::<u32>(), 0..700)) {
        let k = simd();
        prop_assert_eq!((k.sum_i64)(&v), scalar::sum_i64(&v));
        prop_assert_eq!((k.sum_i64)(&v), v.iter().map(|&x| x as i128).sum::<i128>());
        prop_assert_eq!((k.sum_u32)(&u), scalar::sum_u32(&u));
        prop_assert_eq!((k.sum_u32)(&u), u.iter().map(|&x| x as u64).sum::<u64>());
    }

    #[test]
    fn masked_sums_agree((v, mask) in (0usize..700).prop_flat_map(|n| (proptest::collection::vec(any::<i64>(), n), mask_strategy(n)))) {
        let k = simd();
        let expect: i128 = v.iter().enumerate().filter(|(i, _)| mask[i / 64] >> (i % 64) & 1 != 0).map(|(_, &x)| x as i128).sum();
        prop_assert_eq!((k.masked_sum_i64)(&v, &mask), expect);
        prop_assert_eq!(scalar::masked_sum_i64(&v, &mask), expect);
        let u: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        let expect_u: u64 = u.iter().enumerate().filter(|(i, _)| mask[i / 64] >> (i % 64) & 1 != 0).map(|(_, &x)| x as u64).sum();
        prop_assert_eq!((k.masked_sum_u32)(&u, &mask), expect_u);
        prop_assert_eq!(scalar::masked_sum_u32(&u, &mask), expect_u);
    }

    #[test]
    fn predicates_agree(col in proptest::collection::vec(0u16..8, 0..700), v in 0u16..8, lo in 0u16..9, hi in 0u16..9) {
        let k = simd();
        let words = col.len().div_ceil(64).max(1);
        let mut a = vec![0u64; words];
        let mut b = vec![0u64; words];
        fill_mask(&mut a, col.len());
        fill_mask(&mut b, col.len());
        (k.and_eq_u16)(&col, v, &mut a);
        scalar::and_eq_u16(&col, v, &mut b);
        prop_assert_eq!(&a, &b);
        for (i, &c) in col.iter().enumerate() {
            prop_assert_eq!(a[i / 64] >> (i % 64) & 1 != 0, c == v);
        }
        fill_mask(&mut a, col.len());
        fill_mask(&mut b, col.len());
        (k.and_range_u16)(&col, lo, hi, &mut a);
        scalar::and_range_u16(&col, lo, hi, &mut b);
        prop_assert_eq!(&a, &b);
        for (i, &c) in col.iter().enumerate() {
            prop_assert_eq!(a[i / 64] >> (i % 64) & 1 != 0, c >= lo && c <= hi);
        }
    }
}

#[test]
fn extremes() {
    let k = simd();
    let v = vec![i64::MIN; 1000];
    assert_eq!((k.sum_i64)(&v), i64::MIN as i128 * 1000);
    let v = vec![i64::MAX; 1001];
    assert_eq!((k.sum_i64)(&v), i64::MAX as i128 * 1001);
    let u = vec![u32::MAX; 999];
    assert_eq!((k.sum_u32)(&u), u32::MAX as u64 * 999);
    let col = vec![u16::MAX; 100];
    let mut m = vec![u64::MAX; 2];
    fill_mask(&mut m, 100);
    (k.and_range_u16)(&col, 0, u16::MAX, &mut m);
    assert_eq!(m, vec![u64::MAX, (1 << 36) - 1]);
    (k.and_range_u16)(&col, 0, u16::MAX - 1, &mut m);
    assert_eq!(m, vec![0, 0]);
}
