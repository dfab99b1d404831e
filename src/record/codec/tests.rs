//! The storage codec's round trips and byte fixtures.

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

#[test]
fn a_damaged_count_is_refused_before_anything_trusts_it() {
    // [1, "d", 0, [<2^60 readings>]]: 13 bytes cannot hold 2^60 readings of 5 bytes or more
    let mut b = vec![0x84, 0x01, 0x61, b'd', 0x00, 0x9b];
    b.extend_from_slice(&(1u64 << 60).to_be_bytes());
    assert_eq!(
        batch_len(&b).unwrap_err().to_string(),
        "stored record is unreadable: batch claims 1152921504606846976 readings in 0 bytes"
    );
    assert!(decode_batch(1, &b).is_err());
    // one reading numbered past u64::MAX
    let one = encode_batch("d", &[s("p", 0, None, Quality::Timeout)]);
    assert_eq!(batch_len(&one).unwrap(), 1);
    assert!(decode_batch(u64::MAX, &one).is_ok());
    let two = encode_batch("d", &vec![s("p", 0, None, Quality::Timeout); 2]);
    assert!(decode_batch(u64::MAX, &two).is_err());
}

#[test]
fn timestamps_at_the_ends_of_i64_round_trip() {
    // the delta from ts0 wraps both ways, as the release build computed it anyway
    let samples = [
        s("a", i64::MIN, None, Quality::Timeout),
        s("b", i64::MAX, None, Quality::Timeout),
    ];
    let back = decode_batch(0, &encode_batch("d", &samples)).unwrap();
    let ts: Vec<i64> = back.iter().map(|r| r.sample.ts_ms).collect();
    assert_eq!(ts, [i64::MIN, i64::MAX]);
}
