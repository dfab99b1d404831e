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
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::helper::{check_in_child, dump_in_child, unhex};
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

/// What one table gave: entries (key → value, with the numbers each takes), and the key
/// ranges (half-open) a pass read completely: no entry in them was missed.
struct Part {
    entries: BTreeMap<Seq, (Vec<u8>, u64)>,
    covered: Vec<(Seq, Seq)>,
}

/// The parts of `0..upper` outside every range in `covered`.
fn holes(covered: &[(Seq, Seq)], upper: Seq) -> Vec<(Seq, Seq)> {
    let mut c = covered.to_vec();
    c.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for (lo, hi) in c {
        if lo > at && at < upper {
            out.push((at, lo.min(upper)));
        }
        at = at.max(hi);
    }
    if at < upper {
        out.push((at, upper));
    }
    out
}

/// Probes per hole, and rounds of probing.
const PROBES: u64 = 8;
const ROUNDS: usize = 2;

/// Reads a table forward; if that stops early, backward from the end, then forward from keys
/// spread over what is still unread (a descent from the root skips a damaged leaf). An entry
/// is kept only if it decodes (`len` says how many numbers it takes) and keys run in order.
fn read_table(
    exe: &Path,
    file: &Path,
    table: Table,
    upper: Seq,
    len: impl Fn(Seq, &[u8]) -> Option<u64>,
) -> Part {
    let mut entries = BTreeMap::new();
    // Returns the edge of what the pass read: one past its last entry (forward), or its
    // lowest key (backward).
    let mut parse = |rows: Vec<(String, String)>, backward: bool| {
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
    let (fwd, complete, _) = dump_in_child(exe, file, table, false, None);
    let edge = parse(fwd, false);
    let mut covered = vec![(
        0,
        if complete {
            Seq::MAX
        } else {
            edge.unwrap_or(0)
        },
    )];
    if !complete {
        let (bwd, _, _) = dump_in_child(exe, file, table, true, None);
        if let Some(b) = parse(bwd, true) {
            covered.push((b, Seq::MAX));
        }
        for _ in 0..ROUNDS {
            for (lo, hi) in holes(&covered, upper).into_iter().take(PROBES as usize) {
                for i in 1..=PROBES {
                    let k = lo + (hi - lo) / (PROBES + 1) * i;
                    if k <= lo || k >= hi {
                        continue;
                    }
                    let (rows, complete, _) = dump_in_child(exe, file, table, false, Some(k));
                    // What lies between `k` and the first key read may belong to an entry
                    // that starts below `k`, unread: only from that key on is it covered.
                    let start = rows.first().and_then(|(f, _)| f.parse::<Seq>().ok());
                    let edge = parse(rows, false);
                    if let (Some(start), Some(edge)) = (start, edge) {
                        covered.push((start, if complete { Seq::MAX } else { edge }));
                    }
                }
            }
        }
    }
    Part { entries, covered }
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
    let (mut meta_rows, _, stderr) = dump_in_child(exe, &work, Table::Meta, false, None);
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
        meta_rows = dump_in_child(exe, &work, Table::Meta, false, None).0;
    }
    let meta: BTreeMap<String, u64> = meta_rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let reserved = meta.get("reserved_until").or(meta.get("next_seq")).copied();
    let below = |k: Seq| reserved.is_none_or(|r| k < r);
    let first_seq = super::floor::first_seq(work.parent());
    let upper = reserved.unwrap_or(first_seq);
    let readings = read_table(exe, &work, Table::Readings, upper, |k, v| {
        codec::decode_batch(k, v)
            .ok()
            .filter(|r| !r.is_empty() && below(k))
            .map(|r| r.len() as u64)
    });
    let alarms = read_table(exe, &work, Table::Alarms, upper, |k, v| {
        codec::decode_alarm(k, v)
            .ok()
            .filter(|_| below(k))
            .map(|_| 1)
    });
    let gaps = read_table(exe, &work, Table::Gaps, upper, |k, v| {
        codec::decode_gap(k, v)
            .ok()
            .filter(|g| g.to >= k)
            .map(|_| 1)
    });
    let _ = std::fs::remove_file(&work);

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
        lost.extend(
            holes(&part.covered, reserved_until)
                .into_iter()
                .map(|(lo, hi)| (lo, hi - 1)),
        );
    }
    // One range per hole, overlapping holes of different tables merged.
    lost.sort_unstable();
    lost.dedup_by(|b, a| {
        let joins = b.0 <= a.1.saturating_add(1);
        if joins {
            a.1 = a.1.max(b.1);
        }
        joins
    });
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
