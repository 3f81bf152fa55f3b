//! Aggregation: segments fan out over the query pool; each adds whole chunks from their
//! pre-aggregates where the zone maps prove every row matches, and runs the SIMD kernels over
//! the rest.

use rayon::prelude::*;

use super::kernels::{fill_mask, kernels, Kernels};
use super::plan::{plan_mem, plan_segment, MemPlan, Rows, SegPlan};
use super::snapshot::Snapshot;
use super::FilterRef;
use crate::error::Result;
use crate::memtable::{MemData, CHUNK_ROWS};
use crate::segment::Totals;
use crate::view::{DeletedRows, SegRef};

/// Below this many rows to scan, segments are aggregated on the calling thread: rayon's
/// hand-off costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 1 << 17;

/// Adds one segment row to `t`.
#[inline]
pub(crate) fn add_seg_row(p: &SegPlan<'_>, r: usize, t: &mut Totals) {
    let d = p.data;
    let ts = d.ts[r];
    t.count += 1;
    t.metric += d.metric[r] as i128;
    t.latency += d.latency()[r] as u64;
    t.latency_detail += d.latency_detail()[r] as u64;
    for (c, s) in t.counters.iter_mut().enumerate() {
        *s += d.counter(c)[r] as u64;
    }
    t.min_ts = t.min_ts.min(ts);
    t.max_ts = t.max_ts.max(ts);
}

/// Copies bits `start..start + n` of `words` into `out` (bit 0 of `out` = bit `start`).
fn extract_bits(words: &[u64], start: usize, n: usize, out: &mut [u64]) {
    for (i, o) in out.iter_mut().enumerate() {
        let bit = start + i * 64;
        if i * 64 >= n {
            *o = 0;
            continue;
        }
        let (w, s) = (bit / 64, bit % 64);
        let lo = words.get(w).copied().unwrap_or(0) >> s;
        let hi = if s == 0 {
            0
        } else {
            words.get(w + 1).copied().unwrap_or(0) << (64 - s)
        };
        *o = lo | hi;
    }
    let tail = n % 64;
    if tail != 0 {
        if let Some(last) = out.get_mut(n / 64) {
            *last &= (1u64 << tail) - 1;
        }
    }
}

fn has_deleted_in(deleted: Option<&DeletedRows>, lo: usize, hi: usize) -> bool {
    let Some(d) = deleted else { return false };
    let mut buf = [0u64; CHUNK_ROWS / 64];
    let mut at = lo;
    while at < hi {
        let n = (hi - at).min(CHUNK_ROWS);
        extract_bits(&d.words, at, n, &mut buf);
        if buf.iter().any(|&w| w != 0) {
            return true;
        }
        at += n;
    }
    false
}

/// Aggregates rows `lo..hi` of one chunk with a mask.
fn masked_chunk(p: &SegPlan<'_>, k: &Kernels, lo: usize, hi: usize, t: &mut Totals) {
    let d = p.data;
    let n = hi - lo;
    let mut mask = [0u64; CHUNK_ROWS / 64];
    let words = n.div_ceil(64);
    let mask = &mut mask[..words];
    fill_mask(mask, n);
    for &(dim, code) in &p.dims {
        (k.and_eq_u16)(&d.dim(dim)[lo..hi], code, mask);
    }
    if let Some((slo, shi)) = p.status {
        (k.and_range_u16)(&d.status()[lo..hi], slo, shi, mask);
    }
    if let Some(del) = p.deleted {
        let mut dm = [0u64; CHUNK_ROWS / 64];
        extract_bits(&del.words, lo, n, &mut dm[..words]);
        for (m, x) in mask.iter_mut().zip(&dm) {
            *m &= !x;
        }
    }
    let count: u32 = mask.iter().map(|w| w.count_ones()).sum();
    if count == 0 {
        return;
    }
    t.count += count as u64;
    t.metric += (k.masked_sum_i64)(&d.metric[lo..hi], mask);
    t.latency += (k.masked_sum_u32)(&d.latency()[lo..hi], mask);
    t.latency_detail += (k.masked_sum_u32)(&d.latency_detail()[lo..hi], mask);
    for (c, s) in t.counters.iter_mut().enumerate() {
        *s += (k.masked_sum_u32)(&d.counter(c)[lo..hi], mask);
    }
    // Rows are sorted by ts: the first and last set bits give the extremes.
    let first = mask
        .iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize);
    let last = mask
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize);
    if let (Some(a), Some(b)) = (first, last) {
        t.min_ts = t.min_ts.min(d.ts[lo + a]);
        t.max_ts = t.max_ts.max(d.ts[lo + b]);
    }
}

