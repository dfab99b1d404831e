//! Where benchmarks write: a directory on a real disk, never tmpfs, where fsync is free and
//! every durability figure would be flattering.
//!
//! `PLANTGATE_BENCH_DIR` picks the directory (default `target/`, which sits on the disk the
//! project does); a tmpfs there stops the bench unless `PLANTGATE_BENCH_ALLOW_TMPFS=1` says
//! that is meant.

use std::path::Path;

/// The filesystem type of the mount that holds `path` (the longest mount point that is a
/// prefix of it, from /proc/self/mountinfo).
pub fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            let kind = right.split_whitespace().next()?;
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// A fresh temporary directory for a bench's files, on a real disk.
pub fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var("PLANTGATE_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let kind = fs_type(dir.path()).unwrap_or_else(|| "unknown".into());
    if matches!(kind.as_str(), "tmpfs" | "ramfs")
        && std::env::var_os("PLANTGATE_BENCH_ALLOW_TMPFS").is_none()
    {
        panic!(
            "{} is on {kind}, where fsync costs nothing: set PLANTGATE_BENCH_DIR to a directory on a real disk (or PLANTGATE_BENCH_ALLOW_TMPFS=1)",
            dir.path().display()
        );
    }
    println!("bench files in {} ({kind})", dir.path().display());
    dir
}
