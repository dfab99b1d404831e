//! The platform's wire format: the messages plantgate publishes, in CBOR or JSON of one shape.
//!
//! Owns the shape (one serde model, so CBOR and JSON cannot drift apart) and its CDDL in README.
//! Must never change a key's meaning: the platform deduplicates on `(gw, seq)` forever.
//!
//! ```cddl
//! readings = { gw: tstr, hist: bool, readings: [* reading] }   ; topic {prefix}/readings
//! alarm    = { reading-fields, level: level, prev: level, ? warn: warn } ; topic {prefix}/alarms
//! gap      = { gw: tstr, from: uint, to: uint, reason: reason, ts: int } ; topic {prefix}/gaps
//! reading  = { reading-fields }
//! reading-fields = ( gw: tstr, seq: uint, dev: tstr, pt: tstr, ts: int,   ; ts: ms since epoch
//!                    v: bool / int / float / null, q: quality, ? exc: uint )
//! quality  = "good" / "timeout" / "exception" / "bad_frame" / "disconnected" / "offline" / "bad_value"
//! level    = "unknown" / "normal" / "low" / "high" / "hi" / "hihi" / "lo" / "lolo"
//!          / "fault" / "inhibit" / "warning"
//! warn     = "rise" / "stuck"   ; an early warning: level "warning" at its start, "normal" at its end
//! reason   = "unclean_stop" / "evicted" / "damaged"
//! ```
//! A gap says: no record numbered `from..=to` (inclusive) that has not reached the platform yet
//! will ever be sent.

use serde::Serialize;

use super::{AlarmEvent, Gap, Reading, Sample, Value};

/// Encoding of published payloads, chosen by `[upstream] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Cbor,
    Json,
}

#[derive(Serialize)]
struct WireSample<'a> {
    gw: &'a str,
    seq: u64,
    dev: &'a str,
    pt: &'a str,
    ts: i64,
    v: Option<WireValue>,
    q: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exc: Option<u8>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireValue {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl<'a> WireSample<'a> {
    fn new(gw: &'a str, seq: u64, dev: &'a str, s: &'a Sample) -> Self {
        WireSample {
            gw,
            seq,
            dev,
            pt: &s.point,
            ts: s.ts_ms,
            v: s.value.map(|v| match v {
                Value::Bool(b) => WireValue::Bool(b),
                Value::Int(i) => WireValue::Int(i),
                Value::Float(f) => WireValue::Float(f),
            }),
            q: s.quality.as_str(),
            exc: s.quality.exception_code(),
        }
    }
}

#[derive(Serialize)]
struct WireBatch<'a> {
    gw: &'a str,
    hist: bool,
    readings: Vec<WireSample<'a>>,
}

#[derive(Serialize)]
struct WireAlarm<'a> {
    #[serde(flatten)]
    sample: WireSample<'a>,
    level: &'static str,
    prev: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    warn: Option<&'static str>,
}

fn encode<T: Serialize>(format: Format, msg: &T) -> Vec<u8> {
    match format {
        // Serializing plain structs into a Vec cannot fail.
        Format::Cbor => minicbor_serde::to_vec(msg).unwrap_or_default(),
        Format::Json => serde_json::to_vec(msg).unwrap_or_default(),
    }
}

/// A readings message; `hist` marks readings drained from backlog.
pub fn encode_readings(format: Format, gw: &str, hist: bool, readings: &[Reading]) -> Vec<u8> {
    let batch = WireBatch {
        gw,
        hist,
        readings: readings
            .iter()
            .map(|r| WireSample::new(gw, r.seq, &r.device, &r.sample))
            .collect(),
    };
    encode(format, &batch)
}

/// An alarm message: one transition per message, so none waits behind another.
pub fn encode_alarm(format: Format, gw: &str, a: &AlarmEvent) -> Vec<u8> {
    let msg = WireAlarm {
        sample: WireSample::new(gw, a.seq, &a.device, &a.sample),
        level: a.level.as_str(),
        prev: a.prev.as_str(),
        warn: a.warn.map(|w| w.as_str()),
    };
    encode(format, &msg)
}

#[derive(Serialize)]
struct WireGap<'a> {
    gw: &'a str,
    from: u64,
    to: u64,
    reason: &'static str,
    ts: i64,
}

/// A gap message: a range of numbers the platform must not wait for.
pub fn encode_gap(format: Format, gw: &str, g: &Gap) -> Vec<u8> {
    let msg = WireGap {
        gw,
        from: g.from,
        to: g.to,
        reason: g.reason.as_str(),
        ts: g.ts_ms,
    };
    encode(format, &msg)
}

/// One line of `plantgate spool export --jsonl`: a waiting record in its wire shape (JSON), with
/// `lane` first, the topic it goes to (`readings`, `alarms` or `gaps`). A reading is the object
/// a `readings` message carries in its array; an alarm and a gap are their whole messages.
#[derive(Serialize)]
struct Exported<T> {
    lane: &'static str,
    #[serde(flatten)]
    msg: T,
}

/// An export line for a reading (no newline).
pub fn export_reading(gw: &str, r: &Reading) -> Vec<u8> {
    let msg = WireSample::new(gw, r.seq, &r.device, &r.sample);
    encode(
        Format::Json,
        &Exported {
            lane: "readings",
            msg,
        },
    )
}

