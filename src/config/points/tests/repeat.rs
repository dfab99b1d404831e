//! The rules of repeated points (channels) and of point names: repeat and stride in range,
//! a channel number in each name, channels inside the table, names plain and unique, no shared
//! register. Tests only; the rules are in `config::points`.

use super::*;

#[test]
fn repeat_is_in_range() {
    for n in [0, 1001] {
        let text = with(&point(
            "ch{n}",
            "input",
            0,
            "u16",
            &format!("repeat = {n}\n"),
        ));
        assert_eq!(
            refused(&text),
            [format!(
                "10: device[0].point[0].repeat: {n}: expected 1..=1000"
            )]
        );
    }
}

#[test]
fn the_stride_covers_the_point() {
    let text = with(&point(
        "ch{n}",
        "input",
        0,
        "u32",
        "word_order = \"big\"\nrepeat = 2\nstride = 1\n",
    ));
    assert_eq!(
        refused(&text),
        ["12: device[0].point[0].stride: 1 is less than the point's width (2)"]
    );
}

#[test]
fn repeated_names_have_a_channel_number() {
    assert_eq!(
        refused(&one("input", "u16", "repeat = 2\n")),
        ["6: device[0].point[0].name: a repeated point's name needs {n} (1, 2, …) or {nn} (01, 02, …) so each channel has its own name"]
    );
}

#[test]
fn every_channel_is_inside_the_table() {
    let single = with(&point("p", "holding", -1, "u16", ""));
    assert_eq!(
        refused(&single),
        ["8: device[0].point[0].address: -1 is outside 0..=65535"]
    );
    // the second register of an f32 at 65535 would be 65536
    let wide = with(&point(
        "p",
        "holding",
        65535,
        "f32",
        "word_order = \"big\"\n",
    ));
    assert_eq!(
        refused(&wide),
        ["8: device[0].point[0].address: 65536 is outside 0..=65535"]
    );
    let channels = with(&point(
        "ch{n}",
        "input",
        65530,
        "u16",
        "repeat = 8\nstride = 1\n",
    ));
    assert_eq!(
        refused(&channels),
        ["8: device[0].point[0].address: channel 7 at 65536 is outside 0..=65535"]
    );
}

#[test]
fn an_address_or_stride_near_i64_max_is_refused_not_wrapped() {
    // address + width once overflowed: a panic in debug, and in release a wrap below 65535
    // that accepted the point at 65535
    let max = with(&point(
        "p",
        "holding",
        i64::MAX,
        "u32",
        "word_order = \"big\"\n",
    ));
    assert_eq!(
        refused(&max),
        ["8: device[0].point[0].address: 9223372036854775808 is outside 0..=65535"]
    );
    let stride = with(&point(
        "ch{n}",
        "input",
        0,
        "u16",
        "repeat = 3\nstride = 9223372036854775807\n",
    ));
    assert_eq!(
        refused(&stride),
        ["8: device[0].point[0].address: channel 2 at 9223372036854775807 is outside 0..=65535"]
    );
}

#[test]
fn each_channels_name_is_plain() {
    let text = with(&point("ch {n}", "input", 0, "u16", "repeat = 2\n"));
    assert_eq!(
        refused(&text),
        [
            "6: device[0].point[0].name: \"ch 1\" may only use letters, digits, '-', '_' and '.'",
            "6: device[0].point[0].name: \"ch 2\" may only use letters, digits, '-', '_' and '.'",
        ]
    );
}

#[test]
fn names_starting_with_an_underscore_are_reserved() {
    let text = with(&point("_device", "input", 0, "u16", ""));
    assert_eq!(
        refused(&text),
        ["6: device[0].point[0].name: \"_device\": names starting with '_' are reserved (the gateway reports _device)"]
    );
}

#[test]
fn names_are_unique_across_the_profile_and_the_device() {
    let text = format!(
        "[[profile]]\nname = \"gd\"\n{}{}",
        point("gas", "input", 0, "u16", "").replace("device.point", "profile.point"),
        with(&point("gas", "input", 1, "u16", "")).replacen(
            "unit = 1\n",
            "unit = 1\nprofile = \"gd\"\n",
            1
        ),
    );
    // profile: lines 1-2, its point 3-7; device 8-12, its point at 13, name on 14
    assert_eq!(
        refused(&text),
        ["14: device[0].point[0].name: \"gas\" is also the name of profile[0].point[0]"]
    );
}

#[test]
fn no_two_points_share_a_register() {
    let text = with(&format!(
        "{}{}{}",
        point("a", "holding", 10, "u32", "word_order = \"big\"\n"),
        point("b", "holding", 11, "u16", ""),
        // the same address in another table is another register
        point("c", "input", 11, "u16", ""),
    ));
    // a: lines 5-10, b: 11-15 (address on 14)
    assert_eq!(
        refused(&text),
        ["14: device[0].point[1].address: holding 11 (b) overlaps a (device[0].point[0]) at 10"]
    );
}
