//! Turning stored rows back into events.

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
        id: s.id(row).to_string(),
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
