//! Replaying a shard WAL's frames into a memtable, and checking them without applying them.

use std::collections::BTreeMap;

use super::RecoveryReport;
use crate::config::WalRecoveryMode;
use crate::error::{DbError, Result};
use crate::memtable::{MemData, MemTable};
use crate::schema::SchemaDef;
use crate::staged::{StagedBatch, StagedSet};
use crate::tombstone::Tombstones;
use crate::wal::frame::{
    decode_checkpoints, read_frame, EventsDecoder, FrameKind, RawFrame, RawRow, FRAME_HEADER_LEN,
};
use crate::wal::reader::WalImage;

/// Replays a WAL image into a new memtable, merging its checkpoints into `cps` and tracking
/// its staged batches in `staged` (shared by the rotating and the active WAL of a shard). A
/// frame that passed its checksum but does not decode is treated like a corrupt frame.
pub(super) fn replay(
    img: &mut WalImage,
    schema: &SchemaDef,
    tombstones: &Tombstones,
    (cps, staged): (&mut BTreeMap<String, u64>, &mut StagedSet),
    report: &mut RecoveryReport,
    mode: WalRecoveryMode,
) -> Result<MemTable> {
    let mem = MemTable::new(img.header.shard as usize, img.header.generation, schema);
    let bad = {
        let mut data = mem.write();
        let dead = tombstones.read();
        let mut apply = Apply {
            version: img.header.version,
            schema,
            data: &mut data,
            is_dead: &|id: &str| dead.contains(id),
            cps,
            staged,
        };
        apply.frames(img, report)
    };
    if let Some((at, why)) = bad {
        if mode == WalRecoveryMode::AbsoluteConsistency {
            return Err(DbError::CorruptWal {
                path: img.path.clone(),
                offset: at,
                reason: why,
            });
        }
        img.discard_from(at, why);
    }
    if let Some(d) = &img.discarded {
        report.discarded.push(d.clone());
    }
    Ok(mem)
}

/// Raises `key`'s position in `cps` to `position` (positions only grow).
pub(super) fn merge_checkpoint(cps: &mut BTreeMap<String, u64>, key: String, position: u64) {
    let e = cps.entry(key).or_insert(position);
    *e = (*e).max(position);
}

/// Applies a WAL's frames to a memtable, its checkpoints and its staged batches.
struct Apply<'a> {
    /// The WAL's format version.
    version: u16,
    schema: &'a SchemaDef,
    data: &'a mut MemData,
    /// Whether an id is tombstoned.
    is_dead: &'a dyn Fn(&str) -> bool,
    cps: &'a mut BTreeMap<String, u64>,
    staged: &'a mut StagedSet,
}

