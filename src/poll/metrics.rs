//! Polling's metrics: polls, values, read errors by kind, device up, active alarms, poll
//! durations, alarm transitions, unsolicited bytes and each bus's utilisation.
//!
//! Owns [`PollMetrics`] (registered once, shared by every poller; every series is created at
//! zero when its device is added). Must never be on the data path: counting never waits.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::status::{BusStatus, ReadCounts};
use crate::metrics::{labels, seconds_histogram, Computed, Labels, Registry};
use crate::record::{AlarmLevel, DevicePoll};

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
                    .map(|b| (labels(&[("bus", b.name())]), b.utilisation()))
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
