//! Looking inside a spool file without changing it, for an operator who must find out what the
//! platform is missing: its figures ([`stats`]), its waiting records in the wire shape
//! ([`export`]) and its damage ([`verify`]).
//!
//! Owns the parent side: every read of the file runs in a child (`plantgate spool-read`, see
//! [`child`]) through the salvage's child machinery, because a damaged page can make redb panic
//! and the release build aborts on a panic; the parent reports how far the child got. Also the
//! files beside the spool (damaged files moved aside, the crash-loop marker). Must never open
//! the file for writing or create one: the child's descriptor is read-only, and a missing file
//! is reported, not made. A running gateway holds the file exclusively (redb's default mode),
//! so these commands refuse while it runs ([`Failure::InUse`]) instead of reading pages it is
//! rewriting.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::helper::child_lines;
use super::salvage::HANDSHAKE;
use crate::record::Seq;

pub mod child;
mod export;

pub use export::{export, Exported};

/// Exit codes of `plantgate spool …` (sysexits.h, like 78 for a configuration error).
pub const EXIT_DAMAGED: u8 = 65;
pub const EXIT_NO_SPOOL: u8 = 66;
pub const EXIT_IN_USE: u8 = 75;

/// What the child is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Stats,
    Export,
    Verify,
    /// Keys from the end down: where an export resumes past a damaged page.
    Tail,
}

/// A record at one end of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub seq: Seq,
    pub ts_ms: i64,
}

/// One lane's waiting entries. For gaps, `records` counts the numbers the gaps announce, and
/// the edges are the first gap's `from` and the last one's `to`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneStats {
    pub entries: u64,
    pub records: u64,
    pub first: Option<Edge>,
    pub last: Option<Edge>,
}

/// What `stats` reads from the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The last writer closed the file (false: it stopped uncleanly, and redb repairs it at the
    /// next open; these commands repair only their copy in memory).
    pub closed_cleanly: bool,
    pub readings: LaneStats,
    pub alarms: LaneStats,
    pub gaps: LaneStats,
    /// The counters as stored (`reserved_until`, `settled_below`, `readings_pending`,
    /// `logical_bytes`, `evicted_readings`, `last_compaction_ms`).
    pub meta: BTreeMap<String, u64>,
    /// Of the entries read (each lane's ends, every gap), those that do not decode (see
    /// `verify`).
    pub undecodable: u64,
}

impl Stats {
    /// The oldest and newest waiting record, readings and alarms together.
    pub fn ends(&self) -> Option<(Edge, Edge)> {
        let firsts = [self.readings.first, self.alarms.first];
        let lasts = [self.readings.last, self.alarms.last];
        let first = firsts.into_iter().flatten().min_by_key(|e| e.seq)?;
        let last = lasts.into_iter().flatten().max_by_key(|e| e.seq)?;
        Some((first, last))
    }
}

/// What `verify` found besides its problems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifySummary {
    pub closed_cleanly: bool,
    /// redb's check passed once it rebuilt its allocator state (in memory only).
    pub allocator_rebuilt: bool,
    pub entries: u64,
    pub readings: u64,
    pub problems: u64,
}

/// Why a command could not give its whole answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("no spool at {0}: nothing is waiting there (has the gateway run with this data_dir?)")]
    NoSpool(PathBuf),
    /// Held by a running gateway (or another writer): `holders` are the processes found
    /// holding a lock on it, when the system tells.
    #[error("the spool {path} is open by the running service{}; stop it, or read its live figures on its status page",
        if holders.is_empty() { String::new() } else { format!(" (pid {})", holders.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) })]
    InUse { path: PathBuf, holders: Vec<u32> },
    /// The file could not be read to the end: what was read before is reported. `died`: the
    /// reader died at a damaged page (rather than reporting entries it could not decode).
    #[error("the spool {path} is damaged: {detail}")]
    Damaged {
        path: PathBuf,
        detail: String,
        died: bool,
    },
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NoSpool(_) => EXIT_NO_SPOOL,
            Failure::InUse { .. } => EXIT_IN_USE,
            Failure::Damaged { .. } => EXIT_DAMAGED,
            Failure::Other(_) => 1,
        }
    }
}

/// The spool file's name in `data_dir`.
pub const FILE: &str = super::FILE;

/// `path`, if it is a file: a spool is never made where there is none.
pub fn existing(path: &Path) -> Result<PathBuf, Failure> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(path.to_owned()),
        _ => Err(Failure::NoSpool(path.to_owned())),
    }
}

