//! How an alarm point's value maps to a level: a bool, status codes, or limits with their
//! early warnings ([`Limits`]), as validated from the file.
//!
//! Owns the stateless part of the mapping (which limit a value is beyond). Must never keep
//! state: deadband, on-delay and warnings over time are the poller's alarm state machine.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::record::AlarmLevel;

/// How an alarm point's value maps to a level.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmMap {
    /// A bool point: `true` is `high`, `false` is `normal`.
    Bool,
    /// Status codes to levels; a code not in the map is reported as `fault`.
    Codes(BTreeMap<i64, AlarmLevel>),
    /// Limits on a numeric point's scaled value, with its early warnings (evaluated with
    /// deadband and on-delay by the poller's alarm state machine).
    Limits(Box<Limits>),
}

impl AlarmMap {
    /// The level `value` maps to by itself. For [`AlarmMap::Limits`] that is the furthest limit
    /// the value is beyond, without deadband or delay: what the state machine starts from.
    pub fn level(&self, value: crate::record::Value) -> AlarmLevel {
        match self {
            AlarmMap::Bool => {
                if value.as_f64() != 0.0 {
                    AlarmLevel::High
                } else {
                    AlarmLevel::Normal
                }
            }
            AlarmMap::Codes(m) => {
                let v = value.as_f64();
                if v.fract() != 0.0 {
                    return AlarmLevel::Fault;
                }
                m.get(&(v as i64)).copied().unwrap_or(AlarmLevel::Fault)
            }
            AlarmMap::Limits(l) => l
                .beyond(value.as_f64(), 0.0)
                .map_or(AlarmLevel::Normal, |i| l.limits[i].level),
        }
    }

    /// The limits and early warnings, for a point that has them.
    pub fn limits(&self) -> Option<&Limits> {
        match self {
            AlarmMap::Limits(l) => Some(l),
            _ => None,
        }
    }
}

/// Limit alarms and early warnings of one numeric point (`limits`, `deadband`,
/// `alarm_delay_ms`, `rise_per_min`, `stuck_after_s`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// In file order. Validation guarantees that in each direction the limits go outward (each
    /// `above` higher, each `below` lower, never less severe) and that every `above` is clear
    /// of every `below` by twice the deadband, so at most one direction holds at a time. Empty
    /// for a point with early warnings only: its level is always `normal`.
    pub limits: Vec<Limit>,
    /// A limit clears only once the value is back past it by this much (≥ 0).
    pub deadband: f64,
    /// A limit raises only after the value stayed beyond it this long (0: at once).
    pub delay: Duration,
    /// Early warning when the value climbs faster than this many units per minute.
    pub rise_per_min: Option<f64>,
    /// Early warning when a live value has not moved by one count for this long.
    pub stuck_after: Option<Duration>,
    /// One count of the raw register in scaled units (`|scale|`; 0 for f32: any change).
    pub count: f64,
}

impl Limits {
    /// The index of the furthest limit `v` is beyond, each limit moved `slack` towards normal
    /// (the deadband, for limits that already hold).
    pub fn beyond(&self, v: f64, slack: f64) -> Option<usize> {
        self.limits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_beyond(v, slack))
            .max_by(|(_, a), (_, b)| a.distance().total_cmp(&b.distance()))
            .map(|(i, _)| i)
    }
}

/// One limit: a threshold, its direction and the level it raises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub bound: Bound,
    pub level: AlarmLevel,
}

impl Limit {
    /// True when `v` is past the threshold moved `slack` towards normal (strictly: a value
    /// exactly on `above = 9.0` is not above it).
    pub fn is_beyond(&self, v: f64, slack: f64) -> bool {
        match self.bound {
            Bound::Above(t) => v > t - slack,
            Bound::Below(t) => v < t + slack,
        }
    }

    /// How far out the limit is, to pick the winner among those that hold in one direction.
    fn distance(&self) -> f64 {
        match self.bound {
            Bound::Above(t) => t,
            Bound::Below(t) => -t,
        }
    }
}

/// Which side of its threshold a limit holds on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Above(f64),
    Below(f64),
}
