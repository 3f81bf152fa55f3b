//! Durable tombstones: ids deleted by `delete_event(s)`.
//!
//! `tombstones.log` has the WAL's file header (shard 0xFFFF, generation 0) followed by
//! tombstone frames. Each delete is one frame, fsynced before the call returns. On open the
//! whole log is read into a set; a deleted id stays deleted (events with that id, whenever
//! appended, are invisible and are left out of new segments).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use crate::config::WalRecoveryMode;
use crate::error::{DbError, Result};
use crate::hash::FastBuild;
use crate::schema::SchemaDef;
use crate::wal::frame::{decode_tombstones, encode_tombstones, FrameBuf, FrameKind};
use crate::wal::reader::{read_wal, DiscardedTail, WalRead};
use crate::wal::writer::{AppendError, WalWriter};
use crate::wal::WalHeader;

/// File name of the tombstone log.
pub(crate) const TOMBSTONE_FILE: &str = "tombstones.log";

type IdSet = HashSet<Box<str>, FastBuild>;

#[derive(Debug)]
pub(crate) struct Tombstones {
    set: RwLock<IdSet>,
    len: AtomicUsize,
    log: Mutex<LogState>,
}

/// The log file, once created, and whether a failed write left it in an unknown state.
#[derive(Debug, Default)]
struct LogState {
    writer: Option<WalWriter>,
    failed: Option<String>,
}

