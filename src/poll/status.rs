//! What polling shows the outside: each bus's latest state (devices, points, read outcomes).
//!
//! Owns [`BusStatus`] (one per bus, written only by that bus's poller after each poll, read by
//! anyone as a [`BusSnapshot`]). Polling's metrics are beside it, in `metrics.rs`.
//! Must never be on the data path: nothing here waits, and no lock is held across an await.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{Bus, Device, Link};
use crate::record::{now_ms, AlarmLevel, DevicePoll, Quality, Sample};

/// A point as the page shows it: configuration beside the latest sample.
#[derive(Debug, Clone, Default)]
pub struct PointStatus {
    pub name: String,
    pub unit: Option<String>,
    pub is_alarm: bool,
    /// Current level of an alarm point, once read.
    pub level: Option<AlarmLevel>,
    pub sample: Option<Sample>,
    /// Capture time of the last good value.
    pub last_good_ms: Option<i64>,
    /// The point's configured limits (empty without), for the page to draw on its trend.
    pub limits: Vec<crate::config::Limit>,
}

/// Outcomes of a device's reads, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub good: u64,
    pub timeout: u64,
    pub exception: u64,
    pub bad_frame: u64,
    pub disconnected: u64,
    pub offline: u64,
    pub bad_value: u64,
}

impl ReadCounts {
    /// Counts one read of quality `q`.
    pub(super) fn add(&mut self, q: Quality) {
        match q {
            Quality::Good => self.good += 1,
            Quality::Timeout => self.timeout += 1,
            Quality::Exception(_) => self.exception += 1,
            Quality::BadFrame => self.bad_frame += 1,
            Quality::Disconnected => self.disconnected += 1,
            Quality::Offline => self.offline += 1,
            Quality::BadValue => self.bad_value += 1,
        }
    }

    /// Every read, good or not.
    pub fn total(&self) -> u64 {
        self.good + self.errors().iter().map(|(_, n)| n).sum::<u64>()
    }

    /// (label, count) for every kind of failure.
    pub fn errors(&self) -> [(&'static str, u64); 6] {
        [
            ("timeout", self.timeout),
            ("exception", self.exception),
            ("bad_frame", self.bad_frame),
            ("disconnected", self.disconnected),
            ("offline", self.offline),
            ("bad_value", self.bad_value),
        ]
    }
}

/// One device as last seen.
#[derive(Debug, Clone, Default)]
pub struct DeviceStatus {
    pub name: String,
    pub bus: String,
    pub unit: u8,
    pub poll_ms: u64,
    pub polls: u64,
    /// Polls in which at least one point was not good.
    pub failed_polls: u64,
    pub last_poll_ms: Option<i64>,
    pub last_latency: Duration,
    pub last_error: Option<String>,
    /// Point samples by outcome (one per point per poll).
    pub reads: ReadCounts,
    pub points: Vec<PointStatus>,
}

/// One bus as last seen.
#[derive(Debug, Clone, Default)]
pub struct BusSnapshot {
    pub name: String,
    pub link: String,
    /// Share of wall time the line spent in requests since start.
    pub utilisation: f64,
    pub devices: Vec<DeviceStatus>,
}

#[derive(Debug, Default)]
struct BusState {
    busy: Duration,
    devices: Vec<DeviceStatus>,
}

/// The latest state of one bus, shared between its poller (the only writer) and readers.
#[derive(Debug)]
pub struct BusStatus {
    name: String,
    link: String,
    started: Instant,
    state: Mutex<BusState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the status page down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BusStatus {
    /// The status of `bus` with `devices` (in the order the poller holds them), none polled yet.
    pub fn new(bus: &Bus, devices: &[Device]) -> Arc<Self> {
        let devices = devices
            .iter()
            .map(|d| DeviceStatus {
                name: d.name.to_string(),
                bus: bus.name.to_string(),
                unit: d.unit,
                poll_ms: d.poll.as_millis() as u64,
                points: d
                    .points
                    .iter()
                    .map(|p| PointStatus {
                        name: p.name.to_string(),
                        unit: p.unit.clone(),
                        is_alarm: p.alarm.is_some(),
                        limits: p
                            .alarm
                            .as_ref()
                            .and_then(|a| a.limits())
                            .map(|l| l.limits.clone())
                            .unwrap_or_default(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Arc::new(BusStatus {
            name: bus.name.to_string(),
            link: match &bus.link {
                Link::Rtu(r) => format!("RTU {} {} baud", r.port, r.baud),
                Link::Tcp { address } => format!("TCP {address}"),
            },
            started: Instant::now(),
            state: Mutex::new(BusState {
                busy: Duration::ZERO,
                devices,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn snapshot(&self) -> BusSnapshot {
        let s = lock(&self.state);
        BusSnapshot {
            name: self.name.clone(),
            link: self.link.clone(),
            utilisation: self.utilisation_of(s.busy),
            devices: s.devices.clone(),
        }
    }

    /// Share of wall time the line spent in requests since start.
    pub(super) fn utilisation(&self) -> f64 {
        self.utilisation_of(lock(&self.state).busy)
    }

    fn utilisation_of(&self, busy: Duration) -> f64 {
        let up = self.started.elapsed().as_secs_f64();
        if up > 0.0 {
            (busy.as_secs_f64() / up).min(1.0)
        } else {
            0.0
        }
    }

    /// For other modules' unit tests (the page's JSON): records `poll` as its poller would.
    #[cfg(test)]
    pub(crate) fn polled_for_test(&self, index: usize, poll: &DevicePoll) {
        self.polled(index, poll, Duration::from_millis(5), None);
    }

    /// Records one poll of the bus's device `index`, which kept the line busy for `latency`;
    /// `error` is the first failed read in words, if any.
    pub(super) fn polled(
        &self,
        index: usize,
        poll: &DevicePoll,
        latency: Duration,
        error: Option<&str>,
    ) {
        let mut s = lock(&self.state);
        s.busy += latency;
        let Some(d) = s.devices.get_mut(index) else {
            return;
        };
        d.polls += 1;
        d.last_poll_ms = Some(now_ms());
        d.last_latency = latency;
        for smp in &poll.samples {
            d.reads.add(smp.quality);
        }
        match poll.samples.iter().find(|s| s.quality != Quality::Good) {
            Some(smp) => {
                d.failed_polls += 1;
                d.last_error = Some(match error {
                    Some(e) => e.to_string(),
                    None => format!("{}: {}", smp.point, smp.quality),
                });
            }
            None => d.last_error = None,
        }
        for smp in &poll.samples {
            if let Some(p) = d.points.iter_mut().find(|p| *p.name == *smp.point) {
                if smp.quality == Quality::Good {
                    p.last_good_ms = Some(smp.ts_ms);
                }
                p.sample = Some(smp.clone());
            }
        }
        // An early warning is not the point's level: the level stands while it comes and goes.
        for a in poll.alarms.iter().filter(|a| a.warn.is_none()) {
            if let Some(p) = d.points.iter_mut().find(|p| *p.name == *a.sample.point) {
                p.level = Some(a.level);
            }
        }
    }
}
