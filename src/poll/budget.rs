//! The line budget: how much of an RS-485 line the configured cadences need.
//!
//! Owns the estimate of a read's time on the wire (request and reply frames at the line's
//! character time, the silent interval before each, the bus's turnaround) and of a bus's load
//! from every device's poll and alarm-point cadences. Pure: `check-config` warns with it before
//! a line is overloaded; must never do I/O.

use std::time::Duration;

use super::plan::{plan, plan_alarm_points, Block};
use super::transport::silent_interval;
use crate::config::{Bus, Device, Link, Parity};

/// Bytes of a read request frame on RTU: unit, function, start (2), count (2), CRC (2).
const REQUEST_BYTES: u64 = 8;
/// Bytes of a reply frame besides its data: unit, function, byte count, CRC (2).
const REPLY_OVERHEAD: u64 = 5;

/// Time one read of `b` keeps an RTU line at `baud` busy, with `bits` per character.
fn read_time(bus: &Bus, baud: u32, bits: u64, b: &Block) -> Duration {
    let data = if b.table.is_bits() {
        u64::from(b.count).div_ceil(8)
    } else {
        2 * u64::from(b.count)
    };
    let chars = REQUEST_BYTES + REPLY_OVERHEAD + data;
    Duration::from_micros(chars * bits * 1_000_000 / u64::from(baud.max(1)))
        + 2 * silent_interval(baud)
        + bus.turnaround
}

/// The share of the line's time `devices` need at their cadences (1.0 = the line is always
/// busy), for an RTU bus; `None` for Modbus TCP, whose converter's serial side we cannot see.
pub fn line_load<'a>(bus: &Bus, devices: impl IntoIterator<Item = &'a Device>) -> Option<f64> {
    let Link::Rtu(r) = &bus.link else {
        return None;
    };
    let bits =
        1 + u64::from(r.data_bits) + u64::from(r.parity != Parity::None) + u64::from(r.stop_bits);
    let time = |blocks: Vec<Block>| -> f64 {
        blocks
            .iter()
            .map(|b| read_time(bus, r.baud, bits, b).as_secs_f64())
            .sum()
    };
    let mut load = 0.0;
    for d in devices {
        load += time(plan(&d.points, bus.max_gap)) / d.poll.as_secs_f64();
        if d.alarm_poll < d.poll {
            load += time(plan_alarm_points(&d.points, bus.max_gap)) / d.alarm_poll.as_secs_f64();
        }
    }
    Some(load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlarmMap, Kind, Point, Rtu, Table, WordOrder};

    fn bus(baud: u32) -> Bus {
        Bus {
            name: "b".into(),
            link: Link::Rtu(Rtu {
                port: "/dev/ttyUSB0".into(),
                baud,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
                rs485: None,
            }),
            timeout: Duration::from_millis(300),
            turnaround: Duration::ZERO,
            max_gap: 0,
        }
    }

    fn gd16(poll_ms: u64, alarm_poll_ms: u64) -> Device {
        let pt = |address: u16, alarm: bool| Point {
            name: format!("p{address}").into(),
            table: Table::Input,
            address,
            kind: Kind::U16,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            alarm: alarm.then_some(AlarmMap::Bool),
        };
        Device {
            name: "d".into(),
            bus: 0,
            unit: 1,
            poll: Duration::from_millis(poll_ms),
            alarm_poll: Duration::from_millis(alarm_poll_ms),
            points: (0..16)
                .map(|a| pt(a, false))
                .chain((100..116).map(|a| pt(a, true)))
                .collect(),
        }
    }

    #[test]
    fn a_read_costs_its_frames_and_two_silent_intervals() {
        // 16 registers at 9600 8N1: (8 + 5 + 32) chars × 10 bits = 46.875 ms, + 2 × 4.01 ms
        let b = &plan(&gd16(1000, 1000).points, 0)[0];
        let t = read_time(&bus(9600), 9600, 10, b);
        assert_eq!(t, Duration::from_micros(46_875 + 2 * 4_010));
    }

    #[test]
    fn cadences_add_up_and_tcp_is_not_estimated() {
        // two blocks of 54.9 ms each per second: ~11 %
        let one = line_load(&bus(9600), [&gd16(1000, 1000)]).unwrap();
        assert!((one - 0.1098).abs() < 0.001, "{one}");
        // the alarm block again every 100 ms: + ~55 %
        let fast = line_load(&bus(9600), [&gd16(1000, 100)]).unwrap();
        assert!((fast - 0.659).abs() < 0.002, "{fast}");
        // ten such devices cannot fit a 9600-baud line
        let ten = vec![gd16(1000, 100); 10];
        assert!(line_load(&bus(9600), &ten).unwrap() > 1.0);
        let mut tcp = bus(9600);
        tcp.link = Link::Tcp {
            address: "h:502".into(),
        };
        assert_eq!(line_load(&tcp, [&gd16(1000, 100)]), None);
    }
}
