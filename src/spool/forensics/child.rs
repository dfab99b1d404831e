//! What `plantgate spool-read` does in its child process: opens the spool file read-only
//! ([`crate::spool::store::inspect`]) and writes, after the [`HANDSHAKE`] line, the figures
//! (`stats`: one JSON line), the waiting records (`export`: one JSON line each) or the damage
//! found (`verify`: `P <problem>` lines, then `S <summary JSON>`).
//!
//! Owns that protocol's child side and the decoding of every entry. Must never change the file
//! and never run in the gateway's process: a damaged page can make redb panic, and only a
//! child may die of it. Output is flushed entry by entry, so what was read before a death
//! survives it.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use super::{LaneStats, Mode, Stats, VerifySummary, EXIT_DAMAGED, EXIT_IN_USE};
use crate::record::{codec, wire, Seq};
use crate::spool::salvage::HANDSHAKE;
use crate::spool::store::inspect::{Inspected, Lane, ALL};
use crate::spool::store::{StoreError, ENTRY_OVERHEAD};

/// Page cache of the child: enough for a B-tree walk, small enough for any board.
const CACHE_BYTES: usize = 16 << 20;
/// Most problems `verify` (or undecodable entries `export`) lists one by one; the rest are
/// counted.
const MAX_LISTED: u64 = 100;

/// Runs `mode` on `path` (`export` from key `from` on), writing to `out`; returns the child's
/// exit code.
pub fn serve(path: &Path, mode: Mode, gw: &str, from: Seq, out: &mut impl Write) -> u8 {
    if writeln!(out, "{HANDSHAKE}")
        .and_then(|_| out.flush())
        .is_err()
    {
        return 1;
    }
    let mut db = match Inspected::open(path, CACHE_BYTES) {
        Ok(db) => db,
        Err(StoreError::Locked(_)) => return EXIT_IN_USE,
        Err(e @ StoreError::Corrupt { .. }) if mode == Mode::Verify => {
            let _ = writeln!(out, "P cannot open the file: {}", plain(&e));
            return EXIT_DAMAGED;
        }
        Err(e) => {
            eprintln!("{}", plain(&e));
            return match e {
                StoreError::Corrupt { .. } => EXIT_DAMAGED,
                _ => 1,
            };
        }
    };
    let done = match mode {
        Mode::Stats => stats(&db).and_then(|s| {
            serde_json::to_writer(&mut *out, &s).map_err(|e| StoreError::Io(e.to_string()))?;
            writeln!(out).map_err(|e| StoreError::Io(e.to_string()))?;
            Ok(0)
        }),
        Mode::Export => export(&db, gw, from, out),
        Mode::Tail => tail(&db, out),
        Mode::Verify => Ok(verify(&mut db, out)),
    };
    let _ = out.flush();
    match done {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", plain(&e));
            EXIT_DAMAGED
        }
    }
}

/// An error without the file's name (the parent's report names it once).
fn plain(e: &StoreError) -> String {
    match e {
        StoreError::Corrupt { detail, .. } => detail.clone(),
        e => e.to_string(),
    }
}

fn edge(seq: Seq, ts_ms: i64) -> Option<super::Edge> {
    Some(super::Edge { seq, ts_ms })
}

