//! `plantgate spool export`'s parent side: streams a child's export lines to the output, and
//! when a damaged page kills the child, resumes past it: a child reads the keys from the end
//! down to find where the readable end begins, and a new export starts there. What lies
//! between is named as skipped.
//!
//! Owns that resumption. Must never reorder lines (each resumption starts above every key
//! already written) nor loop (each starts strictly higher than the last).

use std::io::Write;
use std::path::Path;

use super::{run, Failure, Mode};
use crate::record::Seq;

/// Most resumptions past damaged pages in one export.
const MAX_RESUMES: usize = 8;

/// How far an export got.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exported {
    pub lines: u64,
    /// The last line written.
    pub last: Option<String>,
    /// Key ranges (inclusive) left out: unreadable, between a damaged page and where reading
    /// could resume.
    pub skipped: Vec<(Seq, Seq)>,
}

/// Writes every waiting record of `path` to `out` as JSON lines (see
/// [`crate::record::wire::export_reading`]), in sequence order, streaming from a child. On
/// damage, it resumes past the damaged page where it can; the error names what was skipped.
/// A closed `out` (the reader stopped: `| head`) ends the export without an error.
pub fn export(
    exe: &Path,
    path: &Path,
    gw: &str,
    out: &mut impl Write,
) -> (Exported, Result<(), Failure>) {
    let mut done = Exported::default();
    let mut from = 0;
    let mut died = None;
    let mut finished = false;
    for _ in 0..MAX_RESUMES {
        match export_from(exe, path, (gw, from), out, &mut done) {
            // A reader that died at a damaged page, or one that got a read error (an unreadable
            // sector): resume past it either way.
            Err(Failure::Damaged { detail, .. }) => {
                let after = done.last.as_deref().and_then(key).map_or(from, |k| k + 1);
                died = Some(detail);
                match readable_end(exe, path).filter(|b| *b > after) {
                    Some(b) => {
                        done.skipped.push((after, b - 1));
                        from = b;
                    }
                    None => {
                        done.skipped.push((after, Seq::MAX));
                        finished = true;
                        break;
                    }
                }
            }
            Ok(()) if died.is_none() => return (done, Ok(())),
            Ok(()) => {
                finished = true;
                break;
            }
            Err(e) => return (done, Err(e)),
        }
    }
    if !finished {
        // Out of resumes: everything from the last resume point on is left out, and named.
        done.skipped.push((from, Seq::MAX));
    }
    let ranges: Vec<String> = done
        .skipped
        .iter()
        .map(|&(a, b)| {
            if b == Seq::MAX {
                format!("{a}..")
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    let detail = format!(
        "entries numbered {} could not be read and are left out ({})",
        ranges.join(", "),
        died.unwrap_or_default()
    );
    let path = path.to_owned();
    let died = true;
    (done, Err(Failure::Damaged { path, detail, died }))
}

/// One child's export from key `from` on.
fn export_from(
    exe: &Path,
    path: &Path,
    (gw, from): (&str, Seq),
    out: &mut impl Write,
    done: &mut Exported,
) -> Result<(), Failure> {
    let mut write_err = None;
    let mut last = String::new();
    let r = run(exe, path, Mode::Export, (gw, from), |l| {
        if let Err(e) = out.write_all(l.as_bytes()) {
            write_err = Some(e);
            return false;
        }
        done.lines += 1;
        last.clear();
        last.push_str(l.trim_end());
        true
    });
    if !last.is_empty() {
        done.last = Some(last);
    }
    match (write_err, out.flush()) {
        // Whoever reads the export stopped reading (`| head`): the export ends there.
        (Some(e), _) | (None, Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        (Some(e), _) | (None, Err(e)) => Err(Failure::Other(format!("cannot write: {e}"))),
        _ => r,
    }
}

/// The key an export line was written for: a record's `seq`, a gap's `from`.
fn key(line: &str) -> Option<Seq> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("seq").or_else(|| v.get("from"))?.as_u64()
}

/// The lowest key a read from the end down reaches before a damaged page stops it.
fn readable_end(exe: &Path, path: &Path) -> Option<Seq> {
    let mut lowest = None;
    let _ = run(exe, path, Mode::Tail, ("", 0), |l| {
        if let Some(k) = l.strip_prefix("K ").and_then(|k| k.trim().parse().ok()) {
            lowest = Some(k);
        }
        true
    });
    lowest
}
