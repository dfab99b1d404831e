//! The alarm state machine's rules, one test each, fed with samples at chosen times. Tests
//! only; the rules are in the parent module.

use std::time::Duration;

use super::*;
use crate::config::{Bound, Limit};
use crate::record::{Quality, Value};
use AlarmLevel::*;

fn tank(deadband: f64, delay_ms: u64) -> AlarmMap {
    AlarmMap::Limits(Box::new(Limits {
        limits: vec![
            Limit {
                bound: Bound::Above(9.0),
                level: Hi,
            },
            Limit {
                bound: Bound::Above(9.5),
                level: HiHi,
            },
            Limit {
                bound: Bound::Below(1.0),
                level: Lo,
            },
            Limit {
                bound: Bound::Below(0.5),
                level: LoLo,
            },
        ],
        deadband,
        delay: Duration::from_millis(delay_ms),
        rise_per_min: None,
        stuck_after: None,
        count: 0.01,
    }))
}

fn warnings(rise_per_min: Option<f64>, stuck_after_s: Option<u64>) -> AlarmMap {
    AlarmMap::Limits(Box::new(Limits {
        limits: vec![],
        deadband: 0.0,
        delay: Duration::ZERO,
        rise_per_min,
        stuck_after: stuck_after_s.map(Duration::from_secs),
        count: 0.1,
    }))
}

fn sample(t: i64, v: Option<f64>) -> Sample {
    Sample {
        point: "p".into(),
        ts_ms: t,
        value: v.map(Value::Float),
        quality: if v.is_some() {
            Quality::Good
        } else {
            Quality::Timeout
        },
    }
}

/// Feeds `(time, value)` pairs; returns every change as `(time, prev, level, warn)`.
fn run(
    st: &mut PointAlarm,
    map: &AlarmMap,
    feed: impl IntoIterator<Item = (i64, Option<f64>)>,
) -> Vec<(i64, AlarmLevel, AlarmLevel, Option<Warn>)> {
    feed.into_iter()
        .flat_map(|(t, v)| st.update(map, &sample(t, v)))
        .map(|c| (c.sample.ts_ms, c.prev, c.level, c.warn))
        .collect()
}

/// One value per second from t = 0.
fn every_second(values: &[f64]) -> Vec<(i64, Option<f64>)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64 * 1000, Some(*v)))
        .collect()
}

fn levels(
    changes: &[(i64, AlarmLevel, AlarmLevel, Option<Warn>)],
) -> Vec<(AlarmLevel, AlarmLevel)> {
    changes.iter().map(|c| (c.1, c.2)).collect()
}

#[test]
fn status_codes_start_from_unknown_and_an_unmapped_code_is_a_fault() {
    let map = AlarmMap::Codes([(0, Normal), (2, High), (4, Inhibit)].into_iter().collect());
    let mut st = PointAlarm::default();
    let got = run(&mut st, &map, every_second(&[0.0, 0.0, 2.0, 9.0, 4.0]));
    assert_eq!(
        levels(&got),
        [
            (Unknown, Normal),
            (Normal, High),
            (High, Fault),
            (Fault, Inhibit)
        ]
    );
    assert_eq!(st.level(), Some(Inhibit));
    assert!(
        !Inhibit.is_active(),
        "an inhibited channel is never an active alarm"
    );
}

#[test]
fn each_limit_is_raised_and_cleared_in_order() {
    let mut st = PointAlarm::default();
    let got = run(
        &mut st,
        &tank(0.05, 0),
        every_second(&[5.0, 9.2, 9.7, 9.2, 5.0, 0.8, 0.3, 0.8, 5.0]),
    );
    assert_eq!(
        levels(&got),
        [
            (Unknown, Normal),
            (Normal, Hi),
            (Hi, HiHi),
            (HiHi, Hi),
            (Hi, Normal),
            (Normal, Lo),
            (Lo, LoLo),
            (LoLo, Lo),
            (Lo, Normal),
        ]
    );
    // a jump straight past both limits raises the outer one only
    let mut st = PointAlarm::default();
    let got = run(&mut st, &tank(0.05, 0), every_second(&[5.0, 9.9, 5.0]));
    assert_eq!(
        levels(&got),
        [(Unknown, Normal), (Normal, HiHi), (HiHi, Normal)]
    );
}

