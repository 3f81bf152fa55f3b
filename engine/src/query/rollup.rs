//! Daily rollups: pre-aggregates keyed by (UTC day, values of the rollup dims).
//!
//! Three places hold them: each memtable keeps buckets for its own live rows (maintained on
//! append and delete); the view holds a [`RollupStore`] for the segments' rows of the last
//! `rollup_replay_days` days (rebuilt on open, updated on rotation, delete and gc). Days
//! older than the store's floor are answered by scanning, so results are always exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::exec::for_each_row;
use super::plan::{plan_mem, plan_segment};
use super::{day_of, FilterRef, RollupKey, RollupValue, NANOS_PER_DAY};
use crate::engine::{with_path, DynEngine};
use crate::error::{DbError, Result};
use crate::hash::FastMap;
use crate::memtable::{MemData, RollAcc};
use crate::schema::MAX_ROLLUP_DIMS;
use crate::segment::reader::SegmentData;
use crate::view::DeletedRows;

/// Values of the rollup dims of a bucket.
pub(crate) type DimValues = Box<[Arc<str>]>;
/// Buckets of one day, ordered by dim values (so a filter on the first rollup dim is a range).
pub(crate) type DayMap = BTreeMap<DimValues, RollAcc>;

/// Rollups of the segments' rows, for days at or after `floor`.
#[derive(Clone, Debug)]
pub(crate) struct RollupStore {
    pub floor: i64,
    pub days: BTreeMap<i64, Arc<DayMap>>,
}

impl Default for RollupStore {
    fn default() -> Self {
        RollupStore {
            floor: i64::MIN,
            days: BTreeMap::new(),
        }
    }
}

/// First nanosecond of `day`, saturating.
fn day_start(day: i64) -> i64 {
    day.saturating_mul(NANOS_PER_DAY)
}

/// Groups rows of a segment by (day, rollup dim codes).
fn group_segment_rows(
    data: &SegmentData,
    rollup_dims: &[usize],
    ncounters: usize,
    rows: impl Iterator<Item = usize>,
) -> FastMap<(i64, [u16; MAX_ROLLUP_DIMS]), RollAcc> {
    let mut groups: FastMap<(i64, [u16; MAX_ROLLUP_DIMS]), RollAcc> = FastMap::default();
    for r in rows {
        let mut codes = [0u16; MAX_ROLLUP_DIMS];
        for (slot, &d) in codes.iter_mut().zip(rollup_dims) {
            *slot = data.dim(d)[r];
        }
        let acc = groups
            .entry((day_of(data.ts[r]), codes))
            .or_insert_with(|| RollAcc {
                counters: vec![0; ncounters],
                ..Default::default()
            });
        acc.count += 1;
        acc.metric += data.metric[r] as i128;
        for (c, s) in acc.counters.iter_mut().enumerate() {
            *s += data.counter(c)[r] as u64;
        }
    }
    groups
}

/// Translates segment codes to shared strings.
fn segment_values(
    data: &SegmentData,
    rollup_dims: &[usize],
    codes: &[u16; MAX_ROLLUP_DIMS],
    cache: &mut FastMap<(usize, u16), Arc<str>>,
) -> Result<DimValues> {
    let intern = data.intern()?;
    let mut out = Vec::with_capacity(rollup_dims.len());
    for (&d, &code) in rollup_dims.iter().zip(codes) {
        let v = match cache.get(&(d, code)) {
            Some(v) => v.clone(),
            None => {
                let s: Arc<str> = intern
                    .get(d)
                    .and_then(|dict| dict.value(code))
                    .ok_or_else(|| DbError::CorruptSegment {
                        path: Default::default(),
                        section: "intern tables",
                        reason: format!("code {code} of dim {d} has no value"),
                    })?
                    .into();
                cache.insert((d, code), s.clone());
                s
            }
        };
        out.push(v);
    }
    Ok(out.into_boxed_slice())
}

impl RollupStore {
    /// Adds (or, with `subtract`, removes) the given rows of a segment, keeping days >= floor.
    pub(crate) fn apply_rows(
        &mut self,
        data: &SegmentData,
        rollup_dims: &[usize],
        ncounters: usize,
        rows: impl Iterator<Item = usize>,
        subtract: bool,
    ) -> Result<()> {
        let floor = self.floor;
        let groups = group_segment_rows(
            data,
            rollup_dims,
            ncounters,
            rows.filter(|&r| day_of(data.ts[r]) >= floor),
        );
        let mut cache = FastMap::default();
        for ((day, codes), acc) in groups {
            let key = segment_values(data, rollup_dims, &codes, &mut cache)?;
            let map = Arc::make_mut(self.days.entry(day).or_default());
            if subtract {
                if let Some(e) = map.get_mut(&key) {
                    e.sub(&acc);
                    if e.count == 0 {
                        map.remove(&key);
                    }
                }
                if map.is_empty() {
                    self.days.remove(&day);
                }
            } else {
                map.entry(key).or_default().add(&acc);
            }
        }
        Ok(())
    }

    /// Adds or removes every live row of a segment.
    pub(crate) fn apply_segment(
        &mut self,
        data: &SegmentData,
        deleted: Option<&DeletedRows>,
        rollup_dims: &[usize],
        ncounters: usize,
        subtract: bool,
    ) -> Result<()> {
        let start = data.ts.partition_point(|&t| t < day_start(self.floor));
        let rows = (start..data.rows).filter(|&r| !deleted.is_some_and(|d| d.contains(r)));
        self.apply_rows(data, rollup_dims, ncounters, rows, subtract)
    }

