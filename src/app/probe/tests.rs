//! Unit tests of probe's pure parts: unit ranges, register names, the snippet's choice of
//! setting and its escaping. The runs against simulators are in tests/probe.rs.

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

fn found(unit: u8, setting: Option<(u32, Parity)>, answer: Result<Reply, u8>) -> scan::Found {
    scan::Found {
        unit,
        setting,
        elapsed: Duration::from_millis(90),
        answer,
    }
}

fn tried(setting: Option<(u32, Parity)>) -> scan::Tried {
    scan::Tried {
        setting,
        asked: 3,
        garbled: 0,
        elapsed: Duration::from_secs(1),
    }
}

use crate::poll::transport::Reply;

#[test]
fn the_snippet_is_one_bus_at_the_setting_most_units_answered_at() {
    let (n96, e19) = (Some((9600, Parity::None)), Some((19_200, Parity::Even)));
    let report = scan::ScanReport {
        // a path that needs TOML escaping
        target: r#"/dev/serial/by-id/usb-"odd"\name"#.into(),
        serial: true,
        table: Table::Holding,
        address: 7,
        units: (1, 3),
        timeout: Duration::from_millis(100),
        tried: vec![tried(n96), tried(e19)],
        found: vec![
            found(3, n96, Err(2)),
            found(1, e19, Ok(Reply::Words(vec![0x10]))),
            found(2, e19, Ok(Reply::Words(vec![0x20]))),
        ],
    };
    let text = snippet::snippet(&report).unwrap();
    assert!(text.contains("baud = 19200, parity = \"even\""), "{text}");
    assert!(
        text.contains("# unit 3 answers only at 9600 8N1: set it to 19200 8E1"),
        "{text}"
    );
    // three times the slowest answer (90 ms), in steps of 50 ms
    assert!(text.contains("timeout_ms = 300"), "{text}");
    let file = format!("[gateway]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n{text}");
    let config = crate::config::Config::from_str(&file, std::path::Path::new("snippet.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{file}"));
    let crate::config::Link::Rtu(rtu) = &config.buses[0].link else {
        panic!("not RTU")
    };
    assert_eq!(rtu.port, report.target);
    let units: Vec<u8> = config.devices.iter().map(|d| d.unit).collect();
    assert_eq!(units, [1, 2]);
    assert_eq!(config.devices[0].points[0].address, 7);
    assert!(snippet::snippet(&scan::ScanReport {
        found: vec![],
        ..report
    })
    .is_none());
}
