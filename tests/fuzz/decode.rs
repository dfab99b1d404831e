//! The register decoder (`poll::decode`) and the alarm state machine (`poll::alarm`) on
//! arbitrary words, scales and values, and on the cases in `tests/fuzz-corpus/decode/`: no
//! register content panics, a value that is no number (NaN, infinity, an overflowing scale) is a
//! bad value and never an alarm or a clear, and the levels reported form one unbroken chain.

use std::collections::BTreeMap;
use std::time::Duration;

use plantgate::config::{AlarmMap, Bound, Kind, Limit, Limits, Point, Table, WordOrder};
use plantgate::poll::alarm::PointAlarm;
use plantgate::poll::decode::decode_words;
use plantgate::record::{AlarmLevel, Quality, Sample, Value, Warn};
use proptest::prelude::*;
use proptest::sample::select;

const KINDS: [Kind; 6] = [
    Kind::Bool,
    Kind::U16,
    Kind::I16,
    Kind::U32,
    Kind::I32,
    Kind::F32,
];

/// Scales and offsets as files write them, and any f64 at all.
fn factor(usual: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => Just(usual),
        2 => select(vec![0.1, 0.01, 0.025, -1.0, 1e-9, 1e300, -1e308, 0.0, 100.0]),
        1 => any::<f64>(),
    ]
}

fn point(kind: Kind, word_order: WordOrder, scale: f64, offset: f64) -> Point {
    Point {
        name: "p".into(),
        table: Table::Holding,
        address: 0,
        kind,
        word_order,
        scale,
        offset,
        unit: None,
        alarm: None,
    }
}

fn any_point() -> impl Strategy<Value = Point> {
    (
        select(KINDS.to_vec()),
        select(vec![WordOrder::Big, WordOrder::Little]),
        factor(1.0),
        factor(0.0),
    )
        .prop_map(|(k, w, s, o)| point(k, w, s, o))
}

/// What the words of a point hold, worked out apart from the decoder: the raw integer or f32.
fn raw(p: &Point, w: &[u16]) -> f64 {
    let (hi, lo) = match (p.word_order, w.len()) {
        (_, 1) => (0, w[0]),
        (WordOrder::Big, _) => (w[0], w[1]),
        (WordOrder::Little, _) => (w[1], w[0]),
    };
    let bits = (u32::from(hi) << 16) | u32::from(lo);
    match p.kind {
        Kind::Bool => f64::from(u8::from(bits != 0)),
        Kind::U16 | Kind::U32 => f64::from(bits),
        Kind::I16 => f64::from(lo as i16),
        Kind::I32 => f64::from(bits as i32),
        Kind::F32 => f64::from(f32::from_bits(bits)),
    }
}

/// Checks one decode against [`raw`]; `Err` with the reason when the decoder is wrong.
fn check_decode(p: &Point, words: &[u16]) -> Result<(), TestCaseError> {
    let got = decode_words(p, words);
    if words.len() != usize::from(p.width()) {
        prop_assert_eq!(got, None, "{} words for a {:?}", words.len(), p.kind);
        return Ok(());
    }
    let r = raw(p, words);
    let expect = r * p.scale + p.offset;
    match (p.kind, got) {
        (Kind::Bool, got) => prop_assert_eq!(got, Some(Value::Bool(r != 0.0))),
        (_, Some(Value::Int(i))) => {
            prop_assert!(p.kind != Kind::F32 && p.scale == 1.0 && p.offset == 0.0);
            prop_assert_eq!(i as f64, r);
        }
        (_, Some(Value::Float(f))) => {
            prop_assert!(f.is_finite(), "{f} is a good value");
            // rounded to the scale's decimals at most: well within a millionth
            let tolerance = 1e-6 * expect.abs().max(p.scale.abs()).max(1.0);
            prop_assert!((f - expect).abs() <= tolerance, "{f} for {expect}");
        }
        (_, None) => {
            // no value only for what is no number, or a scaled value at the edge of f64
            let p10 = 1e9 * expect.abs();
            prop_assert!(!expect.is_finite() || !p10.is_finite(), "{expect} lost");
        }
        (_, got) => prop_assert!(false, "{got:?} from a {:?}", p.kind),
    }
    Ok(())
}

