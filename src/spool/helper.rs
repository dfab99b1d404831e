//! The salvage's child processes: runs `plantgate spool-check` / `spool-dump` on a file that
//! may be damaged, with a time limit, and reads back what they said before they ended or died.
//!
//! Owns the protocol (the [`HANDSHAKE`] line, exit codes, `K`/`M`/`E` lines). Must never read
//! the file itself: a damaged page may kill whoever reads it, and only a child may die.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::salvage::{CHECK_CLEAN, CHECK_DAMAGED, CHECK_LOCKED, HANDSHAKE};
use super::scan::{Health, Table};
use crate::record::Seq;

/// Longest a check or dump child may take before it is killed.
const CHILD_WITHIN: Duration = Duration::from_secs(300);

/// Runs `exe args`, killing it after [`CHILD_WITHIN`]; returns its stdout and exit code (None
/// when it died: killed, aborted).
fn child(exe: &Path, args: &[&std::ffi::OsStr]) -> (String, Option<i32>, String) {
    let mut stdout = String::new();
    let (code, stderr) = child_lines(exe, args, Some(CHILD_WITHIN), |l| {
        stdout.push_str(l);
        true
    });
    (stdout, code, stderr)
}

/// Runs `exe args` and hands each line of its stdout (with its newline; a last line cut short
/// by the child's death is dropped) to `line` as it comes, until `line` returns false; kills it
/// after `within`, or when `line` stops. Returns its exit code (None when it died: killed,
/// aborted) and its stderr. Memory stays flat however much the child writes.
pub(super) fn child_lines(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    within: Option<Duration>,
    mut line: impl FnMut(&str) -> bool,
) -> (Option<i32>, String) {
    let spawned = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn();
    let mut c = match spawned {
        Ok(c) => c,
        Err(e) => return (None, format!("cannot start {}: {e}", exe.display())),
    };
    let out = c.stdout.take();
    let mut err = c.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = err.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let stop = Arc::new(AtomicBool::new(false));
    let watch = stop.clone();
    let waiter = std::thread::spawn(move || {
        let deadline = within.map(|w| Instant::now() + w);
        loop {
            match c.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None)
                    if !watch.load(Ordering::Relaxed)
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return None;
                }
            }
        }
    });
    if let Some(out) = out {
        let mut out = BufReader::new(out);
        let mut buf = String::new();
        loop {
            buf.clear();
            match out.read_line(&mut buf) {
                Ok(n) if n > 0 && buf.ends_with('\n') => {
                    if !line(&buf) {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    let status = waiter.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    (status.and_then(|s| s.code()), stderr)
}

/// The check's verdict, or `None` when `exe` is not a plantgate helper (no handshake): then
/// nothing can be salvaged either, and the file is opened as before.
pub(super) fn check_in_child(exe: &Path, path: &Path) -> Option<Health> {
    let (stdout, code, stderr) = child(exe, &["spool-check".as_ref(), path.as_os_str()]);
    if !stdout.starts_with(HANDSHAKE) {
        tracing::warn!(helper = %exe.display(), %stderr, "the spool check could not run; opening the spool unchecked");
        return None;
    }
    Some(match code.map(|c| c as u8) {
        Some(CHECK_CLEAN) => Health::Clean,
        Some(CHECK_LOCKED) => Health::Locked,
        Some(CHECK_DAMAGED) => Health::Damaged(stderr.trim().to_owned()),
        other => Health::Damaged(format!(
            "the check died ({}): {}",
            other.map_or("killed".to_owned(), |c| format!("exit {c}")),
            stderr
                .lines()
                .find(|l| l.contains("panicked"))
                .unwrap_or("")
                .trim()
        )),
    })
}

/// One pass of a dump: its `K` entries (or `M` values) in order, whether it reached the end,
/// and the child's stderr.
pub(super) fn dump_in_child(
    exe: &Path,
    file: &Path,
    table: Table,
    backward: bool,
    from: Option<Seq>,
) -> (Vec<(String, String)>, bool, String) {
    let name = format!("{table:?}").to_lowercase();
    let from = from.map(|f| f.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "spool-dump".as_ref(),
        file.as_os_str(),
        "--table".as_ref(),
        name.as_ref(),
    ];
    if backward {
        args.push("--backward".as_ref());
    }
    if let Some(f) = &from {
        args.push("--from".as_ref());
        args.push(f.as_ref());
    }
    let (out, _, stderr) = child(exe, &args);
    let mut rows = Vec::new();
    let mut complete = false;
    for line in out.lines().skip_while(|l| *l == HANDSHAKE) {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("E"), None, None) => complete = true,
            (Some("K" | "M"), Some(k), Some(v)) => rows.push((k.to_owned(), v.to_owned())),
            _ => break,
        }
    }
    (rows, complete, stderr)
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}
