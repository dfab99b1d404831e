//! The spool's on-disk encoding: compact, versioned CBOR, decoded only by this module.
//!
//! Owns the byte layout of a stored reading batch and a stored alarm event. Must never be used
//! for the wire (see [`super::wire`]): this layout may change with a version bump, the platform's
//! may not.
//!
//! ```text
//! batch  = [1, dev: tstr, ts0: int, [* [pt: tstr, dts: int, v, q: uint]]]   seq = key + index
//! alarm  = [1, dev: tstr, pt: tstr, ts: int, v, q: uint, level: uint, prev: uint, ? warn: uint]
//!                                                                               seq = key
//! gap    = [1, to: uint, reason: uint, ts: int]                                   from = key
//! v      = bool / int / float32 (when lossless) / float64 / null
//! q      = 0 good, 1 timeout, 2 bad_frame, 3 disconnected, 4 offline, 5 bad_value, 256 + code: exception
//! level  = 0 unknown, 1 normal, 2 low, 3 high, 4 fault, 5 hi, 6 hihi, 7 lo, 8 lolo, 9 inhibit,
//!          10 warning (codes are only ever appended)
//! warn   = 0 rise, 1 stuck; absent (an 8-element alarm, as older builds wrote) for no warning
//! ```
//! Timestamps inside a batch are deltas from `ts0`; sequence numbers are not stored at all: a
//! batch's readings are numbered from the store key, so a buffered reading costs ~20 bytes.

use std::sync::Arc;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use super::{AlarmEvent, AlarmLevel, Gap, GapReason, Quality, Reading, Sample, Seq, Value, Warn};

const VERSION: u8 = 1;

/// A stored record that cannot be decoded (corrupt or written by a newer version).
#[derive(Debug, thiserror::Error)]
#[error("stored record is unreadable: {0}")]
pub struct DecodeError(String);

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        DecodeError(e.to_string())
    }
}

type Enc = Encoder<Vec<u8>>;

fn quality_code(q: Quality) -> u16 {
    match q {
        Quality::Good => 0,
        Quality::Timeout => 1,
        Quality::BadFrame => 2,
        Quality::Disconnected => 3,
        Quality::Offline => 4,
        Quality::BadValue => 5,
        Quality::Exception(c) => 256 + u16::from(c),
    }
}

fn quality_from(code: u16) -> Result<Quality, DecodeError> {
    Ok(match code {
        0 => Quality::Good,
        1 => Quality::Timeout,
        2 => Quality::BadFrame,
        3 => Quality::Disconnected,
        4 => Quality::Offline,
        5 => Quality::BadValue,
        256..=511 => Quality::Exception((code - 256) as u8),
        c => return Err(DecodeError(format!("unknown quality code {c}"))),
    })
}

/// CBOR tag 4: decimal fraction `[exponent, mantissa]`, value = mantissa × 10^exponent.
const DECIMAL_FRACTION: u64 = 4;

fn put_value(e: &mut Enc, v: Option<Value>) {
    // Writing into a Vec cannot fail; the results are ignored on purpose.
    let _ = match v {
        None => e.null(),
        Some(Value::Bool(b)) => e.bool(b),
        Some(Value::Int(i)) => e.i64(i),
        Some(Value::Float(f)) => match as_decimal(f) {
            // A scaled reading (23.4 %LEL) is a short decimal: 4-6 bytes instead of 9.
            Some((exp, m)) => e
                .tag(minicbor::data::Tag::new(DECIMAL_FRACTION))
                .and_then(|e| e.array(2))
                .and_then(|e| e.i8(exp))
                .and_then(|e| e.i64(m)),
            None if f64::from(f as f32) == f || f.is_nan() => e.f32(f as f32),
            None => e.f64(f),
        },
    };
}

/// `f` as `mantissa × 10^exp` when that decodes back to exactly `f` (up to 6 decimals).
fn as_decimal(f: f64) -> Option<(i8, i64)> {
    let d = super::decimal::decimals(f).filter(|&d| d <= 6)?;
    let m = (f * 10f64.powi(i32::from(d))).round();
    (m.abs() < 2_147_483_648.0).then_some((-(d as i8), m as i64))
}

fn from_decimal(exp: i8, m: i64) -> f64 {
    if exp <= 0 {
        m as f64 / 10f64.powi(-i32::from(exp))
    } else {
        m as f64 * 10f64.powi(i32::from(exp))
    }
}

