//! One test per limit rule: the line, path and message of what it refuses, and the accepted
//! case. Tests only; the rules are in the parent module.

use super::*;
use crate::config::validate::fixture::*;

/// A device (lines 1-4) with one point at line 5 (name 6, table 7, address 8, type 9) of
/// `kind`, then `more` from line 10, then the gateway and its bus.
fn one(kind: &str, more: &str) -> String {
    format!(
        "[[device]]\nname = \"tank-1\"\nbus = \"line-1\"\nunit = 1\n[[device.point]]\n\
         name = \"t101.level\"\ntable = \"holding\"\naddress = 20\ntype = \"{kind}\"\n\
         {more}{GATEWAY}{BUS}"
    )
}

fn map(text: &str) -> Limits {
    let p = check(text).unwrap().devices.remove(0).points.remove(0);
    match p.alarm {
        Some(AlarmMap::Limits(l)) => *l,
        other => panic!("{other:?}"),
    }
}

const TANK: &str = "scale = 0.01\nlimits = [ { above = 9.0, level = \"hi\" }, { above = 9.5, level = \"hihi\" },\n  { below = 1.0, level = \"lo\" }, { below = 0.5, level = \"lolo\" } ]\n";

#[test]
fn accepted() {
    let l = map(&one(
        "u16",
        &format!("{TANK}deadband = 0.05\nalarm_delay_ms = 2000\nrise_per_min = 10\nstuck_after_s = 3600\n"),
    ));
    assert_eq!(
        l.limits,
        [
            Limit {
                bound: Bound::Above(9.0),
                level: AlarmLevel::Hi
            },
            Limit {
                bound: Bound::Above(9.5),
                level: AlarmLevel::HiHi
            },
            Limit {
                bound: Bound::Below(1.0),
                level: AlarmLevel::Lo
            },
            Limit {
                bound: Bound::Below(0.5),
                level: AlarmLevel::LoLo
            },
        ]
    );
    assert_eq!(
        (l.deadband, l.delay, l.rise_per_min, l.stuck_after, l.count),
        (
            0.05,
            Duration::from_secs(2),
            Some(10.0),
            Some(Duration::from_secs(3600)),
            0.01
        )
    );
    // integers are thresholds too (a %LEL channel), and an f32 has no count: any change counts
    let gas = map(&one("f32", "word_order = \"big\"\nlimits = [ { above = 25, level = \"low\" }, { above = 50, level = \"high\" } ]\n"));
    assert_eq!(
        (gas.limits[1].bound, gas.deadband, gas.delay, gas.count),
        (Bound::Above(50.0), 0.0, Duration::ZERO, 0.0)
    );
    // early warnings alone: an alarm point that is always normal
    let w = map(&one("u16", "stuck_after_s = 60\n"));
    assert!(w.limits.is_empty() && w.stuck_after == Some(Duration::from_secs(60)));
}

#[test]
fn the_furthest_limit_beyond_wins() {
    let l = map(&one("u16", TANK));
    let level = |v: f64| l.beyond(v, 0.0).map(|i| l.limits[i].level);
    assert_eq!(level(5.0), None);
    assert_eq!(level(9.0), None, "on the limit is not beyond it");
    assert_eq!(level(9.2), Some(AlarmLevel::Hi));
    assert_eq!(level(9.7), Some(AlarmLevel::HiHi));
    assert_eq!(level(0.7), Some(AlarmLevel::Lo));
    assert_eq!(level(0.1), Some(AlarmLevel::LoLo));
    // with the deadband as slack, a limit holds until the value is back past it by that much
    assert_eq!(
        l.beyond(8.96, 0.05).map(|i| l.limits[i].level),
        Some(AlarmLevel::Hi)
    );
    assert_eq!(l.beyond(8.95, 0.05), None);
}

#[test]
fn limits_are_for_numeric_points() {
    assert_eq!(
        refused(&one("bool", "limits = [ { above = 1, level = \"hi\" } ]\n").replace("\"holding\"", "\"coil\"")),
        ["10: device[0].point[0].limits: limits and early warnings are for numeric points; a bool point's alarm is alarm = true"]
    );
}

#[test]
fn limits_and_status_codes_exclude_each_other() {
    assert_eq!(
        refused(&one("u16", "alarm = { 0 = \"normal\" }\nlimits = [ { above = 1, level = \"hi\" } ]\n")),
        ["11: device[0].point[0].limits: a point has either status codes (alarm) or limits on its value, not both"]
    );
}

#[test]
fn a_limit_has_one_threshold() {
    assert_eq!(
        refused(&one(
            "u16",
            "limits = [\n  { above = 1, below = 0, level = \"hi\" },\n  { level = \"lo\" } ]\n"
        )),
        [
            "11: device[0].point[0].limits[0]: has both above and below: one limit per entry",
            "12: device[0].point[0].limits[1]: needs a threshold: above = … or below = …",
        ]
    );
    assert_eq!(
        refused(&one(
            "u16",
            "limits = [\n  { above = nan, level = \"hi\" } ]\n"
        )),
        ["11: device[0].point[0].limits[0].above: must be a finite number"]
    );
}

