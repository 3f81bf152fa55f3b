//! Staged batches: appended and made durable like any batch, but held back from queries until
//! their source publishes them (or dropped when it retracts them).
//!
//! This is the participant side of a two-phase commit with an external log: a sink stages a
//! batch with its source checkpoint, makes it durable, asks the source to accept its position
//! (for Kafka, an offset commit), and publishes on success or retracts when the source says the
//! range belongs to someone else. Both decisions are idempotent, so after a crash the sink asks
//! the source again and repeats them.
//!
//! In a shard's WAL a staged batch is an events frame of kind `Staged`; `Publish` and `Retract`
//! frames carry `(source, position)` entries. A batch is pending from its `Staged` frame until
//! a `Publish` entry of its source at or above its position (its rows then join the memtable,
//! in the order of that frame) or a `Retract` entry below its position (it is dropped). Every
//! new WAL of a shard starts with a copy of the batches still pending, so rotation never loses
//! one; a copy replaces an earlier frame of the same source and position.

use std::collections::BTreeMap;

use crate::wal::frame::{frame_checkpoint, read_frame, FrameKind};

/// One pending staged batch.
#[derive(Debug, Clone)]
pub(crate) struct StagedBatch {
    pub source: String,
    pub position: u64,
    /// The whole `Staged` frame as written (header and payload), checksum included.
    pub frame: Vec<u8>,
}

impl StagedBatch {
    /// Reads the source and position of a staged frame. `frame` must hold exactly one
    /// checksummed frame of kind `Staged` carrying a checkpoint.
    pub(crate) fn from_frame(frame: &[u8]) -> Result<StagedBatch, String> {
        let (raw, len) = read_frame(frame).map_err(|e| e.to_string())?;
        if raw.kind != FrameKind::Staged || len != frame.len() {
            return Err("not a single staged frame".into());
        }
        let (source, position) =
            frame_checkpoint(&raw)?.ok_or("a staged frame without a source checkpoint")?;
        Ok(StagedBatch {
            source: source.to_string(),
            position,
            frame: frame.to_vec(),
        })
    }
}

/// The pending staged batches of one shard, in the order they were staged.
#[derive(Debug, Default, Clone)]
pub(crate) struct StagedSet {
    batches: Vec<StagedBatch>,
}

impl StagedSet {
    /// Adds a batch, replacing a pending one of the same source and position (a copy made by
    /// rotation, or the same range staged again after a retract).
    pub(crate) fn insert(&mut self, batch: StagedBatch) {
        self.batches
            .retain(|b| !(b.source == batch.source && b.position == batch.position));
        self.batches.push(batch);
    }

    /// Removes and returns the batches of `source` at or below `up_to`, lowest position first.
    pub(crate) fn take_up_to(&mut self, source: &str, up_to: u64) -> Vec<StagedBatch> {
        let (mut out, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.batches)
            .into_iter()
            .partition(|b| b.source == source && b.position <= up_to);
        self.batches = keep;
        out.sort_by_key(|b| b.position);
        out
    }

    /// Removes the batches of `source` at or above `from`; returns how many.
    pub(crate) fn retract_from(&mut self, source: &str, from: u64) -> usize {
        let before = self.batches.len();
        self.batches
            .retain(|b| !(b.source == source && b.position >= from));
        before - self.batches.len()
    }

    /// True when `source` has a batch at or below `up_to`.
    pub(crate) fn has_up_to(&self, source: &str, up_to: u64) -> bool {
        self.batches
            .iter()
            .any(|b| b.source == source && b.position <= up_to)
    }

    /// True when `source` has a batch at or above `from`.
    pub(crate) fn has_from(&self, source: &str, from: u64) -> bool {
        self.batches
            .iter()
            .any(|b| b.source == source && b.position >= from)
    }

    /// The pending batches, in staging order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &StagedBatch> {
        self.batches.iter()
    }

    /// Moves every batch of `other` into this set.
    pub(crate) fn absorb(&mut self, other: StagedSet) {
        for b in other.batches {
            self.insert(b);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Adds the positions of every pending batch to `out`, per source, ascending.
    pub(crate) fn positions_into(&self, out: &mut BTreeMap<String, Vec<u64>>) {
        for b in &self.batches {
            let v = out.entry(b.source.clone()).or_default();
            if let Err(i) = v.binary_search(&b.position) {
                v.insert(i, b.position);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(source: &str, position: u64) -> StagedBatch {
        StagedBatch {
            source: source.into(),
            position,
            frame: Vec::new(),
        }
    }

    #[test]
    fn insert_replaces_the_same_source_and_position() {
        let mut s = StagedSet::default();
        s.insert(batch("a", 1));
        s.insert(batch("a", 2));
        s.insert(batch("a", 1));
        assert_eq!(s.iter().count(), 2);
    }

    #[test]
    fn take_and_retract_touch_only_their_source() {
        let mut s = StagedSet::default();
        for p in [5, 1, 3] {
            s.insert(batch("a", p));
        }
        s.insert(batch("b", 2));
        assert!(s.has_up_to("a", 1) && !s.has_up_to("a", 0));
        let taken: Vec<u64> = s.take_up_to("a", 3).iter().map(|b| b.position).collect();
        assert_eq!(taken, vec![1, 3]);
        assert!(s.has_from("a", 5) && !s.has_from("a", 6));
        assert_eq!(s.retract_from("a", 4), 1);
        assert_eq!(s.retract_from("a", 4), 0);
        let mut pos = BTreeMap::new();
        s.positions_into(&mut pos);
        assert_eq!(pos, BTreeMap::from([("b".to_string(), vec![2])]));
    }
}