/// The levels validation lets a file map a code or a limit to (never `unknown` or `warning`).
fn level() -> impl Strategy<Value = AlarmLevel> {
    let mapped = AlarmLevel::ALL.into_iter();
    select(
        mapped
            .filter(|l| !matches!(l, AlarmLevel::Unknown | AlarmLevel::Warning))
            .collect::<Vec<_>>(),
    )
}

/// Thresholds near the values below, and any f64 (NaN and infinities too).
fn threshold() -> impl Strategy<Value = f64> {
    prop_oneof![4 => -2.0..12.0f64, 1 => any::<f64>()]
}

/// Any alarm map in the vocabulary, valid or not (limits out of order, NaN thresholds, a
/// negative deadband): the state machine must survive what validation would refuse.
fn alarm_map() -> impl Strategy<Value = AlarmMap> {
    let limit = (any::<bool>(), threshold(), level()).prop_map(|(above, t, level)| Limit {
        bound: if above {
            Bound::Above(t)
        } else {
            Bound::Below(t)
        },
        level,
    });
    let limits = (
        prop::collection::vec(limit, 0..5),
        prop_oneof![0.0..1.0f64, any::<f64>()],
        0..10_000u64,
        prop::option::of(prop_oneof![0.0..5.0f64, any::<f64>()]),
        prop::option::of(0..100u64),
        prop_oneof![0.0..0.5f64, any::<f64>()],
    )
        .prop_map(|(limits, deadband, delay, rise, stuck, count)| {
            AlarmMap::Limits(Box::new(Limits {
                limits,
                deadband,
                delay: Duration::from_millis(delay),
                rise_per_min: rise,
                stuck_after: stuck.map(Duration::from_secs),
                count,
            }))
        });
    prop_oneof![
        Just(AlarmMap::Bool),
        prop::collection::btree_map(-3..10i64, level(), 0..6).prop_map(AlarmMap::Codes),
        limits,
    ]
}

fn reading_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        4 => (-2.0..12.0f64).prop_map(|f| Some(Value::Float(f))),
        1 => select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -f64::MAX])
            .prop_map(|f| Some(Value::Float(f))),
        1 => any::<f64>().prop_map(|f| Some(Value::Float(f))),
        1 => (-3..10i64).prop_map(|i| Some(Value::Int(i))),
        1 => any::<bool>().prop_map(|b| Some(Value::Bool(b))),
    ]
}

/// Steps of the capture clock: mostly forward, sometimes back (NTP), sometimes to either end
/// of i64 (a clock set absurdly).
fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0..5_000i64,
        1 => -60_000..0i64,
        1 => 0..4_000_000i64,
        1 => select(vec![i64::MIN, i64::MAX, 0]),
    ]
}

