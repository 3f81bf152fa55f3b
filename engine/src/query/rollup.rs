//! Rollup queries: buckets of a day range, from the store's pre-aggregates (`rollups.rs`) and
//! the memtables' buckets for days at or after the store's floor, and from scanning segments
//! and memtables for older days, so results are always exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::exec::{for_each_row, segment_excluded};
use super::plan::{plan_mem, plan_segment};
use super::snapshot::Snapshot;
use super::{FilterRef, RollupKey, RollupValue};
use crate::error::{DbError, Result};
use crate::hash::FastMap;
use crate::memtable::{MemData, RollAcc};
use crate::rollups::{group_segment_rows, segment_values, DimValues, RollupStore};
use crate::schema::MAX_ROLLUP_DIMS;
use crate::time::{day_of, day_start};

/// Result accumulator keyed by strings.
type Buckets = BTreeMap<(i64, Vec<String>), RollAcc>;

fn add_bucket(out: &mut Buckets, day: i64, values: Vec<String>, acc: &RollAcc) {
    out.entry((day, values)).or_default().add(acc);
}

/// The rollup buckets of days `from_day..=to_day`, with one optional equality filter per
/// rollup dim (in `rollup_dims` order), sorted by key.
pub(crate) fn rollups(
    snap: &Snapshot<'_>,
    from_day: i64,
    to_day: i64,
    filters: &[Option<&str>],
) -> Result<Vec<(RollupKey, RollupValue)>> {
    let rollup_dims = &snap.schema.rollup_dims;
    if filters.len() > rollup_dims.len() {
        return Err(DbError::ArityMismatch {
            column: "rollup filters",
            expected: rollup_dims.len(),
            found: filters.len(),
        });
    }
    let store = &snap.view.rollups;
    // Buckets from memtables and scans, merged by key.
    let mut out: Buckets = BTreeMap::new();
    // Days the store covers: its pre-aggregates (borrowed, already in key order) and the
    // memtables' buckets.
    let lo = from_day.max(store.floor);
    let stored = if lo <= to_day {
        for m in &snap.view.memtables {
            mem_buckets(&m.read(), rollup_dims, filters, lo, to_day, &mut out);
        }
        stored_buckets(store, lo, to_day, filters)
    } else {
        Vec::new()
    };
    // Days before the floor: scan.
    let end_day = to_day.min(store.floor.saturating_sub(1));
    if from_day <= end_day {
        scan_buckets(snap, from_day, end_day, filters, &mut out)?;
    }
    let nc = snap.schema.counters.len();
    if out.is_empty() {
        // Only pre-aggregates: no merge needed.
        return Ok(stored
            .into_iter()
            .filter(|(_, _, acc)| acc.count > 0)
            .map(|(day, k, acc)| {
                (
                    key(day, k.iter().map(|s| s.to_string()).collect()),
                    value(acc, nc),
                )
            })
            .collect());
    }
    for (day, k, acc) in stored {
        add_bucket(
            &mut out,
            day,
            k.iter().map(|s| s.to_string()).collect(),
            acc,
        );
    }
    Ok(out
        .into_iter()
        .filter(|(_, acc)| acc.count > 0)
        .map(|((day, dims), acc)| (key(day, dims), value(&acc, nc)))
        .collect())
}

fn key(day: i64, dims: Vec<String>) -> RollupKey {
    RollupKey { day, dims }
}

fn value(acc: &RollAcc, nc: usize) -> RollupValue {
    RollupValue {
        event_count: acc.count,
        metric: acc.metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        counters: if acc.counters.is_empty() {
            vec![0; nc]
        } else {
            acc.counters.clone()
        },
    }
}

/// The store's buckets of days `lo..=hi` that match the filters, in key order.
fn stored_buckets<'s>(
    store: &'s RollupStore,
    lo: i64,
    hi: i64,
    filters: &[Option<&str>],
) -> Vec<(i64, &'s DimValues, &'s RollAcc)> {
    let filter = |i: usize| filters.get(i).copied().flatten();
    let matches = |k: &DimValues| (0..filters.len()).all(|i| filter(i).is_none_or(|v| &*k[i] == v));
    let mut stored = Vec::new();
    for (&day, map) in store.days.range(lo..=hi) {
        match filter(0) {
            // Buckets are ordered by dim values: a filter on the first one is a range.
            Some(first) => {
                let start: DimValues = vec![Arc::<str>::from(first)].into_boxed_slice();
                for (k, acc) in map.range(start..) {
                    if &*k[0] != first {
                        break;
                    }
                    if matches(k) {
                        stored.push((day, k, acc));
                    }
                }
            }
            None => stored.extend(
                map.iter()
                    .filter(|(k, _)| matches(k))
                    .map(|(k, acc)| (day, k, acc)),
            ),
        }
    }
    stored
}

