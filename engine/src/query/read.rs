//! Turning stored rows back into events.

use super::EventRef;
use crate::error::{DbError, Result};
use crate::event::{DynEvent, EventFlags};
use crate::memtable::MemData;
use crate::segment::reader::SegmentData;

/// Row `row` of a memtable.
pub(crate) fn mem_event(m: &MemData, row: usize) -> DynEvent {
    DynEvent {
        id: m.ids.get(row).to_string(),
        ts_ns: m.ts[row],
        metric: m.metric[row],
        counters: m.counters.iter().map(|c| c[row]).collect(),
        latency_ms: m.latency[row],
        latency_detail_ms: m.latency_detail[row],
        status: m.status[row],
        flags: EventFlags(m.flags[row]),
        dims: m
            .dims
            .iter()
            .zip(&m.dicts)
            .map(|(c, d)| d.value(c[row]).to_string())
            .collect(),
        labels: m.labels.iter().map(|l| l.get(row).to_string()).collect(),
    }
}

/// Row `row` of a segment.
pub(crate) fn seg_event(
    s: &SegmentData,
    row: usize,
    ncounters: usize,
    nlabels: usize,
) -> Result<DynEvent> {
    let intern = s.intern()?;
    let mut dims = Vec::with_capacity(intern.len());
    for (d, dict) in intern.iter().enumerate() {
        let code = s.dim(d).get(row).copied().unwrap_or(0);
        let v = dict.value(code).ok_or_else(|| DbError::CorruptSegment {
            path: Default::default(),
            section: "intern tables",
            reason: format!("code {code} of dim {d} has no value"),
        })?;
        dims.push(v.to_string());
    }
    Ok(DynEvent {
        id: s.id(row)?.to_string(),
        ts_ns: s.ts[row],
        metric: s.metric[row],
        counters: (0..ncounters).map(|c| s.counter(c)[row]).collect(),
        latency_ms: s.latency()[row],
        latency_detail_ms: s.latency_detail()[row],
        status: s.status()[row],
        flags: EventFlags(s.flags()[row]),
        dims,
        labels: (0..nlabels).map(|l| s.label(l, row).to_string()).collect(),
    })
}

/// An event type queries can materialise directly from storage: the runtime [`DynEvent`] or
/// the typed [`EventRef`], built without intermediate vectors.
pub(crate) trait FromStored: Sized + Send {
    fn ts_ns(&self) -> i64;
    fn event_id(&self) -> &str;
    fn from_mem(m: &MemData, row: usize) -> Self;
    fn from_seg(s: &SegmentData, row: usize, ncounters: usize, nlabels: usize) -> Result<Self>;
}

impl FromStored for DynEvent {
    fn ts_ns(&self) -> i64 {
        self.ts_ns
    }
    fn event_id(&self) -> &str {
        &self.id
    }
    fn from_mem(m: &MemData, row: usize) -> Self {
        mem_event(m, row)
    }
    fn from_seg(s: &SegmentData, row: usize, ncounters: usize, nlabels: usize) -> Result<Self> {
        seg_event(s, row, ncounters, nlabels)
    }
}

impl<const D: usize, const C: usize, const L: usize> FromStored for EventRef<D, C, L> {
    fn ts_ns(&self) -> i64 {
        self.ts_ns
    }
    fn event_id(&self) -> &str {
        &self.id
    }
    fn from_mem(m: &MemData, row: usize) -> Self {
        EventRef {
            id: m.ids.get(row).to_string(),
            ts_ns: m.ts[row],
            metric: m.metric[row],
            counters: std::array::from_fn(|c| m.counters[c][row]),
            latency_ms: m.latency[row],
            latency_detail_ms: m.latency_detail[row],
            status: m.status[row],
            flags: EventFlags(m.flags[row]),
            dims: std::array::from_fn(|d| m.dicts[d].value(m.dims[d][row]).to_string()),
            labels: std::array::from_fn(|l| m.labels[l].get(row).to_string()),
        }
    }
    fn from_seg(s: &SegmentData, row: usize, _: usize, _: usize) -> Result<Self> {
        let intern = s.intern()?;
        // Codes were checked against the dictionaries when they were decoded.
        let dim = |d: usize| {
            intern
                .get(d)
                .and_then(|dict| dict.value(s.dim(d)[row]))
                .unwrap_or_default()
                .to_string()
        };
        Ok(EventRef {
            id: s.id(row)?.to_string(),
            ts_ns: s.ts[row],
            metric: s.metric[row],
            counters: std::array::from_fn(|c| s.counter(c)[row]),
            latency_ms: s.latency()[row],
            latency_detail_ms: s.latency_detail()[row],
            status: s.status()[row],
            flags: EventFlags(s.flags()[row]),
            dims: std::array::from_fn(dim),
            labels: std::array::from_fn(|l| s.label(l, row).to_string()),
        })
    }
}