    /// Moves the floor so that only the `replay_days` days ending at `newest_day` are kept.
    pub(crate) fn advance_floor(&mut self, newest_day: i64, replay_days: u32) {
        let floor = newest_day
            .saturating_sub(replay_days as i64)
            .saturating_add(1);
        if floor > self.floor {
            self.floor = floor;
            self.days = self.days.split_off(&floor);
        }
    }
}

/// Result accumulator keyed by strings.
type Buckets = BTreeMap<(i64, Vec<String>), RollAcc>;

fn add_bucket(out: &mut Buckets, day: i64, values: Vec<String>, acc: &RollAcc) {
    out.entry((day, values)).or_default().add(acc);
}

impl DynEngine {
    /// Rollup buckets of days `from_day..=to_day`, with one optional equality filter per
    /// rollup dim.
    pub(crate) fn query_rollups_dyn(
        &self,
        from_day: i64,
        to_day: i64,
        filters: &[Option<&str>],
    ) -> Result<Vec<(RollupKey, RollupValue)>> {
        let rollup_dims = &self.schema.rollup_dims;
        if filters.len() > rollup_dims.len() {
            return Err(DbError::ArityMismatch {
                column: "rollup filters",
                expected: rollup_dims.len(),
                found: filters.len(),
            });
        }
        let filter = |i: usize| filters.get(i).copied().flatten();
        let nc = self.schema.counters.len();
        let view = self.view();
        let store = &view.rollups;
        // Buckets from the store, borrowed and already in key order.
        let mut stored: Vec<(i64, &DimValues, &RollAcc)> = Vec::new();
        // Buckets from memtables and scans, merged by key.
        let mut out: Buckets = BTreeMap::new();

        // Days the store covers: read the pre-aggregates.
        let lo = from_day.max(store.floor);
        if lo <= to_day {
            for (&day, map) in store.days.range(lo..=to_day) {
                let matches = |k: &DimValues| {
                    (0..filters.len()).all(|i| filter(i).is_none_or(|v| &*k[i] == v))
                };
                match filter(0) {
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
            for m in &view.memtables {
                let data = m.read();
                mem_buckets(&data, rollup_dims, filters, lo, to_day, &mut out);
            }
        }

        // Days before the floor: scan.
        if from_day < store.floor {
            let end_day = to_day.min(store.floor.saturating_sub(1));
            if from_day <= end_day {
                let mut dims: Vec<Option<String>> = vec![None; self.schema.dims.len()];
                for (i, &d) in rollup_dims.iter().enumerate() {
                    dims[d] = filter(i).map(str::to_string);
                }
                let f = FilterRef {
                    dims: &dims,
                    from: Some(day_start(from_day)),
                    to: Some(day_start(end_day.saturating_add(1))),
                    status_min: None,
                    status_max: None,
                    cursor: None,
                };
                for s in &view.segments {
                    if super::exec::segment_excluded(s, &f) {
                        continue;
                    }
                    let data = s.seg.data(&self.schema, &self.cache)?;
                    let Some(plan) = plan_segment(&data, s.deleted.as_deref(), &f)
                        .map_err(|e| with_path(e, &s.seg.path))?
                    else {
                        continue;
                    };
                    let mut rows = Vec::new();
                    for_each_row(&plan, |r| rows.push(r));
                    let groups = group_segment_rows(&data, rollup_dims, nc, rows.into_iter());
                    let mut cache = FastMap::default();
                    for ((day, codes), acc) in groups {
                        let values = segment_values(&data, rollup_dims, &codes, &mut cache)
                            .map_err(|e| with_path(e, &s.seg.path))?;
                        add_bucket(
                            &mut out,
                            day,
                            values.iter().map(|s| s.to_string()).collect(),
                            &acc,
                        );
                    }
                }
                for m in &view.memtables {
                    let data = m.read();
                    let Some(plan) = plan_mem(&data, &f) else {
                        continue;
                    };
                    for r in 0..data.len() {
                        if plan.row_ok(&data, &f, r) {
                            let values = rollup_dims
                                .iter()
                                .map(|&d| data.dicts[d].value(data.dims[d][r]).to_string())
                                .collect();
                            let acc = RollAcc {
                                count: 1,
                                metric: data.metric[r] as i128,
                                counters: data.counters.iter().map(|c| c[r] as u64).collect(),
                            };
                            add_bucket(&mut out, day_of(data.ts[r]), values, &acc);
                        }
                    }
                }
            }
        }
        let value = |acc: &RollAcc| RollupValue {
            event_count: acc.count,
            metric: acc.metric.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            counters: if acc.counters.is_empty() {
                vec![0; nc]
            } else {
                acc.counters.clone()
            },
        };
        if out.is_empty() {
            // Only pre-aggregates: no merge needed.
            return Ok(stored
                .into_iter()
                .filter(|(_, _, acc)| acc.count > 0)
                .map(|(day, k, acc)| {
                    (
                        RollupKey {
                            day,
                            dims: k.iter().map(|s| s.to_string()).collect(),
                        },
                        value(acc),
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
            .map(|((day, dims), acc)| (RollupKey { day, dims }, value(&acc)))
            .collect())
    }
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
