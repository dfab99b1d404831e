//! Opening the spool so that no damaged file can stop the gateway: a check in a child process
//! before the file is trusted, a salvage of what can still be read into a fresh spool, and a
//! crash-loop breaker.
//!
//! Owns [`open_guarded`] (what the gateway calls) and the breaker's marker file
//! (`spool.starts`: the start times since the last clean close). redb panics on some damaged
//! pages and the release build aborts on a panic, so every read of an unchecked file happens in
//! a child (`plantgate spool-check`, `plantgate spool-dump`, see [`super::scan`]) whose death
//! costs only the rest of its output. Must never open a file here that a child has not found
//! clean, never reuse a number of the damaged file (its reservation is carried over, or the new
//! store numbers from `now_ms × 1000`), and never lose a record silently: what could not be
//! read is announced as a `damaged` gap.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::scan::{Health, Table};
use super::store::{NewEntry, Store, Write};
use super::{Spool, SpoolError, FILE};
use crate::config::SpoolSettings;
use crate::record::{codec, now_ms, Gap, GapReason, Seq};

/// The first line a helper child prints: without it, the program run is not plantgate.
pub const HANDSHAKE: &str = "plantgate-spool-helper 1";

/// Exit codes of `plantgate spool-check`.
pub const CHECK_CLEAN: u8 = 0;
pub const CHECK_DAMAGED: u8 = 3;
pub const CHECK_LOCKED: u8 = 4;

/// This many starts without a clean close within [`LOOP_WINDOW`] open in salvage mode.
pub const LOOP_STARTS: usize = 3;
pub const LOOP_WINDOW: Duration = Duration::from_secs(600);
/// Longest a check or dump child may take before it is killed.
const CHILD_WITHIN: Duration = Duration::from_secs(300);
const STARTS: &str = "spool.starts";

/// What a salvage did, for the log, the status and the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Salvaged {
    pub reason: String,
    pub moved_to: PathBuf,
    pub readings: u64,
    pub alarms: u64,
    pub gaps: u64,
    /// Ranges announced as `damaged`.
    pub lost: Vec<(Seq, Seq)>,
}

/// Opens the spool in `dir` as the gateway must: the file is checked by `exe spool-check` in
/// a child first; a damaged file (or one a crash loop points at) is moved aside and what can
/// be read of it is carried into a fresh spool. Blocking.
pub fn open_guarded(dir: &Path, settings: &SpoolSettings, exe: &Path) -> Result<Spool, SpoolError> {
    std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(FILE);
    let unclean = starts_since_clean_close(dir);
    let mut reason = None;
    if path.exists() {
        if unclean.len() >= LOOP_STARTS {
            reason = Some(format!(
                "crash loop: {} starts without a clean close within {} s",
                unclean.len(),
                LOOP_WINDOW.as_secs()
            ));
        } else {
            match check_in_child(exe, &path) {
                None | Some(Health::Clean) => {}
                Some(Health::Locked) => return Err(super::StoreError::Locked(path).into()),
                Some(Health::Damaged(d)) => reason = Some(format!("integrity check failed: {d}")),
            }
        }
    }
    let salvaged = match reason {
        Some(reason) => Some(salvage(dir, &path, settings, exe, reason)?),
        None => None,
    };
    record_start(
        dir,
        if salvaged.is_some() {
            &[][..]
        } else {
            &unclean
        },
    );
    let spool = Spool::open(dir, settings)?;
    if let Some(s) = salvaged {
        spool.note_salvaged(&s);
    }
    Ok(spool)
}

/// Start times (ms) recorded since the last clean close, within the window.
fn starts_since_clean_close(dir: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(dir.join(STARTS)).unwrap_or_default();
    let since = now_ms() - LOOP_WINDOW.as_millis() as i64;
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .filter(|t| *t >= since)
        .collect()
}

fn record_start(dir: &Path, earlier: &[i64]) {
    let mut text: String = earlier.iter().map(|t| format!("{t}\n")).collect();
    text.push_str(&format!("{}\n", now_ms()));
    if let Err(e) = std::fs::write(dir.join(STARTS), text) {
        tracing::warn!(error = %e, "cannot record the start for the crash-loop breaker");
    }
}

