//! Per-source query plans: what a filter means for one segment or memtable, with values
//! resolved to codes, the time range turned into a row range, and the cheapest row source
//! chosen (posting list, status bitmap, or a chunked scan).

use super::FilterRef;
use crate::error::Result;
use crate::memtable::MemData;
use crate::segment::reader::SegmentData;
use crate::view::DeletedRows;

/// Where a segment plan's candidate rows come from.
#[derive(Debug)]
pub(crate) enum Rows<'a> {
    /// Ascending rows of a posting list, already cut to the row range.
    Posting(&'a [u32]),
    /// Union of the status bitmaps of the values in range (rows outside the range may be set).
    Bitmap(Vec<u64>),
    /// Every row of the range, chunk by chunk.
    Scan,
}

/// A filter resolved against one segment.
#[derive(Debug)]
pub(crate) struct SegPlan<'a> {
    pub data: &'a SegmentData,
    pub deleted: Option<&'a DeletedRows>,
    /// Row range after time and cursor bounds.
    pub lo: usize,
    pub hi: usize,
    /// Equality predicates still to check per row: (dim, code).
    pub dims: Vec<(usize, u16)>,
    /// Status predicate [lo, hi) still to check per row.
    pub status: Option<(u16, u16)>,
    pub rows: Rows<'a>,
}

/// Status bitmaps are used when the values in range cover at most this fraction of the rows.
const BITMAP_SELECTIVITY: usize = 16;

/// Resolves `f` against a segment; `None` when no row can match.
pub(crate) fn plan_segment<'a>(
    data: &'a SegmentData,
    deleted: Option<&'a DeletedRows>,
    f: &FilterRef<'_>,
) -> Result<Option<SegPlan<'a>>> {
    if f.matches_nothing() {
        return Ok(None);
    }
    let Some((lo, hi)) = row_range(data, f)? else {
        return Ok(None);
    };
    let Some(dims) = dim_codes(data, f)? else {
        return Ok(None);
    };
    let Some(StatusPlan { status, selected }) = status_plan(data, f) else {
        return Ok(None);
    };
    let mut plan = SegPlan {
        data,
        deleted,
        lo,
        hi,
        dims,
        status,
        rows: Rows::Scan,
    };
    plan.choose_rows(selected)?;
    Ok(Some(plan))
}

/// The rows within the filter's time range and before its cursor; `None` when empty.
fn row_range(data: &SegmentData, f: &FilterRef<'_>) -> Result<Option<(usize, usize)>> {
    let ts = &data.ts;
    let lo = f.from.map_or(0, |from| ts.partition_point(|&t| t < from));
    let mut hi = f.to.map_or(ts.len(), |to| ts.partition_point(|&t| t < to));
    if let Some(c) = f.cursor {
        // Rows are sorted by (ts, id); keep those strictly before the cursor.
        let start = lo;
        let first_ge = ts[start..hi].partition_point(|&t| t < c.ts_ns) + start;
        let first_gt = ts[first_ge..hi].partition_point(|&t| t <= c.ts_ns) + first_ge;
        let mut cut = first_gt;
        if first_ge < first_gt {
            let ids = data.ids()?;
            cut = (first_ge..first_gt)
                .find(|&r| ids.id(r) >= c.id.as_str())
                .unwrap_or(first_gt);
        }
        hi = hi.min(cut);
    }
    Ok((lo < hi).then_some((lo, hi)))
}

/// The filtered dims with their values' codes in this segment; `None` when a value is not in
/// the segment (no row can match).
fn dim_codes(data: &SegmentData, f: &FilterRef<'_>) -> Result<Option<Vec<(usize, u16)>>> {
    let mut dims = Vec::new();
    if f.dims.iter().any(Option::is_some) {
        let intern = data.intern()?;
        for (d, v) in f.dim_filters() {
            let Some(dict) = intern.get(d) else {
                return Ok(None);
            };
            match dict.code(v) {
                Some(code) => dims.push((d, code)),
                None => return Ok(None),
            }
        }
    }
    Ok(Some(dims))
}

