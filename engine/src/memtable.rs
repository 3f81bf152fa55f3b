//! The in-memory, columnar image of a shard's active WAL.
//!
//! Every event in a WAL file is also here, so queries see an append as soon as it returns
//! (read-your-writes) without waiting for rotation. When the WAL rotates, the memtable is frozen
//! and becomes the input of the segment writer.

use std::sync::RwLock;

use crate::hash::{hash64, FastMap};
use crate::schema::SchemaDef;
use crate::schema::MAX_ROLLUP_DIMS;
use crate::time::day_of;
use crate::wal::frame::{EventsDecoder, RawRow};

/// Rows per chunk, for zone maps and pre-aggregates (memtable and segments alike).
pub(crate) const CHUNK_ROWS: usize = 256;
const NO_ROW: u32 = u32::MAX;

/// String interning for one dim.
#[derive(Debug, Default)]
pub(crate) struct Dict {
    values: Vec<Box<str>>,
    map: FastMap<Box<str>, u32>,
}

impl Dict {
    #[inline]
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.map.get(s) {
            return c;
        }
        let code = self.values.len() as u32;
        self.values.push(s.into());
        self.map.insert(s.into(), code);
        code
    }
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.map.get(s).copied()
    }
    pub(crate) fn value(&self, code: u32) -> &str {
        &self.values[code as usize]
    }
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

/// A column of strings: one buffer and end offsets.
#[derive(Debug, Default)]
pub(crate) struct StrCol {
    ends: Vec<usize>,
    bytes: String,
}

impl StrCol {
    #[inline]
    pub(crate) fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// Key of a memtable rollup bucket: day and the memtable codes of the rollup dims (unused
/// slots zero).
pub(crate) type RollKey = (i64, [u32; MAX_ROLLUP_DIMS]);

/// Sums of a rollup bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RollAcc {
    pub count: u64,
    pub metric: i128,
    pub counters: Vec<u64>,
}

impl RollAcc {
    pub(crate) fn add(&mut self, o: &RollAcc) {
        self.count += o.count;
        self.metric += o.metric;
        if self.counters.len() < o.counters.len() {
            self.counters.resize(o.counters.len(), 0);
        }
        for (a, b) in self.counters.iter_mut().zip(&o.counters) {
            *a += b;
        }
    }
    pub(crate) fn sub(&mut self, o: &RollAcc) {
        self.count -= o.count;
        self.metric -= o.metric;
        for (a, b) in self.counters.iter_mut().zip(&o.counters) {
            *a -= b;
        }
    }
}

/// The columns of a memtable. Row `i` of every column is one event, in WAL order.
#[derive(Debug)]
pub(crate) struct MemData {
    pub ts: Vec<i64>,
    pub metric: Vec<i64>,
    pub latency: Vec<u32>,
    pub latency_detail: Vec<u32>,
    pub counters: Vec<Vec<u32>>,
    pub status: Vec<u16>,
    pub flags: Vec<u16>,
    /// Per dim, the code of each row in `dicts[d]`.
    pub dims: Vec<Vec<u32>>,
    pub dicts: Vec<Dict>,
    pub ids: StrCol,
    pub labels: Vec<StrCol>,
    id_heads: FastMap<u64, u32>,
    id_next: Vec<u32>,
    /// Deleted rows (tombstones), one bit per row.
    pub deleted: Vec<u64>,
    pub deleted_count: usize,
    /// Per 256-row chunk: min and max ts.
    pub chunk_min_ts: Vec<i64>,
    pub chunk_max_ts: Vec<i64>,
    /// Dims keyed by the rollups.
    pub rollup_dims: Vec<usize>,
    /// Daily rollups of the live rows.
    pub rollups: FastMap<RollKey, RollAcc>,
}