/// Adds the buckets of days `from_day..=end_day` (before the store's floor) by scanning the
/// segments and memtables.
fn scan_buckets(
    snap: &Snapshot<'_>,
    from_day: i64,
    end_day: i64,
    filters: &[Option<&str>],
    out: &mut Buckets,
) -> Result<()> {
    let rollup_dims = &snap.schema.rollup_dims;
    let mut dims: Vec<Option<String>> = vec![None; snap.schema.dims.len()];
    for (i, &d) in rollup_dims.iter().enumerate() {
        dims[d] = filters.get(i).copied().flatten().map(str::to_string);
    }
    let f = FilterRef {
        dims: &dims,
        from: Some(day_start(from_day)),
        to: Some(day_start(end_day.saturating_add(1))),
        status_min: None,
        status_max: None,
        cursor: None,
    };
    let nc = snap.schema.counters.len();
    for s in &snap.view.segments {
        if segment_excluded(s, &f) {
            continue;
        }
        let data = snap.data(s)?;
        let Some(plan) =
            plan_segment(&data, s.deleted.as_deref(), &f).map_err(|e| e.with_path(&s.seg.path))?
        else {
            continue;
        };
        let mut rows = Vec::new();
        for_each_row(&plan, |r| rows.push(r));
        let groups = group_segment_rows(&data, rollup_dims, nc, rows.into_iter());
        let mut cache = FastMap::default();
        for ((day, codes), acc) in groups {
            let values = segment_values(&data, rollup_dims, &codes, &mut cache)
                .map_err(|e| e.with_path(&s.seg.path))?;
            add_bucket(
                out,
                day,
                values.iter().map(|s| s.to_string()).collect(),
                &acc,
            );
        }
    }
    for m in &snap.view.memtables {
        let data = m.read();
        let Some(plan) = plan_mem(&data, &f) else {
            continue;
        };
        for r in (0..data.len()).filter(|&r| plan.row_ok(&data, &f, r)) {
            let values = rollup_dims
                .iter()
                .map(|&d| data.dicts[d].value(data.dims[d][r]).to_string())
                .collect();
            let acc = RollAcc {
                count: 1,
                metric: data.metric[r] as i128,
                counters: data.counters.iter().map(|c| c[r] as u64).collect(),
            };
            add_bucket(out, day_of(data.ts[r]), values, &acc);
        }
    }
    Ok(())
}

/// Adds a memtable's buckets of days `lo..=hi` that match the filters.
fn mem_buckets(
    m: &MemData,
    rollup_dims: &[usize],
    filters: &[Option<&str>],
    lo: i64,
    hi: i64,
    out: &mut Buckets,
) {
    let mut want = [None; MAX_ROLLUP_DIMS];
    for (i, f) in filters.iter().enumerate() {
        if let Some(v) = f {
            match m.dicts.get(rollup_dims[i]).and_then(|d| d.get(v)) {
                Some(code) => want[i] = Some(code),
                None => return,
            }
        }
    }
    for ((day, codes), acc) in &m.rollups {
        if *day < lo || *day > hi || acc.count == 0 {
            continue;
        }
        if want
            .iter()
            .zip(codes)
            .any(|(w, c)| w.is_some_and(|w| w != *c))
        {
            continue;
        }
        let values = rollup_dims
            .iter()
            .zip(codes)
            .map(|(&d, &c)| m.dicts[d].value(c).to_string())
            .collect();
        add_bucket(out, *day, values, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DynEvent;
    use crate::testing::{layered, T0};

    /// The naive buckets of days `lo..=hi` for the given filters on (user, model).
    fn naive(
        all: &[DynEvent],
        lo: i64,
        hi: i64,
        f: &[Option<&str>],
    ) -> Vec<(RollupKey, RollupValue)> {
        let mut out: BTreeMap<(i64, Vec<String>), RollupValue> = BTreeMap::new();
        for e in all {
            let day = day_of(e.ts_ns);
            let keep = day >= lo
                && day <= hi
                && f.iter().zip(&e.dims).all(|(w, v)| w.is_none_or(|w| w == v));
            if keep {
                let v = out.entry((day, e.dims.clone())).or_insert(RollupValue {
                    event_count: 0,
                    metric: 0,
                    counters: vec![0],
                });
                v.event_count += 1;
                v.metric += e.metric;
                v.counters[0] += e.counters[0] as u64;
            }
        }
        out.into_iter()
            .map(|((day, dims), v)| (RollupKey { day, dims }, v))
            .collect()
    }

    #[test]
    fn buckets_are_exact_on_both_sides_of_the_stores_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (e, live) = layered(dir.path(), 2400);
        let snap = e.snapshot();
        let first = day_of(T0);
        let last = day_of(live.last().unwrap().ts_ns);
        let floor = snap.view.rollups.floor;
        assert!(
            floor > first && floor <= last,
            "the store covers the newest days only"
        );
        let ranges = [
            (first, last),
            (first, floor - 1),
            (floor, last),
            (floor - 3, floor + 1),
            (last + 1, last + 9),
            (first - 5, first),
        ];
        let filters: [&[Option<&str>]; 5] = [
            &[],
            &[Some("u3")],
            &[None, Some("m2")],
            &[Some("u1"), Some("m1")],
            &[Some("nobody")],
        ];
        for (lo, hi) in ranges {
            for f in filters {
                assert_eq!(
                    rollups(&snap, lo, hi, f).unwrap(),
                    naive(&live, lo, hi, f),
                    "days {lo}..={hi} {f:?}"
                );
            }
        }
        let err = rollups(&snap, first, last, &[None, None, None]).unwrap_err();
        assert!(matches!(err, DbError::ArityMismatch { .. }), "{err}");
    }
}
