//! Validation of points and profiles: expanding `repeat`ed channels, types, word order, scale,
//! alarm maps, limits and early warnings ([`limits`]), and the rules between points of one
//! device (unique names, no shared register).
//!
//! Owns those rules and their messages. Pure, like the rest of validation: must never stop at
//! the first error or touch the file system.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use toml::Spanned;

mod limits;

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
    let alarm = match (
        alarm(cx, path, f, kind),
        limits::limits(cx, path, f, kind, scale),
    ) {
        (Some(_), Some(_)) => {
            if let Some(l) = &f.limits {
                cx.err(
                    l.span(),
                    format!("{path}.limits"),
                    "a point has either status codes (alarm) or limits on its value, not both",
                );
            }
            None
        }
        (a, l) => a.or(l),
    };
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
    let finite = scale.is_finite() && scale != 0.0 && offset.is_finite() && kind != Kind::Bool;
    if let (true, Some(key)) = (finite, f.scale.as_ref().or(f.offset.as_ref())) {
        // The largest raw value of the type, scaled and offset, must still be a number.
        let raw = max_raw(kind);
        if !(raw * scale.abs() + offset.abs()).is_finite() {
            cx.err(
                key.span(),
                format!("{path}.scale"),
                format!("{scale:?} with offset {offset:?} overflows: the largest raw value of this type ({raw:?}) would read as infinity"),
            );
        }
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

/// The largest magnitude a raw value of `kind` can have.
fn max_raw(kind: Kind) -> f64 {
    match kind {
        Kind::Bool => 1.0,
        Kind::U16 => 65_535.0,
        Kind::I16 => 32_768.0,
        Kind::U32 => 4_294_967_295.0,
        Kind::I32 => 2_147_483_648.0,
        Kind::F32 => f64::from(f32::MAX),
    }
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
                // `unknown` and `warning` are levels the gateway reports, never a code's.
                match AlarmLevel::parse(v) {
                    Some(l) if !matches!(l, AlarmLevel::Unknown | AlarmLevel::Warning) => {
                        codes.insert(code, l);
                    }
                    _ => cx.err(
                        span.clone(),
                        format!("{path}.alarm.{k}"),
                        format!("\"{v}\": expected {CODE_LEVELS}"),
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

const CODE_LEVELS: &str =
    "\"normal\", \"low\", \"high\", \"fault\", \"inhibit\", \"hi\", \"hihi\", \"lo\" or \"lolo\"";

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
    // In i128: an address or stride near i64::MAX must be refused, not overflow (a release
    // build wrapped `i64::MAX + 1` below 65535 and accepted the point at address 65535).
    let width = i128::from(template.kind.width());
    for k in 0..repeat.clamp(1, 1000) {
        let address = i128::from(*f.address.get_ref()) + i128::from(k) * i128::from(stride);
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
mod tests;
