use super::*;

#[test]
fn units_are_one_id_or_a_range_within_the_limit() {
    assert_eq!(parse_units("5", 247).unwrap(), 5..=5);
    assert_eq!(parse_units("1-32", 247).unwrap(), 1..=32);
    assert!(parse_units("32-1", 247).is_err());
    assert!(parse_units("1-248", 247).is_err());
    assert_eq!(parse_units("0-255", 255).unwrap(), 0..=255);
    assert!(parse_units("a-b", 247).is_err());
}

#[test]
fn the_register_names_its_table() {
    assert_eq!(parse_register("holding:0").unwrap(), (Table::Holding, 0));
    assert_eq!(parse_register("discrete:7").unwrap(), (Table::Discrete, 7));
    assert!(parse_register("holding").is_err());
    assert!(parse_register("eeprom:1").is_err());
    assert!(parse_register("input:65536").is_err());
}

#[test]
fn baud_auto_tries_every_parity_unless_one_is_named() {
    assert_eq!(
        parse_settings("9600", None).unwrap(),
        [(9600, Parity::None)]
    );
    assert_eq!(parse_settings("auto", None).unwrap().len(), 24);
    let even = parse_settings("auto", Some("even")).unwrap();
    assert_eq!(even.len(), 8);
    assert!(even.iter().all(|&(_, p)| p == Parity::Even));
    assert_eq!(even[1], (19_200, Parity::Even));
    assert!(parse_settings("100", None).is_err());
    assert!(parse_settings("9600", Some("mark")).is_err());
}

#[test]
fn slow_lines_get_their_wire_time_on_top() {
    let t = Duration::from_millis(100);
    // 8 request + 7 reply bytes, 11 bits each, at 1200 baud: 165 bits → 137.5 ms
    assert_eq!(
        with_wire_time(t, Some(1200), 7),
        Duration::from_micros(237_500)
    );
    assert_eq!(with_wire_time(t, None, 7), t);
}
