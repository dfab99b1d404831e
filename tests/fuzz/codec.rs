//! The spool's record codec (`record::codec`) on arbitrary bytes, on mutations of real
//! encodings, and on the seeds in `tests/fuzz-corpus/codec/`: a stored entry the disk damaged
//! must come back as an error, never a panic or an allocation its length prefix asks for, and
//! whatever decodes must encode back to the same records.

use std::sync::Arc;

use plantgate::record::codec::{
    batch_len, decode_alarm, decode_batch, decode_gap, encode_alarm, encode_gap, encode_readings,
};
use plantgate::record::{
    AlarmEvent, AlarmLevel, Gap, GapReason, Quality, Reading, Sample, Value, Warn,
};
use proptest::prelude::*;
use proptest::sample::{select, Index};

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        any::<i64>().prop_map(|i| Some(Value::Int(i))),
        any::<f64>().prop_map(|f| Some(Value::Float(f))),
        // what scaled registers give: a few decimals
        (any::<i32>(), 0..7i32).prop_map(|(m, d)| Some(Value::Float(f64::from(m) / 10f64.powi(d)))),
    ]
}

fn quality() -> impl Strategy<Value = Quality> {
    prop_oneof![
        select(vec![
            Quality::Good,
            Quality::Timeout,
            Quality::BadFrame,
            Quality::Disconnected,
            Quality::Offline,
            Quality::BadValue,
        ]),
        any::<u8>().prop_map(Quality::Exception),
    ]
}

/// Capture times: mostly now-ish, some anywhere in i64 (a clock set wrong, a damaged entry).
fn ts() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1_600_000_000_000..1_900_000_000_000i64, 1 => any::<i64>()]
}

fn sample() -> impl Strategy<Value = Sample> {
    ("\\PC{0,12}", ts(), value(), quality()).prop_map(|(point, ts_ms, value, quality)| Sample {
        point: point.into(),
        ts_ms,
        value,
        quality,
    })
}

fn readings() -> impl Strategy<Value = Vec<Reading>> {
    (
        "\\PC{0,12}",
        0..u64::MAX / 2,
        prop::collection::vec(sample(), 0..24),
    )
        .prop_map(|(device, first, samples)| {
            let device: Arc<str> = device.into();
            (0..)
                .zip(samples)
                .map(|(i, sample)| Reading {
                    seq: first + i,
                    device: device.clone(),
                    sample,
                })
                .collect()
        })
}

fn alarm() -> impl Strategy<Value = AlarmEvent> {
    let level = || select(AlarmLevel::ALL.to_vec());
    (
        any::<u64>(),
        "\\PC{0,12}",
        sample(),
        level(),
        level(),
        prop::option::of(select(Warn::ALL.to_vec())),
    )
        .prop_map(|(seq, device, sample, level, prev, warn)| AlarmEvent {
            seq,
            device: device.into(),
            sample,
            level,
            prev,
            warn,
        })
}

fn gap() -> impl Strategy<Value = Gap> {
    (
        any::<u64>(),
        any::<u64>(),
        select(GapReason::ALL.to_vec()),
        ts(),
    )
        .prop_map(|(from, to, reason, ts_ms)| Gap {
            from,
            to,
            reason,
            ts_ms,
        })
}

/// One change a failing disk or a bad flush could make to a stored entry.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// A length prefix claiming far more than follows (CBOR header 0x1b: 8-byte count).
    HugeCount(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), select(vec![0x5b_u8, 0x7b, 0x9b, 0xbb]))
            .prop_map(|(i, major)| Mutation::HugeCount(i, major)),
    ]
}

fn mutate(mut b: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if b.is_empty() {
            b.push(0x80);
        }
        let at = |i: &Index| i.index(b.len());
        match m {
            Mutation::FlipBit(i, bit) => {
                let i = at(i);
                b[i] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) => {
                let i = at(i);
                b[i] = *v;
            }
            Mutation::Truncate(i) => b.truncate(at(i)),
            Mutation::Insert(i, bytes) => {
                let i = at(i);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i);
                b.drain(i..(i + n).min(b.len()));
            }
            Mutation::HugeCount(i, major) => {
                let i = at(i);
                let mut head = vec![*major];
                head.extend_from_slice(&(1u64 << 60).to_be_bytes());
                b.splice(i..i, head);
            }
        }
    }
    b
}