/// An export line for an alarm transition (no newline).
pub fn export_alarm(gw: &str, a: &AlarmEvent) -> Vec<u8> {
    let msg = WireAlarm {
        sample: WireSample::new(gw, a.seq, &a.device, &a.sample),
        level: a.level.as_str(),
        prev: a.prev.as_str(),
        warn: a.warn.map(|w| w.as_str()),
    };
    encode(
        Format::Json,
        &Exported {
            lane: "alarms",
            msg,
        },
    )
}

/// An export line for a gap (no newline).
pub fn export_gap(gw: &str, g: &Gap) -> Vec<u8> {
    let msg = WireGap {
        gw,
        from: g.from,
        to: g.to,
        reason: g.reason.as_str(),
        ts: g.ts_ms,
    };
    encode(Format::Json, &Exported { lane: "gaps", msg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlarmLevel, Quality};

    fn reading(seq: u64, v: Option<Value>, q: Quality) -> Reading {
        Reading {
            seq,
            device: "gas-1".into(),
            sample: Sample {
                point: "ch01".into(),
                ts_ms: 1_700_000_000_000,
                value: v,
                quality: q,
            },
        }
    }

    #[test]
    fn json_has_the_documented_keys() {
        let r = [
            reading(7, Some(Value::Float(12.5)), Quality::Good),
            reading(8, None, Quality::Exception(2)),
            reading(9, None, Quality::BadValue),
        ];
        let j: serde_json::Value =
            serde_json::from_slice(&encode_readings(Format::Json, "gw1", true, &r)).unwrap();
        assert_eq!(j["gw"], "gw1");
        assert_eq!(j["hist"], true);
        assert_eq!(
            j["readings"][0],
            serde_json::json!({"gw":"gw1","seq":7,"dev":"gas-1","pt":"ch01","ts":1_700_000_000_000_i64,"v":12.5,"q":"good"})
        );
        assert_eq!(j["readings"][1]["v"], serde_json::Value::Null);
        assert_eq!(j["readings"][1]["q"], "exception");
        assert_eq!(j["readings"][1]["exc"], 2);
        assert_eq!(j["readings"][2]["v"], serde_json::Value::Null);
        assert_eq!(j["readings"][2]["q"], "bad_value");
    }

    #[test]
    fn an_export_line_is_the_wire_object_with_its_lane() {
        let r = reading(7, Some(Value::Int(3)), Quality::Good);
        let j: serde_json::Value = serde_json::from_slice(&export_reading("gw1", &r)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"lane":"readings","gw":"gw1","seq":7,"dev":"gas-1","pt":"ch01","ts":1_700_000_000_000_i64,"v":3,"q":"good"})
        );
        let g = Gap {
            from: 1,
            to: 2,
            reason: crate::record::GapReason::Evicted,
            ts_ms: 9,
        };
        let line = String::from_utf8(export_gap("gw1", &g)).unwrap();
        assert!(
            line.starts_with(r#"{"lane":"gaps","gw":"gw1","from":1"#),
            "{line}"
        );
    }

    #[test]
    fn a_gap_is_its_inclusive_range_and_reason() {
        let g = Gap {
            from: 10,
            to: 20,
            reason: crate::record::GapReason::UncleanStop,
            ts_ms: 5,
        };
        let j: serde_json::Value =
            serde_json::from_slice(&encode_gap(Format::Json, "gw1", &g)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"gw":"gw1","from":10,"to":20,"reason":"unclean_stop","ts":5})
        );
    }

    #[test]
    fn cbor_alarm_is_a_flat_map_with_level_and_prev() {
        let a = AlarmEvent {
            seq: 3,
            device: "gas-1".into(),
            sample: reading(3, Some(Value::Int(2)), Quality::Good).sample,
            level: AlarmLevel::High,
            prev: AlarmLevel::Normal,
            warn: None,
        };
        let bytes = encode_alarm(Format::Cbor, "gw1", &a);
        let mut d = minicbor::Decoder::new(&bytes);
        let n = d.map().unwrap();
        // A flattened struct is written as an indefinite map; count its keys either way.
        let mut keys = Vec::new();
        for _ in 0..n.unwrap_or(u64::MAX) {
            if d.datatype().unwrap() == minicbor::data::Type::Break {
                break;
            }
            keys.push(d.str().unwrap().to_string());
            d.skip().unwrap();
        }
        assert_eq!(
            keys,
            ["gw", "seq", "dev", "pt", "ts", "v", "q", "level", "prev"]
        );
    }

    #[test]
    fn an_early_warning_names_its_kind() {
        let a = AlarmEvent {
            seq: 4,
            device: "tank-1".into(),
            sample: reading(4, Some(Value::Float(7.5)), Quality::Good).sample,
            level: AlarmLevel::Warning,
            prev: AlarmLevel::Normal,
            warn: Some(crate::record::Warn::Rise),
        };
        let j: serde_json::Value =
            serde_json::from_slice(&encode_alarm(Format::Json, "gw1", &a)).unwrap();
        assert_eq!(
            (&j["level"], &j["prev"], &j["warn"]),
            (&"warning".into(), &"normal".into(), &"rise".into())
        );
        let hihi = AlarmEvent {
            level: AlarmLevel::HiHi,
            warn: None,
            ..a
        };
        let j: serde_json::Value =
            serde_json::from_slice(&encode_alarm(Format::Json, "gw1", &hihi)).unwrap();
        assert_eq!(j["level"], "hihi");
        assert!(j.get("warn").is_none(), "{j}");
    }
}
