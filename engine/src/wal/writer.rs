//! Appending frames to a shard's WAL file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{WalHeader, WAL_HEADER_LEN};
use crate::error::{DbError, Result};

/// An open WAL file positioned at its end.
#[derive(Debug)]
pub(crate) struct WalWriter {
    pub path: PathBuf,
    pub file: Arc<File>,
    pub len: u64,
}

impl WalWriter {
    /// Creates (or truncates) `path` and writes the header. Not fsynced: the caller decides.
    pub(crate) fn create(path: &Path, header: WalHeader) -> Result<WalWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| DbError::io("create WAL", path, e))?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| DbError::io("write WAL header", path, e))?;
        Ok(WalWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len: WAL_HEADER_LEN as u64,
        })
    }

    /// Opens an existing WAL whose valid prefix is `valid_len` bytes, truncating anything after.
    pub(crate) fn open_at(path: &Path, valid_len: u64) -> Result<WalWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| DbError::io("open WAL", path, e))?;
        let actual = file
            .metadata()
            .map_err(|e| DbError::io("stat WAL", path, e))?
            .len();
        if actual != valid_len {
            file.set_len(valid_len)
                .map_err(|e| DbError::io("truncate WAL tail", path, e))?;
            file.sync_all()
                .map_err(|e| DbError::io("fsync WAL", path, e))?;
        }
        Ok(WalWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len: valid_len,
        })
    }

    /// Appends one frame with a single positional write. On failure the file is cut back to its
    /// previous length so that no partial frame sits before later ones; if even that fails the
    /// error says so and the caller must stop using this file.
    pub(crate) fn append(&mut self, frame: &[u8]) -> std::result::Result<(), AppendError> {
        match self.file.write_all_at(frame, self.len) {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let err = DbError::io("append to WAL", &self.path, e);
                match self.file.set_len(self.len) {
                    Ok(()) => Err(AppendError::RolledBack(err)),
                    Err(_) => Err(AppendError::Poisoned(err)),
                }
            }
        }
    }

    /// fdatasync.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| DbError::io("fsync WAL", &self.path, e))
    }
}

/// A failed append: either cleanly undone, or leaving the file in an unknown state.
#[derive(Debug)]
pub(crate) enum AppendError {
    RolledBack(DbError),
    Poisoned(DbError),
}
