//! Newest-first pages, merged globally across segments and memtables, and point lookups.
//!
//! Sources are visited in order of their newest timestamp. Each yields its best `limit`
//! matches in descending `(ts_ns, id)` order; candidates are merged after every wave, and the
//! walk stops once the next source's newest event cannot beat the current `limit`-th result.
//! Waves are one source wide when a source is cheap to read (no filter, or a posting list),
//! and twice as wide as the query pool when filters force scans.

use std::sync::Arc;

use rayon::prelude::*;

use super::kernels::{fill_mask, kernels, Kernels};
use super::plan::{plan_mem, plan_segment, Rows, SegPlan};
use super::snapshot::Snapshot;
use super::FilterRef;
use crate::error::Result;
use crate::memtable::{MemData, MemTable, CHUNK_ROWS};
use crate::query::read::FromStored;
use crate::segment::reader::SegmentData;
use crate::view::SegRef;

use super::exec::segment_excluded;

/// Up to `limit` matching rows of a planned segment, newest first.
fn top_rows(p: &SegPlan<'_>, limit: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(limit.min(p.hi - p.lo));
    match &p.rows {
        Rows::Posting(rows) => top_posting(p, rows, limit, &mut out),
        Rows::Bitmap(bits) => top_bitmap(p, bits, limit, &mut out),
        Rows::Scan => top_scan(p, limit, &mut out),
    }
    out
}

/// `top_rows` from a posting list: its rows from the last, checked.
fn top_posting(p: &SegPlan<'_>, rows: &[u32], limit: usize, out: &mut Vec<u32>) {
    for &r in rows.iter().rev() {
        if p.row_ok(r as usize) {
            out.push(r);
            if out.len() == limit {
                break;
            }
        }
    }
}

/// `top_rows` from the status bitmaps: set bits from the highest, within the row range,
/// checked.
fn top_bitmap(p: &SegPlan<'_>, bits: &[u64], limit: usize, out: &mut Vec<u32>) {
    let mut w = (p.hi - 1) / 64;
    loop {
        let mut m = bits.get(w).copied().unwrap_or(0);
        while m != 0 {
            let r = w * 64 + 63 - m.leading_zeros() as usize;
            m &= !(1u64 << (r % 64));
            if r < p.lo {
                return;
            }
            if r < p.hi && p.row_ok(r) {
                out.push(r as u32);
                if out.len() == limit {
                    return;
                }
            }
        }
        if w == 0 || w * 64 <= p.lo {
            return;
        }
        w -= 1;
    }
}

/// `top_rows` by scanning: chunks from the last, skipped by their zone maps; every row when
/// nothing is left to check, else the rows the kernels' mask keeps.
fn top_scan(p: &SegPlan<'_>, limit: usize, out: &mut Vec<u32>) {
    let k = kernels();
    let simple = p.dims.is_empty() && p.status.is_none() && p.deleted.is_none();
    let first = p.lo / CHUNK_ROWS;
    let last = (p.hi - 1) / CHUNK_ROWS;
    for c in (first..=last).rev() {
        if p.chunk_excluded(c) {
            continue;
        }
        let lo = p.lo.max(c * CHUNK_ROWS);
        let hi = p.hi.min((c + 1) * CHUNK_ROWS);
        if simple {
            for r in (lo..hi).rev() {
                out.push(r as u32);
                if out.len() == limit {
                    return;
                }
            }
            continue;
        }
        if chunk_top(p, k, (lo, hi), limit, out) {
            return;
        }
    }
}

/// Adds the matching rows of `lo..hi` (within one chunk), newest first, until `out` holds
/// `limit`; true when it does.
fn chunk_top(
    p: &SegPlan<'_>,
    k: &Kernels,
    (lo, hi): (usize, usize),
    limit: usize,
    out: &mut Vec<u32>,
) -> bool {
    let n = hi - lo;
    let mut mask = [0u64; CHUNK_ROWS / 64];
    let mask = &mut mask[..n.div_ceil(64)];
    fill_mask(mask, n);
    for &(d, code) in &p.dims {
        (k.and_eq_u16)(&p.data.dim(d)[lo..hi], code, mask);
    }
    if let Some((slo, shi)) = p.status {
        (k.and_range_u16)(&p.data.status()[lo..hi], slo, shi, mask);
    }
    for (w, &word) in mask.iter().enumerate().rev() {
        let mut m = word;
        while m != 0 {
            let i = w * 64 + 63 - m.leading_zeros() as usize;
            m &= !(1u64 << (i % 64));
            let r = lo + i;
            if p.deleted.is_some_and(|d| d.contains(r)) {
                continue;
            }
            out.push(r as u32);
            if out.len() == limit {
                return true;
            }
        }
    }
    false
}

