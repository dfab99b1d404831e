//! Validation of limit alarms and early warnings on a numeric point: `limits`, `deadband`,
//! `alarm_delay_ms`, `rise_per_min`, `stuck_after_s`.
//!
//! Owns those rules and their messages: limits go outward from normal in each direction and
//! never get less severe, the two directions cannot hold at once, deadband ≥ 0, levels from the
//! vocabulary and on their side. Pure: must never stop at the first error.

use std::ops::Range;
use std::time::Duration;

use super::*;
use crate::config::file::LimitFile;

/// The levels a limit may raise.
const LIMIT_LEVELS: &str = "\"hi\", \"hihi\", \"lo\", \"lolo\", \"low\", \"high\" or \"fault\"";

/// Longest on-delay: a limit that must hold longer than this is not an alarm any more.
const MAX_DELAY_MS: i64 = 3_600_000;
/// Longest `stuck_after_s`: a week.
const MAX_STUCK_S: i64 = 604_800;

/// The point's limits and early warnings as an alarm map, or `None` when it has none (or a
/// problem was recorded).
pub(super) fn limits(
    cx: &mut Ctx,
    path: &str,
    f: &PointFile,
    kind: Kind,
    scale: f64,
) -> Option<AlarmMap> {
    let keys = [
        ("limits", f.limits.as_ref().map(|k| k.span())),
        ("deadband", f.deadband.as_ref().map(|k| k.span())),
        (
            "alarm_delay_ms",
            f.alarm_delay_ms.as_ref().map(|k| k.span()),
        ),
        ("rise_per_min", f.rise_per_min.as_ref().map(|k| k.span())),
        ("stuck_after_s", f.stuck_after_s.as_ref().map(|k| k.span())),
    ];
    let (first, span) = keys.iter().find_map(|(k, s)| s.clone().map(|s| (*k, s)))?;
    if kind == Kind::Bool {
        cx.err(span, format!("{path}.{first}"), "limits and early warnings are for numeric points; a bool point's alarm is alarm = true");
        return None;
    }
    let before = cx.problems.len();
    let deadband = number(
        cx,
        path,
        "deadband",
        f.deadband.as_ref(),
        |v| v >= 0.0,
        "must be a number ≥ 0",
    )
    .unwrap_or(0.0);
    let delay_ms = f.alarm_delay_ms.as_ref().map_or(0, |d| *d.get_ref());
    if let Some(d) = f
        .alarm_delay_ms
        .as_ref()
        .filter(|_| !(0..=MAX_DELAY_MS).contains(&delay_ms))
    {
        cx.err(
            d.span(),
            format!("{path}.alarm_delay_ms"),
            format!("{delay_ms}: expected 0..={MAX_DELAY_MS} (an hour)"),
        );
    }
    let rise_per_min = number(
        cx,
        path,
        "rise_per_min",
        f.rise_per_min.as_ref(),
        |v| v > 0.0,
        "must be a number > 0 (units of the point per minute)",
    );
    let stuck_s = f.stuck_after_s.as_ref().map(|s| *s.get_ref());
    if let (Some(s), Some(k)) = (stuck_s, &f.stuck_after_s) {
        if !(1..=MAX_STUCK_S).contains(&s) {
            cx.err(
                k.span(),
                format!("{path}.stuck_after_s"),
                format!("{s}: expected 1..={MAX_STUCK_S} (a week)"),
            );
        }
    }
    let limits = match &f.limits {
        Some(l) => entries(cx, path, l.span(), l.get_ref(), deadband),
        None => {
            for (key, span) in &keys[1..3] {
                if let Some(span) = span {
                    cx.err(
                        span.clone(),
                        format!("{path}.{key}"),
                        format!("{key} applies to limits, and this point has none"),
                    );
                }
            }
            Vec::new()
        }
    };
    if cx.problems.len() > before {
        return None;
    }
    Some(AlarmMap::Limits(Box::new(Limits {
        limits,
        deadband,
        delay: Duration::from_millis(delay_ms.unsigned_abs()),
        rise_per_min,
        stuck_after: stuck_s.map(|s| Duration::from_secs(s.unsigned_abs())),
        count: if kind == Kind::F32 { 0.0 } else { scale.abs() },
    })))
}

/// An optional finite number that must pass `ok`.
fn number(
    cx: &mut Ctx,
    path: &str,
    key: &str,
    k: Option<&Spanned<f64>>,
    ok: impl Fn(f64) -> bool,
    message: &str,
) -> Option<f64> {
    let k = k?;
    let v = *k.get_ref();
    if v.is_finite() && ok(v) {
        Some(v)
    } else {
        cx.err(k.span(), format!("{path}.{key}"), format!("{v}: {message}"));
        None
    }
}

/// One limit as read, with where to report it.
struct Entry {
    limit: Limit,
    path: String,
    threshold: Range<usize>,
    level: Range<usize>,
}

