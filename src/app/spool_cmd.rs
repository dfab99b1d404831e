//! `plantgate spool stats|export|verify`: forensics on the spool for an operator whose platform
//! says data is missing: what is waiting, the waiting records themselves, and whether the file
//! is damaged.
//!
//! Owns the command line of these commands, their wording and exit codes (0 done and sound,
//! 65 damaged, 66 no spool, 75 the service holds it, 78 configuration). Must never open the
//! spool itself or create one: every read is done by [`crate::spool::forensics`] in a child
//! process, read-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::spool::forensics::{self, Failure, LaneStats, Stats};

/// sysexits.h EX_CONFIG, as for every other command.
const EXIT_CONFIG: u8 = 78;

#[derive(Debug, clap::Subcommand)]
pub enum SpoolCmd {
    /// What is waiting, per lane: counts, oldest and newest record, sequence range, numbering,
    /// file size, last compaction, damaged files kept beside it.
    Stats {
        #[command(flatten)]
        target: Target,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Every waiting record in the wire shape, one JSON object per line, in sequence order.
    Export {
        #[command(flatten)]
        target: Target,
        /// JSON lines (the default and, for now, only format).
        #[arg(long)]
        jsonl: bool,
    },
    /// Reads the whole file (redb's check of every page, every entry decoded) and reports
    /// damage without changing anything; exits 65 on damage.
    Verify {
        #[command(flatten)]
        target: Target,
    },
}

/// Which spool a command reads.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The configuration file (its data_dir holds the spool; its gateway id goes in the export).
    #[arg(long, short, default_value = "/etc/plantgate/plantgate.toml")]
    config: PathBuf,
    /// Read this spool file instead of the one in data_dir, e.g. a `spool.redb.damaged-*` that
    /// a salvage kept beside it.
    #[arg(long, value_name = "SPOOL_FILE")]
    file: Option<PathBuf>,
}

/// Runs `cmd` with `exe` (this program) as the reading child; returns the exit code.
pub fn run(cmd: SpoolCmd, exe: &Path) -> u8 {
    let target = match &cmd {
        SpoolCmd::Stats { target, .. }
        | SpoolCmd::Export { target, .. }
        | SpoolCmd::Verify { target } => target,
    };
    let config = match Config::load(&target.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let dir = config.gateway.data_dir.clone();
    let file = match &target.file {
        Some(f) => forensics::existing(f),
        None => forensics::existing(&dir.join(forensics::FILE)),
    };
    let outcome = file.and_then(|file| {
        let mut out = std::io::stdout().lock();
        match cmd {
            SpoolCmd::Stats { json, .. } => {
                let s = forensics::stats(exe, &file)?;
                print_stats(&mut out, &dir, &file, &s, json)
                    .map_err(|e| Failure::Other(format!("cannot write: {e}")))
            }
            SpoolCmd::Export { .. } => {
                let (done, r) = forensics::export(exe, &file, &config.gateway.id, &mut out);
                if let Err(Failure::Damaged { .. }) = &r {
                    eprintln!("export incomplete: {} lines written", done.lines);
                }
                r
            }
            SpoolCmd::Verify { .. } => verify(&mut out, &file, exe),
        }
    });
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            match e {
                Failure::InUse { .. } => eprintln!("{e}{}", live_hint(&config)),
                _ => eprintln!("{e}"),
            }
            e.exit_code()
        }
    }
}

/// Where the running gateway shows the same figures live.
fn live_hint(config: &Config) -> String {
    match &config.web {
        Some(w) => format!(" (http://{}/api/status and /metrics)", w.listen),
        None => " (none is configured: no [web] section)".to_owned(),
    }
}

fn verify(out: &mut impl Write, file: &Path, exe: &Path) -> Result<(), Failure> {
    let (v, r) = forensics::verify(exe, file);
    let w = |e: std::io::Error| Failure::Other(format!("cannot write: {e}"));
    if matches!(r, Err(Failure::InUse { .. } | Failure::NoSpool(_))) {
        return r;
    }
    writeln!(out, "spool {}", file.display()).map_err(w)?;
    for p in &v.problems {
        writeln!(out, "  damage: {p}").map_err(w)?;
    }
    if let Some(s) = &v.summary {
        writeln!(
            out,
            "  read {} entries ({} readings); {} problem(s){}{}",
            s.entries,
            s.readings,
            s.problems,
            if s.closed_cleanly {
                ""
            } else {
                "; not closed cleanly (redb repaired its copy in memory, as the next start will)"
            },
            if s.allocator_rebuilt {
                "; redb rebuilt its allocator state (in memory)"
            } else {
                ""
            },
        )
        .map_err(w)?;
    }
    match r {
        Ok(()) if v.problems.is_empty() => writeln!(out, "  OK: sound").map_err(w),
        // The child exits "damaged" when it found problems: name them, or how it died.
        Ok(()) | Err(Failure::Damaged { .. }) => {
            let died = match r {
                Err(Failure::Damaged { detail, .. }) if !detail.is_empty() => detail,
                _ => String::new(),
            };
            let listed = format!("{} problem(s) listed above", v.problems.len());
            Err(Failure::Damaged {
                died: false,
                path: file.to_owned(),
                detail: if died.is_empty() {
                    listed
                } else {
                    format!("{listed}; {died}")
                },
            })
        }
        Err(e) => Err(e),
    }
}

