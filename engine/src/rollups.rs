//! The store's daily rollups of segment rows: pre-aggregates keyed by (UTC day, values of the
//! rollup dims), for the days at or after a floor.
//!
//! Storage state: the view holds one [`RollupStore`] (rebuilt on open, updated on rotation,
//! delete and gc); each memtable keeps its own buckets (`memtable.rs`). The query layer reads
//! both (`query/rollup.rs`) and scans days older than the floor, so results are always exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{DbError, Result};
use crate::hash::FastMap;
use crate::memtable::RollAcc;
use crate::schema::MAX_ROLLUP_DIMS;
use crate::segment::reader::SegmentData;
use crate::time::{day_of, day_start};
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

/// Groups rows of a segment by (day, rollup dim codes).
pub(crate) fn group_segment_rows(
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
pub(crate) fn segment_values(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::layered;
    use crate::time::NANOS_PER_DAY;

    #[test]
    fn the_store_adds_subtracts_and_moves_its_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = layered(dir.path(), 1200);
        let snap = e.snapshot();
        let s = &snap.view.segments[0];
        let data = snap.data(s).unwrap();
        let mut store = RollupStore::default();
        store
            .apply_segment(&data, s.deleted.as_deref(), &[0, 1], 1, false)
            .unwrap();
        let total = |st: &RollupStore| {
            st.days
                .values()
                .flat_map(|m| m.values())
                .map(|a| a.count)
                .sum::<u64>()
        };
        assert_eq!(total(&store) as usize, s.live_rows());
        let before = store.clone();
        store
            .apply_segment(&data, s.deleted.as_deref(), &[0, 1], 1, false)
            .unwrap();
        assert_eq!(total(&store), 2 * total(&before));
        store
            .apply_segment(&data, s.deleted.as_deref(), &[0, 1], 1, true)
            .unwrap();
        assert_eq!(total(&store), total(&before));
        let newest = *store.days.keys().last().unwrap();
        store.advance_floor(newest, 2);
        assert_eq!(store.floor, newest - 1);
        assert!(store.days.keys().all(|&d| d >= newest - 1));
        // The floor never moves back.
        store.advance_floor(newest - 10, 2);
        assert_eq!(store.floor, newest - 1);
        assert_eq!(day_start(store.floor) % NANOS_PER_DAY, 0);
    }
}