fn get_value(d: &mut Decoder<'_>) -> Result<Option<Value>, DecodeError> {
    Ok(match d.datatype()? {
        Type::Null => {
            d.null()?;
            None
        }
        Type::Bool => Some(Value::Bool(d.bool()?)),
        Type::F16 | Type::F32 | Type::F64 => Some(Value::Float(d.f64()?)),
        Type::Tag => {
            let tag = d.tag()?;
            if tag.as_u64() != DECIMAL_FRACTION || d.array()? != Some(2) {
                return Err(DecodeError(format!(
                    "unexpected value tag {}",
                    tag.as_u64()
                )));
            }
            let exp = d.i8()?;
            Some(Value::Float(from_decimal(exp, d.i64()?)))
        }
        _ => Some(Value::Int(d.i64()?)),
    })
}

fn expect_array(d: &mut Decoder<'_>, what: &str) -> Result<u64, DecodeError> {
    d.array()?
        .ok_or_else(|| DecodeError(format!("{what}: indefinite array")))
}

fn expect_version(d: &mut Decoder<'_>) -> Result<(), DecodeError> {
    match d.u8()? {
        VERSION => Ok(()),
        v => Err(DecodeError(format!(
            "format version {v}, this build reads {VERSION}"
        ))),
    }
}

/// Encodes one device's samples as a stored batch. All samples must belong to `device`.
pub fn encode_batch(device: &str, samples: &[Sample]) -> Vec<u8> {
    encode_samples(device, samples.iter())
}

/// Encodes numbered readings (one device's, consecutive numbers) as a stored batch keyed by the
/// first reading's number.
pub fn encode_readings(readings: &[Reading]) -> Vec<u8> {
    let device = readings.first().map(|r| &*r.device).unwrap_or_default();
    encode_samples(device, readings.iter().map(|r| &r.sample))
}

fn encode_samples<'a>(
    device: &str,
    samples: impl ExactSizeIterator<Item = &'a Sample> + Clone,
) -> Vec<u8> {
    let ts0 = samples.clone().map(|s| s.ts_ms).min().unwrap_or(0);
    let mut e = Encoder::new(Vec::with_capacity(16 + samples.len() * 24));
    let _ = e
        .array(4)
        .and_then(|e| e.u8(VERSION))
        .and_then(|e| e.str(device))
        .and_then(|e| e.i64(ts0))
        .and_then(|e| e.array(samples.len() as u64));
    for s in samples {
        let _ = e
            .array(4)
            .and_then(|e| e.str(&s.point))
            .and_then(|e| e.i64(s.ts_ms - ts0));
        put_value(&mut e, s.value);
        let _ = e.u16(quality_code(s.quality));
    }
    e.into_writer()
}

/// Number of readings in a stored batch, without decoding them.
pub fn batch_len(bytes: &[u8]) -> Result<u64, DecodeError> {
    let mut d = Decoder::new(bytes);
    expect_array(&mut d, "batch")?;
    expect_version(&mut d)?;
    d.skip()?;
    d.skip()?;
    expect_array(&mut d, "batch readings")
}

/// Decodes a stored batch whose first reading has sequence number `first`.
pub fn decode_batch(first: Seq, bytes: &[u8]) -> Result<Vec<Reading>, DecodeError> {
    let mut d = Decoder::new(bytes);
    expect_array(&mut d, "batch")?;
    expect_version(&mut d)?;
    let device: Arc<str> = Arc::from(d.str()?);
    let ts0 = d.i64()?;
    let n = expect_array(&mut d, "batch readings")?;
    let mut out = Vec::with_capacity(n.min(4096) as usize);
    for i in 0..n {
        expect_array(&mut d, "reading")?;
        let point = Arc::from(d.str()?);
        let ts_ms = ts0 + d.i64()?;
        let value = get_value(&mut d)?;
        let quality = quality_from(d.u16()?)?;
        out.push(Reading {
            seq: first + i,
            device: device.clone(),
            sample: Sample {
                point,
                ts_ms,
                value,
                quality,
            },
        });
    }
    Ok(out)
}

/// Encodes an alarm event (its sequence number is the store key).
pub fn encode_alarm(a: &AlarmEvent) -> Vec<u8> {
    let mut e = Encoder::new(Vec::with_capacity(64));
    let _ = e
        .array(if a.warn.is_some() { 9 } else { 8 })
        .and_then(|e| e.u8(VERSION))
        .and_then(|e| e.str(&a.device))
        .and_then(|e| e.str(&a.sample.point))
        .and_then(|e| e.i64(a.sample.ts_ms));
    put_value(&mut e, a.sample.value);
    let _ = e
        .u16(quality_code(a.sample.quality))
        .and_then(|e| e.u8(a.level.code()))
        .and_then(|e| e.u8(a.prev.code()));
    if let Some(w) = a.warn {
        let _ = e.u8(w.code());
    }
    e.into_writer()
}