fn print_stats(
    out: &mut impl Write,
    dir: &Path,
    file: &Path,
    s: &Stats,
    json: bool,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(file).ok();
    let bytes = meta.as_ref().map_or(0, |m| m.len());
    let (beside, starts) = forensics::beside(dir);
    if json {
        let j = serde_json::json!({
            "file": file, "file_bytes": bytes, "stats": s, "unclean_starts": starts,
            "beside": beside.iter().map(|b| serde_json::json!({"name": b.name, "bytes": b.bytes, "moved_ms": b.moved_ms})).collect::<Vec<_>>(),
        });
        return writeln!(out, "{j}");
    }
    writeln!(out, "spool {}", file.display())?;
    writeln!(out, "  file             {}", size(bytes))?;
    writeln!(
        out,
        "  closed           {}",
        if s.closed_cleanly {
            "cleanly"
        } else {
            "NOT cleanly: the last run stopped without closing it (the next start repairs it and announces what it cannot vouch for as a gap)"
        }
    )?;
    lane(out, "readings", &s.readings, "readings")?;
    lane(out, "alarms", &s.alarms, "alarms")?;
    lane(out, "gaps", &s.gaps, "numbers announced")?;
    match s.ends() {
        Some((a, z)) => {
            writeln!(out, "  oldest           seq {} at {}", a.seq, at(a.ts_ms))?;
            writeln!(out, "  newest           seq {} at {}", z.seq, at(z.ts_ms))?;
            writeln!(out, "  sequence range   {}..={}", a.seq, z.seq)?;
        }
        None => writeln!(out, "  nothing waiting")?,
    }
    numbering(out, s)?;
    if s.undecodable > 0 {
        writeln!(
            out,
            "  undecodable      {} entries (run `plantgate spool verify`)",
            s.undecodable
        )?;
    }
    for b in &beside {
        let when = b.moved_ms.map(|t| format!(", moved aside {}", at(t)));
        writeln!(
            out,
            "  beside it        {} ({}{})",
            b.name,
            size(b.bytes),
            when.unwrap_or_default()
        )?;
    }
    if starts > 0 {
        writeln!(out, "  unclean starts   {starts} recent start(s) without a clean close (spool.starts; 3 within 10 min open in salvage mode)")?;
    }
    Ok(())
}

/// Where numbering stands, evictions and the last compaction, from the stored counters.
fn numbering(out: &mut impl Write, s: &Stats) -> std::io::Result<()> {
    let m = |k: &str| s.meta.get(k).copied();
    if let Some(r) = m("reserved_until") {
        writeln!(out, "  reserved until   {r} (the next start numbers from here; numbers below it may have been handed out)")?;
    }
    if let Some(v) = m("settled_below") {
        writeln!(
            out,
            "  settled below    {v} (every record below it was on disk or acknowledged)"
        )?;
        if let Some(r) = m("reserved_until").filter(|r| *r > v) {
            writeln!(out, "  unvouched        {v}..{r}: the next start announces the numbers in it that are not held here as an unclean_stop gap")?;
        }
    }
    writeln!(
        out,
        "  evicted          {} readings since this file was made",
        m("evicted_readings").unwrap_or(0)
    )?;
    let compaction = m("last_compaction_ms")
        .and_then(|t| i64::try_from(t).ok())
        .map_or("never recorded".to_owned(), at);
    writeln!(out, "  last compaction  {compaction}")?;
    Ok(())
}

fn lane(out: &mut impl Write, name: &str, l: &LaneStats, unit: &str) -> std::io::Result<()> {
    let range = match (l.first, l.last) {
        (Some(a), Some(z)) => format!(", seq {}..={}", a.seq, z.seq),
        _ => String::new(),
    };
    writeln!(
        out,
        "  {name:<16} {} {unit} in {} entries{range}",
        l.records, l.entries
    )
}

fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{bytes} bytes ({:.0} KiB)", bytes as f64 / 1024.0),
        _ => format!("{bytes} bytes ({:.1} MiB)", bytes as f64 / 1_048_576.0),
    }
}

/// `2026-12-01 08:00:00.123 UTC`.
fn at(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(d) => format!(
            "{} {:02}:{:02}:{:02}.{:03} UTC",
            d.date(),
            d.hour(),
            d.minute(),
            d.second(),
            d.millisecond()
        ),
        Err(_) => format!("{ms} ms after 1970"),
    }
}