/// A clean close: the next start does not count this one as a crash.
pub(super) fn clean_close(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STARTS));
}

/// Runs `exe args`, killing it after [`CHILD_WITHIN`]; returns its stdout and exit code (None
/// when it died: killed, aborted).
fn child(exe: &Path, args: &[&std::ffi::OsStr]) -> (String, Option<i32>, String) {
    let spawned = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn();
    let mut c = match spawned {
        Ok(c) => c,
        Err(e) => {
            return (
                String::new(),
                None,
                format!("cannot start {}: {e}", exe.display()),
            )
        }
    };
    let mut out = c.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let mut err = c.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = err.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + CHILD_WITHIN;
    let status = loop {
        match c.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = c.kill();
                let _ = c.wait();
                break None;
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    (stdout, status.and_then(|s| s.code()), stderr)
}

/// The check's verdict, or `None` when `exe` is not a plantgate helper (no handshake): then
/// nothing can be salvaged either, and the file is opened as before.
fn check_in_child(exe: &Path, path: &Path) -> Option<Health> {
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

/// One pass of a dump: its `K` entries (or `M` values) in order, and whether it reached the end.
fn dump_in_child(
    exe: &Path,
    file: &Path,
    table: Table,
    backward: bool,
) -> (Vec<(String, String)>, bool, String) {
    let name = format!("{table:?}").to_lowercase();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "spool-dump".as_ref(),
        file.as_os_str(),
        "--table".as_ref(),
        name.as_ref(),
    ];
    if backward {
        args.push("--backward".as_ref());
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

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// What one table gave: entries (key → value, with the numbers each takes), and the hole
/// between what the forward and the backward pass could read, if the table is damaged.
struct Part {
    entries: BTreeMap<Seq, (Vec<u8>, u64)>,
    hole: Option<(Option<Seq>, Option<Seq>)>,
}

/// Reads a table forward, and backward when the forward pass did not reach the end. An entry
/// is kept only if it decodes (`len` says how many numbers it takes) and keys run in order.
fn read_table(
    exe: &Path,
    file: &Path,
    table: Table,
    len: impl Fn(Seq, &[u8]) -> Option<u64>,
) -> Part {
    let mut entries = BTreeMap::new();
    let parse = |rows: Vec<(String, String)>,
                 backward: bool,
                 entries: &mut BTreeMap<Seq, (Vec<u8>, u64)>| {
        let mut last: Option<Seq> = None;
        let mut edge = None;
        for (k, v) in rows {
            let (Ok(k), Some(v)) = (k.parse::<Seq>(), unhex(&v)) else {
                break;
            };
            if last.is_some_and(|l| if backward { k >= l } else { k <= l }) {
                break;
            }
            let Some(n) = len(k, &v) else { break };
            last = Some(k);
            edge = Some(if backward { k } else { k + n.max(1) });
            entries.insert(k, (v, n));
        }
        edge
    };
    let (fwd, complete, _) = dump_in_child(exe, file, table, false);
    let fwd_end = parse(fwd, false, &mut entries);
    if complete {
        return Part {
            entries,
            hole: None,
        };
    }
    let (bwd, _, _) = dump_in_child(exe, file, table, true);
    let bwd_start = parse(bwd, true, &mut entries);
    Part {
        entries,
        hole: Some((fwd_end, bwd_start)),
    }
}

/// Moves the damaged file aside and builds a fresh spool at `path` from what children can
/// read of it. Blocking.
fn salvage(
    dir: &Path,
    path: &Path,
    settings: &SpoolSettings,
    exe: &Path,
    reason: String,
) -> Result<Salvaged, SpoolError> {
    let dir_err = |source| SpoolError::Dir {
        path: dir.to_owned(),
        source,
    };
    let aside = dir.join(format!("{FILE}.damaged-{}", now_ms()));
    tracing::error!(spool = %path.display(), moved_to = %aside.display(), %reason,
        "the spool file is damaged: it is kept for inspection, and what can still be read of it is carried into a new spool");
    std::fs::rename(path, &aside).map_err(dir_err)?;
    // redb may repair a file on open: the salvage reads a copy and the evidence stays as it was.
    let work = dir.join(format!("{FILE}.salvage"));
    std::fs::copy(&aside, &work).map_err(dir_err)?;
    let (mut meta_rows, _, stderr) = dump_in_child(exe, &work, Table::Meta, false);
    // A truncated file: redb refuses it whole. Zeros where the lost tail was (a sparse
    // extension) make it open, and the pages that are left readable.
    if let Some(layout) = stderr
        .split("layout_len=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
    {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&work) {
            let _ = f.set_len(layout);
        }
        meta_rows = dump_in_child(exe, &work, Table::Meta, false).0;
    }
    let meta: BTreeMap<String, u64> = meta_rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let reserved = meta.get("reserved_until").or(meta.get("next_seq")).copied();
    let below = |k: Seq| reserved.is_none_or(|r| k < r);
    let readings = read_table(exe, &work, Table::Readings, |k, v| {
        codec::decode_batch(k, v)
            .ok()
            .filter(|r| !r.is_empty() && below(k))
            .map(|r| r.len() as u64)
    });
    let alarms = read_table(exe, &work, Table::Alarms, |k, v| {
        codec::decode_alarm(k, v)
            .ok()
            .filter(|_| below(k))
            .map(|_| 1)
    });
    let gaps = read_table(exe, &work, Table::Gaps, |k, v| {
        codec::decode_gap(k, v)
            .ok()
            .filter(|g| g.to >= k)
            .map(|_| 1)
    });
    let _ = std::fs::remove_file(&work);

    let first_seq = u64::try_from(now_ms()).unwrap_or(0) * 1000;
    let end_seen = readings
        .entries
        .iter()
        .chain(&alarms.entries)
        .map(|(k, (_, n))| k + n)
        .max()
        .unwrap_or(0);
    let reserved_until = reserved.unwrap_or(first_seq).max(end_seen);
    let mut lost = Vec::new();
    for part in [&readings, &alarms, &gaps] {
        if let Some((lo, hi)) = part.hole {
            let (lo, hi) = (lo.unwrap_or(0), hi.unwrap_or(reserved_until));
            if lo < hi {
                lost.push((lo, hi - 1));
            }
        }
    }
    let mut new_gaps: Vec<Gap> = gaps
        .entries
        .iter()
        .filter_map(|(k, (v, _))| codec::decode_gap(*k, v).ok())
        .collect();
    new_gaps.extend(lost.iter().map(|&(from, to)| Gap {
        from,
        to,
        reason: GapReason::Damaged,
        ts_ms: now_ms(),
    }));
    let entries: Vec<NewEntry> = readings
        .entries
        .iter()
        .map(|(k, (v, n))| NewEntry::Readings {
            key: *k,
            count: *n,
            bytes: v.clone(),
        })
        .chain(alarms.entries.iter().map(|(k, (v, _))| NewEntry::Alarm {
            key: *k,
            bytes: v.clone(),
        }))
        .collect();
    let out = Salvaged {
        reason,
        moved_to: aside,
        readings: readings.entries.values().map(|(_, n)| n).sum(),
        alarms: alarms.entries.len() as u64,
        gaps: gaps.entries.len() as u64,
        lost,
    };
    let store = Store::open(path, settings.cache_bytes, first_seq)?;
    store.write(Write {
        entries,
        budget: u64::MAX,
        settled_below: Some(
            meta.get("settled_below")
                .copied()
                .unwrap_or(reserved_until)
                .min(reserved_until),
        ),
        reserved_until: Some(reserved_until),
        gaps: new_gaps,
        now_ms: now_ms(),
    })?;
    drop(store);
    tracing::warn!(readings = out.readings, alarms = out.alarms, gaps = out.gaps, lost = ?out.lost,
        "spool salvaged: the readable records were kept with their numbers; the ranges lost are announced as damaged");
    Ok(out)
}
