//! The read-only phases of opening: the directory's files classified, segments verified, WALs
//! read. Nothing here writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::replay::validate_frames;
use super::RecoveryReport;
use crate::config::WalRecoveryMode;
use crate::error::{DbError, Result};
use crate::schema::SchemaDef;
use crate::segment::{parse_segment_name, Segment, SegmentCache};
use crate::wal::reader::{read_wal, WalImage, WalRead};
use crate::wal::{parse_name, WalFileKind};

/// The files of a data directory, by what their names say they are.
#[derive(Default)]
pub(super) struct DirFiles {
    /// Segment files with their ids, in id order.
    pub segments: Vec<(u64, PathBuf)>,
    /// Leftovers of interrupted writes: temporary segments and other `.tmp` files.
    pub tmp: Vec<PathBuf>,
    /// Each shard's WAL files.
    pub wals: BTreeMap<usize, WalFiles>,
    /// The largest segment id named, temporary files included.
    pub max_segment_id: u64,
}

/// One shard's WAL files.
#[derive(Default)]
pub(super) struct WalFiles {
    pub active: Option<PathBuf>,
    pub rotating: Option<PathBuf>,
    pub new: Option<PathBuf>,
}

impl DirFiles {
    /// Lists `dir` and classifies its files; names it does not know are ignored.
    pub(super) fn list(dir: &Path) -> Result<DirFiles> {
        let mut files = DirFiles::default();
        let entries = fs::read_dir(dir).map_err(|e| DbError::io("list data directory", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DbError::io("list data directory", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            files.add(name, entry.path());
        }
        files.segments.sort();
        Ok(files)
    }

    /// Files the entry `name` at `path`.
    fn add(&mut self, name: &str, path: PathBuf) {
        if let Some((id, tmp)) = parse_segment_name(name) {
            self.max_segment_id = self.max_segment_id.max(id);
            if tmp {
                self.tmp.push(path);
            } else {
                self.segments.push((id, path));
            }
        } else if let Some((shard, kind)) = parse_name(name) {
            let f = self.wals.entry(shard).or_default();
            match kind {
                WalFileKind::Active => f.active = Some(path),
                WalFileKind::Rotating => f.rotating = Some(path),
                WalFileKind::New => f.new = Some(path),
            }
        } else if name.ends_with(".tmp") {
            self.tmp.push(path);
        }
    }
}

/// Opens and verifies every segment. A schema mismatch or an I/O error stops the open;
/// corruption only excludes the segment (and is reported).
pub(super) fn load_segments(
    files: Vec<(u64, PathBuf)>,
    schema: &SchemaDef,
    cache: &SegmentCache,
    report: &mut RecoveryReport,
) -> Result<Vec<Arc<Segment>>> {
    let mut segments = Vec::new();
    for (id, path) in files {
        match Segment::open(path.clone(), id, schema, cache) {
            Ok(s) => segments.push(s),
            Err(e @ DbError::CorruptSegment { .. }) => {
                tracing::error!(path = %path.display(), error = %e, "segment failed verification; it is kept out of queries");
                report.corrupt_segments.push((path, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(segments)
}

/// One shard's WALs as read.
pub(super) struct ShardWals {
    pub active: Option<WalRead>,
    pub rotating: Option<WalRead>,
}

impl ShardWals {
    /// The readable images, the active WAL's first.
    pub(super) fn images(&self) -> impl Iterator<Item = &WalImage> {
        [&self.active, &self.rotating]
            .into_iter()
            .flatten()
            .filter_map(|read| match read {
                WalRead::Image(img) => Some(img),
                WalRead::BadHeader { .. } => None,
            })
    }
}

/// Reads every shard's active and rotating WAL (which checks their schemas).
pub(super) fn read_wals(
    files: &BTreeMap<usize, WalFiles>,
    schema: &SchemaDef,
    mode: WalRecoveryMode,
) -> Result<BTreeMap<usize, ShardWals>> {
    let read = |p: &Option<PathBuf>| p.as_deref().map(|p| read_wal(p, schema, mode)).transpose();
    let mut wals = BTreeMap::new();
    for (&shard, f) in files {
        let active = read(&f.active)?;
        let rotating = read(&f.rotating)?;
        wals.insert(shard, ShardWals { active, rotating });
    }
    Ok(wals)
}

/// Decodes every frame of every WAL, without applying any (`AbsoluteConsistency` checks all
/// before anything in the directory is touched).
pub(super) fn validate_wals(wals: &BTreeMap<usize, ShardWals>, schema: &SchemaDef) -> Result<()> {
    for img in wals.values().flat_map(ShardWals::images) {
        validate_frames(img, schema)?;
    }
    Ok(())
}

/// The newest generation among the segments and the WALs.
pub(super) fn newest_generation(
    segments: &[Arc<Segment>],
    wals: &BTreeMap<usize, ShardWals>,
) -> u64 {
    let seg = segments.iter().map(|s| s.generation).max().unwrap_or(0);
    let wal = wals.values().flat_map(ShardWals::images);
    wal.map(|img| img.header.generation).fold(seg, u64::max)
}

/// Splits off segments superseded by a newer one of the same generation, part index and part
/// count (the larger id wins): a compaction writes its segment before it unlinks the one it
/// replaces, so a crash in between leaves both (FORMAT.md 8.3). Returns (kept, superseded).
pub(super) fn split_superseded(
    segments: Vec<Arc<Segment>>,
) -> (Vec<Arc<Segment>>, Vec<Arc<Segment>>) {
    let mut newest: std::collections::HashMap<(u64, u16, u16), u64> = Default::default();
    for s in &segments {
        let id = newest
            .entry((s.generation, s.part_index, s.part_count))
            .or_insert(s.id);
        *id = (*id).max(s.id);
    }
    segments
        .into_iter()
        .partition(|s| newest[&(s.generation, s.part_index, s.part_count)] == s.id)
}
