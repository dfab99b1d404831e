//! The `[[bus]]` / `[[device]]` snippet a scan prints for what it found, ready to paste into a
//! configuration (a test pastes it and runs `check-config`).
//!
//! Owns its wording and the choice of one setting for the bus: the one most units answered
//! at. Units found at another setting stay out of it, named in a comment, because one port is
//! one bus (check-config refuses two buses on one port). Must never print a key the
//! configuration does not know.

use std::fmt::Write as _;
use std::time::Duration;

use super::scan::{setting_name, Found, ScanReport};
use crate::config::Parity;
use crate::poll::transport::Reply;

/// The name the snippet gives its bus.
pub const BUS_NAME: &str = "probed";

/// The snippet for `report`, or `None` when nothing answered.
pub fn snippet(report: &ScanReport) -> Option<String> {
    let setting = best_setting(report)?;
    let on_bus: Vec<&Found> = report
        .found
        .iter()
        .filter(|f| f.setting == setting)
        .collect();
    let slowest = on_bus.iter().map(|f| f.elapsed).max().unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "[[bus]]\nname = \"{BUS_NAME}\"");
    match setting {
        Some((baud, parity)) => {
            let _ = writeln!(
                s,
                "rtu = {{ port = {}, baud = {baud}, parity = \"{}\" }}",
                quoted(&report.target),
                super::parity_name(parity)
            );
        }
        None => {
            let _ = writeln!(s, "tcp = {{ address = {} }}", quoted(&report.target));
        }
    }
    let _ = writeln!(
        s,
        "timeout_ms = {}   # the slowest unit answered in {:.0} ms",
        timeout_for(slowest).as_millis(),
        slowest.as_secs_f64() * 1000.0
    );
    for f in report.found.iter().filter(|f| f.setting != setting) {
        let _ = writeln!(
            s,
            "# unit {} answers only at {}: set it to {} (or give it a port of its own) before adding it here",
            f.unit,
            setting_name(f.setting),
            setting_name(setting)
        );
    }
    for f in on_bus {
        device(&mut s, report, f);
    }
    Some(s)
}

/// One `[[device]]` with the register the scan read as its one point.
fn device(s: &mut String, report: &ScanReport, f: &Found) {
    let table = report.table.as_str();
    let kind = if report.table.is_bits() {
        "bool"
    } else {
        "u16"
    };
    let _ = writeln!(
        s,
        "\n[[device]]\nname = \"unit-{unit}\"\nbus = \"{BUS_NAME}\"\nunit = {unit}\npoll_ms = 1000",
        unit = f.unit
    );
    let said = match &f.answer {
        Ok(Reply::Words(w)) => format!(
            "read {}",
            w.iter()
                .map(|w| format!("0x{w:04X} ({w})"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Ok(Reply::Bits(b)) => format!(
            "read {}",
            b.iter()
                .map(|&b| u8::from(b).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Err(code) => format!(
            "answered exception {code:#04x} ({}): replace it with the unit's real registers",
            super::exception_meaning(*code)
        ),
    };
    let _ = writeln!(
        s,
        "[[device.point]]   # {table} {address} {said}\nname = \"{table}-{address}\"\ntable = \"{table}\"\naddress = {address}\ntype = \"{kind}\"",
        address = report.address
    );
}

/// The setting most units answered at (the first tried, on a tie).
fn best_setting(report: &ScanReport) -> Option<Option<(u32, Parity)>> {
    let mut best: Option<(Option<(u32, Parity)>, usize)> = None;
    for t in &report.tried {
        let n = report
            .found
            .iter()
            .filter(|f| f.setting == t.setting)
            .count();
        if n > 0 && best.is_none_or(|(_, m)| n > m) {
            best = Some((t.setting, n));
        }
    }
    best.map(|(s, _)| s)
}

/// A bus timeout with room to spare: three times the slowest answer, at least 200 ms, in
/// steps of 50 ms, within what check-config accepts.
fn timeout_for(slowest: Duration) -> Duration {
    let ms = (slowest.as_millis() as u64 * 3).div_ceil(50) * 50;
    Duration::from_millis(ms.clamp(200, 60_000))
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