impl Tombstones {
    /// Loads the log (if any). `writable` opens it for appends, creating it lazily.
    pub(crate) fn load(
        dir: &Path,
        schema: &SchemaDef,
        mode: WalRecoveryMode,
        writable: bool,
        discarded: &mut Vec<DiscardedTail>,
    ) -> Result<Tombstones> {
        let path = dir.join(TOMBSTONE_FILE);
        let mut set = IdSet::default();
        let mut log = None;
        if path.exists() {
            match read_wal(&path, schema, mode)? {
                WalRead::Image(mut img) => {
                    let mut bad = None;
                    for (at, frame) in img.frames() {
                        match decode_tombstones(frame.payload) {
                            Ok(ids) if frame.kind == FrameKind::Tombstones => {
                                set.extend(ids.into_iter().map(String::into_boxed_str))
                            }
                            Ok(_) => {
                                bad = Some((
                                    at,
                                    "unexpected frame kind in tombstone log".to_string(),
                                ));
                                break;
                            }
                            Err(e) => {
                                bad = Some((at, e));
                                break;
                            }
                        }
                    }
                    if let Some((at, why)) = bad {
                        if mode == WalRecoveryMode::AbsoluteConsistency {
                            return Err(DbError::CorruptWal {
                                path,
                                offset: at,
                                reason: why,
                            });
                        }
                        img.discard_from(at, why);
                    }
                    if let Some(d) = img.discarded.clone() {
                        tracing::warn!(path = %d.path.display(), offset = d.offset, bytes = d.bytes, reason = %d.reason, "tombstone log tail discarded");
                        discarded.push(d);
                    }
                    if writable {
                        log = Some(WalWriter::open_at(&path, img.valid_len)?);
                    }
                }
                WalRead::BadHeader { reason, .. } => {
                    return Err(DbError::CorruptWal {
                        path,
                        offset: 0,
                        reason,
                    });
                }
            }
        }
        Ok(Tombstones {
            len: AtomicUsize::new(set.len()),
            set: RwLock::new(set),
            log: Mutex::new(LogState {
                writer: log,
                failed: None,
            }),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, IdSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        !self.is_empty() && self.read().contains(id)
    }

    /// Drops the ids for which `keep` is false, from the set and from the log: the log is
    /// rewritten with the kept ids (one frame) under a temporary name, fsynced, renamed over
    /// the log and the directory fsynced, so a crash leaves the old log or the new one. Returns
    /// how many ids were dropped.
    pub(crate) fn retain(
        &self,
        dir: &Path,
        schema: &SchemaDef,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &log.failed {
            return Err(DbError::TombstoneLogFailed {
                reason: reason.clone(),
            });
        }
        let kept: Vec<Box<str>> = self.read().iter().filter(|id| keep(id)).cloned().collect();
        let dropped = self.len.load(Ordering::Acquire) - kept.len();
        if dropped == 0 {
            return Ok(0);
        }
        let path = dir.join(TOMBSTONE_FILE);
        let tmp = dir.join(format!("{TOMBSTONE_FILE}.tmp"));
        let mut w = WalWriter::create(&tmp, log_header(schema))?;
        if !kept.is_empty() {
            let ids: Vec<&str> = kept.iter().map(|b| &**b).collect();
            let mut frame = FrameBuf::new(FrameKind::Tombstones);
            encode_tombstones(&mut frame, &ids)?;
            w.append(frame.finish()?).map_err(|e| match e {
                AppendError::RolledBack(e) | AppendError::Poisoned(e) => e,
            })?;
        }
        w.sync()?;
        std::fs::rename(&tmp, &path).map_err(|e| DbError::io("install tombstone log", &path, e))?;
        crate::fsutil::sync_dir(dir)?;
        w.path = path;
        log.writer = Some(w);
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        *set = kept.into_iter().collect();
        self.len.store(set.len(), Ordering::Release);
        Ok(dropped)
    }

    /// Durably records `ids` (one frame, fsynced), then adds them to the set.
    pub(crate) fn record(&self, dir: &Path, schema: &SchemaDef, ids: &[&str]) -> Result<()> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &log.failed {
            return Err(DbError::TombstoneLogFailed {
                reason: reason.clone(),
            });
        }
        let path: PathBuf = dir.join(TOMBSTONE_FILE);
        let w = match log.writer.take() {
            Some(w) => w,
            None => {
                let header = log_header(schema);
                // Prepared under a temporary name: a crash never leaves a log whose header is
                // cut short under the real name.
                let tmp = dir.join(format!("{TOMBSTONE_FILE}.tmp"));
                let mut w = WalWriter::create(&tmp, header)?;
                w.sync()?;
                std::fs::rename(&tmp, &path)
                    .map_err(|e| DbError::io("install tombstone log", &path, e))?;
                crate::fsutil::sync_dir(dir)?;
                w.path = path.clone();
                w
            }
        };
        let state = &mut *log;
        let w = state.writer.insert(w);
        let mut frame = FrameBuf::new(FrameKind::Tombstones);
        encode_tombstones(&mut frame, ids)?;
        match w.append(frame.finish()?) {
            Ok(()) => {}
            Err(AppendError::RolledBack(e)) => return Err(e),
            Err(AppendError::Poisoned(e)) => {
                state.failed = Some(e.to_string());
                return Err(e);
            }
        }
        if let Err(e) = w.sync() {
            // The frame may or may not be durable: refuse further deletes until reopened, when
            // the log is read back and the set rebuilt from what is really there.
            state.failed = Some(e.to_string());
            return Err(e);
        }
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.extend(ids.iter().map(|s| Box::<str>::from(*s)));
        self.len.store(set.len(), Ordering::Release);
        Ok(())
    }
}

/// The header of the tombstone log (FORMAT.md 6).
fn log_header(schema: &SchemaDef) -> WalHeader {
    WalHeader {
        version: crate::wal::WAL_VERSION,
        shard: u16::MAX,
        generation: 0,
        schema_id: schema.schema_id,
        fingerprint: schema.fingerprint(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::schema;

    fn load(dir: &Path, mode: WalRecoveryMode) -> Result<(Tombstones, Vec<DiscardedTail>)> {
        let mut discarded = Vec::new();
        let t = Tombstones::load(dir, &schema(), mode, true, &mut discarded)?;
        Ok((t, discarded))
    }

    #[test]
    fn recorded_ids_are_durable_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = load(dir.path(), WalRecoveryMode::default()).unwrap();
        assert!(t.is_empty() && !t.contains("a"));
        assert!(!dir.path().join(TOMBSTONE_FILE).exists(), "created lazily");
        t.record(dir.path(), &schema(), &["a", "b"]).unwrap();
        t.record(dir.path(), &schema(), &["c", "a"]).unwrap();
        assert!(t.contains("a") && t.contains("c") && !t.contains("d"));
        assert_eq!(t.read().len(), 3);
        drop(t);
        let (t, discarded) = load(dir.path(), WalRecoveryMode::AbsoluteConsistency).unwrap();
        assert!(discarded.is_empty());
        assert_eq!(t.read().len(), 3);
        // Appends continue the same log.
        t.record(dir.path(), &schema(), &["d"]).unwrap();
        drop(t);
        assert!(load(dir.path(), WalRecoveryMode::default())
            .unwrap()
            .0
            .contains("d"));
    }

    #[test]
    fn retain_rewrites_the_log_with_the_kept_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = load(dir.path(), WalRecoveryMode::default()).unwrap();
        t.record(dir.path(), &schema(), &["a", "b", "c"]).unwrap();
        assert_eq!(t.retain(dir.path(), &schema(), |id| id != "b").unwrap(), 1);
        assert_eq!(t.retain(dir.path(), &schema(), |_| true).unwrap(), 0);
        assert!(t.contains("a") && !t.contains("b"));
        t.record(dir.path(), &schema(), &["d"]).unwrap();
        drop(t);
        let (t, _) = load(dir.path(), WalRecoveryMode::AbsoluteConsistency).unwrap();
        let mut ids: Vec<String> = t.read().iter().map(|b| b.to_string()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a", "c", "d"]);
        assert!(!dir.path().join(format!("{TOMBSTONE_FILE}.tmp")).exists());
        assert_eq!(t.retain(dir.path(), &schema(), |_| false).unwrap(), 3);
        drop(t);
        let (t, _) = load(dir.path(), WalRecoveryMode::AbsoluteConsistency).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_or_refused_per_the_recovery_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = load(dir.path(), WalRecoveryMode::default()).unwrap();
        t.record(dir.path(), &schema(), &["kept"]).unwrap();
        t.record(dir.path(), &schema(), &["torn"]).unwrap();
        drop(t);
        let path = dir.path().join(TOMBSTONE_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let err = load(dir.path(), WalRecoveryMode::AbsoluteConsistency).unwrap_err();
        assert!(matches!(err, DbError::CorruptWal { .. }), "{err}");
        let (t, discarded) = load(dir.path(), WalRecoveryMode::TolerateCorruptTail).unwrap();
        assert!(t.contains("kept") && !t.contains("torn"));
        assert_eq!(discarded.len(), 1);
        assert_eq!(discarded[0].path, path);
    }

    #[test]
    fn a_log_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = load(dir.path(), WalRecoveryMode::default()).unwrap();
        t.record(dir.path(), &schema(), &["x"]).unwrap();
        drop(t);
        let mut other = schema();
        other.schema_id += 1;
        let mut discarded = Vec::new();
        let err = Tombstones::load(
            dir.path(),
            &other,
            WalRecoveryMode::default(),
            false,
            &mut discarded,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DbError::CorruptWal { .. } | DbError::SchemaMismatch { .. }
            ),
            "{err}"
        );
    }
}
