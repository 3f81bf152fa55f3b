//! The fault shim (`tests/faults/shim.c`): built once per test process with `cc`, loaded into
//! `crash-child` with `LD_PRELOAD`; and the crash model: rebuilding a directory as a file system
//! that forgets everything not fsynced would leave it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the built shim, or why it could not be built (no C compiler).
pub fn shim() -> Result<&'static Path, String> {
    static SHIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/shim.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("keplor-shim-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .status()
            .map_err(|e| format!("cannot run cc ({e}); install a C compiler (build-essential)"))?;
        if !status.success() {
            return Err(format!("cc failed to build {}: {status}", src.display()));
        }
        Ok(out)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// The shim, or a panic saying why not: CI has a C compiler, so a missing one is a failure
/// there; elsewhere `KEPLOR_SKIP_SHIM=1` skips the shim tests.
pub fn shim_or_skip(test: &str) -> Option<&'static Path> {
    match shim() {
        Ok(p) => Some(p),
        Err(why) if std::env::var_os("KEPLOR_SKIP_SHIM").is_some() => {
            eprintln!("{test}: skipped: {why}");
            None
        }
        Err(why) => panic!("{test}: {why} (set KEPLOR_SKIP_SHIM=1 to skip)"),
    }
}

/// Fault settings for one child process.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// `op:match:nth:count:action` rules (see shim.c).
    pub rules: Vec<String>,
    /// Keep a shadow of what is durable, for `crash_rebuild`.
    pub shadow: Option<PathBuf>,
    /// Faults wait for this file (the child creates it once the engine is open).
    pub arm: Option<PathBuf>,
    /// One line per injected fault.
    pub log: Option<PathBuf>,
}

impl Faults {
    /// Sets the environment of `cmd` so the shim watches `dir`.
    pub fn apply(&self, cmd: &mut Command, shim: &Path, dir: &Path) {
        let dir = dir.canonicalize().expect("data dir exists");
        cmd.env("LD_PRELOAD", shim)
            .env("KEPLOR_SHIM_DIR", &dir)
            .env("KEPLOR_SHIM_RULES", self.rules.join(";"));
        if let Some(s) = &self.shadow {
            fs::create_dir_all(s).unwrap();
            cmd.env("KEPLOR_SHIM_SHADOW", s);
        }
        if let Some(a) = &self.arm {
            let _ = fs::remove_file(a);
            cmd.env("KEPLOR_SHIM_ARM", a).env("KEPLOR_CHILD_ARM", a);
        }
        if let Some(l) = &self.log {
            cmd.env("KEPLOR_SHIM_LOG", l);
        }
    }
}

/// The faults the shim logged: `(op, action, path)`.
pub fn logged(log: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ' ');
            Some((
                p.next()?.to_string(),
                p.next()?.to_string(),
                p.next()?.to_string(),
            ))
        })
        .collect()
}

/// Replaces the files of `dir` by what a crash would have left on a file system that keeps only
/// what was fsynced: the names of the last directory fsync, each with the content of its last
/// fsync (empty if it never had one). Empties `shadow` for the next process. Returns how many
/// files changed (content or presence).
pub fn crash_rebuild(dir: &Path, shadow: &Path) -> usize {
    let Ok(listing) = fs::read_to_string(shadow.join("listing")) else {
        // Killed before the shim's start-up took its listing: the child wrote nothing.
        let _ = fs::remove_dir_all(shadow);
        return 0;
    };
    let mut durable: Vec<(String, Vec<u8>)> = Vec::new();
    for line in listing.lines() {
        let (ino, name) = line.split_once(' ').expect("`<inode> <name>`");
        let content = fs::read(shadow.join(format!("ino-{ino}"))).unwrap_or_default();
        durable.push((name.to_string(), content));
    }
    let mut changed = std::collections::BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        match durable.iter().find(|(n, _)| *n == name) {
            Some((_, content)) if fs::read(entry.path()).unwrap() == *content => {}
            _ => {
                fs::remove_file(entry.path()).unwrap();
                changed.insert(name);
            }
        }
    }
    for (name, content) in &durable {
        let path = dir.join(name);
        if !path.exists() {
            fs::write(&path, content).unwrap();
            changed.insert(name.clone());
        }
    }
    fs::remove_dir_all(shadow).unwrap();
    changed.len()
}
