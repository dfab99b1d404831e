//! The `[[device]]` and `[[profile]]` sections: which unit on which bus, how often, and its
//! points (a profile's first, then the device's own; the point rules are in `config::points`).
//!
//! Owns the rules of a device: a plain unique name, a bus that exists, a unit address valid on
//! that bus, a poll interval in range, a profile that exists, at least one point; and unique
//! profile names. Pure: must never talk to the device.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::config::ctx::{check_name, value_or, Ctx};
use crate::config::file::{DeviceFile, File, PointFile};
use crate::config::points::{check_point_set, expand_point, Placed};
use crate::config::{Bus, Device, Link, Point};

pub(super) fn validate_devices(cx: &mut Ctx, file: &File, buses: &[Bus]) -> Vec<Device> {
    let profiles = profile_names(cx, file);
    if file.device.is_empty() {
        cx.err(
            0..0,
            "device",
            "no [[device]] is configured: there is nothing to poll",
        );
    }
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, d) in file.device.iter().enumerate() {
        let span = d.span();
        let d = d.get_ref();
        let p = format!("device[{i}]");
        let name = d.name.get_ref().as_str();
        check_name(cx, d.name.span(), &format!("{p}.name"), name);
        if !names.insert(name) {
            cx.err(
                d.name.span(),
                format!("{p}.name"),
                format!("\"{name}\" is used by another device"),
            );
        }
        let bus = bus_and_unit(cx, &p, d, buses);
        let (poll_ms, at) = value_or(d.poll_ms.as_ref(), 1000, span.clone());
        if !(50..=3_600_000).contains(&poll_ms) {
            cx.err(
                at,
                format!("{p}.poll_ms"),
                format!("{poll_ms}: expected 50..=3600000"),
            );
        }
        let (alarm_poll_ms, at) = value_or(d.alarm_poll_ms.as_ref(), poll_ms, span.clone());
        if d.alarm_poll_ms.is_some() && !(50..=poll_ms.max(50)).contains(&alarm_poll_ms) {
            cx.err(
                at,
                format!("{p}.alarm_poll_ms"),
                format!("{alarm_poll_ms}: expected 50..={poll_ms} (at most the device's poll_ms)"),
            );
        }
        let points = points(cx, span, &p, d, file, &profiles);
        out.push(Device {
            name: Arc::from(name),
            bus: bus.unwrap_or(0),
            unit: u8::try_from(*d.unit.get_ref()).unwrap_or(0),
            poll: Duration::from_millis(poll_ms),
            alarm_poll: Duration::from_millis(alarm_poll_ms.min(poll_ms)),
            points,
        });
    }
    out
}

/// Profile name → its index in the file; names must be plain and unique.
fn profile_names<'f>(cx: &mut Ctx, file: &'f File) -> HashMap<&'f str, usize> {
    let mut profiles = HashMap::new();
    for (i, pr) in file.profile.iter().enumerate() {
        let name = &pr.get_ref().name;
        check_name(
            cx,
            name.span(),
            &format!("profile[{i}].name"),
            name.get_ref(),
        );
        if profiles.insert(name.get_ref().as_str(), i).is_some() {
            cx.err(
                name.span(),
                format!("profile[{i}].name"),
                format!("\"{name}\" is used by another profile"),
            );
        }
    }
    profiles
}

/// The index of the device's bus, checking that the unit address is valid on it.
fn bus_and_unit(cx: &mut Ctx, p: &str, d: &DeviceFile, buses: &[Bus]) -> Option<usize> {
    let bus = buses.iter().position(|b| *b.name == **d.bus.get_ref());
    if bus.is_none() {
        let known: Vec<&str> = buses.iter().map(|b| &*b.name).collect();
        cx.err(
            d.bus.span(),
            format!("{p}.bus"),
            format!(
                "no bus is named \"{}\" (buses: {})",
                d.bus.get_ref(),
                known.join(", ")
            ),
        );
    }
    let is_tcp = bus.is_some_and(|b| matches!(buses[b].link, Link::Tcp { .. }));
    let units = if is_tcp { 0..=255 } else { 1..=247 };
    let unit = *d.unit.get_ref();
    if !units.contains(&unit) {
        cx.err(
            d.unit.span(),
            format!("{p}.unit"),
            format!(
                "{unit}: expected {}..={} on {} bus",
                units.start(),
                units.end(),
                if is_tcp { "a TCP" } else { "an RTU" }
            ),
        );
    }
    bus
}