/// Encodes a gap (its first number is the store key): `[1, to, reason, ts]`.
pub fn encode_gap(g: &Gap) -> Vec<u8> {
    let mut e = Encoder::new(Vec::with_capacity(24));
    let _ = e
        .array(4)
        .and_then(|e| e.u8(VERSION))
        .and_then(|e| e.u64(g.to))
        .and_then(|e| e.u8(g.reason.code()))
        .and_then(|e| e.i64(g.ts_ms));
    e.into_writer()
}

/// Decodes a stored gap starting at `from`.
pub fn decode_gap(from: Seq, bytes: &[u8]) -> Result<Gap, DecodeError> {
    let mut d = Decoder::new(bytes);
    expect_array(&mut d, "gap")?;
    expect_version(&mut d)?;
    let to = d.u64()?;
    let code = d.u8()?;
    let reason = GapReason::from_code(code)
        .ok_or_else(|| DecodeError(format!("unknown gap reason {code}")))?;
    Ok(Gap {
        from,
        to,
        reason,
        ts_ms: d.i64()?,
    })
}

/// Decodes a stored alarm event numbered `seq`.
pub fn decode_alarm(seq: Seq, bytes: &[u8]) -> Result<AlarmEvent, DecodeError> {
    let mut d = Decoder::new(bytes);
    let n = expect_array(&mut d, "alarm")?;
    expect_version(&mut d)?;
    let device = Arc::from(d.str()?);
    let point = Arc::from(d.str()?);
    let ts_ms = d.i64()?;
    let value = get_value(&mut d)?;
    let quality = quality_from(d.u16()?)?;
    let level = level_from(d.u8()?)?;
    let prev = level_from(d.u8()?)?;
    let warn = match n {
        8 => None,
        9 => {
            let c = d.u8()?;
            Some(Warn::from_code(c).ok_or_else(|| DecodeError(format!("unknown warning {c}")))?)
        }
        n => return Err(DecodeError(format!("alarm of {n} elements"))),
    };
    Ok(AlarmEvent {
        seq,
        device,
        sample: Sample {
            point,
            ts_ms,
            value,
            quality,
        },
        level,
        prev,
        warn,
    })
}

