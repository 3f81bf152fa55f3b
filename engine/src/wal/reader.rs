//! Reading a WAL file back, with the recovery policy applied.

use std::path::{Path, PathBuf};

use super::frame::{read_frame, RawFrame};
use super::{HeaderError, WalHeader, WAL_HEADER_LEN, WAL_VERSION};
use crate::config::WalRecoveryMode;
use crate::error::{DbError, Result, SchemaSummary};
use crate::schema::SchemaDef;

/// What was dropped from the end of a WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscardedTail {
    /// The WAL file.
    pub path: PathBuf,
    /// Offset of the first byte that was not kept.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes: u64,
    /// Why the frame at `offset` was rejected.
    pub reason: String,
}

/// A WAL file read into memory, valid frames delimited.
#[derive(Debug)]
pub(crate) struct WalImage {
    pub path: PathBuf,
    pub header: WalHeader,
    pub bytes: Vec<u8>,
    /// End of the last valid frame.
    pub valid_len: u64,
    pub discarded: Option<DiscardedTail>,
}

/// Outcome of reading a WAL.
#[derive(Debug)]
pub(crate) enum WalRead {
    Image(WalImage),
    /// The header itself is unreadable; nothing in the file can be trusted.
    BadHeader {
        path: PathBuf,
        reason: String,
    },
}

impl WalImage {
    /// The valid frames in order, with their offsets.
    pub(crate) fn frames(&self) -> impl Iterator<Item = (u64, RawFrame<'_>)> {
        let mut pos = WAL_HEADER_LEN;
        let end = self.valid_len as usize;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            // The frames up to `valid_len` were validated by `read_wal`.
            let (frame, len) = read_frame(&self.bytes[pos..end]).ok()?;
            let at = pos as u64;
            pos += len;
            Some((at, frame))
        })
    }
}

/// Reads and validates a WAL. Checks its schema against `schema`; applies `mode` to bad frames.
pub(crate) fn read_wal(path: &Path, schema: &SchemaDef, mode: WalRecoveryMode) -> Result<WalRead> {
    let bytes = std::fs::read(path).map_err(|e| DbError::io("read WAL", path, e))?;
    let header = match WalHeader::decode(&bytes) {
        Ok(h) => h,
        Err(HeaderError::Version(found)) => {
            return Err(DbError::UnsupportedFormat {
                path: path.to_path_buf(),
                found,
                supported: WAL_VERSION,
            })
        }
        Err(HeaderError::Corrupt(reason)) => {
            if mode == WalRecoveryMode::AbsoluteConsistency {
                return Err(DbError::CorruptWal {
                    path: path.to_path_buf(),
                    offset: 0,
                    reason,
                });
            }
            return Ok(WalRead::BadHeader {
                path: path.to_path_buf(),
                reason,
            });
        }
    };
    if header.schema_id != schema.schema_id || header.fingerprint != schema.fingerprint() {
        return Err(DbError::SchemaMismatch {
            expected: schema.summary(),
            found: SchemaSummary {
                schema_id: header.schema_id,
                fingerprint: header.fingerprint,
                columns: None,
            },
            path: path.to_path_buf(),
        });
    }
    let mut pos = WAL_HEADER_LEN;
    let mut discarded = None;
    while pos < bytes.len() {
        match read_frame(&bytes[pos..]) {
            Ok((_, len)) => pos += len,
            Err(err) => {
                let reason = err.to_string();
                if mode == WalRecoveryMode::AbsoluteConsistency {
                    return Err(DbError::CorruptWal {
                        path: path.to_path_buf(),
                        offset: pos as u64,
                        reason,
                    });
                }
                discarded = Some(DiscardedTail {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    bytes: (bytes.len() - pos) as u64,
                    reason,
                });
                break;
            }
        }
    }
    Ok(WalRead::Image(WalImage {
        path: path.to_path_buf(),
        header,
        valid_len: pos as u64,
        bytes,
        discarded,
    }))
}

impl WalImage {
    /// Cuts the valid part at `offset` (a frame that passed its checksum but does not decode).
    pub(crate) fn discard_from(&mut self, offset: u64, reason: String) {
        let end = self.bytes.len() as u64;
        self.valid_len = offset;
        self.discarded = Some(DiscardedTail {
            path: self.path.clone(),
            offset,
            bytes: end - offset,
            reason,
        });
    }
}