/// Runs `exe spool-read <path> --mode <mode>` (with the gateway id and first key for an
/// export), handing each output line after the handshake to
/// `line`; `Ok` when the child read everything, else why not (with the detail it gave).
fn run(
    exe: &Path,
    path: &Path,
    mode: Mode,
    (gw, from): (&str, Seq),
    mut line: impl FnMut(&str) -> bool,
) -> Result<(), Failure> {
    let mode_name = format!("{mode:?}").to_lowercase();
    let from = from.to_string();
    let args: [&OsStr; 8] = [
        "spool-read".as_ref(),
        path.as_os_str(),
        "--mode".as_ref(),
        mode_name.as_ref(),
        "--gw".as_ref(),
        gw.as_ref(),
        "--from".as_ref(),
        from.as_ref(),
    ];
    let mut greeted = false;
    let (code, stderr) = child_lines(exe, &args, None, |l| {
        if !greeted {
            greeted = l.trim_end() == HANDSHAKE;
            return greeted;
        }
        line(l)
    });
    // A panic's location line and its message (the next line), else all of stderr.
    let detail = || {
        let s = stderr.trim();
        let mut lines = s.lines().skip_while(|l| !l.contains("panicked"));
        match (lines.next(), lines.next()) {
            (Some(at), msg) => {
                let at = at.split("panicked at ").nth(1).unwrap_or(at);
                let at = at.rsplit('/').next().unwrap_or(at);
                format!(
                    "redb panicked at {} {}",
                    at.trim(),
                    msg.unwrap_or("").trim()
                )
            }
            (None, _) => s.to_owned(),
        }
    };
    match code.map(|c| c as u8) {
        _ if !greeted => Err(Failure::Other(format!(
            "{} is not a plantgate that can read spools: {}",
            exe.display(),
            detail()
        ))),
        Some(0) => Ok(()),
        Some(EXIT_IN_USE) => Err(Failure::InUse {
            path: path.to_owned(),
            holders: holders(path),
        }),
        Some(EXIT_DAMAGED) => Err(Failure::Damaged {
            path: path.to_owned(),
            detail: detail(),
            died: false,
        }),
        Some(1) => Err(Failure::Other(detail())),
        other => Err(Failure::Damaged {
            path: path.to_owned(),
            detail: format!(
                "the reader died at a damaged page ({}): {}",
                other.map_or("aborted or killed".to_owned(), |c| format!("exit {c}")),
                detail()
            ),
            died: true,
        }),
    }
}

/// The spool's figures, read in a child.
pub fn stats(exe: &Path, path: &Path) -> Result<Stats, Failure> {
    let mut got = None;
    run(exe, path, Mode::Stats, ("", 0), |l| {
        got = serde_json::from_str::<Stats>(l).ok();
        true
    })?;
    got.ok_or_else(|| Failure::Other("the reader gave no figures".into()))
}

/// What `verify` found: each problem, and the summary (None when the reader died first).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verified {
    pub problems: Vec<String>,
    pub summary: Option<VerifySummary>,
}

/// Reads the whole file in a child: redb's integrity check and every entry decoded. The file
/// is sound when the result is `Ok` and `problems` is empty.
pub fn verify(exe: &Path, path: &Path) -> (Verified, Result<(), Failure>) {
    let mut v = Verified::default();
    let r = run(exe, path, Mode::Verify, ("", 0), |l| {
        if let Some(p) = l.strip_prefix("P ") {
            v.problems.push(p.trim_end().to_owned());
        } else if let Some(s) = l.strip_prefix("S ") {
            v.summary = serde_json::from_str(s).ok();
        }
        true
    });
    (v, r)
}

/// A file kept beside the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Beside {
    pub name: String,
    pub bytes: u64,
    /// When a damaged file was moved aside (from its name), ms since the epoch.
    pub moved_ms: Option<i64>,
}

/// Damaged files moved aside (`spool.redb.damaged-<ms>`), a salvage's leftover work copy, and
/// the crash-loop marker (`spool.starts`: one line per start without a clean close).
pub fn beside(data_dir: &Path) -> (Vec<Beside>, usize) {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(FILE).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        out.push(Beside {
            bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
            moved_ms: rest.strip_prefix("damaged-").and_then(|t| t.parse().ok()),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let starts = std::fs::read_to_string(data_dir.join("spool.starts"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    (out, starts)
}

/// Processes that hold a lock on `path`, from `/proc/locks` (flock locks name their process;
/// redb's byte-range locks are per open file and do not). Empty when the system does not say.
pub fn holders(path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let (dev, ino) = (m.dev(), m.ino());
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{ino}");
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut pids: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let at = f.iter().position(|x| *x == id)?;
            f.get(at.checked_sub(1)?)?.parse().ok()
        })
        .filter(|p| *p > 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}
