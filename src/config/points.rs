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

pub(super) fn expand_point(
    cx: &mut Ctx,
    path: &str,
    spanned: &Spanned<PointFile>,
    out: &mut Vec<(Point, String, Range<usize>)>,
) {
    let span = spanned.span();
    let f = spanned.get_ref();
    let before = cx.problems.len();
    let table = match f.table.as_str() {
        "holding" => Table::Holding,
        "input" => Table::Input,
        "coil" => Table::Coil,
        "discrete" => Table::Discrete,
        other => {
            cx.err(
                span.clone(),
                format!("{path}.table"),
                format!("\"{other}\": expected \"holding\", \"input\", \"coil\" or \"discrete\""),
            );
            Table::Holding
        }
    };
    let kind = match f.kind.as_str() {
        "bool" => Kind::Bool,
        "u16" => Kind::U16,
        "i16" => Kind::I16,
        "u32" => Kind::U32,
        "i32" => Kind::I32,
        "f32" => Kind::F32,
        other => {
            cx.err(
                span.clone(),
                format!("{path}.type"),
                format!("\"{other}\": expected bool, u16, i16, u32, i32 or f32"),
            );
            Kind::U16
        }
    };
    if table.is_bits() && kind != Kind::Bool {
        cx.err(
            span.clone(),
            format!("{path}.type"),
            format!(
                "a {} point holds one bit: its type must be \"bool\"",
                table.as_str()
            ),
        );
    }
    let word_order = match (kind.width(), f.word_order.as_deref()) {
        (2, Some("big")) => WordOrder::Big,
        (2, Some("little")) => WordOrder::Little,
        (2, None) => {
            cx.err(span.clone(), format!("{path}.word_order"), format!("type {} spans two registers: say word_order = \"big\" (high word first) or \"little\"", f.kind));
            WordOrder::Big
        }
        (2, Some(other)) => {
            cx.err(
                span.clone(),
                format!("{path}.word_order"),
                format!("\"{other}\": expected \"big\" or \"little\""),
            );
            WordOrder::Big
        }
        (_, Some(_)) => {
            cx.err(
                span.clone(),
                format!("{path}.word_order"),
                "only 32-bit types (u32, i32, f32) have a word order",
            );
            WordOrder::Big
        }
        (_, None) => WordOrder::Big,
    };
    let scale = f.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        cx.err(
            span.clone(),
            format!("{path}.scale"),
            "must be a finite, non-zero number",
        );
    }
    let offset = f.offset.unwrap_or(0.0);
    if !offset.is_finite() {
        cx.err(
            span.clone(),
            format!("{path}.offset"),
            "must be a finite number",
        );
    }
    if kind == Kind::Bool && (f.scale.is_some() || f.offset.is_some()) {
        cx.err(
            span.clone(),
            format!("{path}.scale"),
            "a bool point has no scale or offset",
        );
    }
    let alarm = match &f.alarm {
        None | Some(AlarmFile::Bool(false)) => None,
        Some(AlarmFile::Bool(true)) if kind == Kind::Bool => Some(AlarmMap::Bool),
        Some(AlarmFile::Bool(true)) => {
            cx.err(span.clone(), format!("{path}.alarm"), "alarm = true is for bool points; map status codes to levels instead, e.g. alarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\" }");
            None
        }
        Some(AlarmFile::Codes(m)) => {
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
                    span.clone(),
                    format!("{path}.alarm"),
                    "maps no status code to a level",
                );
            }
            Some(AlarmMap::Codes(codes))
        }
    };
    let repeat = f.repeat.unwrap_or(1);
    if !(1..=1000).contains(&repeat) {
        cx.err(
            span.clone(),
            format!("{path}.repeat"),
            format!("{repeat}: expected 1..=1000"),
        );
    }
    let stride = f.stride.unwrap_or(i64::from(kind.width()));
    if stride < i64::from(kind.width()) {
        cx.err(
            span.clone(),
            format!("{path}.stride"),
            format!("{stride} is less than the point's width ({})", kind.width()),
        );
    }
    if repeat > 1 && !(f.name.contains("{n}") || f.name.contains("{nn}")) {
        cx.err(span.clone(), format!("{path}.name"), "a repeated point's name needs {n} (1, 2, …) or {nn} (01, 02, …) so each channel has its own name");
    }
    if cx.problems.len() > before {
        return;
    }
    for k in 0..repeat.clamp(1, 1000) {
        let address = f.address + k * stride;
        let end = address + i64::from(kind.width()) - 1;
        if address < 0 || end > 65_535 {
            cx.err(
                span.clone(),
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
            .replace("{nn}", &format!("{n:02}"))
            .replace("{n}", &n.to_string());
        check_name(cx, span.clone(), &format!("{path}.name"), &name);
        if name.starts_with('_') {
            cx.err(span.clone(), format!("{path}.name"), format!("\"{name}\": names starting with '_' are reserved (the gateway reports _device)"));
            return;
        }
        out.push((
            Point {
                name: Arc::from(name.as_str()),
                table,
                address: address as u16,
                kind,
                word_order,
                scale,
                offset,
                unit: f.unit.clone(),
                alarm: alarm.clone(),
            },
            path.to_string(),
            span.clone(),
        ));
    }
}

/// Names unique and no two points sharing a register.
pub(super) fn check_point_set(cx: &mut Ctx, points: &[(Point, String, Range<usize>)]) {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (pt, path, span) in points {
        if let Some(first) = names.insert(&pt.name, path) {
            cx.err(
                span.clone(),
                format!("{path}.name"),
                format!("\"{}\" is also the name of {first}", pt.name),
            );
        }
    }
    let mut sorted: Vec<&(Point, String, Range<usize>)> = points.iter().collect();
    sorted.sort_by_key(|(p, _, _)| (p.table, p.address));
    for w in sorted.windows(2) {
        let (a, ap, _) = w[0];
        let (b, bp, bspan) = w[1];
        if a.table == b.table && u32::from(a.address) + u32::from(a.width()) > u32::from(b.address)
        {
            cx.err(
                bspan.clone(),
                format!("{bp}.address"),
                format!(
                    "{} {} ({}) overlaps {} ({}) at {}",
                    b.table.as_str(),
                    b.address,
                    b.name,
                    a.name,
                    ap,
                    a.address
                ),
            );
        }
    }
}