#[test]
fn a_value_hovering_on_a_limit_inside_the_deadband_raises_once() {
    let mut st = PointAlarm::default();
    let hover = [8.9, 9.01, 8.97, 9.03, 8.96, 9.04, 8.951, 9.02];
    let got = run(&mut st, &tank(0.05, 0), every_second(&hover));
    assert_eq!(levels(&got), [(Unknown, Normal), (Normal, Hi)]);
    // back past the limit by the deadband: cleared
    let got = run(&mut st, &tank(0.05, 0), [(9000, Some(8.95))]);
    assert_eq!(levels(&got), [(Hi, Normal)]);
    // without a deadband the same hovering chatters: the deadband is what prevents it
    let mut st = PointAlarm::default();
    let got = run(&mut st, &tank(0.0, 0), every_second(&hover));
    assert_eq!(got.len(), 8);
}

#[test]
fn a_spike_shorter_than_the_delay_raises_nothing_and_a_held_one_raises_once_after_it() {
    let map = tank(0.05, 2000);
    let mut st = PointAlarm::default();
    // samples every 500 ms: a 1.5 s spike to 9.7, then normal
    let mut feed: Vec<(i64, Option<f64>)> = vec![(0, Some(5.0))];
    feed.extend((1..=4).map(|i| (i * 500, Some(9.7))));
    feed.push((2500, Some(5.0)));
    let got = run(&mut st, &map, feed);
    assert_eq!(levels(&got), [(Unknown, Normal)]);
    // held from t = 10 s: raised at the first sample 2 s later, not before, and only once
    let feed = (0..20).map(|i| (10_000 + i * 500, Some(9.2)));
    let got = run(&mut st, &map, feed);
    assert_eq!(got, [(12_000, Normal, Hi, None)]);
    // clearing takes no delay
    let got = run(&mut st, &map, [(20_000, Some(5.0))]);
    assert_eq!(got, [(20_000, Hi, Normal, None)]);
}

#[test]
fn the_first_report_waits_for_a_delay_rather_than_say_normal() {
    let map = tank(0.0, 2000);
    let mut st = PointAlarm::default();
    let got = run(&mut st, &map, every_second(&[9.2, 9.2, 9.2]));
    assert_eq!(got, [(2000, Unknown, Hi, None)]);
    // a start inside a spike: the first report is normal, once the spike is over
    let mut st = PointAlarm::default();
    let got = run(&mut st, &map, every_second(&[9.2, 5.0]));
    assert_eq!(got, [(1000, Unknown, Normal, None)]);
}

#[test]
fn a_failed_read_keeps_the_level_and_the_delay_running() {
    let map = tank(0.05, 2000);
    let mut st = PointAlarm::default();
    let got = run(
        &mut st,
        &map,
        [
            (0, Some(5.0)),
            (1000, Some(9.2)),
            (2000, None),
            (3000, Some(9.2)),
        ],
    );
    assert_eq!(levels(&got), [(Unknown, Normal), (Normal, Hi)]);
    assert_eq!(got[1].0, 3000);
    let got = run(
        &mut st,
        &map,
        [(4000, None), (5000, None), (6000, Some(9.2))],
    );
    assert!(got.is_empty(), "no false clear, no repeat: {got:?}");
    assert_eq!(st.level(), Some(Hi));
}

#[test]
fn a_fast_rise_warns_once_and_ends_below_half_the_rate() {
    let map = warnings(Some(10.0), None);
    let mut st = PointAlarm::default();
    // 0.5 per second = 30 per minute for 20 s, then flat
    let mut values: Vec<f64> = (0..20).map(|i| 1.0 + f64::from(i) * 0.5).collect();
    values.extend([10.5; 120]);
    let got = run(&mut st, &map, every_second(&values));
    // warned once 10 s of history show the climb; ended when the 60 s window's rate fell
    // under 5 per minute: at 70 s its oldest sample is 6.0 (4.5/min), at 69 s 5.5 (5.0/min)
    assert_eq!(
        got[1..],
        [
            (10_000, Normal, Warning, Some(Warn::Rise)),
            (70_000, Warning, Normal, Some(Warn::Rise)),
        ]
    );
    assert_eq!(
        got[0],
        (0, Unknown, Normal, None),
        "a warnings-only point is normal"
    );
}

