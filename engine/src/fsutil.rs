//! Small file-system helpers shared by the WAL, segments and the schema file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{DbError, Result};

/// fsyncs a directory so that renames and unlinks inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| DbError::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| DbError::io("fsync directory", dir, e))
}

/// Writes `bytes` to `path` atomically: to `tmp` (a name beside it) first, fsync, rename to
/// `path`, fsync `dir`. A failed write removes `tmp`. Used for `keplordb.schema` and segments.
pub(crate) fn write_atomic(dir: &Path, tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let result = write_synced(tmp, bytes).and_then(|()| {
        fs::rename(tmp, path).map_err(|e| DbError::io("rename", path, e))?;
        sync_dir(dir)
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Creates (or truncates) `path`, writes `bytes` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| DbError::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| DbError::io("write", path, e))?;
    f.sync_all().map_err(|e| DbError::io("fsync", path, e))
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DbError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_never_leaves_the_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join("f.tmp"), dir.path().join("f"));
        write_atomic(dir.path(), &tmp, &path, b"one").unwrap();
        write_atomic(dir.path(), &tmp, &path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!tmp.exists());
        // Renaming onto a non-empty directory fails once the temp file is written: it is removed.
        let blocked = dir.path().join("d");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        let err = write_atomic(dir.path(), &tmp, &blocked, b"three").unwrap_err();
        assert!(err.to_string().starts_with("rename"), "{err}");
        assert!(!tmp.exists());
        // A temp name that cannot be created fails before anything is written.
        let nowhere = dir.path().join("missing").join("f.tmp");
        let err = write_atomic(dir.path(), &nowhere, &path, b"four").unwrap_err();
        assert!(err.to_string().starts_with("create"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }
}