/// A value as the codec promises to keep it: NaN stays NaN (any payload), -0.0 reads as 0.0.
fn kept(v: Option<Value>) -> Option<Value> {
    match v {
        Some(Value::Float(f)) if f.is_nan() => Some(Value::Float(f64::NAN)),
        Some(Value::Float(f)) if f == 0.0 && f.is_sign_negative() => Some(Value::Float(0.0)),
        v => v,
    }
}

fn kept_sample(s: &Sample) -> String {
    format!(
        "{:?}",
        Sample {
            value: kept(s.value),
            ..s.clone()
        }
    )
}

fn same_readings(a: &[Reading], b: &[Reading]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.seq == b.seq
                && a.device == b.device
                && kept_sample(&a.sample) == kept_sample(&b.sample)
        })
}

fn same_alarm(a: &AlarmEvent, b: &AlarmEvent) -> bool {
    let strip = |a: &AlarmEvent| AlarmEvent {
        sample: Sample {
            value: kept(a.sample.value),
            ..a.sample.clone()
        },
        ..a.clone()
    };
    format!("{:?}", strip(a)) == format!("{:?}", strip(b))
}

/// Feeds `bytes` to every decoder as the entry stored under `key`; fails on what a damaged
/// entry must never cause. Returns how many decoders accepted it.
fn decode_everything(key: u64, bytes: &[u8]) -> Result<usize, TestCaseError> {
    let ((len, batch, alarm, gap), largest) = crate::largest_allocation(|| {
        (
            batch_len(bytes),
            decode_batch(key, bytes),
            decode_alarm(key, bytes),
            decode_gap(key, bytes),
        )
    });
    // Every allocation is paid for by input (a reading takes at least 5 bytes of it, a level
    // of nesting skipped one), never by what a length prefix claims.
    let bound = 64 + bytes.len() * 32;
    prop_assert!(
        largest <= bound,
        "{} bytes made an allocation of {largest}",
        bytes.len()
    );
    if let Ok(n) = &len {
        prop_assert!(
            *n <= bytes.len() as u64 / 5,
            "batch_len {n} from {} bytes",
            bytes.len()
        );
    }
    let mut accepted = 0;
    if let Ok(r) = &batch {
        accepted += 1;
        prop_assert_eq!(len.as_ref().ok(), Some(&(r.len() as u64)));
        let again = decode_batch(key, &encode_readings(r)).unwrap();
        prop_assert!(same_readings(r, &again), "{r:?} re-encoded as {again:?}");
    }
    if let Ok(a) = &alarm {
        accepted += 1;
        let again = decode_alarm(key, &encode_alarm(a)).unwrap();
        prop_assert!(same_alarm(a, &again), "{a:?} re-encoded as {again:?}");
    }
    if let Ok(g) = &gap {
        accepted += 1;
        prop_assert_eq!(decode_gap(key, &encode_gap(g)).unwrap(), *g);
    }
    Ok(accepted)
}

proptest! {
    #![proptest_config(crate::budget(3000))]

    #[test]
    fn arbitrary_bytes_are_an_error_or_a_record_that_round_trips(
        key in any::<u64>(),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        decode_everything(key, &bytes)?;
    }

    #[test]
    fn records_round_trip_exactly(r in readings(), a in alarm(), g in gap()) {
        let first = r.first().map_or(0, |r| r.seq);
        let back = decode_batch(first, &encode_readings(&r)).unwrap();
        prop_assert!(same_readings(&r, &back), "{r:?} came back as {back:?}");
        prop_assert_eq!(batch_len(&encode_readings(&r)).unwrap(), r.len() as u64);
        let back = decode_alarm(a.seq, &encode_alarm(&a)).unwrap();
        prop_assert!(same_alarm(&a, &back), "{a:?} came back as {back:?}");
        prop_assert_eq!(decode_gap(g.from, &encode_gap(&g)).unwrap(), g);
    }

    #[test]
    fn damaged_real_encodings_never_panic(
        r in readings(),
        a in alarm(),
        g in gap(),
        which in 0..3u8,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (key, real) = match which {
            0 => (r.first().map_or(0, |r| r.seq), encode_readings(&r)),
            1 => (a.seq, encode_alarm(&a)),
            _ => (g.from, encode_gap(&g)),
        };
        decode_everything(key, &mutate(real, &mutations))?;
    }

    #[test]
    fn damaged_corpus_entries_never_panic(
        seed in any::<Index>(),
        key in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        static SEEDS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
        let seeds = SEEDS.get_or_init(|| crate::corpus("codec"));
        let (_, bytes) = seed.get(seeds);
        decode_everything(key, &mutate(bytes.clone(), &mutations))?;
    }
}

