//! The alarm state machine of every alarm point: status codes and bools, limits with deadband
//! and on-delay, and the early warnings (rate of rise, stuck sensor).
//!
//! Owns when a point changes level and when a warning starts or ends. Pure: must never read a
//! clock or the line (time is the samples' capture time), so every rule is unit-tested here.
//!
//! Time differences saturate: a capture clock set to either end of i64 gives odd timing, never
//! a panic.
//!
//! Rules, in the spirit of ISA-18.2:
//! - A failed read changes nothing: the level stands (no false clear) and no timer restarts.
//!   Nor does a value that is no number (NaN, infinity): the decoder makes those a bad value,
//!   and one that reached this machine anyway must be neither an alarm nor a clear.
//! - After a start, each alarm point reports its level once with `prev: unknown`; a limit still
//!   inside its on-delay then is not reported as `normal` first: the first report waits for it.
//! - A limit raises once the value has been beyond it (strictly) for `alarm_delay_ms`; a shorter
//!   excursion raises nothing. It clears once the value is back past it by `deadband`, at once.
//!   Among the limits that hold, the furthest from normal is the level.
//! - Rate of rise: the value's climb per minute from its oldest sample in the last
//!   [`RISE_WINDOW_MS`] (once that spans [`RISE_MIN_SPAN_MS`]) raises a `warning` (`warn: rise`)
//!   above `rise_per_min`; it ends once the rate is below half of it.
//! - Stuck sensor: a value that has not moved by one count for `stuck_after_s` raises a
//!   `warning` (`warn: stuck`); it ends only once the value moved by two counts from where it
//!   stuck, so one count of noise on a stuck sensor does not end it.

use std::collections::VecDeque;

use crate::config::{AlarmMap, Bound, Limit, Limits, Point};
use crate::record::{AlarmChange, AlarmLevel, Sample, Warn};

/// The window the rate of rise is measured over.
pub const RISE_WINDOW_MS: i64 = 60_000;
/// The shortest history a rate of rise is computed from (so one noisy step is not a trend).
pub const RISE_MIN_SPAN_MS: i64 = 10_000;
/// Rise history keeps at most one sample per this long: the memory per point stays bounded.
const RISE_STEP_MS: i64 = 1_000;

/// What the alarm state machine remembers of one point.
#[derive(Debug, Default, Clone)]
pub struct PointAlarm {
    /// The level last reported (`None`: not reported since start).
    level: Option<AlarmLevel>,
    /// Per limit: whether it holds, and since when the value is beyond it while it does not.
    limits: Vec<LimitState>,
    rise: Rise,
    stuck: Stuck,
}

#[derive(Debug, Default, Clone, Copy)]
struct LimitState {
    holds: bool,
    beyond_since: Option<i64>,
}

#[derive(Debug, Default, Clone)]
struct Rise {
    history: VecDeque<(i64, f64)>,
    on: bool,
}

#[derive(Debug, Default, Clone)]
struct Stuck {
    /// Where and when the value last moved by a count.
    since: Option<(i64, f64)>,
    on: bool,
}

/// The changes one poll's samples make, point by point: `samples[i]` is `points[i]`'s, `None`
/// when this poll did not read it (a poll of the alarm points alone).
pub fn changes(
    points: &[Point],
    states: &mut [PointAlarm],
    samples: &[Option<Sample>],
) -> Vec<AlarmChange> {
    let mut out = Vec::new();
    for ((p, st), s) in points.iter().zip(states.iter_mut()).zip(samples) {
        if let (Some(map), Some(s)) = (&p.alarm, s) {
            out.extend(st.update(map, s));
        }
    }
    out
}

impl PointAlarm {
    /// The level last reported, once there is one.
    pub fn level(&self) -> Option<AlarmLevel> {
        self.level
    }

    /// Feeds one sample; returns the level change and warnings it causes, in that order.
    pub fn update(&mut self, map: &AlarmMap, s: &Sample) -> Vec<AlarmChange> {
        let Some(value) = s.value.filter(|v| v.as_f64().is_finite()) else {
            return Vec::new(); // a failed read: the level stands, its quality says why
        };
        let mut out = Vec::new();
        let level = match map {
            AlarmMap::Limits(l) => self.limit_level(l, value.as_f64(), s.ts_ms),
            map => Some(map.level(value)),
        };
        if let Some(level) = level.filter(|l| Some(*l) != self.level) {
            let prev = self.level.replace(level).unwrap_or(AlarmLevel::Unknown);
            out.push(change(s, level, prev, None));
        }
        if let AlarmMap::Limits(l) = map {
            let v = value.as_f64();
            if let Some(on) = self.rise.update(l, v, s.ts_ms) {
                out.push(warning(s, Warn::Rise, on));
            }
            if let Some(on) = self.stuck.update(l, v, s.ts_ms) {
                out.push(warning(s, Warn::Stuck, on));
            }
        }
        out
    }