/// Aggregates rows `lo..hi` where every row matches.
fn dense_range(p: &SegPlan<'_>, k: &Kernels, lo: usize, hi: usize, t: &mut Totals) {
    let d = p.data;
    t.count += (hi - lo) as u64;
    t.metric += (k.sum_i64)(&d.metric[lo..hi]);
    t.latency += (k.sum_u32)(&d.latency()[lo..hi]);
    t.latency_detail += (k.sum_u32)(&d.latency_detail()[lo..hi]);
    for (c, s) in t.counters.iter_mut().enumerate() {
        *s += (k.sum_u32)(&d.counter(c)[lo..hi]);
    }
    t.min_ts = t.min_ts.min(d.ts[lo]);
    t.max_ts = t.max_ts.max(d.ts[hi - 1]);
}

/// Aggregates one planned segment into `t`.
pub(crate) fn aggregate_plan(p: &SegPlan<'_>, t: &mut Totals) {
    let k = kernels();
    match &p.rows {
        // Few candidate rows: add them one by one.
        Rows::Posting(_) | Rows::Bitmap(_) => for_each_row(p, |r| add_seg_row(p, r, t)),
        Rows::Scan => {
            let simple = p.dims.is_empty() && p.status.is_none();
            let first = p.lo / CHUNK_ROWS;
            let last = (p.hi - 1) / CHUNK_ROWS;
            for c in first..=last {
                if p.chunk_excluded(c) {
                    continue;
                }
                let c_start = c * CHUNK_ROWS;
                let c_end = (c_start + CHUNK_ROWS).min(p.data.rows);
                let (lo, hi) = (p.lo.max(c_start), p.hi.min(c_end));
                let deleted = has_deleted_in(p.deleted, lo, hi);
                if !deleted && lo == c_start && hi == c_end && p.chunk_all_match(c) {
                    p.data.chunk_totals_into(c, t);
                } else if simple && !deleted {
                    dense_range(p, k, lo, hi, t);
                } else {
                    masked_chunk(p, k, lo, hi, t);
                }
            }
        }
    }
}

/// Aggregates a memtable into `t`.
pub(crate) fn aggregate_mem(m: &MemData, plan: &MemPlan, f: &FilterRef<'_>, t: &mut Totals) {
    for_each_mem_row(m, plan, f, |r| add_mem_row(m, r, t));
}

/// Calls `g` with every memtable row matching the plan.
pub(crate) fn for_each_mem_row(
    m: &MemData,
    plan: &MemPlan,
    f: &FilterRef<'_>,
    mut g: impl FnMut(usize),
) {
    for c in 0..m.chunk_min_ts.len() {
        if MemPlan::chunk_excluded(m, f, c) {
            continue;
        }
        let end = ((c + 1) * CHUNK_ROWS).min(m.len());
        for r in c * CHUNK_ROWS..end {
            if plan.row_ok(m, f, r) {
                g(r);
            }
        }
    }
}

/// Adds one memtable row to `t`.
#[inline]
pub(crate) fn add_mem_row(m: &MemData, r: usize, t: &mut Totals) {
    let ts = m.ts[r];
    t.count += 1;
    t.metric += m.metric[r] as i128;
    t.latency += m.latency[r] as u64;
    t.latency_detail += m.latency_detail[r] as u64;
    for (col, s) in m.counters.iter().zip(t.counters.iter_mut()) {
        *s += col[r] as u64;
    }
    t.min_ts = t.min_ts.min(ts);
    t.max_ts = t.max_ts.max(ts);
}

/// True when the segment cannot match, judged without mapping its columns.
pub(crate) fn segment_excluded(s: &SegRef, f: &FilterRef<'_>) -> bool {
    let seg = &s.seg;
    if f.from.is_some_and(|from| seg.max_ts < from) || f.to.is_some_and(|to| seg.min_ts >= to) {
        return true;
    }
    if f.cursor.is_some_and(|c| seg.min_ts > c.ts_ns) {
        return true;
    }
    if let (Some(b), Some(bloom)) = (seg.bloom_dim, &seg.bloom) {
        if let Some(Some(v)) = f.dims.get(b) {
            if !bloom.may_contain(v) {
                return true;
            }
        }
    }
    false
}

/// True when the filter is only a time range (or nothing) and the segment lies inside it.
fn whole_segment(s: &SegRef, f: &FilterRef<'_>) -> bool {
    s.deleted.is_none()
        && f.dims.iter().all(Option::is_none)
        && f.status_range().is_none()
        && f.cursor.is_none_or(|c| s.seg.max_ts < c.ts_ns)
        && f.from.is_none_or(|from| s.seg.min_ts >= from)
        && f.to.is_none_or(|to| s.seg.max_ts < to)
}

