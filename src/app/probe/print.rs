//! What `plantgate probe` prints: text a technician reads at the cabinet, or one JSON document
//! for scripts (`--json`).
//!
//! Owns the wording, the layout and the JSON shape (documented in README, "See into a bus").
//! Must never decide anything: the reports come in complete.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::read::{raw_of, BusReport, ReadReport};
use super::scan::{setting_name, ScanReport};
use super::snippet::snippet;
use crate::poll::transport::{ReadError, Reply};
use crate::record::Value;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// How a read ended, in words: `answered in 4.2 ms` or `no reply within 300 ms (after 300.4 ms)`.
fn outcome(r: &ReadReport) -> String {
    if let Some(why) = r.not_sent {
        return format!("not sent: {why}");
    }
    match &r.reply {
        Ok(_) => format!("answered in {} ms", ms(r.elapsed)),
        Err(ReadError::Exception(c)) => format!(
            "exception {c:#04x} ({}) in {} ms",
            super::exception_meaning(*c),
            ms(r.elapsed)
        ),
        Err(e) => format!("{e} (after {} ms)", ms(r.elapsed)),
    }
}

/// The `--config` report as text.
pub fn config_text(path: &Path, buses: &[BusReport], out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{}: each point read once, now (nothing spooled, nothing sent upstream)",
        path.display()
    )?;
    let (mut reads, mut failed) = (0, 0);
    for bus in buses {
        writeln!(
            out,
            "bus {}: {}, timeout {} ms",
            bus.name,
            bus.link,
            bus.timeout.as_millis()
        )?;
        if let Some(why) = &bus.down {
            writeln!(out, "  {why}")?;
        }
        for d in &bus.devices {
            writeln!(out, "  device {} (unit {})", d.name, d.unit)?;
            for r in &d.reads {
                reads += 1;
                failed += usize::from(r.reply.is_err());
                let what = format!("{} {}+{}", r.table.as_str(), r.start, r.count);
                writeln!(out, "    {what:<16} {}", outcome(r))?;
                for chunk in raw_of(&r.reply, 0, usize::MAX).chunks(16) {
                    writeln!(out, "      raw {}", chunk.join(" "))?;
                }
                for p in &r.points {
                    let value = match (&p.value, &p.unit) {
                        (Some(v), Some(u)) => format!("{v} {u}"),
                        (Some(v), None) => v.to_string(),
                        (None, _) => "-".into(),
                    };
                    let level = p.level.map(|l| format!("  alarm {}", l.as_str()));
                    let line = format!(
                        "      {:<24} {value:<14} {:<12} {}{}",
                        p.name,
                        p.quality.to_string(),
                        p.raw.join(" "),
                        level.unwrap_or_default()
                    );
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
        }
    }
    writeln!(
        out,
        "{reads} read{}, {} answered, {failed} failed",
        if reads == 1 { "" } else { "s" },
        reads - failed
    )
}

fn value_json(v: Option<Value>) -> Json {
    match v {
        Some(Value::Bool(b)) => json!(b),
        Some(Value::Int(i)) => json!(i),
        Some(Value::Float(f)) => json!(f),
        None => Json::Null,
    }
}

fn error_json(reply: &Result<Reply, ReadError>) -> Json {
    match reply {
        Ok(_) => Json::Null,
        Err(e) => json!({
            "kind": crate::poll::quality_of(e).as_str(),
            "exception": match e { ReadError::Exception(c) => json!(c), _ => Json::Null },
            "message": e.to_string(),
        }),
    }
}

/// The `--config` report as JSON.
pub fn config_json(path: &Path, reports: &[BusReport], out: &mut impl Write) -> io::Result<()> {
    let reads = reports.iter().flat_map(BusReport::reads).count();
    let failed = reports
        .iter()
        .flat_map(BusReport::reads)
        .filter(|r| r.reply.is_err())
        .count();
    let buses: Vec<Json> = reports
        .iter()
        .map(|b| {
            let devices: Vec<Json> = b
                .devices
                .iter()
                .map(|d| {
                    let reads: Vec<Json> = d.reads.iter().map(read_json).collect();
                    json!({ "device": d.name, "unit": d.unit, "reads": reads })
                })
                .collect();
            json!({
                "bus": b.name,
                "link": b.link,
                "timeout_ms": b.timeout.as_millis() as u64,
                "down": b.down,
                "devices": devices,
            })
        })
        .collect();
    let doc = json!({
        "config": path.display().to_string(),
        "reads": reads,
        "failed": failed,
        "buses": buses,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn read_json(r: &ReadReport) -> Json {
    let points: Vec<Json> = r
        .points
        .iter()
        .map(|p| {
            json!({
                "point": p.name,
                "value": value_json(p.value),
                "unit": p.unit,
                "quality": p.quality.as_str(),
                "alarm": p.level.map(|l| l.as_str()),
                "raw": p.raw,
            })
        })
        .collect();
    json!({
        "table": r.table.as_str(),
        "start": r.start,
        "count": r.count,
        "ms": ms(r.elapsed),
        "sent": r.not_sent.is_none(),
        "error": error_json(&r.reply),
        "raw": raw_of(&r.reply, 0, usize::MAX),
        "points": points,
    })
}

/// What a found unit answered, in words.
fn answer_text(answer: &Result<Reply, u8>) -> String {
    match answer {
        Ok(reply) => {
            let raw = raw_of(&Ok(reply.clone()), 0, usize::MAX);
            match reply {
                Reply::Words(w) => w
                    .iter()
                    .zip(raw)
                    .map(|(w, r)| format!("0x{r} ({w})"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Reply::Bits(_) => raw.join(" "),
            }
        }
        Err(c) => format!(
            "exception {c:#04x} ({}): the unit is there, that register is not",
            super::exception_meaning(*c)
        ),
    }
}

/// The scan's report as text, with the snippet.
pub fn scan_text(r: &ScanReport, out: &mut impl Write) -> io::Result<()> {
    let asked = format!(
        "units {}-{}, {} {}, timeout {} ms",
        r.units.0,
        r.units.1,
        r.table.as_str(),
        r.address,
        r.timeout.as_millis()
    );
    let tried: Vec<String> = r.tried.iter().map(|t| setting_name(t.setting)).collect();
    if r.found.is_empty() {
        writeln!(
            out,
            "No unit answered on {} at {} ({asked}).",
            r.target,
            tried.join(", ")
        )?;
        let garbled: usize = r.tried.iter().map(|t| t.garbled).sum();
        if garbled > 0 {
            writeln!(out, "{garbled} replies were garbled: something is there at another baud rate or parity (try --baud auto), or the A/B wires are swapped.")?;
        } else if r.serial {
            writeln!(out, "Check the wiring (A/B, ground, termination), the adapter, and try --baud auto or a longer --timeout-ms.")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "Found {} unit{} on {} ({asked}):",
        r.found.len(),
        if r.found.len() == 1 { "" } else { "s" },
        r.target
    )?;
    for f in &r.found {
        writeln!(
            out,
            "  unit {:>3}  {:<10} answered in {} ms: {}",
            f.unit,
            setting_name(f.setting),
            ms(f.elapsed),
            answer_text(&f.answer)
        )?;
    }
    if let Some(s) = snippet(r) {
        writeln!(
            out,
            "\n# For the configuration (then: plantgate check-config), found by plantgate probe:\n{s}"
        )?;
    }
    Ok(())
}

/// The scan's report as JSON.
pub fn scan_json(r: &ScanReport, out: &mut impl Write) -> io::Result<()> {
    let setting = |s: Option<(u32, crate::config::Parity)>| match s {
        Some((baud, parity)) => json!({ "baud": baud, "parity": super::parity_name(parity) }),
        None => Json::Null,
    };
    let tried: Vec<Json> = r
        .tried
        .iter()
        .map(|t| {
            json!({
                "serial": setting(t.setting),
                "asked": t.asked,
                "garbled": t.garbled,
                "seconds": (t.elapsed.as_secs_f64() * 100.0).round() / 100.0,
            })
        })
        .collect();
    let found: Vec<Json> = r
        .found
        .iter()
        .map(|f| {
            let (raw, exception) = match &f.answer {
                Ok(reply) => (raw_of(&Ok(reply.clone()), 0, usize::MAX), Json::Null),
                Err(c) => (Vec::new(), json!(c)),
            };
            json!({
                "unit": f.unit,
                "serial": setting(f.setting),
                "ms": ms(f.elapsed),
                "raw": raw,
                "exception": exception,
            })
        })
        .collect();
    let doc = json!({
        "target": r.target,
        "link": if r.serial { "rtu" } else { "tcp" },
        "read": { "table": r.table.as_str(), "address": r.address },
        "units": [r.units.0, r.units.1],
        "timeout_ms": r.timeout.as_millis() as u64,
        "tried": tried,
        "found": found,
        "snippet": snippet(r),
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
