//! The per-device circuit breaker: a dead detector must not starve the others on its bus.
//!
//! Owns when a device counts as offline (after [`OFFLINE_AFTER`] polls in a row in which no
//! point was read) and how often it is probed then (its poll interval doubled per failed
//! probe, at most [`PROBE_MAX`], with jitter). Pure: must never sleep or touch the line; the
//! bus scheduler applies it. A device is never abandoned: probes go on until it answers.

use std::time::Duration;

use crate::record::{AlarmChange, AlarmLevel, Quality, Sample, Value};

/// Polls in a row without a single good point before a device is marked offline.
pub const OFFLINE_AFTER: u32 = 3;
/// Longest time between two probes of an offline device (before jitter).
pub const PROBE_MAX: Duration = Duration::from_secs(60);
/// Longest time between two polls of any device, offline ones included (`PROBE_MAX` + 20 %
/// jitter): what the watchdog and readiness must allow before they call a bus stuck.
pub const LONGEST_SILENCE: Duration = Duration::from_secs(72);
/// The pseudo-point whose alarm events report a device going offline (`fault`) and coming back
/// (`normal`). Configured point names may not start with `_`.
pub const DEVICE_POINT: &str = "_device";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    offline: bool,
    probes: u32,
}

impl Breaker {
    /// Records a poll; returns `Some(online)` when the device changed state.
    pub fn record(&mut self, any_good: bool) -> Option<bool> {
        if any_good {
            self.failures = 0;
            self.probes = 0;
            return std::mem::take(&mut self.offline).then_some(true);
        }
        self.failures = self.failures.saturating_add(1);
        if self.offline {
            self.probes = self.probes.saturating_add(1);
            None
        } else if self.failures >= OFFLINE_AFTER {
            self.offline = true;
            Some(false)
        } else {
            None
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Time to the next probe of an offline device: `poll × 2^probes`, capped, times `jitter`.
    pub fn probe_delay(&self, poll: Duration, jitter: f64) -> Duration {
        let base = poll
            .saturating_mul(1u32 << self.probes.min(16))
            .min(PROBE_MAX);
        base.mul_f64(jitter).max(poll)
    }
}

/// The alarm event for a device that went offline (`online == false`) or came back.
pub fn state_change(online: bool, ts_ms: i64) -> AlarmChange {
    let (level, prev) = if online {
        (AlarmLevel::Normal, AlarmLevel::Fault)
    } else {
        (AlarmLevel::Fault, AlarmLevel::Normal)
    };
    AlarmChange {
        sample: Sample {
            point: DEVICE_POINT.into(),
            ts_ms,
            value: Some(Value::Bool(online)),
            quality: Quality::Good,
        },
        level,
        prev,
        warn: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_after_three_failed_polls_and_online_at_the_first_answer() {
        let mut b = Breaker::default();
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), Some(false));
        assert!(b.is_offline());
        assert_eq!(b.record(false), None, "a failed probe changes nothing");
        assert_eq!(b.record(true), Some(true));
        assert!(!b.is_offline());
        assert_eq!(b.record(true), None);
        // a good poll in between resets the count
        b.record(false);
        b.record(false);
        b.record(true);
        assert_eq!(b.record(false), None);
    }

    #[test]
    fn probes_back_off_exponentially_up_to_a_minute_and_never_stop() {
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false);
        }
        let poll = Duration::from_secs(1);
        let mut delays = Vec::new();
        for _ in 0..10 {
            delays.push(b.probe_delay(poll, 1.0).as_secs());
            b.record(false);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(b.probe_delay(poll, 0.8), Duration::from_secs(48));
        // never faster than the device's own poll interval
        assert_eq!(Breaker::default().probe_delay(poll, 0.5), poll);
    }

    #[test]
    fn state_changes_are_fault_and_normal_on_the_device_point() {
        let off = state_change(false, 5);
        assert_eq!(
            (&*off.sample.point, off.level, off.prev),
            (DEVICE_POINT, AlarmLevel::Fault, AlarmLevel::Normal)
        );
        let on = state_change(true, 6);
        assert_eq!(
            (on.level, on.prev, on.sample.value),
            (
                AlarmLevel::Normal,
                AlarmLevel::Fault,
                Some(Value::Bool(true))
            )
        );
    }
}
