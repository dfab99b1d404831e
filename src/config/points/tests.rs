//! One test per point rule: the line, path and message of what it refuses, and the accepted
//! case. Tests only; the rules are in the parent module.

use super::*;
use crate::config::validate::fixture::*;

mod repeat;

/// A device (lines 1-4) with `points`, then the gateway and its bus.
fn with(points: &str) -> String {
    format!("[[device]]\nname = \"gas-1\"\nbus = \"line-1\"\nunit = 1\n{points}{GATEWAY}{BUS}")
}

/// A point entry: header on the first line, then name, table, address and type, then `more`.
fn point(name: &str, table: &str, address: i64, kind: &str, more: &str) -> String {
    format!(
        "[[device.point]]\nname = \"{name}\"\ntable = \"{table}\"\naddress = {address}\n\
         type = \"{kind}\"\n{more}"
    )
}

/// One point at line 5; its keys on 6 (name), 7 (table), 8 (address), 9 (type), 10 (`more`).
fn one(table: &str, kind: &str, more: &str) -> String {
    with(&point("p", table, 0, kind, more))
}

#[test]
fn accepted() {
    let text = with(
        &[
            point(
                "gas-{nn}",
                "input",
                100,
                "u16",
                "repeat = 12\nstride = 2\nscale = 0.1\noffset = -5\nunit = \"%LEL\"\n",
            ),
            point("level", "holding", 0, "f32", "word_order = \"little\"\n"),
            point(
                "state",
                "holding",
                2,
                "i16",
                "alarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\", -1 = \"fault\" }\n",
            ),
            point("door", "discrete", 0, "bool", "alarm = true\n"),
            point("spare", "coil", 0, "bool", "alarm = false\n"),
        ]
        .concat(),
    );
    let points = check(&text).unwrap().devices.remove(0).points;
    let names: Vec<&str> = points.iter().map(|p| &*p.name).collect();
    assert_eq!(names.len(), 16);
    assert_eq!(
        (names[0], names[11], names[12], names[15]),
        ("gas-01", "gas-12", "level", "spare")
    );
    let g12 = &points[11];
    assert_eq!(
        (
            g12.table,
            g12.address,
            g12.kind,
            g12.scale,
            g12.offset,
            g12.unit.as_deref()
        ),
        (Table::Input, 122, Kind::U16, 0.1, -5.0, Some("%LEL"))
    );
    assert_eq!(
        (points[12].kind, points[12].word_order),
        (Kind::F32, WordOrder::Little)
    );
    assert_eq!(
        points[13].alarm,
        Some(AlarmMap::Codes(BTreeMap::from([
            (-1, AlarmLevel::Fault),
            (0, AlarmLevel::Normal),
            (1, AlarmLevel::Low),
            (2, AlarmLevel::High),
        ])))
    );
    assert_eq!(points[14].alarm, Some(AlarmMap::Bool));
    assert_eq!(points[15].alarm, None);
}

#[test]
fn the_table_is_known() {
    assert_eq!(
        refused(&one("holdings", "u16", "")),
        ["7: device[0].point[0].table: \"holdings\": expected \"holding\", \"input\", \"coil\" or \"discrete\""]
    );
}

#[test]
fn the_type_is_known() {
    assert_eq!(
        refused(&one("input", "float", "")),
        ["9: device[0].point[0].type: \"float\": expected bool, u16, i16, u32, i32 or f32"]
    );
}

#[test]
fn a_bit_is_a_bool() {
    assert_eq!(
        refused(&one("coil", "u16", "")),
        ["9: device[0].point[0].type: a coil point holds one bit: its type must be \"bool\""]
    );
}

#[test]
fn thirty_two_bits_say_their_word_order() {
    // the key is missing: the problem is placed at the entry, where it belongs
    assert_eq!(
        refused(&one("holding", "u32", "")),
        ["5: device[0].point[0].word_order: type u32 spans two registers: say word_order = \"big\" (high word first) or \"little\""]
    );
}

#[test]
fn the_word_order_is_big_or_little() {
    assert_eq!(
        refused(&one("holding", "i32", "word_order = \"middle\"\n")),
        ["10: device[0].point[0].word_order: \"middle\": expected \"big\" or \"little\""]
    );
}

#[test]
fn sixteen_bits_have_no_word_order() {
    assert_eq!(
        refused(&one("holding", "u16", "word_order = \"big\"\n")),
        ["10: device[0].point[0].word_order: only 32-bit types (u32, i32, f32) have a word order"]
    );
}