/// The device's points: its profile's first, then its own.
fn points(
    cx: &mut Ctx,
    span: Range<usize>,
    p: &str,
    d: &DeviceFile,
    file: &File,
    profiles: &HashMap<&str, usize>,
) -> Vec<Point> {
    let mut sources: Vec<(String, &Spanned<PointFile>)> = Vec::new();
    if let Some(prof) = &d.profile {
        match profiles.get(prof.get_ref().as_str()) {
            Some(&pi) => sources.extend(
                file.profile[pi]
                    .get_ref()
                    .point
                    .iter()
                    .enumerate()
                    .map(|(j, pt)| (format!("profile[{pi}].point[{j}]"), pt)),
            ),
            None => cx.err(
                prof.span(),
                format!("{p}.profile"),
                format!("no profile is named \"{}\"", prof.get_ref()),
            ),
        }
    }
    sources.extend(
        d.point
            .iter()
            .enumerate()
            .map(|(j, pt)| (format!("{p}.point[{j}]"), pt)),
    );
    if sources.is_empty() {
        cx.err(
            span,
            p,
            "has no points: add [[device.point]] entries or a profile",
        );
    }
    let mut points: Vec<Placed> = Vec::new();
    for (path, pt) in sources {
        expand_point(cx, &path, pt, &mut points);
    }
    check_point_set(cx, &points);
    points.into_iter().map(|p| p.point).collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    const TCP_BUS: &str = "[[bus]]\nname = \"lan\"\ntcp = { address = \"10.0.0.1:502\" }\n";
    const POINT: &str =
        "[[device.point]]\nname = \"ch1\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n";
    const PROFILE: &str = "[[profile]]\nname = \"gd16\"\n\
        [[profile.point]]\nname = \"gas\"\ntable = \"input\"\naddress = 10\ntype = \"u16\"\n";

    /// The device sections first (line 1 is the first `[[device]]`), then the rest.
    fn with(devices: &str) -> String {
        format!("{devices}{GATEWAY}{BUS}{TCP_BUS}")
    }

    fn device(name: &str, bus: &str, unit: i64, more: &str) -> String {
        format!("[[device]]\nname = \"{name}\"\nbus = \"{bus}\"\nunit = {unit}\n{more}")
    }

    #[test]
    fn accepted() {
        let text = with(&format!(
            "{}{}{PROFILE}",
            device(
                "gas-1",
                "line-1",
                247,
                &format!("poll_ms = 50\nprofile = \"gd16\"\n{POINT}")
            ),
            device("fire", "lan", 0, POINT),
        ));
        let c = check(&text).unwrap();
        let d = &c.devices[0];
        assert_eq!(
            (&*d.name, d.bus, d.unit, d.poll),
            ("gas-1", 0, 247, Duration::from_millis(50))
        );
        // the profile's points come first
        let names: Vec<&str> = d.points.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["gas", "ch1"]);
        let f = &c.devices[1];
        assert_eq!(
            (f.bus, f.unit, f.poll, f.points.len()),
            (1, 0, Duration::from_secs(1), 1)
        );
    }

    #[test]
    fn a_file_without_devices_is_refused() {
        let text = format!("{GATEWAY}{BUS}");
        assert_eq!(
            refused(&text),
            ["1: device: no [[device]] is configured: there is nothing to poll"]
        );
    }

    #[test]
    fn the_name_is_plain() {
        let text = with(&device("gas 1", "line-1", 1, POINT));
        assert_eq!(
            refused(&text),
            ["2: device[0].name: \"gas 1\" may only use letters, digits, '-', '_' and '.'"]
        );
    }

    #[test]
    fn names_are_unique() {
        let text = with(&format!(
            "{}{}",
            device("gas-1", "line-1", 1, POINT),
            device("gas-1", "line-1", 2, POINT)
        ));
        assert_eq!(
            refused(&text),
            ["11: device[1].name: \"gas-1\" is used by another device"]
        );
    }

    #[test]
    fn the_bus_exists() {
        let text = with(&device("gas-1", "line-2", 1, POINT));
        assert_eq!(
            refused(&text),
            ["3: device[0].bus: no bus is named \"line-2\" (buses: line-1, lan)"]
        );
    }

    #[test]
    fn rtu_units_are_1_to_247() {
        for unit in [0, 248] {
            let text = with(&device("gas-1", "line-1", unit, POINT));
            assert_eq!(
                refused(&text),
                [format!(
                    "4: device[0].unit: {unit}: expected 1..=247 on an RTU bus"
                )]
            );
        }
    }

    #[test]
    fn tcp_units_are_0_to_255() {
        let text = with(&device("fire", "lan", 256, POINT));
        assert_eq!(
            refused(&text),
            ["4: device[0].unit: 256: expected 0..=255 on a TCP bus"]
        );
    }

    #[test]
    fn alarm_points_may_be_read_faster_but_never_slower() {
        let text = with(&device(
            "gas-1",
            "line-1",
            1,
            &format!("poll_ms = 1000\nalarm_poll_ms = 250\n{POINT}"),
        ));
        let c = check(&text).unwrap();
        assert_eq!(
            (c.devices[0].poll, c.devices[0].alarm_poll),
            (Duration::from_secs(1), Duration::from_millis(250))
        );
        // unset: the device's own cadence
        let c = check(&with(&device("gas-1", "line-1", 1, POINT))).unwrap();
        assert_eq!(c.devices[0].alarm_poll, c.devices[0].poll);
        let text = with(&device(
            "gas-1",
            "line-1",
            1,
            &format!("poll_ms = 1000\nalarm_poll_ms = 2000\n{POINT}"),
        ));
        assert_eq!(
            refused(&text),
            ["6: device[0].alarm_poll_ms: 2000: expected 50..=1000 (at most the device's poll_ms)"]
        );
    }

    #[test]
    fn the_poll_interval_is_in_range() {
        let text = with(&device(
            "gas-1",
            "line-1",
            1,
            &format!("poll_ms = 49\n{POINT}"),
        ));
        assert_eq!(
            refused(&text),
            ["5: device[0].poll_ms: 49: expected 50..=3600000"]
        );
    }

    #[test]
    fn the_profile_exists() {
        let text = with(&device(
            "gas-1",
            "line-1",
            1,
            &format!("profile = \"gd8\"\n{POINT}"),
        ));
        assert_eq!(
            refused(&text),
            ["5: device[0].profile: no profile is named \"gd8\""]
        );
    }

    #[test]
    fn a_device_has_points() {
        let text = with(&device("gas-1", "line-1", 1, ""));
        assert_eq!(
            refused(&text),
            ["1: device[0]: has no points: add [[device.point]] entries or a profile"]
        );
    }

    #[test]
    fn profile_names_are_plain_and_unique() {
        let text = with(&format!(
            "{}{PROFILE}{}{}",
            device("gas-1", "line-1", 1, "profile = \"gd16\"\n"),
            PROFILE,
            PROFILE.replace("gd16", "gd 16"),
        ));
        assert_eq!(
            refused(&text),
            [
                "14: profile[1].name: \"gd16\" is used by another profile",
                "21: profile[2].name: \"gd 16\" may only use letters, digits, '-', '_' and '.'",
            ]
        );
    }
}
