//! What the demo prints: a line per controller poll and per alarm transition, and the closing
//! check of what the platform received (duplicates, missing numbers, announced gaps).
//! Owns the demo's words; must never change what the gateway does.

use std::collections::BTreeSet;

use super::platform::PlatformMsg;
use crate::config::{AlarmMap, Config};
use crate::record::{AlarmEvent, AlarmLevel};
use crate::spool::Stored;

/// What the platform got, for the closing summary.
#[derive(Default)]
pub(super) struct Received {
    pub(super) readings: u64,
    pub(super) alarms: u64,
    /// Every number received (readings and alarms share one sequence).
    seqs: BTreeSet<u64>,
    duplicates: u64,
    /// Announced gaps, inclusive.
    gaps: Vec<(u64, u64)>,
}

impl Received {
    pub(super) fn note(&mut self, m: &PlatformMsg) {
        let mut seqs = Vec::new();
        if m.topic.ends_with("/readings") {
            for r in m.body["readings"].as_array().into_iter().flatten() {
                seqs.extend(r["seq"].as_u64());
            }
            self.readings += seqs.len() as u64;
        } else if m.topic.ends_with("/alarms") {
            seqs.extend(m.body["seq"].as_u64());
            self.alarms += 1;
        } else if m.topic.ends_with("/gaps") {
            if let (Some(f), Some(t)) = (m.body["from"].as_u64(), m.body["to"].as_u64()) {
                self.gaps.push((f, t));
            }
        }
        for s in seqs {
            if !self.seqs.insert(s) {
                self.duplicates += 1;
            }
        }
    }

    /// Numbers between the first and the last received that never arrived and that no gap
    /// announced: what the platform would have to chase.
    fn missing(&self) -> usize {
        let (Some(&first), Some(&last)) = (self.seqs.first(), self.seqs.last()) else {
            return 0;
        };
        (first..=last)
            .filter(|s| !self.seqs.contains(s))
            .filter(|s| !self.gaps.iter().any(|(f, t)| f <= s && s <= t))
            .count()
    }

    pub(super) fn summary(&self) {
        println!("\n{}", self.line());
    }

    fn line(&self) -> String {
        let (Some(first), Some(last)) = (self.seqs.first(), self.seqs.last()) else {
            return "the platform received no readings".into();
        };
        format!(
            "the platform received {} readings and {} alarm events (seq {first}..={last}: {} duplicates, {} missing, {} gaps announced)",
            self.readings,
            self.alarms,
            self.duplicates,
            self.missing(),
            self.gaps.len()
        )
    }
}

pub(super) fn print_stored(config: &Config, s: &Stored) {
    let time = chrono_like(
        s.readings
            .first()
            .map(|r| r.sample.ts_ms)
            .unwrap_or_default(),
    );
    let mut devices: Vec<&str> = s.readings.iter().map(|r| &*r.device).collect();
    devices.dedup();
    for dev in devices {
        let Some(d) = config.devices.iter().find(|d| &*d.name == dev) else {
            continue;
        };
        let mut line = format!("{time} {dev:<6}");
        // A tank's gauges have units of their own; a gas controller's channels share one.
        let mixed = d.points.iter().any(|p| p.unit != d.points[0].unit);
        let mut bad = 0;
        for r in s.readings.iter().filter(|r| &*r.device == dev) {
            let Some(p) = d.points.iter().find(|p| p.name == r.sample.point) else {
                continue;
            };
            if matches!(p.alarm, Some(AlarmMap::Bool | AlarmMap::Codes(_))) {
                continue; // status points: their changes get lines of their own
            }
            match r.sample.value {
                Some(v) if mixed => line.push_str(&format!(
                    " {} {} {}",
                    p.name.rsplit('.').next().unwrap_or(&p.name),
                    v,
                    p.unit.as_deref().unwrap_or("")
                )),
                Some(v) => line.push_str(&format!(" {:>4.1}", v.as_f64())),
                None => {
                    bad += 1;
                    line.push_str(&format!(
                        " {:>4}",
                        r.sample
                            .quality
                            .as_str()
                            .chars()
                            .take(4)
                            .collect::<String>()
                    ));
                }
            }
        }
        if !mixed {
            let unit = d.points[0].unit.as_deref().unwrap_or("");
            line.push_str(&format!(" {unit}"));
        }
        if bad > 0 {
            line.push_str(&format!("  ({bad} not read)"));
        }
        println!("{line}");
    }
    for a in &s.alarms {
        if a.prev == AlarmLevel::Unknown && a.level == AlarmLevel::Normal {
            continue; // the start-up state of quiet channels: sent upstream, not worth a line each
        }
        println!("{}", alarm_line(config, a));
    }
}