/// What the status range means for one segment.
struct StatusPlan {
    /// The range still to check per row (`None` when every row's status is inside).
    status: Option<(u16, u16)>,
    /// How many rows have a status inside the range.
    selected: usize,
}

/// Resolves the status range against the segment's status values; `None` when no row's
/// status is inside it.
fn status_plan(data: &SegmentData, f: &FilterRef<'_>) -> Option<StatusPlan> {
    let mut plan = StatusPlan {
        status: None,
        selected: 0,
    };
    if let Some((slo, shi)) = f.status_range() {
        let (mut any, mut all) = (false, true);
        for (v, n) in data.status_values() {
            let inside = v >= slo && v <= shi;
            any |= inside;
            all &= inside;
            if inside {
                plan.selected += n;
            }
        }
        if !any {
            return None;
        }
        if !all {
            plan.status = Some((slo, shi));
        }
    }
    Some(plan)
}

impl<'a> SegPlan<'a> {
    /// Chooses the cheapest row source: the shortest posting list among filtered dims (whose
    /// predicate it then answers), else the status bitmaps when the `status_selected` rows are
    /// few enough, else a scan.
    fn choose_rows(&mut self, status_selected: usize) -> Result<()> {
        let data = self.data;
        let mut best = usize::MAX;
        let mut posting_dim = None;
        for &(d, code) in &self.dims {
            if let Some(p) = data.postings(d) {
                let list = p.rows(code);
                if list.len() < best {
                    best = list.len();
                    let a = list.partition_point(|&r| (r as usize) < self.lo);
                    let b = list.partition_point(|&r| (r as usize) < self.hi);
                    self.rows = Rows::Posting(&list[a..b]);
                    posting_dim = Some(d);
                }
            }
        }
        if let Some(pd) = posting_dim {
            self.dims.retain(|&(d, _)| d != pd);
        } else if let Some((slo, shi)) = self.status {
            if status_selected * BITMAP_SELECTIVITY <= data.rows {
                self.rows = Rows::Bitmap(status_union(data, slo, shi)?);
                self.status = None;
            }
        }
        Ok(())
    }
}

/// The union of the status bitmaps of the values in `slo..=shi`.
fn status_union(data: &SegmentData, slo: u16, shi: u16) -> Result<Vec<u64>> {
    let mut union = vec![0u64; data.rows.div_ceil(64)];
    for (v, bits) in data.status_bitmaps()? {
        if *v >= slo && *v <= shi {
            for (u, b) in union.iter_mut().zip(bits) {
                *u |= b;
            }
        }
    }
    Ok(union)
}

impl SegPlan<'_> {
    /// Checks the per-row predicates left after choosing the row source.
    #[inline]
    pub(crate) fn row_ok(&self, r: usize) -> bool {
        if self.deleted.is_some_and(|d| d.contains(r)) {
            return false;
        }
        for &(d, code) in &self.dims {
            if self.data.dim(d)[r] != code {
                return false;
            }
        }
        if let Some((lo, hi)) = self.status {
            let s = self.data.status()[r];
            if s < lo || s > hi {
                return false;
            }
        }
        true
    }

    /// True when chunk `c` cannot hold a match, judged by its zone maps.
    #[inline]
    pub(crate) fn chunk_excluded(&self, c: usize) -> bool {
        for &(d, code) in &self.dims {
            if code < self.data.zone_dim_min(d)[c] || code > self.data.zone_dim_max(d)[c] {
                return true;
            }
        }
        if let Some((lo, hi)) = self.status {
            if self.data.zone_status_max()[c] < lo || self.data.zone_status_min()[c] > hi {
                return true;
            }
        }
        false
    }

    /// True when every row of chunk `c` satisfies the dim and status predicates.
    #[inline]
    pub(crate) fn chunk_all_match(&self, c: usize) -> bool {
        for &(d, code) in &self.dims {
            if self.data.zone_dim_min(d)[c] != code || self.data.zone_dim_max(d)[c] != code {
                return false;
            }
        }
        if let Some((lo, hi)) = self.status {
            if self.data.zone_status_min()[c] < lo || self.data.zone_status_max()[c] > hi {
                return false;
            }
        }
        true
    }
}