/// Up to `limit` matching events of a memtable, newest first.
fn mem_top<T: FromStored>(m: &MemData, f: &FilterRef<'_>, limit: usize) -> Vec<T> {
    let Some(plan) = plan_mem(m, f) else {
        return Vec::new();
    };
    let mut rows: Vec<usize> = Vec::new();
    for c in 0..m.chunk_min_ts.len() {
        if super::plan::MemPlan::chunk_excluded(m, f, c) {
            continue;
        }
        let end = ((c + 1) * CHUNK_ROWS).min(m.len());
        rows.extend((c * CHUNK_ROWS..end).filter(|&r| plan.row_ok(m, f, r)));
    }
    let newest_first = |a: &usize, b: &usize| {
        m.ts[*b]
            .cmp(&m.ts[*a])
            .then_with(|| m.ids.get(*b).cmp(m.ids.get(*a)))
    };
    if rows.len() > limit {
        rows.select_nth_unstable_by(limit - 1, newest_first);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(newest_first);
    rows.into_iter().map(|r| T::from_mem(m, r)).collect()
}

/// One source of a merge.
enum Source<T> {
    Seg {
        data: Arc<SegmentData>,
        rows: Vec<u32>,
        path: std::path::PathBuf,
    },
    Mem(Vec<Option<T>>),
}

impl<T: FromStored> Source<T> {
    fn ts(&self, i: usize) -> i64 {
        match self {
            Source::Seg { data, rows, .. } => data.ts[rows[i] as usize],
            Source::Mem(evs) => evs[i].as_ref().map_or(i64::MIN, T::ts_ns),
        }
    }
    fn id(&self, i: usize) -> &str {
        match self {
            // `segment_source` decoded the ids before making the source: never "" here.
            Source::Seg { data, rows, .. } => data.ids().map_or("", |ids| ids.id(rows[i] as usize)),
            Source::Mem(evs) => evs[i].as_ref().map_or("", T::event_id),
        }
    }
    fn len(&self) -> usize {
        match self {
            Source::Seg { rows, .. } => rows.len(),
            Source::Mem(evs) => evs.len(),
        }
    }
}

/// Whether a segment is cheap enough to read on its own (no scan needed).
fn cheap(s: &SegRef, f: &FilterRef<'_>) -> bool {
    let filtered: Vec<usize> = f.dim_filters().map(|(d, _)| d).collect();
    if filtered.is_empty() && f.status_range().is_none() {
        return true;
    }
    filtered.iter().any(|&d| s.seg.posting_dims.contains(&d))
}

/// The newest `limit` events matching `f`, newest first.
pub(crate) fn recent<T: FromStored>(
    snap: &Snapshot<'_>,
    f: &FilterRef<'_>,
    limit: usize,
) -> Result<Vec<T>> {
    if limit == 0 || f.matches_nothing() {
        return Ok(Vec::new());
    }
    let view = &snap.view;
    let (nc, nl) = (snap.schema.counters.len(), snap.schema.labels.len());
    // Memtables first: they are small and usually hold the newest events.
    let mut merge = Merge::new(memtable_sources(&view.memtables, f, limit), limit);
    let segs: Vec<&SegRef> = view
        .segments
        .iter()
        .filter(|s| !segment_excluded(s, f))
        .collect();
    let wide = snap.pool.threads().max(1) * 2;
    let mut next = 0;
    while next < segs.len() {
        if merge
            .kth_ts()
            .is_some_and(|kth_ts| segs[next].seg.max_ts < kth_ts)
        {
            break;
        }
        let width = if cheap(segs[next], f) { 1 } else { wide };
        let wave = &segs[next..(next + width).min(segs.len())];
        next += wave.len();
        merge.add(read_wave(snap, wave, f, limit)?);
    }
    merge.into_events(nc, nl)
}

/// Each memtable's best `limit` matches, as merge sources (memtables without one left out).
fn memtable_sources<T: FromStored>(
    memtables: &[Arc<MemTable>],
    f: &FilterRef<'_>,
    limit: usize,
) -> Vec<Source<T>> {
    let mut sources = Vec::new();
    for m in memtables {
        let data = m.read();
        let evs = mem_top::<T>(&data, f, limit);
        if !evs.is_empty() {
            sources.push(Source::Mem(evs.into_iter().map(Some).collect()));
        }
    }
    sources
}

/// Each segment's best `limit` matching rows as a merge source, in parallel on the query pool
/// when the wave has several segments.
fn read_wave<T: FromStored>(
    snap: &Snapshot<'_>,
    wave: &[&SegRef],
    f: &FilterRef<'_>,
    limit: usize,
) -> Result<Vec<Option<Source<T>>>> {
    let run = |s: &&SegRef| segment_source(snap, s, f, limit);
    if wave.len() > 1 {
        snap.pool
            .install(|| wave.par_iter().map(run).collect::<Result<_>>())?
    } else {
        wave.iter().map(run).collect()
    }
}

/// A segment's best `limit` matching rows as a merge source; `None` when no row matches.
fn segment_source<T: FromStored>(
    snap: &Snapshot<'_>,
    s: &SegRef,
    f: &FilterRef<'_>,
    limit: usize,
) -> Result<Option<Source<T>>> {
    let data = snap.data(s)?;
    let plan =
        plan_segment(&data, s.deleted.as_deref(), f).map_err(|e| e.with_path(&s.seg.path))?;
    let rows = plan.map(|p| top_rows(&p, limit)).unwrap_or_default();
    if !rows.is_empty() {
        // Merging compares ids; a fault decoding them surfaces here, not as a wrong order.
        data.ids().map_err(|e| e.with_path(&s.seg.path))?;
    }
    Ok((!rows.is_empty()).then(|| Source::Seg {
        data: data.clone(),
        rows,
        path: s.seg.path.clone(),
    }))
}

/// The merge of the sources read so far: (source index, position) of the best candidates,
/// best first, at most `limit`.
struct Merge<T> {
    sources: Vec<Source<T>>,
    merged: Vec<(usize, usize)>,
    limit: usize,
}

impl<T: FromStored> Merge<T> {
    /// The merge of `sources`, cut to `limit`.
    fn new(sources: Vec<Source<T>>, limit: usize) -> Merge<T> {
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            merged.extend((0..s.len()).map(|p| (i, p)));
        }
        let mut merge = Merge {
            sources,
            merged,
            limit,
        };
        merge.sort();
        merge.merged.truncate(limit);
        merge
    }

    /// Newest first: ts descending, then id descending (ids only read on ties).
    fn sort(&mut self) {
        let sources = &self.sources;
        self.merged.sort_by(|a, b| {
            let (sa, sb) = (&sources[a.0], &sources[b.0]);
            sb.ts(b.1)
                .cmp(&sa.ts(a.1))
                .then_with(|| sb.id(b.1).cmp(sa.id(a.1)))
        });
    }

    /// The timestamp of the `limit`-th candidate, once there are `limit`: a source whose newest
    /// event is older cannot improve the result.
    fn kth_ts(&self) -> Option<i64> {
        if self.merged.len() < self.limit {
            return None;
        }
        let (i, p) = self.merged[self.limit - 1];
        Some(self.sources[i].ts(p))
    }

    /// Merges the sources `found` in a wave.
    fn add(&mut self, found: Vec<Option<Source<T>>>) {
        let before = self.merged.len();
        for src in found.into_iter().flatten() {
            let i = self.sources.len();
            self.merged.extend((0..src.len()).map(|p| (i, p)));
            self.sources.push(src);
        }
        // A single source's rows are already in order; only a real merge needs sorting.
        if before > 0 || self.sources.len() > 1 {
            self.sort();
        }
        self.merged.truncate(self.limit);
    }

    /// The merged candidates as events, best first.
    fn into_events(self, nc: usize, nl: usize) -> Result<Vec<T>> {
        let Merge {
            mut sources,
            merged,
            ..
        } = self;
        let mut out = Vec::with_capacity(merged.len());
        for (i, p) in merged {
            match &mut sources[i] {
                Source::Seg { data, rows, path } => out.push(
                    T::from_seg(data, rows[p] as usize, nc, nl).map_err(|e| e.with_path(path))?,
                ),
                Source::Mem(evs) => out.extend(evs[p].take()),
            }
        }
        Ok(out)
    }
}