#[test]
fn levels_are_from_the_vocabulary_and_on_their_side() {
    for level in ["critical", "normal", "inhibit", "warning", "unknown"] {
        assert_eq!(
            refused(&one(
                "u16",
                &format!("limits = [\n  {{ above = 1, level = \"{level}\" }} ]\n")
            )),
            [format!(
                "11: device[0].point[0].limits[0].level: \"{level}\": expected {LIMIT_LEVELS}"
            )]
        );
    }
    assert_eq!(
        refused(&one("u16", "limits = [\n  { below = 1, level = \"hi\" },\n  { above = 5, level = \"lolo\" } ]\n")),
        [
            "11: device[0].point[0].limits[0].level: \"hi\" is on the other side: a below limit raises lo or lolo",
            "12: device[0].point[0].limits[1].level: \"lolo\" is on the other side: an above limit raises hi or hihi",
        ]
    );
}

#[test]
fn limits_go_outward_from_normal() {
    assert_eq!(
        refused(&one("u16", "limits = [ { above = 9.5, level = \"hi\" },\n  { above = 9.0, level = \"hihi\" },\n  { below = 1.0, level = \"lo\" },\n  { below = 1.5, level = \"lolo\" } ]\n")),
        [
            "11: device[0].point[0].limits[1].above: 9 is not higher than device[0].point[0].limits[0]'s 9.5: list each direction's limits outward from normal",
            "13: device[0].point[0].limits[3].below: 1.5 is not lower than device[0].point[0].limits[2]'s 1: list each direction's limits outward from normal",
        ]
    );
}

#[test]
fn a_limit_further_out_is_not_less_severe_nor_a_repeat() {
    assert_eq!(
        refused(&one("u16", "limits = [ { above = 9.0, level = \"hihi\" },\n  { above = 9.5, level = \"hi\" },\n  { above = 9.8, level = \"hihi\" } ]\n")),
        [
            "11: device[0].point[0].limits[1].level: \"hi\" is further out than \"hihi\" (device[0].point[0].limits[0]) but less severe: swap their levels",
            "12: device[0].point[0].limits[2].level: \"hihi\" is already the level of device[0].point[0].limits[0]",
        ]
    );
}

#[test]
fn above_and_below_cannot_hold_at_once() {
    assert_eq!(
        refused(&one("u16", "deadband = 0.5\nlimits = [ { below = 1.0, level = \"lo\" },\n  { above = 1.8, level = \"hi\" } ]\n")),
        ["12: device[0].point[0].limits[1].above: 1.8 is not above device[0].point[0].limits[0]'s below = 1 by more than twice the deadband (0.5): both could hold at once"]
    );
}

#[test]
fn the_list_is_not_empty() {
    assert_eq!(
        refused(&one("u16", "limits = []\n")),
        ["10: device[0].point[0].limits: lists no limit: add one, e.g. { above = 9.0, level = \"hi\" }, or remove the key"]
    );
}

#[test]
fn the_deadband_is_not_negative() {
    assert_eq!(
        refused(&one(
            "u16",
            "limits = [ { above = 1, level = \"hi\" } ]\ndeadband = -0.1\n"
        )),
        ["11: device[0].point[0].deadband: -0.1: must be a number ≥ 0"]
    );
}

#[test]
fn the_delay_is_at_most_an_hour() {
    for ms in [-1, 3_600_001] {
        assert_eq!(
            refused(&one(
                "u16",
                &format!("limits = [ {{ above = 1, level = \"hi\" }} ]\nalarm_delay_ms = {ms}\n")
            )),
            [format!(
                "11: device[0].point[0].alarm_delay_ms: {ms}: expected 0..=3600000 (an hour)"
            )]
        );
    }
}

#[test]
fn deadband_and_delay_need_limits() {
    assert_eq!(
        refused(&one("u16", "rise_per_min = 1\ndeadband = 0.1\nalarm_delay_ms = 100\n")),
        [
            "11: device[0].point[0].deadband: deadband applies to limits, and this point has none",
            "12: device[0].point[0].alarm_delay_ms: alarm_delay_ms applies to limits, and this point has none",
        ]
    );
}

#[test]
fn early_warnings_are_positive() {
    assert_eq!(
        refused(&one("u16", "rise_per_min = 0\nstuck_after_s = 0\n")),
        [
            "10: device[0].point[0].rise_per_min: 0: must be a number > 0 (units of the point per minute)",
            "11: device[0].point[0].stuck_after_s: 0: expected 1..=604800 (a week)",
        ]
    );
}
