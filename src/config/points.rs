//! Validation of points and profiles: expanding `repeat`ed channels, types, word order, scale,
//! alarm maps, and the rules between points of one device (unique names, no shared register).
//!
//! Owns those rules and their messages. Pure, like the rest of validation: must never stop at
//! the first error or touch the file system.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use toml::Spanned;

use super::ctx::{check_name, Ctx};
use super::file::{AlarmFile, PointFile};
use super::*;

/// A point as validated, with the path and spans its later problems are reported at.
pub(super) struct Placed {
    pub(super) point: Point,
    /// `device[0].point[3]` or `profile[1].point[0]`: the entry it was expanded from.
    pub(super) path: String,
    pub(super) name_span: Range<usize>,
    pub(super) address_span: Range<usize>,
}

/// Checks one `[[device.point]]` (or `[[profile.point]]`) entry and appends the points it
/// stands for (`repeat` of them) to `out`; none when the entry has a problem.
pub(super) fn expand_point(
    cx: &mut Ctx,
    path: &str,
    spanned: &Spanned<PointFile>,
    out: &mut Vec<Placed>,
) {
    let span = spanned.span();
    let f = spanned.get_ref();
    let before = cx.problems.len();
    let (table, kind) = table_and_kind(cx, path, f);
    let word_order = word_order(cx, span.clone(), path, f, kind);
    let (scale, offset) = scale_and_offset(cx, path, f, kind);
    let alarm = alarm(cx, path, f, kind);
    let repeat = f.repeat.as_ref().map_or(1, |r| *r.get_ref());
    if !(1..=1000).contains(&repeat) {
        if let Some(r) = &f.repeat {
            cx.err(
                r.span(),
                format!("{path}.repeat"),
                format!("{repeat}: expected 1..=1000"),
            );
        }
    }
    let stride = f
        .stride
        .as_ref()
        .map_or(i64::from(kind.width()), |s| *s.get_ref());
    if stride < i64::from(kind.width()) {
        if let Some(s) = &f.stride {
            cx.err(
                s.span(),
                format!("{path}.stride"),
                format!("{stride} is less than the point's width ({})", kind.width()),
            );
        }
    }
    let name = f.name.get_ref();
    if repeat > 1 && !(name.contains("{n}") || name.contains("{nn}")) {
        cx.err(f.name.span(), format!("{path}.name"), "a repeated point's name needs {n} (1, 2, …) or {nn} (01, 02, …) so each channel has its own name");
    }
    if cx.problems.len() > before {
        return;
    }
    let template = Point {
        name: Arc::from(""),
        table,
        address: 0,
        kind,
        word_order,
        scale,
        offset,
        unit: f.unit.clone(),
        alarm,
    };
    channels(cx, path, f, repeat, stride, template, out);
}

/// The register table and the value type, and that a bit table holds bools.
fn table_and_kind(cx: &mut Ctx, path: &str, f: &PointFile) -> (Table, Kind) {
    let table = match f.table.get_ref().as_str() {
        "holding" => Table::Holding,
        "input" => Table::Input,
        "coil" => Table::Coil,
        "discrete" => Table::Discrete,
        other => {
            cx.err(
                f.table.span(),
                format!("{path}.table"),
                format!("\"{other}\": expected \"holding\", \"input\", \"coil\" or \"discrete\""),
            );
            Table::Holding
        }
    };
    let kind = match f.kind.get_ref().as_str() {
        "bool" => Kind::Bool,
        "u16" => Kind::U16,
        "i16" => Kind::I16,
        "u32" => Kind::U32,
        "i32" => Kind::I32,
        "f32" => Kind::F32,
        other => {
            cx.err(
                f.kind.span(),
                format!("{path}.type"),
                format!("\"{other}\": expected bool, u16, i16, u32, i32 or f32"),
            );
            Kind::U16
        }
    };
    if table.is_bits() && kind != Kind::Bool {
        cx.err(
            f.kind.span(),
            format!("{path}.type"),
            format!(
                "a {} point holds one bit: its type must be \"bool\"",
                table.as_str()
            ),
        );
    }
    (table, kind)
}

/// A 32-bit type must say its word order; nothing else may.
fn word_order(
    cx: &mut Ctx,
    entry: Range<usize>,
    path: &str,
    f: &PointFile,
    kind: Kind,
) -> WordOrder {
    let key = f.word_order.as_ref();
    match (kind.width(), key.map(|w| w.get_ref().as_str())) {
        (2, Some("big")) => WordOrder::Big,
        (2, Some("little")) => WordOrder::Little,
        (2, None) => {
            cx.err(entry, format!("{path}.word_order"), format!("type {} spans two registers: say word_order = \"big\" (high word first) or \"little\"", f.kind.get_ref()));
            WordOrder::Big
        }
        (2, Some(other)) => {
            cx.err(
                key.map_or(entry, |w| w.span()),
                format!("{path}.word_order"),
                format!("\"{other}\": expected \"big\" or \"little\""),
            );
            WordOrder::Big
        }
        (_, Some(_)) => {
            cx.err(
                key.map_or(entry, |w| w.span()),
                format!("{path}.word_order"),
                "only 32-bit types (u32, i32, f32) have a word order",
            );
            WordOrder::Big
        }
        (_, None) => WordOrder::Big,
    }
}