/// The newest live event with id `id`.
pub(crate) fn get_event<T: FromStored>(snap: &Snapshot<'_>, id: &str) -> Result<Option<T>> {
    let view = &snap.view;
    let (nc, nl) = (snap.schema.counters.len(), snap.schema.labels.len());
    let mut best: Option<T> = None;
    let mut consider = |e: T| {
        if best.as_ref().is_none_or(|b| e.ts_ns() > b.ts_ns()) {
            best = Some(e);
        }
    };
    for m in &view.memtables {
        let data = m.read();
        let rows: Vec<usize> = data
            .rows_with_id(id)
            .filter(|&r| !data.is_deleted(r))
            .collect();
        for r in rows {
            consider(T::from_mem(&data, r));
        }
    }
    for s in view.segments.iter().filter(|s| s.seg.may_hold_id(id)) {
        let data = snap.data(s)?;
        for r in data.rows_with_id(id)? {
            if s.deleted.as_ref().is_some_and(|d| d.contains(r)) {
                continue;
            }
            consider(T::from_seg(&data, r, nc, nl).map_err(|e| e.with_path(&s.seg.path))?);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DynEvent;
    use crate::query::{Cursor, DynFilter};
    use crate::testing::{admits, filters, layered};

    /// The naive page: admitted events, newest first (ties by id, descending), cut to `limit`.
    fn naive(all: &[DynEvent], f: &DynFilter, limit: usize) -> Vec<String> {
        let mut v: Vec<&DynEvent> = all.iter().filter(|e| admits(f, e)).collect();
        v.sort_by(|a, b| b.ts_ns.cmp(&a.ts_ns).then_with(|| b.id.cmp(&a.id)));
        v.into_iter().take(limit).map(|e| e.id.clone()).collect()
    }

    #[test]
    fn pages_over_segments_and_memtables_are_the_newest_matches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (e, live) = layered(dir.path(), 2000);
        let snap = e.snapshot();
        assert_eq!(snap.view.segments.len(), 3);
        for f in filters(&live) {
            for limit in [0, 1, 7, 300, 5000] {
                let got: Vec<DynEvent> = recent(&snap, &f.as_ref(), limit).unwrap();
                let ids: Vec<String> = got.iter().map(|e| e.id.clone()).collect();
                assert_eq!(ids, naive(&live, &f, limit), "{f:?} limit {limit}");
            }
        }
        // Whole events come back, not just ids.
        let one: Vec<DynEvent> = recent(&snap, &DynFilter::default().as_ref(), 1).unwrap();
        assert_eq!(&one[0], live.last().unwrap());
    }

    #[test]
    fn cursor_paging_returns_every_match_once() {
        let dir = tempfile::tempdir().unwrap();
        let (e, mut live) = layered(dir.path(), 1500);
        // Ties: several events share a timestamp (ordered by id).
        let tied: Vec<DynEvent> = (0..20)
            .map(|k| DynEvent {
                id: format!("tie{k:02}"),
                ts_ns: live[400].ts_ns,
                ..live[400].clone()
            })
            .collect();
        e.append_batch(&tied).unwrap();
        live.extend(tied);
        let snap = e.snapshot();
        let mut f = DynFilter {
            status_max: Some(501),
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page: Vec<DynEvent> = recent(&snap, &f.as_ref(), 37).unwrap();
            let Some(last) = page.last() else { break };
            f.cursor = Some(Cursor::from(last));
            seen.extend(page.into_iter().map(|e| e.id));
        }
        f.cursor = None;
        assert_eq!(seen, naive(&live, &f, usize::MAX));
    }

    #[test]
    fn point_lookups_find_the_newest_live_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (e, live) = layered(dir.path(), 800);
        let snap = e.snapshot();
        let got: Option<DynEvent> = get_event(&snap, &live[10].id).unwrap();
        assert_eq!(got.as_ref(), Some(&live[10]));
        assert_eq!(get_event::<DynEvent>(&snap, "e0").unwrap(), None, "deleted");
        assert_eq!(get_event::<DynEvent>(&snap, "nope").unwrap(), None);
        // A newer copy of an id (in the memtable) wins over the segment's.
        let mut newer = live[10].clone();
        newer.ts_ns += 1;
        newer.metric = 424_242;
        e.append_batch(std::slice::from_ref(&newer)).unwrap();
        let got: Option<DynEvent> = get_event(&e.snapshot(), &newer.id).unwrap();
        assert_eq!(got.map(|e| e.metric), Some(424_242));
    }
}
