//! Reading a spool file that may be damaged, for the salvage: the integrity check and the table
//! dumps that `plantgate spool-check` / `plantgate spool-dump` run in a child process.
//!
//! Owns the only redb reads besides [`super::store`]: redb trusts its pages, and a damaged one
//! can panic in a read (`unreachable!` in the B-tree code), which the release build's
//! `panic = "abort"` turns into the death of the process. Must therefore never run in the
//! gateway's own process on a file that has not passed [`check`]: only in a child, whose death
//! costs nothing but the rest of its output.

use std::io::Write;
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

/// What the integrity check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Every page checks out (possibly after redb repaired its allocator state).
    Clean,
    /// Another process holds the file.
    Locked,
    Damaged(String),
}

/// Opens `path` and runs redb's full integrity check (every page's checksum).
pub fn check(path: &Path) -> Health {
    let mut db = match Database::builder().create(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Health::Locked,
        Err(e) => return Health::Damaged(e.to_string()),
    };
    match db.check_integrity() {
        Ok(_) => Health::Clean,
        Err(e) => Health::Damaged(e.to_string()),
    }
}

/// The tables a dump can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    Meta,
    Readings,
    Alarms,
    Gaps,
}

const META_KEYS: [&str; 5] = [
    "reserved_until",
    "settled_below",
    "evicted_readings",
    "next_seq",
    "readings_pending",
];

/// Writes one table of `path` to `out`, one line per entry, flushed as it goes: `M <name>
/// <value>` for meta, `K <key> <hex value>` for the others, and `E` when the pass reached the
/// end. `backward` reads from the last entry down, `from` (forward only) starts at that key, as
/// a probe past a damaged page: a descent from the root skips the leaves it does not need. Stops at the first error; a damaged page
/// may instead kill the process, and what was written before survives.
pub fn dump(
    path: &Path,
    table: Table,
    backward: bool,
    from: Option<u64>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out, "{}", super::salvage::HANDSHAKE)?;
    out.flush()?;
    let db = Database::builder()
        .create(path)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tx = db
        .begin_read()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = match table {
        Table::Meta => {
            let t = tx
                .open_table(TableDefinition::<&str, u64>::new("meta"))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            for k in META_KEYS {
                if let Ok(Some(v)) = t.get(k) {
                    writeln!(out, "M {k} {}", v.value())?;
                    out.flush()?;
                }
            }
            writeln!(out, "E")?;
            return out.flush();
        }
        Table::Readings => "readings",
        Table::Alarms => "alarms",
        Table::Gaps => "gaps",
    };
    let t = tx
        .open_table(TableDefinition::<u64, &[u8]>::new(name))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let iter = t
        .range(from.unwrap_or(0)..)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut line = String::new();
    let mut emit = |k: u64, v: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
        line.clear();
        line.push_str(&format!("K {k} "));
        for b in v {
            line.push_str(&format!("{b:02x}"));
        }
        writeln!(out, "{line}")?;
        out.flush()
    };
    let items: Box<dyn Iterator<Item = _>> = if backward {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    for item in items {
        let Ok((k, v)) = item else { return Ok(()) };
        emit(k.value(), v.value(), out)?;
    }
    writeln!(out, "E")?;
    out.flush()
}
