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
//! Timestamps inside a batch are deltas from `ts0` (modulo 2^64, so every i64 round-trips);
//! sequence numbers are not stored at all: a batch's readings are numbered from the store key,
//! so a buffered reading costs ~20 bytes.
//!
//! Decoding trusts nothing in the bytes (a disk can damage any of them): every length prefix is
//! checked against the bytes that follow before anything is allocated for it, and no input makes
//! it panic (`tests/fuzz/` feeds it arbitrary and damaged entries).

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
            .and_then(|e| e.i64(s.ts_ms.wrapping_sub(ts0)));
        put_value(&mut e, s.value);
        let _ = e.u16(quality_code(s.quality));
    }
    e.into_writer()
}

/// The smallest encoded reading: `[pt, dts, v, q]` with one byte each.
const MIN_READING_BYTES: u64 = 5;

/// The batch's count of readings, refused when the bytes left could not hold that many: a
/// damaged count must not become a huge allocation, loop or number of readings pending.
fn reading_count(d: &mut Decoder<'_>, bytes: &[u8]) -> Result<u64, DecodeError> {
    let n = expect_array(d, "batch readings")?;
    let left = bytes.len().saturating_sub(d.position()) as u64;
    if n > left / MIN_READING_BYTES {
        return Err(DecodeError(format!(
            "batch claims {n} readings in {left} bytes"
        )));
    }
    Ok(n)
}

/// Number of readings in a stored batch, without decoding them.
pub fn batch_len(bytes: &[u8]) -> Result<u64, DecodeError> {
    let mut d = Decoder::new(bytes);
    expect_array(&mut d, "batch")?;
    expect_version(&mut d)?;
    d.skip()?;
    d.skip()?;
    reading_count(&mut d, bytes)
}

/// Decodes a stored batch whose first reading has sequence number `first`.
pub fn decode_batch(first: Seq, bytes: &[u8]) -> Result<Vec<Reading>, DecodeError> {
    let mut d = Decoder::new(bytes);
    expect_array(&mut d, "batch")?;
    expect_version(&mut d)?;
    let device: Arc<str> = Arc::from(d.str()?);
    let ts0 = d.i64()?;
    let n = reading_count(&mut d, bytes)?;
    if n > 0 && first.checked_add(n - 1).is_none() {
        return Err(DecodeError(format!(
            "{n} readings from {first} run past the last sequence number"
        )));
    }
    let mut out = Vec::with_capacity(n.min(4096) as usize);
    for i in 0..n {
        expect_array(&mut d, "reading")?;
        let point = Arc::from(d.str()?);
        let ts_ms = ts0.wrapping_add(d.i64()?);
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
mod tests;