/// Each entry checked by itself, then the order of each direction and the gap between them.
fn entries(
    cx: &mut Ctx,
    path: &str,
    span: Range<usize>,
    list: &[Spanned<LimitFile>],
    deadband: f64,
) -> Vec<Limit> {
    if list.is_empty() {
        cx.err(
            span,
            format!("{path}.limits"),
            "lists no limit: add one, e.g. { above = 9.0, level = \"hi\" }, or remove the key",
        );
    }
    let read: Vec<Entry> = list
        .iter()
        .enumerate()
        .filter_map(|(i, e)| entry(cx, &format!("{path}.limits[{i}]"), e))
        .collect();
    outward(cx, &read);
    apart(cx, &read, deadband);
    read.into_iter().map(|e| e.limit).collect()
}

fn entry(cx: &mut Ctx, path: &str, e: &Spanned<LimitFile>) -> Option<Entry> {
    let f = e.get_ref();
    let (bound, threshold) = match (&f.above, &f.below) {
        (Some(a), None) => (Bound::Above(*a.get_ref()), a),
        (None, Some(b)) => (Bound::Below(*b.get_ref()), b),
        (Some(_), Some(_)) => {
            cx.err(
                e.span(),
                path,
                "has both above and below: one limit per entry",
            );
            return None;
        }
        (None, None) => {
            cx.err(e.span(), path, "needs a threshold: above = … or below = …");
            return None;
        }
    };
    let key = if matches!(bound, Bound::Above(_)) {
        "above"
    } else {
        "below"
    };
    if !threshold.get_ref().is_finite() {
        cx.err(
            threshold.span(),
            format!("{path}.{key}"),
            "must be a finite number",
        );
        return None;
    }
    let name = f.level.get_ref();
    let level = match AlarmLevel::parse(name) {
        Some(
            l @ (AlarmLevel::Hi
            | AlarmLevel::HiHi
            | AlarmLevel::Lo
            | AlarmLevel::LoLo
            | AlarmLevel::Low
            | AlarmLevel::High
            | AlarmLevel::Fault),
        ) => l,
        _ => {
            cx.err(
                f.level.span(),
                format!("{path}.level"),
                format!("\"{name}\": expected {LIMIT_LEVELS}"),
            );
            return None;
        }
    };
    let wrong_side = match (bound, level) {
        (Bound::Below(_), AlarmLevel::Hi | AlarmLevel::HiHi) => {
            Some("a below limit raises lo or lolo")
        }
        (Bound::Above(_), AlarmLevel::Lo | AlarmLevel::LoLo) => {
            Some("an above limit raises hi or hihi")
        }
        _ => None,
    };
    if let Some(why) = wrong_side {
        cx.err(
            f.level.span(),
            format!("{path}.level"),
            format!("\"{name}\" is on the other side: {why}"),
        );
        return None;
    }
    Some(Entry {
        limit: Limit { bound, level },
        path: path.to_string(),
        threshold: threshold.span(),
        level: f.level.span(),
    })
}

/// In each direction, in file order: each limit further from normal than the one before and
/// not less severe, and no level twice.
fn outward(cx: &mut Ctx, read: &[Entry]) {
    for above in [true, false] {
        let side: Vec<&Entry> = read
            .iter()
            .filter(|e| matches!(e.limit.bound, Bound::Above(_)) == above)
            .collect();
        for (k, e) in side.iter().enumerate().skip(1) {
            let prev = side[k - 1];
            let (t, p) = (threshold(e), threshold(prev));
            let (key, word) = if above {
                ("above", "higher")
            } else {
                ("below", "lower")
            };
            if (above && t <= p) || (!above && t >= p) {
                cx.err(e.threshold.clone(), format!("{}.{key}", e.path), format!("{t} is not {word} than {}'s {p}: list each direction's limits outward from normal", prev.path));
            } else if let Some(twin) = side[..k].iter().find(|o| o.limit.level == e.limit.level) {
                cx.err(
                    e.level.clone(),
                    format!("{}.level", e.path),
                    format!(
                        "\"{}\" is already the level of {}",
                        e.limit.level, twin.path
                    ),
                );
            } else if e.limit.level.severity() < prev.limit.level.severity() {
                cx.err(
                    e.level.clone(),
                    format!("{}.level", e.path),
                    format!(
                        "\"{}\" is further out than \"{}\" ({}) but less severe: swap their levels",
                        e.limit.level, prev.limit.level, prev.path
                    ),
                );
            }
        }
    }
}

/// Every `above` clear of every `below` by twice the deadband, so both can never hold.
fn apart(cx: &mut Ctx, read: &[Entry], deadband: f64) {
    let lowest_above = read
        .iter()
        .filter(|e| matches!(e.limit.bound, Bound::Above(_)))
        .min_by(|a, b| threshold(a).total_cmp(&threshold(b)));
    let highest_below = read
        .iter()
        .filter(|e| matches!(e.limit.bound, Bound::Below(_)))
        .max_by(|a, b| threshold(a).total_cmp(&threshold(b)));
    if let (Some(a), Some(b)) = (lowest_above, highest_below) {
        if threshold(a) - threshold(b) <= 2.0 * deadband {
            cx.err(a.threshold.clone(), format!("{}.above", a.path), format!("{} is not above {}'s below = {} by more than twice the deadband ({deadband}): both could hold at once", threshold(a), b.path, threshold(b)));
        }
    }
}

fn threshold(e: &Entry) -> f64 {
    match e.limit.bound {
        Bound::Above(t) | Bound::Below(t) => t,
    }
}

#[cfg(test)]
mod tests;
