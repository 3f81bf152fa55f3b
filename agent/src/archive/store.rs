//! Where the archive's files go, behind a small trait so that an object-store writer (S3, GCS,
//! through the `object_store` crate) can take the place of the local directory: a file is
//! started, written, then committed whole under its name; files are listed and removed by name.
//!
//! [`LocalDir`] is the one implementation today: a directory on a local file system, which may
//! be a mounted volume or a bucket mounted as a file system.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The suffix of a file still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// The archive's storage. Names are relative paths with `/` separators
/// (`dt=2026-11-24/<store>-7-0.parquet`).
pub trait ArchiveStore: Send + Sync + std::fmt::Debug {
    /// A file being written, not yet visible under its name.
    type Pending: Write + Send;

    /// Starts writing the file `name` (under a temporary name).
    fn begin(&self, name: &str) -> io::Result<Self::Pending>;

    /// Makes `pending` durable and visible under its name, replacing a file of that name at
    /// once; returns its bytes. A crash before this leaves no file of that name, or the one
    /// it replaces; after it, the whole new one.
    fn commit(&self, pending: Self::Pending) -> io::Result<u64>;

    /// The names of the committed files that start with `prefix` (at any depth).
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;

    /// Removes the file `name`, durably; a missing file is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Removes every file left half-written by a crash; returns how many.
    fn remove_temporaries(&self) -> io::Result<usize>;

    /// The bytes of the file `name`, or `None` when there is none.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;

    /// Writes `bytes` as the file `name`, atomically (begin, write, commit).
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<u64> {
        let mut p = self.begin(name)?;
        p.write_all(bytes)?;
        self.commit(p)
    }
}

/// The archive in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

/// A file of a [`LocalDir`] being written: `.<name>.tmp` beside its final name.
#[derive(Debug)]
pub struct LocalPending {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Write for LocalPending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl LocalDir {
    /// The archive rooted at `root`, created if missing.
    pub fn open(root: &Path) -> io::Result<LocalDir> {
        fs::create_dir_all(root).map_err(|e| with_path(e, "create", root))?;
        Ok(LocalDir {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, name: &str) -> io::Result<PathBuf> {
        let rel = Path::new(name);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || name.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("archive file name {name:?} is not a plain relative path"),
            ));
        }
        Ok(self.root.join(rel))
    }

    /// The files under `dir` (relative to the root), recursively, as names.
    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(with_path(e, "list", dir)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| with_path(e, "list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_name = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry
                .file_type()
                .map_err(|e| with_path(e, "stat", &entry.path()))?
                .is_dir()
            {
                self.walk(&entry.path(), &rel_name, out)?;
            } else {
                out.push((rel_name, entry.path()));
            }
        }
        Ok(())
    }
}

impl ArchiveStore for LocalDir {
    type Pending = LocalPending;

    fn begin(&self, name: &str) -> io::Result<LocalPending> {
        let path = self.path_of(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| with_path(e, "create", &dir))?;
            // The new directories' entries, up to the root.
            let mut d = dir.as_path();
            while let Some(parent) = d.parent().filter(|_| d != self.root) {
                sync_dir(parent)?;
                d = parent;
            }
        }
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{}{TMP_SUFFIX}", file_name.unwrap_or_default()));
        let file = File::create(&tmp).map_err(|e| with_path(e, "create", &tmp))?;
        Ok(LocalPending {
            out: BufWriter::new(file),
            tmp,
            path,
        })
    }

    fn commit(&self, p: LocalPending) -> io::Result<u64> {
        let file = p
            .out
            .into_inner()
            .map_err(|e| with_path(e.into_error(), "write", &p.tmp))?;
        file.sync_all().map_err(|e| with_path(e, "fsync", &p.tmp))?;
        let bytes = file
            .metadata()
            .map_err(|e| with_path(e, "stat", &p.tmp))?
            .len();
        drop(file);
        fs::rename(&p.tmp, &p.path).map_err(|e| with_path(e, "rename", &p.path))?;
        sync_dir(p.path.parent().unwrap_or(&self.root))?;
        Ok(bytes)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut all = Vec::new();
        self.walk(&self.root, "", &mut all)?;
        let mut names: Vec<String> = all
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(prefix) && !n.ends_with(TMP_SUFFIX))
            .collect();
        names.sort();
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.path_of(name)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(with_path(e, "remove", &path)),
        }
    }

    fn remove_temporaries(&self) -> io::Result<usize> {
        let mut all = Vec::new();
        self.walk(&self.root, "", &mut all)?;
        let mut removed = 0;
        for (name, path) in all {
            if name.ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).map_err(|e| with_path(e, "remove", &path))?;
                sync_dir(path.parent().unwrap_or(&self.root))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.path_of(name)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(e, "read", &path)),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "fsync", dir))
}

/// `e` with what was done to which path, for the log.
fn with_path(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}
