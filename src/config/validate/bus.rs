//! The `[[bus]]` sections: one serial line (`rtu`) or one TCP endpoint (`tcp`) each, with its
//! timing.
//!
//! Owns the rules of a bus: a plain unique name, one serial port per bus, usable serial
//! settings, a `host:port` to connect to, and timeouts in range. Pure: must never open the port.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::config::ctx::{check_name, value_or, Ctx};
use crate::config::file::{BusFile, RtuFile};
use crate::config::net::host_port;
use crate::config::{Bus, Link, Parity, Rs485, Rtu};

pub(super) fn validate_buses(cx: &mut Ctx, buses: &[Spanned<BusFile>]) -> Vec<Bus> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    // Serial port → the bus that uses it.
    let mut ports: HashMap<String, usize> = HashMap::new();
    for (i, b) in buses.iter().enumerate() {
        let span = b.span();
        let b = b.get_ref();
        let p = format!("bus[{i}]");
        let name = b.name.get_ref();
        check_name(cx, b.name.span(), &format!("{p}.name"), name);
        if !names.insert(name.clone()) {
            cx.err(
                b.name.span(),
                format!("{p}.name"),
                format!("\"{name}\" is used by another bus"),
            );
        }
        if let (Some(r), None) = (&b.rtu, &b.tcp) {
            let port = r.port.get_ref();
            if let Some(j) = ports.insert(port.clone(), i) {
                cx.err(
                    r.port.span(),
                    format!("{p}.rtu.port"),
                    format!("serial port {port} is already used by bus[{j}]; one bus per port"),
                );
            }
        }
        let link = link(cx, span.clone(), &p, b);
        out.push(timing(cx, span, &p, b, link));
    }
    out
}

fn link(cx: &mut Ctx, span: Range<usize>, p: &str, b: &BusFile) -> Link {
    match (&b.rtu, &b.tcp) {
        (Some(r), None) => Link::Rtu(rtu(cx, p, r)),
        (None, Some(t)) => {
            let address = t.address.get_ref();
            if let Err(why) = host_port(address, "192.168.1.50:502") {
                cx.err(t.address.span(), format!("{p}.tcp.address"), why);
            }
            Link::Tcp {
                address: address.clone(),
            }
        }
        _ => {
            cx.err(
                span,
                p,
                "needs exactly one of rtu = { port = ... } or tcp = { address = ... }",
            );
            Link::Tcp {
                address: String::new(),
            }
        }
    }
}

fn rtu(cx: &mut Ctx, p: &str, r: &RtuFile) -> Rtu {
    if r.port.get_ref().is_empty() {
        cx.err(
            r.port.span(),
            format!("{p}.rtu.port"),
            "must name a serial device such as /dev/ttyUSB0",
        );
    }
    let baud = *r.baud.get_ref();
    if !(300..=921_600).contains(&baud) {
        cx.err(
            r.baud.span(),
            format!("{p}.rtu.baud"),
            format!("{baud} is not a usable baud rate (300..=921600)"),
        );
    }
    let parity = match r.parity.get_ref().as_str() {
        "none" => Parity::None,
        "even" => Parity::Even,
        "odd" => Parity::Odd,
        other => {
            cx.err(
                r.parity.span(),
                format!("{p}.rtu.parity"),
                format!("\"{other}\": expected \"none\", \"even\" or \"odd\""),
            );
            Parity::None
        }
    };
    let (data_bits, stop_bits) = (*r.data_bits.get_ref(), *r.stop_bits.get_ref());
    if !(7..=8).contains(&data_bits) {
        cx.err(
            r.data_bits.span(),
            format!("{p}.rtu.data_bits"),
            format!("{data_bits}: expected 7 or 8"),
        );
    }
    if !(1..=2).contains(&stop_bits) {
        cx.err(
            r.stop_bits.span(),
            format!("{p}.rtu.stop_bits"),
            format!("{stop_bits}: expected 1 or 2"),
        );
    }
    Rtu {
        port: r.port.get_ref().clone(),
        baud,
        parity,
        data_bits,
        stop_bits,
        rs485: r.rs485.as_ref().map(|x| Rs485 {
            rts_on_send: x.rts_on_send,
            delay_before_send_ms: x.delay_before_send_ms,
            delay_after_send_ms: x.delay_after_send_ms,
        }),
    }
}