/// A filter resolved against one memtable.
#[derive(Debug)]
pub(crate) struct MemPlan {
    pub dims: Vec<(usize, u32)>,
    pub status: Option<(u16, u16)>,
}

/// Resolves `f` against a memtable; `None` when no row can match.
pub(crate) fn plan_mem(m: &MemData, f: &FilterRef<'_>) -> Option<MemPlan> {
    let mut dims = Vec::new();
    for (d, v) in f.dim_filters() {
        dims.push((d, m.dicts.get(d)?.get(v)?));
    }
    if f.matches_nothing() {
        return None;
    }
    Some(MemPlan {
        dims,
        status: f.status_range(),
    })
}

impl MemPlan {
    /// Full predicate for memtable row `r`.
    #[inline]
    pub(crate) fn row_ok(&self, m: &MemData, f: &FilterRef<'_>, r: usize) -> bool {
        let ts = m.ts[r];
        if !f.ts_ok(ts) || m.is_deleted(r) {
            return false;
        }
        for &(d, code) in &self.dims {
            if m.dims[d][r] != code {
                return false;
            }
        }
        if let Some((lo, hi)) = self.status {
            let s = m.status[r];
            if s < lo || s > hi {
                return false;
            }
        }
        f.cursor.is_none_or(|c| c.admits(ts, m.ids.get(r)))
    }

    /// True when chunk `c` of the memtable is outside the time bounds.
    #[inline]
    pub(crate) fn chunk_excluded(m: &MemData, f: &FilterRef<'_>, c: usize) -> bool {
        let (lo, hi) = (m.chunk_min_ts[c], m.chunk_max_ts[c]);
        f.from.is_some_and(|from| hi < from)
            || f.to.is_some_and(|to| lo >= to)
            || f.cursor.is_some_and(|cur| lo > cur.ts_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::exec::for_each_row;
    use crate::testing::{engine, events, filters, ids_admitted, memdata};

    /// The ids a segment plan yields.
    fn planned_ids(
        data: &SegmentData,
        deleted: Option<&DeletedRows>,
        f: &FilterRef<'_>,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(p) = plan_segment(data, deleted, f).unwrap() {
            for_each_row(&p, |r| ids.push(data.id(r).unwrap().to_string()));
        }
        ids.sort();
        ids
    }

    #[test]
    fn segment_plans_yield_exactly_the_matching_rows() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let all = events(0..3000);
        e.append_batch(&all).unwrap();
        e.flush().unwrap();
        let snap = e.snapshot();
        assert_eq!(snap.view.segments.len(), 1);
        let data = snap.data(&snap.view.segments[0]).unwrap();
        for f in filters(&all) {
            assert_eq!(
                planned_ids(&data, None, &f.as_ref()),
                ids_admitted(&all, &f),
                "{f:?}"
            );
        }
    }

