//! Group-by and time series: exact sums per value of a dim (or a pair of dims), per UTC-aligned
//! time bucket, or per bucket and value, under any filter.
//!
//! Each segment is planned as an aggregate plans it: the time range becomes a row range, values
//! become codes, and the row source is a posting list, the status bitmaps or a chunked scan. A
//! group-by then adds each matching row to its group's sums, keyed by the segment's dim codes
//! (a dense array for one dim), and names the groups through the segment's intern tables once
//! per segment. A time series cuts a scan's time-sorted rows into buckets and aggregates each
//! bucket's row range with the aggregate's own kernels, so whole chunks come from their
//! pre-aggregates. Segments run in parallel on the query pool; memtables row by row.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::exec::{
    add_mem_row, add_seg_row, aggregate_plan, for_each_mem_row, for_each_row, segment_excluded,
};
use super::plan::{plan_mem, plan_segment, MemPlan, Rows, SegPlan};
use super::snapshot::Snapshot;
use super::FilterRef;
use crate::error::Result;
use crate::hash::FastMap;
use crate::memtable::MemData;
use crate::segment::reader::SegmentData;
use crate::segment::Totals;
use crate::view::SegRef;

/// Sums keyed by (bucket start, the group's dim values); the bucket is 0 without a time series.
pub(crate) type GroupMap = FastMap<(i64, Vec<String>), Totals>;

/// The named groups of one segment.
type SegmentGroups = Vec<((i64, Vec<String>), Totals)>;