proptest! {
    #![proptest_config(crate::budget(3000))]

    #[test]
    fn every_register_content_decodes_to_its_value_or_to_no_value(
        p in any_point(),
        words in prop::collection::vec(any::<u16>(), 0..4),
    ) {
        check_decode(&p, &words)?;
    }

    #[test]
    fn the_alarm_state_machine_survives_any_map_and_any_values(
        map in alarm_map(),
        start in prop_oneof![1_600_000_000_000..1_900_000_000_000i64, any::<i64>()],
        steps in prop::collection::vec((clock_step(), reading_value()), 1..60),
    ) {
        let mut st = PointAlarm::default();
        let mut level = None;
        let mut warn_on = BTreeMap::new();
        let mut t = start;
        for (dt, value) in steps {
            t = if matches!(dt, i64::MIN | i64::MAX) { dt } else { t.saturating_add(dt) };
            let sample = Sample {
                point: "p".into(),
                ts_ms: t,
                value,
                quality: if value.is_some() { Quality::Good } else { Quality::Timeout },
            };
            let changes = st.update(&map, &sample);
            let number = value.map(Value::as_f64).filter(|f| f.is_finite());
            prop_assert!(
                number.is_some() || changes.is_empty(),
                "{value:?} (no number) changed {changes:?}"
            );
            for c in changes {
                prop_assert_eq!(&c.sample, &sample);
                match c.warn {
                    None => {
                        prop_assert_eq!(c.prev, level.unwrap_or(AlarmLevel::Unknown));
                        prop_assert!(c.level != c.prev, "{c:?} after {level:?}");
                        prop_assert!(!matches!(c.level, AlarmLevel::Unknown | AlarmLevel::Warning));
                        level = Some(c.level);
                    }
                    Some(w) => {
                        let on = c.level == AlarmLevel::Warning;
                        let was = warn_on.insert(w.as_str(), on).unwrap_or(false);
                        prop_assert!(on != was, "{w:?} reported {on} twice");
                        prop_assert!(map.limits().is_some());
                        let expect = if on {
                            (AlarmLevel::Warning, AlarmLevel::Normal)
                        } else {
                            (AlarmLevel::Normal, AlarmLevel::Warning)
                        };
                        prop_assert_eq!((c.level, c.prev), expect);
                        prop_assert!(matches!(w, Warn::Rise | Warn::Stuck));
                    }
                }
                prop_assert!(allowed(&map, c.level), "{:?} from {map:?}", c.level);
            }
            prop_assert_eq!(st.level(), level);
        }
    }
}

/// The levels a map can give.
fn allowed(map: &AlarmMap, level: AlarmLevel) -> bool {
    match map {
        AlarmMap::Bool => matches!(level, AlarmLevel::High | AlarmLevel::Normal),
        AlarmMap::Codes(m) => level == AlarmLevel::Fault || m.values().any(|l| *l == level),
        AlarmMap::Limits(l) => {
            matches!(level, AlarmLevel::Normal | AlarmLevel::Warning)
                || l.limits.iter().any(|lim| lim.level == level)
        }
    }
}

/// `tests/fuzz-corpus/decode/*.txt`: one case a line, `kind order scale offset words... ->
/// value` (a number, `true`/`false`, or `none` for no value); `#` starts a comment.
#[test]
fn corpus_cases_decode_as_written() {
    let mut n = 0;
    for (name, text) in crate::corpus("decode") {
        for (i, line) in String::from_utf8(text).unwrap().lines().enumerate() {
            let line = line.split('#').next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let (case, expect) = line
                .split_once("->")
                .unwrap_or_else(|| panic!("{at}: no ->"));
            let f: Vec<&str> = case.split_whitespace().collect();
            let kind = KINDS[["bool", "u16", "i16", "u32", "i32", "f32"]
                .iter()
                .position(|k| *k == f[0])
                .unwrap_or_else(|| panic!("{at}: kind {}", f[0]))];
            let order = if f[1] == "little" {
                WordOrder::Little
            } else {
                WordOrder::Big
            };
            let p = point(kind, order, f[2].parse().unwrap(), f[3].parse().unwrap());
            let words: Vec<u16> = f[4..]
                .iter()
                .map(|w| u16::from_str_radix(w.trim_start_matches("0x"), 16).unwrap())
                .collect();
            let got = decode_words(&p, &words);
            let want = match expect.trim() {
                "none" => None,
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                v if v.contains(['.', 'e']) => Some(Value::Float(v.parse().unwrap())),
                v => Some(Value::Int(v.parse().unwrap())),
            };
            assert_eq!(got, want, "{at}: {line}");
            check_decode(&p, &words).unwrap_or_else(|e| panic!("{at}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} decode cases");
}