#[test]
fn the_scale_is_finite_and_not_zero() {
    for scale in ["0.0", "inf", "nan"] {
        assert_eq!(
            refused(&one("holding", "u16", &format!("scale = {scale}\n"))),
            ["10: device[0].point[0].scale: must be a finite, non-zero number"]
        );
    }
}

#[test]
fn the_offset_is_finite() {
    assert_eq!(
        refused(&one("holding", "u16", "offset = -inf\n")),
        ["10: device[0].point[0].offset: must be a finite number"]
    );
}

#[test]
fn scale_and_offset_keep_the_largest_raw_value_finite() {
    // 65535 × 1e308 is infinity; the f32's largest value (3.4e38) × 1e300 too
    for (kind, more) in [
        ("u16", "scale = 1e308\noffset = 1e308\n"),
        ("f32", "word_order = \"big\"\nscale = 1e300\n"),
        ("i32", "word_order = \"little\"\nscale = -1e300\n"),
    ] {
        let got = refused(&one("holding", kind, more));
        assert_eq!(got.len(), 1, "{kind}: {got:?}");
        assert!(
            got[0].contains(": device[0].point[0].scale: ")
                && got[0].ends_with("would read as infinity"),
            "{kind}: {got:?}"
        );
    }
    assert_eq!(
        refused(&one("holding", "u16", "scale = 1e308\noffset = 1e308\n")),
        ["10: device[0].point[0].scale: 1e308 with offset 1e308 overflows: the largest raw value of this type (65535.0) would read as infinity"]
    );
    // the largest that still fits passes
    assert!(check(&one("holding", "u16", "scale = 1e303\n")).is_ok());
    assert!(check(&one(
        "holding",
        "f32",
        "word_order = \"big\"\nscale = 1e269\n"
    ))
    .is_ok());
}

#[test]
fn a_bool_has_no_scale_or_offset() {
    for key in ["scale", "offset"] {
        assert_eq!(
            refused(&one("discrete", "bool", &format!("{key} = 2.0\n"))),
            ["10: device[0].point[0].scale: a bool point has no scale or offset"]
        );
    }
}

#[test]
fn alarm_true_is_for_bools() {
    assert_eq!(
        refused(&one("input", "u16", "alarm = true\n")),
        ["10: device[0].point[0].alarm: alarm = true is for bool points; map status codes to levels instead, e.g. alarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\" }"]
    );
}

#[test]
fn an_f32_has_no_status_codes() {
    assert_eq!(
        refused(&one(
            "input",
            "f32",
            "word_order = \"big\"\nalarm = { 0 = \"normal\" }\n"
        )),
        ["11: device[0].point[0].alarm: an f32 point cannot carry status codes"]
    );
}

#[test]
fn status_codes_are_integers() {
    assert_eq!(
        refused(&one(
            "input",
            "u16",
            "alarm = { 0 = \"normal\", x = \"high\" }\n"
        )),
        ["10: device[0].point[0].alarm.x: status codes must be integers"]
    );
}

#[test]
fn levels_are_known() {
    // `unknown` and `warning` are levels the gateway reports, never ones a code maps to
    for level in ["critical", "unknown", "warning"] {
        assert_eq!(
            refused(&one("input", "u16", &format!("alarm = {{ 0 = \"normal\", 2 = \"{level}\" }}\n"))),
            [format!("10: device[0].point[0].alarm.2: \"{level}\": expected \"normal\", \"low\", \"high\", \"fault\", \"inhibit\", \"hi\", \"hihi\", \"lo\" or \"lolo\"")]
        );
    }
    // the gas controller standard's states: an inhibited (disabled) channel and a fault
    let p = check(&one(
        "input",
        "u16",
        "alarm = { 0 = \"normal\", 3 = \"fault\", 4 = \"inhibit\" }\n",
    ))
    .unwrap()
    .devices
    .remove(0)
    .points
    .remove(0);
    assert_eq!(
        p.alarm.map(|a| a.level(crate::record::Value::Int(4))),
        Some(AlarmLevel::Inhibit)
    );
}

#[test]
fn an_alarm_map_maps_something() {
    assert_eq!(
        refused(&one("input", "u16", "alarm = {}\n")),
        ["10: device[0].point[0].alarm: maps no status code to a level"]
    );
}