impl MemData {
    pub(crate) fn new(schema: &SchemaDef) -> Self {
        MemData {
            ts: Vec::new(),
            metric: Vec::new(),
            latency: Vec::new(),
            latency_detail: Vec::new(),
            counters: vec![Vec::new(); schema.counters.len()],
            status: Vec::new(),
            flags: Vec::new(),
            dims: vec![Vec::new(); schema.dims.len()],
            dicts: (0..schema.dims.len()).map(|_| Dict::default()).collect(),
            ids: StrCol::default(),
            labels: (0..schema.labels.len())
                .map(|_| StrCol::default())
                .collect(),
            id_heads: FastMap::default(),
            id_next: Vec::new(),
            deleted: Vec::new(),
            deleted_count: 0,
            chunk_min_ts: Vec::new(),
            chunk_max_ts: Vec::new(),
            rollup_dims: schema.rollup_dims.clone(),
            rollups: FastMap::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    /// Rows not deleted.
    pub(crate) fn live_len(&self) -> usize {
        self.len() - self.deleted_count
    }

    #[inline]
    pub(crate) fn is_deleted(&self, row: usize) -> bool {
        self.deleted
            .get(row / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Marks a row deleted; false if it already was.
    pub(crate) fn mark_deleted(&mut self, row: usize) -> bool {
        if row >= self.len() || self.is_deleted(row) {
            return false;
        }
        let w = row / 64;
        if self.deleted.len() <= w {
            self.deleted.resize(w + 1, 0);
        }
        self.deleted[w] |= 1 << (row % 64);
        self.deleted_count += 1;
        let (key, acc) = self.roll_entry(row);
        if let Some(e) = self.rollups.get_mut(&key) {
            e.sub(&acc);
            if e.count == 0 {
                self.rollups.remove(&key);
            }
        }
        true
    }

    fn roll_entry(&self, row: usize) -> (RollKey, RollAcc) {
        let mut codes = [0u32; MAX_ROLLUP_DIMS];
        for (slot, &d) in codes.iter_mut().zip(&self.rollup_dims) {
            *slot = self.dims[d][row];
        }
        let acc = RollAcc {
            count: 1,
            metric: self.metric[row] as i128,
            counters: self.counters.iter().map(|c| c[row] as u64).collect(),
        };
        ((day_of(self.ts[row]), codes), acc)
    }

    /// Appends one decoded row.
    #[inline]
    pub(crate) fn push(&mut self, r: &RawRow<'_>) {
        let row = self.ts.len();
        self.ts.push(r.ts_ns);
        self.metric.push(r.metric);
        self.latency.push(r.latency_ms);
        self.latency_detail.push(r.latency_detail_ms);
        for (col, &v) in self.counters.iter_mut().zip(&r.counters) {
            col.push(v);
        }
        self.status.push(r.status);
        self.flags.push(r.flags);
        for ((col, dict), v) in self.dims.iter_mut().zip(&mut self.dicts).zip(&r.dims) {
            col.push(dict.intern(v));
        }
        self.ids.push(r.id);
        for (col, v) in self.labels.iter_mut().zip(&r.labels) {
            col.push(v);
        }
        let h = hash64(r.id.as_bytes());
        let prev = self.id_heads.insert(h, row as u32).unwrap_or(NO_ROW);
        self.id_next.push(prev);
        let mut codes = [0u32; MAX_ROLLUP_DIMS];
        for (slot, &d) in codes.iter_mut().zip(&self.rollup_dims) {
            *slot = self.dims[d][row];
        }
        let acc = self.rollups.entry((day_of(r.ts_ns), codes)).or_default();
        acc.count += 1;
        acc.metric += r.metric as i128;
        if acc.counters.len() != r.counters.len() {
            acc.counters.resize(r.counters.len(), 0);
        }
        for (a, &c) in acc.counters.iter_mut().zip(&r.counters) {
            *a += c as u64;
        }
        if row.is_multiple_of(CHUNK_ROWS) {
            self.chunk_min_ts.push(r.ts_ns);
            self.chunk_max_ts.push(r.ts_ns);
        } else if let (Some(lo), Some(hi)) =
            (self.chunk_min_ts.last_mut(), self.chunk_max_ts.last_mut())
        {
            *lo = (*lo).min(r.ts_ns);
            *hi = (*hi).max(r.ts_ns);
        }
    }

    /// Appends every event of a frame. `is_dead` says whether an id is tombstoned.
    pub(crate) fn push_frame<'a>(
        &mut self,
        mut dec: EventsDecoder<'a>,
        scratch: &mut RawRow<'a>,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<usize, String> {
        let mut n = 0;
        while dec.next_into(scratch)? {
            self.push(scratch);
            if is_dead(scratch.id) {
                self.mark_deleted(self.len() - 1);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Rows whose id is `id`, newest first.
    pub(crate) fn rows_with_id<'s>(&'s self, id: &'s str) -> impl Iterator<Item = usize> + 's {
        let mut cur = self
            .id_heads
            .get(&hash64(id.as_bytes()))
            .copied()
            .unwrap_or(NO_ROW);
        std::iter::from_fn(move || {
            while cur != NO_ROW {
                let row = cur as usize;
                cur = self.id_next[row];
                if self.ids.get(row) == id {
                    return Some(row);
                }
            }
            None
        })
    }
}

/// A shard's memtable: the columns behind a lock, plus where they came from.
#[derive(Debug)]
pub(crate) struct MemTable {
    pub shard: usize,
    /// Generation of the WAL file these rows are in.
    pub generation: u64,
    pub data: RwLock<MemData>,
}

impl MemTable {
    pub(crate) fn new(shard: usize, generation: u64, schema: &SchemaDef) -> Self {
        MemTable {
            shard,
            generation,
            data: RwLock::new(MemData::new(schema)),
        }
    }

    /// Read access; a poisoned lock (a panic elsewhere) still yields the data, which is only
    /// ever appended to.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, MemData> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemData> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, events, memdata};
    use crate::time::day_of;

    /// The rollups recomputed from the live rows.
    fn naive_rollups(m: &MemData) -> FastMap<RollKey, RollAcc> {
        let mut out: FastMap<RollKey, RollAcc> = FastMap::default();
        for r in (0..m.len()).filter(|&r| !m.is_deleted(r)) {
            let mut codes = [0u32; MAX_ROLLUP_DIMS];
            codes[0] = m.dims[0][r];
            codes[1] = m.dims[1][r];
            let acc = out.entry((day_of(m.ts[r]), codes)).or_default();
            acc.add(&RollAcc {
                count: 1,
                metric: m.metric[r] as i128,
                counters: vec![m.counters[0][r] as u64],
            });
        }
        out
    }

    #[test]
    fn rows_land_in_columns_with_interned_dims_and_chunk_time_ranges() {
        let evs = events(0..600);
        let m = memdata(&evs);
        assert_eq!((m.len(), m.live_len()), (600, 600));
        for (r, e) in evs.iter().enumerate() {
            assert_eq!(m.ts[r], e.ts_ns);
            assert_eq!(m.metric[r], e.metric);
            assert_eq!(m.counters[0][r], e.counters[0]);
            assert_eq!(m.status[r], e.status);
            assert_eq!(m.dicts[0].value(m.dims[0][r]), e.dims[0]);
            assert_eq!(m.dicts[1].value(m.dims[1][r]), e.dims[1]);
            assert_eq!(m.ids.get(r), e.id);
            assert_eq!(m.labels[0].get(r), e.labels[0]);
        }
        assert_eq!((m.dicts[0].len(), m.dicts[1].len()), (7, 3));
        assert_eq!(m.dicts[0].get("u3"), Some(3));
        assert_eq!(m.dicts[0].get("nobody"), None);
        // 600 rows: chunks of 256, 256 and 88 rows.
        assert_eq!(m.chunk_min_ts.len(), 3);
        for c in 0..3 {
            let rows = c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(600);
            assert_eq!(
                m.chunk_min_ts[c],
                m.ts[rows.clone()].iter().copied().min().unwrap()
            );
            assert_eq!(m.chunk_max_ts[c], m.ts[rows].iter().copied().max().unwrap());
        }
    }

    #[test]
    fn ids_resolve_newest_first_and_deletes_keep_the_rollups_exact() {
        let mut evs = events(0..300);
        // The same id three times.
        for (k, i) in [10usize, 150, 290].into_iter().enumerate() {
            evs[i].id = "dup".into();
            evs[i].metric = k as i64;
        }
        let mut m = memdata(&evs);
        assert_eq!(m.rows_with_id("dup").collect::<Vec<_>>(), [290, 150, 10]);
        assert_eq!(m.rows_with_id("e5").collect::<Vec<_>>(), [5]);
        assert_eq!(m.rows_with_id("absent").count(), 0);
        assert_eq!(m.rollups, naive_rollups(&m));
        assert!(m.mark_deleted(150));
        assert!(!m.mark_deleted(150), "twice");
        assert!(!m.mark_deleted(300), "out of range");
        for r in (0..300).step_by(7) {
            m.mark_deleted(r);
        }
        assert!(m.is_deleted(150) && m.is_deleted(0) && !m.is_deleted(1));
        assert_eq!(m.live_len(), 300 - m.deleted_count);
        assert_eq!(m.rollups, naive_rollups(&m));
        assert!(
            m.rollups.values().all(|a| a.count > 0),
            "empty buckets are dropped"
        );
    }

    #[test]
    fn roll_accumulators_add_and_subtract() {
        let mut a = RollAcc::default();
        let b = RollAcc {
            count: 2,
            metric: -7,
            counters: vec![3, 4],
        };
        a.add(&b);
        a.add(&b);
        assert_eq!(
            (a.count, a.metric, a.counters.clone()),
            (4, -14, vec![6, 8])
        );
        a.sub(&b);
        assert_eq!(a, b);
        let e = event(1);
        assert_eq!(memdata(&[e]).rollups.len(), 1);
    }
}