/// The lanes' counts and ends: readings and alarms from their first and last entries (a
/// descent to each end, so that a damaged page elsewhere does not stop it), gaps by a walk of
/// their (small) table. A readings count is the stored counter, which `verify` checks.
fn stats(db: &Inspected) -> Result<Stats, StoreError> {
    let mut s = Stats {
        closed_cleanly: !db.needed_repair(),
        meta: db.meta()?,
        ..Stats::default()
    };
    let (n, first, last) = db.ends(Lane::Readings)?;
    let batch = |e: Option<(Seq, Vec<u8>)>, s: &mut Stats| {
        let r = e.and_then(|(k, v)| codec::decode_batch(k, &v).ok());
        s.undecodable += u64::from(r.is_none() && n > 0);
        r.unwrap_or_default()
    };
    let (a, z) = (batch(first, &mut s), batch(last, &mut s));
    s.readings = LaneStats {
        entries: n,
        records: s.meta.get("readings_pending").copied().unwrap_or(0),
        first: a.first().and_then(|r| edge(r.seq, r.sample.ts_ms)),
        last: z.last().and_then(|r| edge(r.seq, r.sample.ts_ms)),
    };
    let (n, first, last) = db.ends(Lane::Alarms)?;
    let alarm = |e: Option<(Seq, Vec<u8>)>, s: &mut Stats| {
        let a = e.and_then(|(k, v)| codec::decode_alarm(k, &v).ok());
        s.undecodable += u64::from(a.is_none() && n > 0);
        a.and_then(|a| edge(a.seq, a.sample.ts_ms))
    };
    let (a, z) = (alarm(first, &mut s), alarm(last, &mut s));
    s.alarms = LaneStats {
        entries: n,
        records: n,
        first: a,
        last: z,
    };
    let mut gaps = LaneStats::default();
    let mut undecodable = 0;
    db.walk(&[Lane::Gaps], |_, k, v| {
        match codec::decode_gap(k, v) {
            Ok(g) => {
                gaps.entries += 1;
                gaps.records += g.to.saturating_sub(g.from) + 1;
                gaps.first = gaps.first.or(edge(g.from, g.ts_ms));
                gaps.last = edge(g.to, g.ts_ms);
            }
            Err(_) => undecodable += 1,
        }
        ControlFlow::Continue(())
    })?;
    s.gaps = gaps;
    s.undecodable += undecodable;
    Ok(s)
}

