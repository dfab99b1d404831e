//! What polling shows the outside: each bus's latest state (devices, points, read outcomes) and
//! polling's metrics.
//!
//! Owns [`BusStatus`] (one per bus, written only by that bus's poller after each poll, read by
//! anyone as a [`BusSnapshot`]) and [`PollMetrics`] (registered once, shared by every poller).
//! Must never be on the data path: nothing here waits, and no lock is held across an await.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::config::{Bus, Device, Link};
use crate::metrics::{labels, seconds_histogram, Computed, Labels, Registry};
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
    fn add(&mut self, q: Quality) {
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

type PerLabel<M> = Family<Labels, M>;

/// Polling's metrics, shared by every bus poller (the families are shared handles).
#[derive(Debug, Clone)]
pub struct PollMetrics {
    polls: PerLabel<Counter>,
    values: PerLabel<Counter>,
    errors: PerLabel<Counter>,
    device_up: PerLabel<Gauge>,
    alarms_active: PerLabel<Gauge>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    latency: PerLabel<Gauge<f64, AtomicU64>>,
    alarm_events: PerLabel<Counter>,
    unsolicited: PerLabel<Counter>,
}

impl Default for PollMetrics {
    fn default() -> Self {
        PollMetrics {
            polls: Family::default(),
            values: Family::default(),
            errors: Family::default(),
            device_up: Family::default(),
            alarms_active: Family::default(),
            duration: Family::new_with_constructor(seconds_histogram),
            latency: Family::default(),
            alarm_events: Family::default(),
            unsolicited: Family::default(),
        }
    }
}

impl PollMetrics {
    /// Registers polling's metrics; bus utilisation is computed from `buses` at each scrape.
    pub fn register(&self, reg: &mut Registry, buses: Vec<Arc<BusStatus>>) {
        reg.register(
            "poll_device_polls",
            "Polls of each device",
            self.polls.clone(),
        );
        reg.register("poll_values", "Point values read good", self.values.clone());
        reg.register(
            "poll_errors",
            "Point reads that failed, by kind (timeout, exception, bad_frame, disconnected, offline, bad_value)",
            self.errors.clone(),
        );
        reg.register(
            "poll_device_up",
            "1 when the device answered in its last polls, 0 when offline or never polled",
            self.device_up.clone(),
        );
        reg.register(
            "poll_alarms_active",
            "Alarm points of the device at an active level (low, high, hi, hihi, lo, lolo, fault; never inhibit)",
            self.alarms_active.clone(),
        );
        reg.register(
            "poll_duration_seconds",
            "Seconds one device poll kept its bus busy",
            self.duration.clone(),
        );
        reg.register(
            "poll_device_latency_seconds",
            "Seconds the last poll of each device took (all its reads)",
            self.latency.clone(),
        );
        reg.register(
            "poll_alarm_events",
            "Alarm transitions, by the level entered",
            self.alarm_events.clone(),
        );
        reg.register(
            "poll_unsolicited_bytes",
            "Bytes a Modbus TCP device sent unasked, found waiting before a request and discarded",
            self.unsolicited.clone(),
        );
        for l in AlarmLevel::ALL {
            drop(
                self.alarm_events
                    .get_or_create(&labels(&[("level", l.as_str())])),
            );
        }
        reg.register_collector(Computed::new(
            "poll_bus_utilisation_ratio",
            "Share of wall time each bus spent in requests since start",
            move || {
                buses
                    .iter()
                    .map(|b| {
                        let busy = lock(&b.state).busy;
                        (labels(&[("bus", &b.name)]), b.utilisation_of(busy))
                    })
                    .collect()
            },
        ));
    }

    /// Creates every series of `device` on `bus` at zero, so dashboards see it before a poll.
    pub(super) fn add_device(&self, bus: &str, device: &str) {
        drop(
            self.polls
                .get_or_create(&labels(&[("bus", bus), ("device", device)])),
        );
        let d = labels(&[("device", device)]);
        drop(self.values.get_or_create(&d));
        drop(self.device_up.get_or_create(&d));
        drop(self.alarms_active.get_or_create(&d));
        drop(self.latency.get_or_create(&d));
        for (kind, _) in ReadCounts::default().errors() {
            drop(
                self.errors
                    .get_or_create(&labels(&[("device", device), ("kind", kind)])),
            );
        }
        drop(self.duration.get_or_create(&labels(&[("bus", bus)])));
        drop(self.unsolicited.get_or_create(&labels(&[("bus", bus)])));
    }

    /// Counts `bytes` discarded on `bus` because they waited before a request.
    pub(super) fn unsolicited(&self, bus: &str, bytes: u64) {
        if bytes > 0 {
            self.unsolicited
                .get_or_create(&labels(&[("bus", bus)]))
                .inc_by(bytes);
        }
    }

    /// Counts one poll of `device`; `up` is the breaker's verdict, `active` its alarm points at
    /// an active level.
    pub(super) fn polled(
        &self,
        bus: &str,
        poll: &DevicePoll,
        latency: Duration,
        up: bool,
        active: usize,
    ) {
        let device = &*poll.device;
        self.polls
            .get_or_create(&labels(&[("bus", bus), ("device", device)]))
            .inc();
        let d = labels(&[("device", device)]);
        let mut counts = ReadCounts::default();
        for s in &poll.samples {
            counts.add(s.quality);
        }
        self.values.get_or_create(&d).inc_by(counts.good);
        for (kind, n) in counts.errors() {
            if n > 0 {
                self.errors
                    .get_or_create(&labels(&[("device", device), ("kind", kind)]))
                    .inc_by(n);
            }
        }
        self.device_up.get_or_create(&d).set(i64::from(up));
        self.alarms_active.get_or_create(&d).set(active as i64);
        self.latency.get_or_create(&d).set(latency.as_secs_f64());
        self.duration
            .get_or_create(&labels(&[("bus", bus)]))
            .observe(latency.as_secs_f64());
        for a in &poll.alarms {
            self.alarm_events
                .get_or_create(&labels(&[("level", a.level.as_str())]))
                .inc();
        }
    }
}