    /// Steps every limit's hysteresis and on-delay; the level, or `None` while the first report
    /// still waits for a delay.
    fn limit_level(&mut self, l: &Limits, v: f64, t: i64) -> Option<AlarmLevel> {
        self.limits.resize(l.limits.len(), LimitState::default());
        let delay = i64::try_from(l.delay.as_millis()).unwrap_or(i64::MAX);
        let mut pending = false;
        for (lim, st) in l.limits.iter().zip(&mut self.limits) {
            if st.holds {
                // Clears once back past the limit by the deadband, without delay.
                st.holds = lim.is_beyond(v, l.deadband);
                if !st.holds {
                    st.beyond_since = None;
                }
            } else if lim.is_beyond(v, 0.0) {
                let since = *st.beyond_since.get_or_insert(t);
                st.holds = t.saturating_sub(since) >= delay;
                pending |= !st.holds;
            } else {
                st.beyond_since = None; // the excursion ended inside its delay: nothing raised
            }
        }
        if pending && self.level.is_none() {
            return None;
        }
        // The furthest from normal of the limits that hold.
        let furthest = l
            .limits
            .iter()
            .zip(&self.limits)
            .filter(|(_, st)| st.holds)
            .map(|(lim, _)| lim)
            .max_by(|a, b| outward(a).total_cmp(&outward(b)));
        Some(furthest.map_or(AlarmLevel::Normal, |lim| lim.level))
    }
}

/// How far from normal a limit is: higher for an `above` further up, a `below` further down.
fn outward(l: &Limit) -> f64 {
    match l.bound {
        Bound::Above(t) => t,
        Bound::Below(t) => -t,
    }
}

impl Rise {
    /// `Some(true)` when the warning starts, `Some(false)` when it ends.
    fn update(&mut self, l: &Limits, v: f64, t: i64) -> Option<bool> {
        let limit = l.rise_per_min?;
        if self
            .history
            .back()
            .is_none_or(|&(t0, _)| t.saturating_sub(t0) >= RISE_STEP_MS)
        {
            self.history.push_back((t, v));
        }
        while self
            .history
            .front()
            .is_some_and(|&(t0, _)| t0 < t.saturating_sub(RISE_WINDOW_MS))
        {
            self.history.pop_front();
        }
        let &(t0, v0) = self.history.front()?;
        if t.saturating_sub(t0) < RISE_MIN_SPAN_MS {
            return None;
        }
        let per_min = (v - v0) / (t.saturating_sub(t0) as f64 / 60_000.0);
        let on = if self.on {
            per_min >= limit / 2.0
        } else {
            per_min > limit
        };
        (on != self.on).then(|| {
            self.on = on;
            on
        })
    }
}

impl Stuck {
    /// `Some(true)` when the warning starts, `Some(false)` when it ends.
    fn update(&mut self, l: &Limits, v: f64, t: i64) -> Option<bool> {
        let after = i64::try_from(l.stuck_after?.as_millis()).unwrap_or(i64::MAX);
        // A count less a hair, so 0.1 + 0.2 - 0.2 still counts as a move of 0.1.
        let moved = |from: f64, counts: f64| {
            if l.count > 0.0 {
                (v - from).abs() >= counts * l.count * (1.0 - 1e-6)
            } else {
                v != from
            }
        };
        let &mut (t0, v0) = self.since.get_or_insert((t, v));
        if self.on {
            if moved(v0, 2.0) {
                self.since = Some((t, v));
                self.on = false;
                return Some(false);
            }
        } else if moved(v0, 1.0) {
            self.since = Some((t, v));
        } else if t.saturating_sub(t0) >= after {
            self.on = true;
            return Some(true);
        }
        None
    }
}

fn change(s: &Sample, level: AlarmLevel, prev: AlarmLevel, warn: Option<Warn>) -> AlarmChange {
    AlarmChange {
        sample: s.clone(),
        level,
        prev,
        warn,
    }
}

fn warning(s: &Sample, warn: Warn, on: bool) -> AlarmChange {
    let (level, prev) = if on {
        (AlarmLevel::Warning, AlarmLevel::Normal)
    } else {
        (AlarmLevel::Normal, AlarmLevel::Warning)
    };
    change(s, level, prev, Some(warn))
}

#[cfg(test)]
mod tests;