fn timing(cx: &mut Ctx, span: Range<usize>, p: &str, b: &BusFile, link: Link) -> Bus {
    let (timeout_ms, at) = value_or(b.timeout_ms.as_ref(), 1000, span.clone());
    if !(10..=60_000).contains(&timeout_ms) {
        cx.err(
            at,
            format!("{p}.timeout_ms"),
            format!("{timeout_ms}: expected 10..=60000"),
        );
    }
    let (turnaround_ms, at) = value_or(b.turnaround_ms.as_ref(), 0, span.clone());
    if turnaround_ms > 10_000 {
        cx.err(
            at,
            format!("{p}.turnaround_ms"),
            format!("{turnaround_ms}: expected 0..=10000"),
        );
    }
    let (max_gap, at) = value_or(b.max_gap.as_ref(), 0, span);
    if max_gap > 100 {
        cx.err(
            at,
            format!("{p}.max_gap"),
            format!("{max_gap}: expected 0..=100 registers"),
        );
    }
    Bus {
        name: Arc::from(b.name.get_ref().as_str()),
        link,
        timeout: Duration::from_millis(timeout_ms),
        turnaround: Duration::from_millis(turnaround_ms),
        max_gap,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    /// The bus sections first (line 1 is the first `[[bus]]`), then a gateway and a device on
    /// the first bus, `line-1`.
    fn with(buses: &str) -> String {
        format!("{buses}{GATEWAY}{DEVICE}")
    }

    fn rtu_bus(settings: &str) -> String {
        format!("[[bus]]\nname = \"line-1\"\nrtu = {{ port = \"/dev/ttyUSB0\"{settings} }}\n")
    }

    #[test]
    fn accepted() {
        let text = with(&format!(
            "{}[[bus]]\nname = \"lan\"\ntcp = {{ address = \"[fe80::1]:502\" }}\n\
             timeout_ms = 300\nturnaround_ms = 20\nmax_gap = 100\n",
            rtu_bus(", baud = 19200, parity = \"even\", data_bits = 7, stop_bits = 2, rs485 = { delay_after_send_ms = 2 }"),
        ));
        let c = check(&text).unwrap();
        assert_eq!(
            c.buses[0].link,
            Link::Rtu(Rtu {
                port: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::Even,
                data_bits: 7,
                stop_bits: 2,
                rs485: Some(Rs485 {
                    rts_on_send: true,
                    delay_before_send_ms: 0,
                    delay_after_send_ms: 2
                }),
            })
        );
        assert_eq!(c.buses[0].timeout, Duration::from_secs(1));
        let lan = &c.buses[1];
        assert_eq!(
            (
                &*lan.name,
                &lan.link,
                lan.timeout,
                lan.turnaround,
                lan.max_gap
            ),
            (
                "lan",
                &Link::Tcp {
                    address: "[fe80::1]:502".into()
                },
                Duration::from_millis(300),
                Duration::from_millis(20),
                100
            )
        );
    }

    #[test]
    fn the_name_is_plain() {
        let text = with(&rtu_bus("")).replacen("\"line-1\"", "\"line 1\"", 1);
        assert_eq!(
            refused(&text),
            [
                "2: bus[0].name: \"line 1\" may only use letters, digits, '-', '_' and '.'",
                // the fixture's device is on `line-1`
                "9: device[0].bus: no bus is named \"line-1\" (buses: line 1)",
            ]
        );
    }

    #[test]
    fn names_are_unique() {
        let text = with(&format!(
            "{}[[bus]]\nname = \"line-1\"\ntcp = {{ address = \"10.0.0.1:502\" }}\n",
            rtu_bus("")
        ));
        assert_eq!(
            refused(&text),
            ["5: bus[1].name: \"line-1\" is used by another bus"]
        );
    }

    #[test]
    fn one_bus_per_serial_port() {
        let text = with(&format!(
            "{}{}",
            rtu_bus(""),
            rtu_bus("").replace("line-1", "line-2")
        ));
        assert_eq!(
            refused(&text),
            ["6: bus[1].rtu.port: serial port /dev/ttyUSB0 is already used by bus[0]; one bus per port"]
        );
    }

    #[test]
    fn the_port_is_named() {
        let text = with(&rtu_bus("").replace("/dev/ttyUSB0", ""));
        assert_eq!(
            refused(&text),
            ["3: bus[0].rtu.port: must name a serial device such as /dev/ttyUSB0"]
        );
    }

    #[test]
    fn the_baud_rate_is_usable() {
        let text = with(&rtu_bus(", baud = 1000000"));
        assert_eq!(
            refused(&text),
            ["3: bus[0].rtu.baud: 1000000 is not a usable baud rate (300..=921600)"]
        );
    }

    #[test]
    fn the_parity_is_none_even_or_odd() {
        let text = with(&rtu_bus(", parity = \"mark\""));
        assert_eq!(
            refused(&text),
            ["3: bus[0].rtu.parity: \"mark\": expected \"none\", \"even\" or \"odd\""]
        );
    }

    #[test]
    fn seven_or_eight_data_bits() {
        let text = with(&rtu_bus(", data_bits = 9"));
        assert_eq!(
            refused(&text),
            ["3: bus[0].rtu.data_bits: 9: expected 7 or 8"]
        );
    }

    #[test]
    fn one_or_two_stop_bits() {
        let text = with(&rtu_bus(", stop_bits = 0"));
        assert_eq!(
            refused(&text),
            ["3: bus[0].rtu.stop_bits: 0: expected 1 or 2"]
        );
    }

    #[test]
    fn a_tcp_bus_has_host_and_port() {
        let text = with("[[bus]]\nname = \"line-1\"\ntcp = { address = \"10.0.0.1\" }\n");
        assert_eq!(
            refused(&text),
            ["3: bus[0].tcp.address: \"10.0.0.1\" is not host:port such as 192.168.1.50:502 (port 1..=65535)"]
        );
    }

    #[test]
    fn exactly_one_link() {
        let neither = with("[[bus]]\nname = \"line-1\"\n");
        let both = with(&format!(
            "{}tcp = {{ address = \"10.0.0.1:502\" }}\n",
            rtu_bus("")
        ));
        for text in [neither, both] {
            assert_eq!(
                refused(&text),
                ["1: bus[0]: needs exactly one of rtu = { port = ... } or tcp = { address = ... }"]
            );
        }
    }

    #[test]
    fn the_timeout_is_in_range() {
        let text = with(&format!("{}timeout_ms = 60001\n", rtu_bus("")));
        assert_eq!(
            refused(&text),
            ["4: bus[0].timeout_ms: 60001: expected 10..=60000"]
        );
    }

    #[test]
    fn the_turnaround_is_in_range() {
        let text = with(&format!("{}turnaround_ms = 10001\n", rtu_bus("")));
        assert_eq!(
            refused(&text),
            ["4: bus[0].turnaround_ms: 10001: expected 0..=10000"]
        );
    }

    #[test]
    fn the_gap_is_in_range() {
        let text = with(&format!("{}max_gap = 101\n", rtu_bus("")));
        assert_eq!(
            refused(&text),
            ["4: bus[0].max_gap: 101: expected 0..=100 registers"]
        );
    }
}