/// `12:00:07 ALARM tank-1 t101.level normal → hi at 9.03 m (seq 812)`, or for a warning
/// `12:00:05 WARN  tank-1 t101.level rise: normal → warning at 8.21 m (seq 640)`.
fn alarm_line(config: &Config, a: &AlarmEvent) -> String {
    let marker = if a.level.is_active() {
        "ALARM"
    } else if a.level == AlarmLevel::Warning {
        "WARN "
    } else if a.prev == AlarmLevel::Unknown {
        "state"
    } else {
        "clear"
    };
    let point = config
        .devices
        .iter()
        .find(|d| d.name == a.device)
        .and_then(|d| d.points.iter().find(|p| p.name == a.sample.point));
    let warn = a
        .warn
        .map(|w| format!(" {w}:", w = w.as_str()))
        .unwrap_or_default();
    // A limit or a warning is about a value: say which.
    let at = match (point, a.sample.value) {
        (Some(p), Some(v)) if matches!(p.alarm, Some(AlarmMap::Limits(_))) => {
            format!(" at {v} {}", p.unit.as_deref().unwrap_or(""))
        }
        _ => String::new(),
    };
    format!(
        "{} {marker} {} {}{warn} {} → {}{at} (seq {})",
        chrono_like(a.sample.ts_ms),
        a.device,
        a.sample.point,
        a.prev,
        a.level,
        a.seq
    )
}

/// HH:MM:SS (UTC) of a millisecond timestamp, without a date-time dependency.
fn chrono_like(ts_ms: i64) -> String {
    let s = ts_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg(topic: &str, body: serde_json::Value) -> PlatformMsg {
        PlatformMsg {
            topic: format!("plantgate/demo/{topic}"),
            retained: false,
            raw: Vec::new(),
            body,
        }
    }

    fn readings(seqs: &[u64]) -> PlatformMsg {
        let rs: Vec<_> = seqs.iter().map(|s| json!({ "seq": s })).collect();
        msg("readings", json!({ "readings": rs }))
    }

    /// The demo test trusts this line, so it must count what the platform would have to chase.
    #[test]
    fn the_summary_counts_duplicates_and_numbers_no_gap_announced() {
        let mut got = Received::default();
        assert_eq!(got.line(), "the platform received no readings");
        got.note(&readings(&[10, 11, 12]));
        got.note(&readings(&[12, 15]));
        got.note(&msg("alarms", json!({ "seq": 18 })));
        got.note(&msg("status", json!({ "seq": 30 })));
        // 13, 14, 16 and 17 never came
        assert_eq!(
            got.line(),
            "the platform received 5 readings and 1 alarm events (seq 10..=18: 1 duplicates, 4 missing, 0 gaps announced)"
        );
        got.note(&msg("gaps", json!({ "from": 13, "to": 14 })));
        got.note(&msg("gaps", json!({ "from": 16, "to": 16 })));
        assert_eq!(
            got.line(),
            "the platform received 5 readings and 1 alarm events (seq 10..=18: 1 duplicates, 1 missing, 2 gaps announced)"
        );
    }
}