/// Exact aggregate of the events matching `f`: the one aggregate entry point (the typed and
/// runtime APIs and rollup-free callers all come here).
pub(crate) fn aggregate(snap: &Snapshot<'_>, f: &FilterRef<'_>) -> Result<Totals> {
    let nc = snap.schema.counters.len();
    let mut total = Totals::new(nc);
    let mut work: Vec<&SegRef> = Vec::new();
    let mut estimated = 0usize;
    for s in &snap.view.segments {
        if segment_excluded(s, f) {
            continue;
        }
        if whole_segment(s, f) {
            total.merge(&s.seg.totals);
            continue;
        }
        estimated += s.seg.rows;
        work.push(s);
    }
    let run = |s: &&SegRef| -> Result<Totals> {
        let mut t = Totals::new(nc);
        let data = snap.data(s)?;
        let plan =
            plan_segment(&data, s.deleted.as_deref(), f).map_err(|e| e.with_path(&s.seg.path))?;
        if let Some(p) = plan {
            aggregate_plan(&p, &mut t);
        }
        Ok(t)
    };
    let parts: Vec<Totals> = if work.len() > 1 && estimated >= PARALLEL_MIN_ROWS {
        snap.pool
            .install(|| work.par_iter().map(run).collect::<Result<_>>())??
    } else {
        work.iter().map(run).collect::<Result<_>>()?
    };
    for p in &parts {
        total.merge(p);
    }
    for m in &snap.view.memtables {
        let data = m.read();
        if let Some(plan) = plan_mem(&data, f) {
            aggregate_mem(&data, &plan, f, &mut total);
        }
    }
    Ok(total)
}

/// Calls `f` with every matching row of a planned segment, in ascending order.
pub(crate) fn for_each_row(p: &SegPlan<'_>, mut f: impl FnMut(usize)) {
    match &p.rows {
        Rows::Posting(rows) => {
            for &r in *rows {
                if p.row_ok(r as usize) {
                    f(r as usize);
                }
            }
        }
        Rows::Bitmap(bits) => {
            for (w, &word) in bits.iter().enumerate().skip(p.lo / 64) {
                let base = w * 64;
                if base >= p.hi {
                    break;
                }
                let mut m = word;
                while m != 0 {
                    let r = base + m.trailing_zeros() as usize;
                    m &= m - 1;
                    if r >= p.lo && r < p.hi && p.row_ok(r) {
                        f(r);
                    }
                }
            }
        }
        Rows::Scan => {
            let k = kernels();
            for c in p.lo / CHUNK_ROWS..=(p.hi - 1) / CHUNK_ROWS {
                if p.chunk_excluded(c) {
                    continue;
                }
                let lo = p.lo.max(c * CHUNK_ROWS);
                let hi = p.hi.min((c + 1) * CHUNK_ROWS);
                let n = hi - lo;
                let mut mask = [0u64; CHUNK_ROWS / 64];
                let mask = &mut mask[..n.div_ceil(64)];
                fill_mask(mask, n);
                for &(dim, code) in &p.dims {
                    (k.and_eq_u16)(&p.data.dim(dim)[lo..hi], code, mask);
                }
                if let Some((slo, shi)) = p.status {
                    (k.and_range_u16)(&p.data.status()[lo..hi], slo, shi, mask);
                }
                for (w, &word) in mask.iter().enumerate() {
                    let mut m = word;
                    while m != 0 {
                        let r = lo + w * 64 + m.trailing_zeros() as usize;
                        m &= m - 1;
                        if !p.deleted.is_some_and(|d| d.contains(r)) {
                            f(r);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::extract_bits;

    #[test]
    fn extract_bits_matches_naive() {
        let words: Vec<u64> = (0..8)
            .map(|i| 0x9E37_79B9_7F4A_7C15u64.rotate_left(i * 7))
            .collect();
        for start in [0, 1, 63, 64, 65, 100, 200] {
            for n in [1, 5, 64, 100, 128, 200, 256 - (start % 64)] {
                let mut out = [0u64; 4];
                let nn = n.min(256);
                extract_bits(&words, start, nn, &mut out[..nn.div_ceil(64)]);
                for i in 0..nn {
                    let want = words[(start + i) / 64] >> ((start + i) % 64) & 1;
                    assert_eq!(
                        out[i / 64] >> (i % 64) & 1,
                        want,
                        "start {start} n {nn} bit {i}"
                    );
                }
            }
        }
    }
}