impl Apply<'_> {
    /// Applies every valid frame of `img` in order, counting them in `report`; stops at the first
    /// frame that does not apply and returns its offset and why.
    fn frames(&mut self, img: &WalImage, report: &mut RecoveryReport) -> Option<(u64, String)> {
        for (at, frame) in img.frames() {
            match self.frame(at, &frame, &img.bytes) {
                Ok(n) => {
                    report.frames_replayed += 1;
                    report.events_replayed += n;
                }
                Err(why) => return Some((at, why)),
            }
        }
        None
    }

    /// Applies one frame (at offset `at` of the WAL's `bytes`); returns the events it made visible.
    fn frame(&mut self, at: u64, frame: &RawFrame<'_>, bytes: &[u8]) -> Result<u64, String> {
        check_kind(self.version, frame.kind)?;
        match frame.kind {
            FrameKind::Events => self.events(frame),
            FrameKind::Staged => self.stage(at, frame, bytes),
            FrameKind::Publish => self.publish(frame.payload),
            FrameKind::Retract => self.retract(frame.payload),
            FrameKind::Checkpoints => self.checkpoints(frame.payload),
            FrameKind::Tombstones => Err(TOMBSTONES_IN_SHARD_WAL.to_string()),
        }
    }

    /// An events frame: validated whole, then its events go to the memtable.
    fn events(&mut self, frame: &RawFrame<'_>) -> Result<u64, String> {
        check_events(frame, self.schema)?;
        let dec = EventsDecoder::new(frame, self.schema)?;
        if let Some((k, p)) = dec.checkpoint {
            merge_checkpoint(self.cps, k.to_string(), p);
        }
        let mut scratch = RawRow::default();
        Ok(self.data.push_frame(dec, &mut scratch, self.is_dead)? as u64)
    }

    /// A staged frame: validated, then kept (invisible) until published or retracted.
    fn stage(&mut self, at: u64, frame: &RawFrame<'_>, bytes: &[u8]) -> Result<u64, String> {
        check_events(frame, self.schema)?;
        let start = at as usize;
        let bytes = &bytes[start..start + FRAME_HEADER_LEN + frame.payload.len()];
        self.staged.insert(StagedBatch::from_frame(bytes)?);
        Ok(0)
    }

    /// A publish frame: the staged batches it names go to the memtable, their checkpoints with
    /// them.
    fn publish(&mut self, payload: &[u8]) -> Result<u64, String> {
        let mut n = 0;
        for (k, up_to) in decode_checkpoints(payload)? {
            for b in self.staged.take_up_to(&k, up_to) {
                let (raw, _) = read_frame(&b.frame).map_err(|e| e.to_string())?;
                let dec = EventsDecoder::new(&raw, self.schema)?;
                let mut scratch = RawRow::default();
                n += self.data.push_frame(dec, &mut scratch, self.is_dead)? as u64;
                merge_checkpoint(self.cps, b.source.clone(), b.position);
            }
        }
        Ok(n)
    }

    /// A retract frame: the staged batches it names are dropped.
    fn retract(&mut self, payload: &[u8]) -> Result<u64, String> {
        for (k, from) in decode_checkpoints(payload)? {
            self.staged.retract_from(&k, from);
        }
        Ok(0)
    }

    /// A checkpoint snapshot frame.
    fn checkpoints(&mut self, payload: &[u8]) -> Result<u64, String> {
        for (k, p) in decode_checkpoints(payload)? {
            merge_checkpoint(self.cps, k, p);
        }
        Ok(0)
    }
}

const TOMBSTONES_IN_SHARD_WAL: &str = "tombstone frame in a shard WAL";

/// Decodes every frame of `img` without applying it.
pub(super) fn validate_frames(img: &WalImage, schema: &SchemaDef) -> Result<()> {
    for (at, frame) in img.frames() {
        if let Err(reason) = check_frame(img.header.version, &frame, schema) {
            return Err(DbError::CorruptWal {
                path: img.path.clone(),
                offset: at,
                reason,
            });
        }
    }
    Ok(())
}

/// Decodes one frame of a version-`version` WAL without applying it.
fn check_frame(version: u16, frame: &RawFrame<'_>, schema: &SchemaDef) -> Result<(), String> {
    check_kind(version, frame.kind)?;
    match frame.kind {
        FrameKind::Events | FrameKind::Staged => check_events(frame, schema),
        FrameKind::Checkpoints | FrameKind::Publish | FrameKind::Retract => {
            decode_checkpoints(frame.payload).map(|_| ())
        }
        FrameKind::Tombstones => Err(TOMBSTONES_IN_SHARD_WAL.to_string()),
    }
}

/// Version 1 of the WAL format predates staged batches.
fn check_kind(version: u16, kind: FrameKind) -> Result<(), String> {
    let staging = matches!(
        kind,
        FrameKind::Staged | FrameKind::Publish | FrameKind::Retract
    );
    if version < 2 && staging {
        return Err(format!("frame kind {kind:?} in a version-{version} WAL"));
    }
    Ok(())
}

/// Decodes every event of an events or staged frame without applying it.
fn check_events(frame: &RawFrame<'_>, schema: &SchemaDef) -> Result<(), String> {
    let mut dec = EventsDecoder::new(frame, schema)?;
    let mut row = RawRow::default();
    while dec.next_into(&mut row)? {}
    if frame.kind == FrameKind::Staged && dec.checkpoint.is_none() {
        return Err("a staged frame without a source checkpoint".into());
    }
    Ok(())
}