/// The start of the UTC-aligned bucket of width `every` that holds `ts` (clamped to the `i64`
/// range for the few buckets that straddle its ends).
#[inline]
pub(crate) fn bucket_of(ts: i64, every: i64) -> i64 {
    bucket_start(ts, every).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The exact start of the bucket of `ts`.
#[inline]
fn bucket_start(ts: i64, every: i64) -> i128 {
    ts.div_euclid(every) as i128 * every as i128
}

/// Sums of the events matching `f` per group of `dims` (one or two dims), and per bucket of
/// `every` nanoseconds when given.
pub(crate) fn group_totals(
    snap: &Snapshot<'_>,
    f: &FilterRef<'_>,
    dims: &[usize],
    every: Option<i64>,
) -> Result<GroupMap> {
    let nc = snap.schema.counters.len();
    if let ([d], None) = (dims, every) {
        return group_one_dim(snap, f, *d);
    }
    let parts = per_segment(snap, f, |_, p| group_segment(p, dims, every, nc))?;
    let mut groups = GroupMap::default();
    for (key, t) in parts.into_iter().flatten() {
        merge_into(&mut groups, key, &t, nc);
    }
    for m in &snap.view.memtables {
        let data = m.read();
        if let Some(plan) = plan_mem(&data, f) {
            group_mem(&data, &plan, f, dims, every, &mut groups);
        }
    }
    Ok(groups)
}

/// Sums of the events matching `f` per bucket of `every` nanoseconds, buckets in time order
/// (only those with events).
pub(crate) fn series_totals(
    snap: &Snapshot<'_>,
    f: &FilterRef<'_>,
    every: i64,
) -> Result<BTreeMap<i64, Totals>> {
    let nc = snap.schema.counters.len();
    let parts = per_segment(snap, f, |_, p| Ok(series_segment(p, every, nc)))?;
    let mut buckets = BTreeMap::new();
    for (start, t) in parts.into_iter().flatten() {
        buckets
            .entry(start)
            .or_insert_with(|| Totals::new(nc))
            .merge(&t);
    }
    for m in &snap.view.memtables {
        let data = m.read();
        if let Some(plan) = plan_mem(&data, f) {
            for_each_mem_row(&data, &plan, f, |r| {
                let b = buckets
                    .entry(bucket_of(data.ts[r], every))
                    .or_insert_with(|| Totals::new(nc));
                add_mem_row(&data, r, b);
            });
        }
    }
    Ok(buckets)
}

/// Runs `run` over the plan of every segment that may match `f` (with the segment's data, which
/// the plan borrows), in parallel when there are several.
fn per_segment<T: Send>(
    snap: &Snapshot<'_>,
    f: &FilterRef<'_>,
    run: impl Fn(&Arc<SegmentData>, &SegPlan<'_>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let work: Vec<&SegRef> = snap
        .view
        .segments
        .iter()
        .filter(|s| !segment_excluded(s, f))
        .collect();
    let one = |s: &&SegRef| -> Result<Option<T>> {
        let data = snap.data(s)?;
        let plan =
            plan_segment(&data, s.deleted.as_deref(), f).map_err(|e| e.with_path(&s.seg.path))?;
        plan.map(|p| run(&data, &p).map_err(|e| e.with_path(&s.seg.path)))
            .transpose()
    };
    let parts: Vec<Option<T>> = if work.len() > 1 {
        snap.pool
            .install(|| work.par_iter().map(one).collect::<Result<_>>())??
    } else {
        work.iter().map(one).collect::<Result<_>>()?
    };
    Ok(parts.into_iter().flatten().collect())
}

/// Adds `t` to the group `key`.
fn merge_into(groups: &mut GroupMap, key: (i64, Vec<String>), t: &Totals, nc: usize) {
    groups
        .entry(key)
        .or_insert_with(|| Totals::new(nc))
        .merge(t);
}

/// Sums per value of dim `d`, without buckets (the most common group-by). Each segment sums
/// per code into a dense table ([`dense_groups`]); the tables are merged by value, borrowed
/// from the segments' intern tables, so a group's name and counters are allocated once rather
/// than once per segment.
fn group_one_dim(snap: &Snapshot<'_>, f: &FilterRef<'_>, d: usize) -> Result<GroupMap> {
    let nc = snap.schema.counters.len();
    let tables = per_segment(snap, f, |data, p| {
        let len = data.intern()?.get(d).map_or(0, |dict| dict.values.len());
        Ok((data.clone(), dense_groups(p, d, len, nc)))
    })?;
    let mut merged: FastMap<&str, Totals> = FastMap::default();
    for (data, table) in &tables {
        let Some(dict) = data.intern()?.get(d) else {
            continue;
        };
        for (code, sums, counters) in table.groups() {
            let name = dict.value(code).unwrap_or_default();
            let t = merged.entry(name).or_insert_with(|| Totals::new(nc));
            t.count += sums.count;
            t.metric += sums.metric;
            t.latency += sums.latency;
            t.latency_detail += sums.detail;
            t.min_ts = t.min_ts.min(sums.first);
            t.max_ts = t.max_ts.max(sums.last);
            for (a, b) in t.counters.iter_mut().zip(counters) {
                *a += b;
            }
        }
    }
    let mut groups = GroupMap::default();
    groups.reserve(merged.len());
    for (name, t) in merged {
        groups.insert((0, vec![name.to_string()]), t);
    }
    for m in &snap.view.memtables {
        let data = m.read();
        if let Some(plan) = plan_mem(&data, f) {
            group_mem(&data, &plan, f, &[d], None, &mut groups);
        }
    }
    Ok(groups)
}

/// The groups of one planned segment, named.
fn group_segment(
    p: &SegPlan<'_>,
    dims: &[usize],
    every: Option<i64>,
    nc: usize,
) -> Result<SegmentGroups> {
    let intern = p.data.intern()?;
    let name = |d: usize, code: u16| -> String {
        intern
            .get(d)
            .and_then(|dict| dict.value(code))
            .unwrap_or_default()
            .to_string()
    };
    let cols: Vec<&[u16]> = dims.iter().map(|&d| p.data.dim(d)).collect();
    let ts = &p.data.ts;
    let mut acc: FastMap<(i64, u16, u16), Totals> = FastMap::default();
    for_each_row(p, |r| {
        let bucket = every.map_or(0, |e| bucket_of(ts[r], e));
        let key = (bucket, cols[0][r], cols.get(1).map_or(0, |c| c[r]));
        add_seg_row(p, r, acc.entry(key).or_insert_with(|| Totals::new(nc)));
    });
    Ok(acc
        .into_iter()
        .map(|((bucket, a, b), t)| {
            let mut values = vec![name(dims[0], a)];
            if let Some(&d) = dims.get(1) {
                values.push(name(d, b));
            }
            ((bucket, values), t)
        })
        .collect())
}

/// The sums of one code in [`dense_groups`], laid out to share one cache line.
#[derive(Clone, Copy)]
struct CodeSums {
    metric: i128,
    count: u64,
    latency: u64,
    detail: u64,
    first: i64,
    last: i64,
}

/// One segment's sums per code of a dim: a [`CodeSums`] per code and the counters of code `k`
/// at `counters[k * nc..(k + 1) * nc]`.
struct CodeTable {
    sums: Vec<CodeSums>,
    counters: Vec<u64>,
    nc: usize,
}

impl CodeTable {
    /// The codes with rows, with their sums and counters.
    fn groups(&self) -> impl Iterator<Item = (u16, &CodeSums, &[u64])> + '_ {
        self.sums
            .iter()
            .enumerate()
            .filter(|(_, s)| s.count > 0)
            .map(|(k, s)| {
                let counters = &self.counters[k * self.nc..(k + 1) * self.nc];
                (k as u16, s, counters)
            })
    }
}

/// Sums per code of dim `d` (`len` codes) over the plan's rows.
///
/// The sums of a code sit in one 64-byte [`CodeSums`] (the counters in an array of their own),
/// and the columns' slices are taken once: a row touches two cache lines of sums, however many
/// codes the dim has. A `Totals` per code, with its counters on the heap, cost about twice as
/// much; one array per sum, seven lines per row.
fn dense_groups(p: &SegPlan<'_>, d: usize, len: usize, nc: usize) -> CodeTable {
    let data = p.data;
    let (codes, ts, metric) = (data.dim(d), &data.ts[..], &data.metric[..]);
    let (latency, detail) = (data.latency(), data.latency_detail());
    let counters: Vec<&[u32]> = (0..nc).map(|c| data.counter(c)).collect();
    let empty = CodeSums {
        metric: 0,
        count: 0,
        latency: 0,
        detail: 0,
        first: i64::MAX,
        last: i64::MIN,
    };
    let mut sums = vec![empty; len];
    let mut counter_sum = vec![0u64; len * nc];
    // One row: its code, metric, latencies and time; its counters are read at `r`.
    let mut add = |r: usize, k: u16, m: i64, l: u32, dt: u32, t: i64| {
        let k = k as usize;
        let Some(s) = sums.get_mut(k) else {
            return;
        };
        s.count += 1;
        s.metric += m as i128;
        s.latency += l as u64;
        s.detail += dt as u64;
        // Rows are in time order: a code's first row has its oldest time, its last the newest.
        if s.count == 1 {
            s.first = t;
        }
        s.last = t;
        for (c, col) in counters.iter().enumerate() {
            counter_sum[k * nc + c] += col[r] as u64;
        }
    };
    if every_row_matches(p) {
        // No dim, status or deletion to test: one pass over the row range's slices, zipped so
        // that no row index is checked, without the per-chunk masks of `for_each_row`.
        let r = p.lo..p.hi;
        let rows = codes[r.clone()]
            .iter()
            .zip(&metric[r.clone()])
            .zip(&latency[r.clone()])
            .zip(&detail[r.clone()])
            .zip(&ts[r.clone()]);
        for (i, ((((&k, &m), &l), &dt), &t)) in rows.enumerate() {
            add(r.start + i, k, m, l, dt, t);
        }
    } else {
        for_each_row(p, |r| {
            add(r, codes[r], metric[r], latency[r], detail[r], ts[r])
        });
    }
    CodeTable {
        sums,
        counters: counter_sum,
        nc,
    }
}

/// True when every row of the plan's range matches: a scan with no dim or status predicate
/// and no deleted row.
fn every_row_matches(p: &SegPlan<'_>) -> bool {
    matches!(p.rows, Rows::Scan)
        && p.dims.is_empty()
        && p.status.is_none()
        && p.deleted.is_none_or(|d| d.count == 0)
}

/// The buckets of one planned segment.
fn series_segment(p: &SegPlan<'_>, every: i64, nc: usize) -> Vec<(i64, Totals)> {
    let ts = &p.data.ts;
    if !matches!(p.rows, Rows::Scan) {
        let mut acc: BTreeMap<i64, Totals> = BTreeMap::new();
        for_each_row(p, |r| {
            let b = acc
                .entry(bucket_of(ts[r], every))
                .or_insert_with(|| Totals::new(nc));
            add_seg_row(p, r, b);
        });
        return acc.into_iter().collect();
    }
    // Rows are sorted by time: each bucket is a row range, aggregated like any range.
    let mut out = Vec::new();
    let mut a = p.lo;
    while a < p.hi {
        let end = bucket_start(ts[a], every) + every as i128;
        let z = a + ts[a..p.hi].partition_point(|&t| (t as i128) < end);
        let range = SegPlan {
            data: p.data,
            deleted: p.deleted,
            lo: a,
            hi: z,
            dims: p.dims.clone(),
            status: p.status,
            rows: Rows::Scan,
        };
        let mut t = Totals::new(nc);
        aggregate_plan(&range, &mut t);
        if t.count > 0 {
            out.push((bucket_of(ts[a], every), t));
        }
        a = z;
    }
    out
}

/// Adds a memtable's matching rows to `groups`.
fn group_mem(
    m: &MemData,
    plan: &MemPlan,
    f: &FilterRef<'_>,
    dims: &[usize],
    every: Option<i64>,
    groups: &mut GroupMap,
) {
    let nc = m.counters.len();
    let mut acc: FastMap<(i64, u32, u32), Totals> = FastMap::default();
    for_each_mem_row(m, plan, f, |r| {
        let bucket = every.map_or(0, |e| bucket_of(m.ts[r], e));
        let key = (
            bucket,
            m.dims[dims[0]][r],
            dims.get(1).map_or(0, |&d| m.dims[d][r]),
        );
        add_mem_row(m, r, acc.entry(key).or_insert_with(|| Totals::new(nc)));
    });
    for ((bucket, a, b), t) in acc {
        let mut values = vec![m.dicts[dims[0]].value(a).to_string()];
        if let Some(&d) = dims.get(1) {
            values.push(m.dicts[d].value(b).to_string());
        }
        merge_into(groups, (bucket, values), &t, nc);
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_of;

    #[test]
    fn buckets_are_utc_aligned_and_floor_negative_times() {
        let min = 60_000_000_000;
        assert_eq!(bucket_of(0, min), 0);
        assert_eq!(bucket_of(min - 1, min), 0);
        assert_eq!(bucket_of(min, min), min);
        assert_eq!(bucket_of(-1, min), -min);
        let day = 86_400_000_000_000;
        // 2025-11-25 13:00 UTC falls in the bucket of that day's midnight.
        let midnight = 1_764_028_800_000_000_000;
        assert_eq!(bucket_of(midnight + 13 * 3_600_000_000_000, day), midnight);
        // The ends of the range clamp instead of overflowing.
        assert_eq!(bucket_of(i64::MIN, min), i64::MIN);
        assert_eq!(bucket_of(i64::MAX, min), i64::MAX / min * min);
    }
}