/// The seeds: `batch-*`, `alarm-*` and `gap-*` are entries the product wrote and must decode
/// (and re-encode to the same bytes); `bad-*` are damaged ones that must be refused; `odd-*`
/// are edge cases that may go either way but must not panic.
#[test]
fn corpus_entries_decode_as_their_names_say() {
    let seeds = crate::corpus("codec");
    assert!(seeds.len() >= 10, "the codec corpus is missing");
    for (name, bytes) in &seeds {
        let accepted = decode_everything(7, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = name.split('-').next().unwrap();
        let canonical = match kind {
            "batch" => encode_readings(&decode_batch(7, bytes).unwrap()),
            "alarm" => encode_alarm(&decode_alarm(7, bytes).unwrap()),
            "gap" => encode_gap(&decode_gap(7, bytes).unwrap()),
            "odd" => continue,
            "bad" => {
                assert_eq!(accepted, 0, "{name} was accepted");
                continue;
            }
            _ => panic!("{name}: name it batch-, alarm-, gap-, odd- or bad-"),
        };
        assert_eq!(&canonical, bytes, "{name} does not re-encode to itself");
    }
}

/// Rewrites the product-written seeds (`cargo test --test fuzz -- --ignored write_codec_seeds`)
/// after a deliberate format change.
#[test]
#[ignore]
fn write_codec_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/codec");
    let s = |point: &str, ts_ms, value, quality| Sample {
        point: point.into(),
        ts_ms,
        value,
        quality,
    };
    let device: Arc<str> = "gas-1".into();
    let samples = [
        s(
            "ch01.gas",
            1_764_590_400_000,
            Some(Value::Float(23.4)),
            Quality::Good,
        ),
        s(
            "ch01.status",
            1_764_590_400_003,
            Some(Value::Int(2)),
            Quality::Good,
        ),
        s(
            "mains_failure",
            1_764_590_400_010,
            Some(Value::Bool(true)),
            Quality::Good,
        ),
        s(
            "t101.temp",
            1_764_590_400_011,
            Some(Value::Float(1.0 / 3.0)),
            Quality::Good,
        ),
        s(
            "t101.level",
            1_764_590_400_011,
            Some(Value::Float(9.5e-3)),
            Quality::Good,
        ),
        s("ch02.gas", 1_764_590_400_012, None, Quality::Timeout),
        s("ch03.gas", 1_764_590_400_012, None, Quality::Exception(2)),
        s("ch04.gas", 1_764_590_400_012, None, Quality::BadValue),
    ];
    let readings: Vec<Reading> = (0..)
        .zip(samples.iter().cloned())
        .map(|(i, sample)| Reading {
            seq: 100 + i,
            device: device.clone(),
            sample,
        })
        .collect();
    let alarm = |warn, level, prev| AlarmEvent {
        seq: 7,
        device: device.clone(),
        sample: samples[1].clone(),
        level,
        prev,
        warn,
    };
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    write("batch-gd16.bin", encode_readings(&readings));
    write("batch-one.bin", encode_readings(&readings[..1]));
    write("batch-empty.bin", encode_readings(&[]));
    write(
        "alarm-high.bin",
        encode_alarm(&alarm(None, AlarmLevel::High, AlarmLevel::Unknown)),
    );
    write(
        "alarm-rise.bin",
        encode_alarm(&alarm(
            Some(Warn::Rise),
            AlarmLevel::Warning,
            AlarmLevel::Normal,
        )),
    );
    let gap = Gap {
        from: 7,
        to: 1 << 40,
        reason: GapReason::Damaged,
        ts_ms: 1_764_590_400_000,
    };
    write("gap-damaged.bin", encode_gap(&gap));
}