    #[test]
    fn the_cheapest_row_source_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.append_batch(&events(0..3000)).unwrap();
        e.flush().unwrap();
        let snap = e.snapshot();
        let data = snap.data(&snap.view.segments[0]).unwrap();
        let kind =
            |f: crate::query::DynFilter| match plan_segment(&data, None, &f.as_ref()).unwrap() {
                None => "none",
                Some(p) => match p.rows {
                    Rows::Posting(_) => "posting",
                    Rows::Bitmap(_) => "bitmap",
                    Rows::Scan => "scan",
                },
            };
        let dims = |u: &str| vec![Some(u.to_string())];
        assert_eq!(kind(Default::default()), "scan");
        assert_eq!(
            kind(crate::query::DynFilter {
                dims: dims("u1"),
                ..Default::default()
            }),
            "posting"
        );
        assert_eq!(
            kind(crate::query::DynFilter {
                dims: dims("nobody"),
                ..Default::default()
            }),
            "none"
        );
        // 503 holds 1 in 40 rows: the bitmaps; 404 and up holds half: a scan.
        assert_eq!(
            kind(crate::query::DynFilter {
                status_min: Some(501),
                ..Default::default()
            }),
            "bitmap"
        );
        assert_eq!(
            kind(crate::query::DynFilter {
                status_min: Some(404),
                ..Default::default()
            }),
            "scan"
        );
        assert_eq!(
            kind(crate::query::DynFilter {
                status_min: Some(600),
                ..Default::default()
            }),
            "none"
        );
        // A status range covering every value needs no status check at all.
        let p = plan_segment(
            &data,
            None,
            &crate::query::DynFilter {
                status_min: Some(100),
                ..Default::default()
            }
            .as_ref(),
        )
        .unwrap()
        .unwrap();
        assert!(p.status.is_none() && matches!(p.rows, Rows::Scan));
    }

    #[test]
    fn deleted_rows_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let all = events(0..3000);
        e.append_batch(&all).unwrap();
        e.flush().unwrap();
        let snap = e.snapshot();
        let data = snap.data(&snap.view.segments[0]).unwrap();
        let mut deleted = DeletedRows::default();
        for r in (0..3000).step_by(3) {
            deleted.insert(r);
        }
        let f = crate::query::DynFilter {
            dims: vec![Some("u4".into())],
            ..Default::default()
        };
        let got = planned_ids(&data, Some(&deleted), &f.as_ref());
        let want: Vec<String> = {
            let mut v: Vec<String> = (0..3000)
                .filter(|&r| !deleted.contains(r) && all[r].dims[0] == "u4")
                .map(|r| all[r].id.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(got, want);
    }

    #[test]
    fn zone_maps_exclude_or_take_whole_chunks() {
        // Statuses in blocks: chunks 0 and 1 hold only 200, chunks 2 and 3 only 500.
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let mut all = events(0..1024);
        for (i, ev) in all.iter_mut().enumerate() {
            ev.status = if i < 512 { 200 } else { 500 };
        }
        e.append_batch(&all).unwrap();
        e.flush().unwrap();
        let snap = e.snapshot();
        let data = snap.data(&snap.view.segments[0]).unwrap();
        let f = crate::query::DynFilter {
            status_min: Some(500),
            ..Default::default()
        };
        let p = plan_segment(&data, None, &f.as_ref()).unwrap().unwrap();
        assert!(matches!(p.rows, Rows::Scan) && p.status.is_some());
        let excluded: Vec<bool> = (0..4).map(|c| p.chunk_excluded(c)).collect();
        let whole: Vec<bool> = (0..4).map(|c| p.chunk_all_match(c)).collect();
        assert_eq!(excluded, [true, true, false, false]);
        assert_eq!(whole, [false, false, true, true]);
        assert_eq!(
            planned_ids(&data, None, &f.as_ref()),
            ids_admitted(&all, &f)
        );
    }

    #[test]
    fn memtable_plans_yield_exactly_the_matching_rows() {
        let all = events(0..1000);
        let mut m = memdata(&all);
        for r in (0..1000).step_by(5) {
            m.mark_deleted(r);
        }
        let live: Vec<_> = (0..1000)
            .filter(|r| r % 5 != 0)
            .map(|r| all[r].clone())
            .collect();
        for f in filters(&all) {
            let fr = f.as_ref();
            let mut ids: Vec<String> = match plan_mem(&m, &fr) {
                None => Vec::new(),
                Some(p) => (0..m.len())
                    .filter(|&r| p.row_ok(&m, &fr, r))
                    .map(|r| m.ids.get(r).to_string())
                    .collect(),
            };
            ids.sort();
            assert_eq!(ids, ids_admitted(&live, &f), "{f:?}");
            // Chunks excluded by time hold no match.
            if let Some(p) = plan_mem(&m, &fr) {
                for c in 0..m.chunk_min_ts.len() {
                    if MemPlan::chunk_excluded(&m, &fr, c) {
                        let rows = c * 256..((c + 1) * 256).min(m.len());
                        assert!(
                            rows.into_iter().all(|r| !p.row_ok(&m, &fr, r)),
                            "{f:?} chunk {c}"
                        );
                    }
                }
            }
        }
    }
}