/// Writes every waiting record as its export line, in sequence order; an entry that does not
/// decode is skipped and named on stderr, and makes the exit code [`EXIT_DAMAGED`].
fn export(db: &Inspected, gw: &str, from: Seq, out: &mut impl Write) -> Result<u8, StoreError> {
    let mut undecodable = 0u64;
    let mut failed = None;
    db.walk_from(&ALL, from, false, |lane, k, v| {
        let lines: Result<Vec<Vec<u8>>, codec::DecodeError> = match lane {
            Lane::Readings => codec::decode_batch(k, v)
                .map(|r| r.iter().map(|r| wire::export_reading(gw, r)).collect()),
            Lane::Alarms => codec::decode_alarm(k, v).map(|a| vec![wire::export_alarm(gw, &a)]),
            Lane::Gaps => codec::decode_gap(k, v).map(|g| vec![wire::export_gap(gw, &g)]),
        };
        let written = match lines {
            Ok(lines) => lines
                .iter()
                .try_for_each(|l| out.write_all(l).and_then(|_| out.write_all(b"\n")))
                .and_then(|_| out.flush()),
            Err(e) => {
                undecodable += 1;
                if undecodable <= MAX_LISTED {
                    eprintln!("{lane:?} entry {k} cannot be decoded, left out: {e}");
                }
                Ok(())
            }
        };
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(StoreError::Io(format!("cannot write the export: {e}")));
    }
    if undecodable > MAX_LISTED {
        eprintln!("{undecodable} entries in all cannot be decoded");
    }
    Ok(if undecodable > 0 { EXIT_DAMAGED } else { 0 })
}

/// Every entry's key from the last one down (`K <key>` lines, each flushed): where the readable
/// end of a damaged file begins is the last key written before a damaged page stops it.
fn tail(db: &Inspected, out: &mut impl Write) -> Result<u8, StoreError> {
    let mut failed = None;
    db.walk_from(&ALL, 0, true, |_, k, _| {
        match writeln!(out, "K {k}").and_then(|_| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    match failed {
        Some(e) => Err(StoreError::Io(e.to_string())),
        None => Ok(0),
    }
}

/// The problems `verify` found: each written as a `P` line as it is found (so that a death
/// later leaves them), up to [`MAX_LISTED`], all counted.
struct Problems<'a, W: Write> {
    out: &'a mut W,
    count: u64,
}

impl<W: Write> Problems<'_, W> {
    fn add(&mut self, text: String) {
        self.count += 1;
        if self.count <= MAX_LISTED {
            let _ = writeln!(self.out, "P {text}");
            let _ = self.out.flush();
        }
    }
}

/// redb's integrity check, then every entry decoded and the counters checked against what the
/// tables hold; each problem is a `P` line, the summary an `S` line.
fn verify(db: &mut Inspected, out: &mut impl Write) -> u8 {
    let mut p = Problems { out, count: 0 };
    let mut sum = VerifySummary {
        closed_cleanly: !db.needed_repair(),
        ..VerifySummary::default()
    };
    match db.check_integrity() {
        Ok(sound) => sum.allocator_rebuilt = !sound,
        Err(e) => p.add(format!("redb integrity check failed: {}", plain(&e))),
    }
    let meta = db.meta().unwrap_or_else(|e| {
        p.add(format!("the meta table cannot be read: {}", plain(&e)));
        Default::default()
    });
    let reserved = meta.get("reserved_until").copied().unwrap_or(Seq::MAX);
    match entries(db, reserved, &mut sum, &mut p) {
        Ok(bytes) => {
            for (name, counted) in [("readings_pending", sum.readings), ("logical_bytes", bytes)] {
                let stored = meta.get(name).copied().unwrap_or(0);
                if stored != counted {
                    p.add(format!(
                        "meta {name} says {stored}, the tables hold {counted}"
                    ));
                }
            }
        }
        Err(e) => p.add(format!(
            "the tables cannot be read to the end: {}",
            plain(&e)
        )),
    }
    sum.problems = p.count;
    if let Ok(s) = serde_json::to_string(&sum) {
        let _ = writeln!(p.out, "S {s}");
    }
    if p.count > 0 {
        EXIT_DAMAGED
    } else {
        0
    }
}

/// Decodes every entry in key order: each must decode, readings batches must not be empty,
/// entries must not overlap, and none may be numbered at or above the reservation. Counts
/// entries and readings into `sum`; returns the bytes the entries are charged (as
/// `logical_bytes` counts them: readings and alarms).
fn entries<W: Write>(
    db: &Inspected,
    reserved: Seq,
    sum: &mut VerifySummary,
    p: &mut Problems<'_, W>,
) -> Result<u64, StoreError> {
    let (mut end, mut bytes) = (0u64, 0u64);
    db.walk(&ALL, |lane, k, v| {
        sum.entries += 1;
        let span = match lane {
            Lane::Readings => codec::decode_batch(k, v).map(|r| r.len() as u64),
            Lane::Alarms => codec::decode_alarm(k, v).map(|_| 1),
            Lane::Gaps => codec::decode_gap(k, v).map(|g| {
                if g.to < g.from {
                    p.add(format!("gap {k} ends before it starts ({})", g.to));
                }
                0
            }),
        };
        if lane != Lane::Gaps {
            bytes += v.len() as u64 + ENTRY_OVERHEAD;
        }
        match span {
            Err(e) => p.add(format!("{lane:?} entry {k} does not decode: {e}")),
            Ok(0) if lane == Lane::Readings => p.add(format!("readings entry {k} is empty")),
            Ok(n) => {
                if lane == Lane::Readings {
                    sum.readings += n;
                }
                if n > 0 && k < end {
                    p.add(format!(
                        "{lane:?} entry {k} overlaps the entry before it (which ends at {})",
                        end - 1
                    ));
                }
                if n > 0 && k + n > reserved {
                    p.add(format!(
                        "{lane:?} entry {k} is numbered at or above the reservation {reserved}"
                    ));
                }
                end = end.max(k + n);
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(bytes)
}