fn scale_and_offset(cx: &mut Ctx, path: &str, f: &PointFile, kind: Kind) -> (f64, f64) {
    let scale = f.scale.as_ref().map_or(1.0, |s| *s.get_ref());
    if let Some(s) = f
        .scale
        .as_ref()
        .filter(|_| !scale.is_finite() || scale == 0.0)
    {
        cx.err(
            s.span(),
            format!("{path}.scale"),
            "must be a finite, non-zero number",
        );
    }
    let offset = f.offset.as_ref().map_or(0.0, |o| *o.get_ref());
    if let Some(o) = f.offset.as_ref().filter(|_| !offset.is_finite()) {
        cx.err(
            o.span(),
            format!("{path}.offset"),
            "must be a finite number",
        );
    }
    if kind == Kind::Bool {
        if let Some(span) = f.scale.as_ref().or(f.offset.as_ref()).map(|k| k.span()) {
            cx.err(
                span,
                format!("{path}.scale"),
                "a bool point has no scale or offset",
            );
        }
    }
    (scale, offset)
}

/// `alarm = true` on a bool point, or a map of status codes to levels.
fn alarm(cx: &mut Ctx, path: &str, f: &PointFile, kind: Kind) -> Option<AlarmMap> {
    let key = f.alarm.as_ref()?;
    let span = key.span();
    match key.get_ref() {
        AlarmFile::Bool(false) => None,
        AlarmFile::Bool(true) if kind == Kind::Bool => Some(AlarmMap::Bool),
        AlarmFile::Bool(true) => {
            cx.err(span, format!("{path}.alarm"), "alarm = true is for bool points; map status codes to levels instead, e.g. alarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\" }");
            None
        }
        AlarmFile::Codes(m) => {
            if kind == Kind::F32 {
                cx.err(
                    span.clone(),
                    format!("{path}.alarm"),
                    "an f32 point cannot carry status codes",
                );
            }
            let mut codes = BTreeMap::new();
            for (k, v) in m {
                let Ok(code) = k.parse::<i64>() else {
                    cx.err(
                        span.clone(),
                        format!("{path}.alarm.{k}"),
                        "status codes must be integers",
                    );
                    continue;
                };
                match AlarmLevel::parse(v) {
                    Some(l) if l != AlarmLevel::Unknown => {
                        codes.insert(code, l);
                    }
                    _ => cx.err(
                        span.clone(),
                        format!("{path}.alarm.{k}"),
                        format!("\"{v}\": expected \"normal\", \"low\", \"high\" or \"fault\""),
                    ),
                }
            }
            if codes.is_empty() {
                cx.err(
                    span,
                    format!("{path}.alarm"),
                    "maps no status code to a level",
                );
            }
            Some(AlarmMap::Codes(codes))
        }
    }
}

/// The `repeat` channels of an entry: their addresses and names.
fn channels(
    cx: &mut Ctx,
    path: &str,
    f: &PointFile,
    repeat: i64,
    stride: i64,
    template: Point,
    out: &mut Vec<Placed>,
) {
    let width = i64::from(template.kind.width());
    for k in 0..repeat.clamp(1, 1000) {
        let address = f.address.get_ref() + k * stride;
        let end = address + width - 1;
        if address < 0 || end > 65_535 {
            cx.err(
                f.address.span(),
                format!("{path}.address"),
                format!(
                    "{}{} is outside 0..=65535",
                    if repeat > 1 {
                        format!("channel {} at ", k + 1)
                    } else {
                        String::new()
                    },
                    address.max(end)
                ),
            );
            return;
        }
        let n = k + 1;
        let name = f
            .name
            .get_ref()
            .replace("{nn}", &format!("{n:02}"))
            .replace("{n}", &n.to_string());
        check_name(cx, f.name.span(), &format!("{path}.name"), &name);
        if name.starts_with('_') {
            cx.err(f.name.span(), format!("{path}.name"), format!("\"{name}\": names starting with '_' are reserved (the gateway reports _device)"));
            return;
        }
        out.push(Placed {
            point: Point {
                name: Arc::from(name.as_str()),
                address: address as u16,
                ..template.clone()
            },
            path: path.to_string(),
            name_span: f.name.span(),
            address_span: f.address.span(),
        });
    }
}

/// Names unique and no two points sharing a register.
pub(super) fn check_point_set(cx: &mut Ctx, points: &[Placed]) {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for p in points {
        if let Some(first) = names.insert(&p.point.name, &p.path) {
            cx.err(
                p.name_span.clone(),
                format!("{}.name", p.path),
                format!("\"{}\" is also the name of {first}", p.point.name),
            );
        }
    }
    let mut sorted: Vec<&Placed> = points.iter().collect();
    sorted.sort_by_key(|p| (p.point.table, p.point.address));
    for w in sorted.windows(2) {
        let (a, b) = (&w[0].point, &w[1].point);
        if a.table == b.table && u32::from(a.address) + u32::from(a.width()) > u32::from(b.address)
        {
            cx.err(
                w[1].address_span.clone(),
                format!("{}.address", w[1].path),
                format!(
                    "{} {} ({}) overlaps {} ({}) at {}",
                    b.table.as_str(),
                    b.address,
                    b.name,
                    a.name,
                    w[0].path,
                    a.address
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::fixture::*;
    use super::*;

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
        // `unknown` is a level the gateway reports, never one a code maps to
        for level in ["critical", "unknown"] {
            assert_eq!(
                refused(&one("input", "u16", &format!("alarm = {{ 0 = \"normal\", 2 = \"{level}\" }}\n"))),
                [format!("10: device[0].point[0].alarm.2: \"{level}\": expected \"normal\", \"low\", \"high\" or \"fault\"")]
            );
        }
    }

    #[test]
    fn an_alarm_map_maps_something() {
        assert_eq!(
            refused(&one("input", "u16", "alarm = {}\n")),
            ["10: device[0].point[0].alarm: maps no status code to a level"]
        );
    }

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
}