#[test]
fn a_rise_rate_hovering_on_the_limit_does_not_chatter() {
    let map = warnings(Some(10.0), None);
    let mut st = PointAlarm::default();
    // alternating 12/min and 8/min stretches of 15 s
    let mut v = 0.0;
    let mut values = Vec::new();
    for k in 0..12 {
        let per_s = if k % 2 == 0 { 12.0 / 60.0 } else { 8.0 / 60.0 };
        for _ in 0..15 {
            v += per_s;
            values.push(v);
        }
    }
    let got = run(&mut st, &map, every_second(&values));
    let warns: Vec<_> = got.iter().filter(|c| c.3.is_some()).collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
}

#[test]
fn a_stuck_value_warns_after_its_time_and_ends_only_on_two_counts() {
    let map = warnings(None, Some(60));
    let mut st = PointAlarm::default();
    // a one-count move at 30 s restarts the clock: the warning comes at 90 s, not 60 s
    let mut feed: Vec<(i64, Option<f64>)> = (0..=100)
        .map(|i| (i * 1000, Some(if i >= 30 { 5.1 } else { 5.0 })))
        .collect();
    feed.insert(50, (49_500, None)); // failed reads change nothing
    let got = run(&mut st, &map, feed);
    assert_eq!(got[1..], [(90_000, Normal, Warning, Some(Warn::Stuck))]);
    // one count of noise does not end it; two do
    let got = run(
        &mut st,
        &map,
        [
            (101_000, Some(5.2)),
            (102_000, Some(5.1)),
            (103_000, Some(5.3)),
        ],
    );
    assert_eq!(got, [(103_000, Warning, Normal, Some(Warn::Stuck))]);
}

#[test]
fn changes_follow_the_points_and_skip_plain_values() {
    use crate::config::{Kind, Table, WordOrder};
    let point = |name: &str, alarm| Point {
        name: name.into(),
        table: Table::Holding,
        address: 0,
        kind: Kind::U16,
        word_order: WordOrder::Big,
        scale: 0.01,
        offset: 0.0,
        unit: None,
        alarm,
    };
    let points = [point("value", None), point("level", Some(tank(0.05, 0)))];
    let mut states = vec![PointAlarm::default(); 2];
    let samples = [Some(sample(0, Some(9.9))), Some(sample(0, Some(9.9)))];
    let got = changes(&points, &mut states, &samples);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].level, states[0].level(), states[1].level()),
        (HiHi, None, Some(HiHi))
    );
    // a poll that did not read the point (the alarm points alone) changes nothing
    assert!(changes(&points, &mut states, &[None, None]).is_empty());
}

#[test]
fn a_value_that_is_no_number_is_neither_an_alarm_nor_a_clear() {
    // as a status code NaN would read as an unmapped code (fault); as a limit, inf is above all
    let codes = AlarmMap::Codes([(0, Normal)].into_iter().collect());
    let mut st = PointAlarm::default();
    let got = run(&mut st, &codes, [(0, Some(0.0)), (1, Some(f64::NAN))]);
    assert_eq!(levels(&got), [(Unknown, Normal)]);
    let mut st = PointAlarm::default();
    let got = run(
        &mut st,
        &tank(0.0, 0),
        [
            (0, Some(9.6)),
            (1, Some(f64::NAN)),
            (2, Some(f64::INFINITY)),
        ],
    );
    assert_eq!(levels(&got), [(Unknown, HiHi)]);
    assert_eq!(st.level(), Some(HiHi));
}

#[test]
fn a_clock_at_either_end_of_i64_does_not_panic() {
    let map = warnings(Some(1.0), Some(1));
    let mut st = PointAlarm::default();
    let feed = [
        (i64::MIN, Some(1.0)),
        (i64::MAX, Some(1.0)),
        (i64::MIN, Some(5.0)),
    ];
    let got = run(&mut st, &map, feed);
    // i64::MAX - i64::MIN saturates: far past stuck_after_s and the rise window
    assert_eq!(got[1], (i64::MAX, Normal, Warning, Some(Warn::Stuck)));
    let mut st = PointAlarm::default();
    let got = run(
        &mut st,
        &tank(0.0, 2000),
        [(i64::MIN, Some(9.2)), (i64::MAX, Some(9.2))],
    );
    assert_eq!(levels(&got), [(Unknown, Hi)]);
}
