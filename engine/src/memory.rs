//! How much memory this process may use, to size the segment cache by default.
//!
//! The limit is the smallest of the machine's memory (`MemTotal`) and the memory limits of the
//! process's control group and every ancestor group (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`): a container's limit is what the kernel enforces, not the host's
//! RAM. Everything is read from `/proc` and `/sys/fs/cgroup` once, when a config is built.

use std::path::{Path, PathBuf};

/// The segment cache when no limit can be read (not Linux, or `/proc` hidden).
const FALLBACK_CACHE_BYTES: u64 = 512 << 20;
/// The least default segment cache, however small the limit.
const MIN_CACHE_BYTES: u64 = 64 << 20;
/// The share of the memory limit the cache takes by default: the rest is for the memtables,
/// the query pool, the page cache of the mapped segments and the embedding program.
const CACHE_SHARE: u64 = 4;

/// The default `segment_cache_bytes`: a quarter of the memory this process may use, at least
/// 64 MiB; 512 MiB where no limit can be read.
pub fn default_segment_cache_bytes() -> u64 {
    cache_bytes_for(memory_limit(Path::new("/")))
}

/// The cache for a memory limit, if one is known.
fn cache_bytes_for(limit: Option<u64>) -> u64 {
    limit.map_or(FALLBACK_CACHE_BYTES, |m| {
        (m / CACHE_SHARE).max(MIN_CACHE_BYTES)
    })
}

/// The memory this process may use, read under `root` (`/` but in tests): the smallest of
/// `MemTotal` and the cgroup limits that apply.
fn memory_limit(root: &Path) -> Option<u64> {
    let total = read(root, "proc/meminfo").and_then(|m| mem_total(&m));
    let cgroups = read(root, "proc/self/cgroup").unwrap_or_default();
    let groups = cgroups.lines().filter_map(memory_group);
    let limits = groups.flat_map(|(version, path)| group_limits(root, version, &path));
    total.into_iter().chain(limits).min()
}

/// The cgroup version and path of a `/proc/self/cgroup` line that governs memory: v2's
/// `0::<path>`, or v1's `<n>:<controllers>:<path>` with `memory` among the controllers.
fn memory_group(line: &str) -> Option<(CgroupVersion, String)> {
    let mut parts = line.splitn(3, ':');
    let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
    if id == "0" && controllers.is_empty() {
        Some((CgroupVersion::V2, path.to_string()))
    } else if controllers.split(',').any(|c| c == "memory") {
        Some((CgroupVersion::V1, path.to_string()))
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The limits set on the group at `path` and on each of its ancestors. A path the process
/// sees as `/` (inside a container's namespace) is the mount's root itself.
fn group_limits(root: &Path, version: CgroupVersion, path: &str) -> Vec<u64> {
    let (mount, file) = match version {
        CgroupVersion::V2 => ("sys/fs/cgroup", "memory.max"),
        CgroupVersion::V1 => ("sys/fs/cgroup/memory", "memory.limit_in_bytes"),
    };
    let mut dir = PathBuf::from(path.trim_start_matches('/'));
    let mut limits = Vec::new();
    loop {
        let at = Path::new(mount).join(&dir).join(file);
        if let Some(limit) = read(root, &at.to_string_lossy()).and_then(|s| parse_limit(&s)) {
            limits.push(limit);
        }
        if !dir.pop() {
            return limits;
        }
    }
}

/// A limit file's value: a byte count, or none for `max` (v2) and v1's "unlimited", a page-
/// rounded `i64::MAX`.
fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

fn read(root: &Path, relative: &str) -> Option<String> {
    std::fs::read_to_string(root.join(relative)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684092 kB\nMemFree:         1000 kB\n";
    const GIB: u64 = 1 << 30;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    #[test]
    fn without_cgroup_limits_the_machine_memory_counts() {
        let root = tree(&[
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", "0::/user.slice/session-1.scope\n"),
            ("sys/fs/cgroup/user.slice/memory.max", "max\n"),
        ]);
        assert_eq!(memory_limit(root.path()), Some(24_684_092 * 1024));
    }

    #[test]
    fn a_cgroup_v2_limit_of_the_group_or_an_ancestor_wins() {
        let root = tree(&[
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", "0::/kubepods/pod1/agent\n"),
            ("sys/fs/cgroup/kubepods/pod1/agent/memory.max", "max\n"),
            ("sys/fs/cgroup/kubepods/pod1/memory.max", "4294967296\n"),
            ("sys/fs/cgroup/kubepods/memory.max", "17179869184\n"),
        ]);
        assert_eq!(memory_limit(root.path()), Some(4 * GIB));
        assert_eq!(cache_bytes_for(memory_limit(root.path())), GIB);
    }

    #[test]
    fn inside_a_container_namespace_the_mount_root_holds_the_limit() {
        let root = tree(&[
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/memory.max", "2147483648\n"),
        ]);
        assert_eq!(memory_limit(root.path()), Some(2 * GIB));
    }

    #[test]
    fn cgroup_v1_memory_controller_limits_and_unlimited() {
        let v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n";
        let limited = tree(&[
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", v1),
            (
                "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "1073741824\n",
            ),
        ]);
        assert_eq!(memory_limit(limited.path()), Some(GIB));
        let unlimited = tree(&[
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", v1),
            (
                "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(memory_limit(unlimited.path()), Some(24_684_092 * 1024));
    }

    #[test]
    fn the_cache_is_a_quarter_with_a_floor_and_a_fallback() {
        assert_eq!(cache_bytes_for(None), 512 << 20);
        assert_eq!(cache_bytes_for(Some(24 * GIB)), 6 * GIB);
        assert_eq!(cache_bytes_for(Some(128 << 20)), 64 << 20);
        assert_eq!(memory_limit(tree(&[]).path()), None);
        assert_eq!(mem_total("MemFree: 12 kB\n"), None);
        assert_eq!(parse_limit("lots"), None);
    }

    #[test]
    fn this_machine_has_a_limit_and_a_default_within_it() {
        let limit = memory_limit(Path::new("/"));
        if cfg!(target_os = "linux") {
            let limit = limit.expect("Linux has /proc/meminfo");
            let cache = default_segment_cache_bytes();
            assert!(cache >= MIN_CACHE_BYTES && (cache <= limit / 4 || cache == MIN_CACHE_BYTES));
        }
    }
}