fn level_from(c: u8) -> Result<AlarmLevel, DecodeError> {
    AlarmLevel::from_code(c).ok_or_else(|| DecodeError(format!("unknown alarm level {c}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(point: &str, ts: i64, v: Option<Value>, q: Quality) -> Sample {
        Sample {
            point: point.into(),
            ts_ms: ts,
            value: v,
            quality: q,
        }
    }

    #[test]
    fn batch_round_trips_every_value_kind_and_quality() {
        let samples = vec![
            s(
                "ch01",
                1_700_000_000_123,
                Some(Value::Float(23.4)),
                Quality::Good,
            ),
            s(
                "ch02",
                1_700_000_000_125,
                Some(Value::Float(0.5)),
                Quality::Good,
            ),
            s("ch09", 1, Some(Value::Float(1.0 / 3.0)), Quality::Good),
            s("ch10", 1, Some(Value::Float(0.25e-3)), Quality::Good),
            s("ch11", 1, Some(Value::Float(-40.025)), Quality::Good),
            s("ch12", 1, Some(Value::Float(1e300)), Quality::Good),
            s(
                "ch03",
                1_700_000_000_125,
                Some(Value::Int(-7)),
                Quality::Good,
            ),
            s(
                "door",
                1_700_000_000_130,
                Some(Value::Bool(true)),
                Quality::Good,
            ),
            s("ch04", 1_700_000_000_130, None, Quality::Timeout),
            s("ch05", 1_700_000_000_130, None, Quality::Exception(2)),
            s("ch06", 1_700_000_000_130, None, Quality::BadFrame),
            s("ch07", 1_700_000_000_130, None, Quality::Disconnected),
            s("ch08", 1_700_000_000_130, None, Quality::Offline),
            s("ch13", 1_700_000_000_130, None, Quality::BadValue),
        ];
        let bytes = encode_batch("gas-1", &samples);
        assert_eq!(batch_len(&bytes).unwrap(), 14);
        let back = decode_batch(41, &bytes).unwrap();
        assert_eq!(back.len(), 14);
        for (i, (r, s)) in back.iter().zip(&samples).enumerate() {
            assert_eq!(r.seq, 41 + i as u64);
            assert_eq!(&*r.device, "gas-1");
            assert_eq!(&r.sample, s);
        }
    }

    #[test]
    fn small_batch_bytes_are_as_documented() {
        let bytes = encode_batch("d", &[s("p", 1000, Some(Value::Float(0.5)), Quality::Good)]);
        #[rustfmt::skip]
        let expected = [
            0x84,                   // array(4): the batch
            0x01,                   // format version 1
            0x61, b'd',             // dev "d"
            0x19, 0x03, 0xe8,       // ts0 = 1000
            0x81,                   // array(1): readings
            0x84,                   //   array(4): one reading
            0x61, b'p',             //   pt "p"
            0x00,                   //   dts = 0
            0xc4, 0x82, 0x20, 0x05, //   v = 0.5: tag 4 decimal fraction [-1, 5]
            0x00,                   //   q = 0 good
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn bad_value_is_code_5_with_a_null_value() {
        let bytes = encode_batch("d", &[s("p", 1000, None, Quality::BadValue)]);
        // ... pt "p", dts 0, v null (0xf6), q 5
        assert_eq!(bytes[bytes.len() - 5..], [0x61, b'p', 0x00, 0xf6, 0x05]);
        assert_eq!(quality_from(5).unwrap(), Quality::BadValue);
        assert!(quality_from(6).is_err());
    }

    #[test]
    fn alarm_round_trips() {
        let a = AlarmEvent {
            seq: 9,
            device: "gas-1".into(),
            sample: s("ch03.status", 42, Some(Value::Int(2)), Quality::Good),
            level: AlarmLevel::High,
            prev: AlarmLevel::Unknown,
            warn: None,
        };
        let back = decode_alarm(9, &encode_alarm(&a)).unwrap();
        assert_eq!(back, a);
        for (level, warn) in [
            (AlarmLevel::HiHi, None),
            (AlarmLevel::Inhibit, None),
            (AlarmLevel::Warning, Some(Warn::Rise)),
            (AlarmLevel::Normal, Some(Warn::Stuck)),
        ] {
            let a = AlarmEvent {
                level,
                warn,
                ..a.clone()
            };
            assert_eq!(decode_alarm(9, &encode_alarm(&a)).unwrap(), a);
        }
    }

    #[test]
    fn an_alarm_stored_by_an_older_build_still_decodes() {
        #[rustfmt::skip]
        let old = [
            0x88,                   // array(8): an alarm without warn
            0x01,                   // format version 1
            0x61, b'd',             // dev "d"
            0x61, b'p',             // pt "p"
            0x05,                   // ts = 5
            0x02,                   // v = 2
            0x00,                   // q = good
            0x03,                   // level = 3 high
            0x01,                   // prev = 1 normal
        ];
        let a = decode_alarm(4, &old).unwrap();
        assert_eq!(
            (a.level, a.prev, a.warn, a.sample.value),
            (
                AlarmLevel::High,
                AlarmLevel::Normal,
                None,
                Some(Value::Int(2))
            )
        );
        // the same alarm as this build writes it: byte for byte
        assert_eq!(encode_alarm(&a), old);
        let mut unknown_warn = old.to_vec();
        unknown_warn[0] = 0x89;
        unknown_warn.push(0x07);
        assert!(decode_alarm(4, &unknown_warn).is_err());
    }

    #[test]
    fn gaps_and_numbered_readings_round_trip() {
        let g = Gap {
            from: 100,
            to: 65_635,
            reason: GapReason::UncleanStop,
            ts_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_gap(100, &encode_gap(&g)).unwrap(), g);
        assert!(
            decode_gap(1, &[0x84, 0x01, 0x01, 0x09, 0x00]).is_err(),
            "unknown reason"
        );
        let readings: Vec<Reading> = (0..3)
            .map(|i| Reading {
                seq: 50 + i,
                device: "gas-2".into(),
                sample: s(
                    "ch01",
                    1000 + i as i64,
                    Some(Value::Float(0.5)),
                    Quality::Good,
                ),
            })
            .collect();
        assert_eq!(
            decode_batch(50, &encode_readings(&readings)).unwrap(),
            readings
        );
    }

    #[test]
    fn garbage_and_future_versions_are_errors_not_panics() {
        assert!(decode_batch(1, &[0xff, 0x00]).is_err());
        assert!(decode_batch(1, &[]).is_err());
        let mut v2 = encode_batch("d", &[]);
        v2[1] = 2;
        assert!(decode_batch(1, &v2)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        assert!(decode_alarm(1, &[0x88, 0x01]).is_err());
    }
}
