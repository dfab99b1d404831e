//! The status board: the latest state of every component, for the status page, metrics and demo.
//!
//! Owns plain snapshots and counters that components write after each step, and the few
//! histograms observed as events happen. Readers copy out. Must never be on the data path:
//! nothing here is durable, nothing waits on it, and no lock is held across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::config::Config;
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
        }
    }

    /// (label, count) for every kind of failure.
    pub fn errors(&self) -> [(&'static str, u64); 5] {
        [
            ("timeout", self.timeout),
            ("exception", self.exception),
            ("bad_frame", self.bad_frame),
            ("disconnected", self.disconnected),
            ("offline", self.offline),
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

/// Health of a device, as the page colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not polled yet.
    Unknown,
    Ok,
    /// Some points fail.
    Degraded,
    /// Nothing read in the last polls.
    Offline,
}

impl DeviceStatus {
    /// The breaker in the poller decides offline (its samples then carry `offline`); the board
    /// only reads that verdict.
    pub fn health(&self) -> Health {
        let qualities = || {
            self.points
                .iter()
                .filter_map(|p| p.sample.as_ref())
                .map(|s| s.quality)
        };
        if self.polls == 0 {
            Health::Unknown
        } else if qualities().any(|q| q == Quality::Offline) {
            Health::Offline
        } else if qualities().any(|q| q != Quality::Good) {
            Health::Degraded
        } else {
            Health::Ok
        }
    }
}

/// One bus as last seen.
#[derive(Debug, Clone, Default)]
pub struct BusStatus {
    pub name: String,
    pub link: String,
    /// Time the line spent in requests since start.
    pub busy: Duration,
}

/// The uplink as last seen.
#[derive(Debug, Clone, Default)]
pub struct UplinkStatus {
    pub configured: bool,
    pub connected_to: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub last_puback_ms: Option<i64>,
    pub last_error: Option<String>,
    pub published: u64,
    pub acked_records: u64,
    pub reconnects: u64,
    /// Our client certificate's expiry, ms since the epoch.
    pub cert_not_after_ms: Option<i64>,
}

/// The spool as last seen.
#[derive(Debug, Clone, Default)]
pub struct SpoolStatus {
    pub readings: u64,
    pub alarms: u64,
    pub bytes: u64,
    pub oldest_ts_ms: Option<i64>,
    pub next_seq: u64,
    pub evicted_readings: u64,
    pub appended_records: u64,
    pub append_errors: u64,
}

/// A histogram per bus, labelled `bus`.
pub type PerBus = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// Histograms observed as events happen (they cannot be rebuilt from a snapshot).
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Seconds one device poll took, by bus.
    pub poll: PerBus,
    /// Seconds a durable spool commit took (fsync included).
    pub commit: Histogram,
    /// Seconds from publishing a message to its PUBACK.
    pub puback: Histogram,
}

fn seconds_buckets() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            poll: Family::new_with_constructor(seconds_buckets),
            commit: seconds_buckets(),
            puback: seconds_buckets(),
        }
    }
}

#[derive(Debug)]
pub struct Board {
    pub started: Instant,
    pub gateway_id: String,
    pub config_path: String,
    pub config_sha256: String,
    devices: Mutex<Vec<DeviceStatus>>,
    buses: Mutex<Vec<BusStatus>>,
    uplink: Mutex<UplinkStatus>,
    spool: Mutex<SpoolStatus>,
    pub histograms: Histograms,
    /// Alarm transitions committed, by level (unknown, normal, low, high, fault).
    alarm_events: [AtomicU64; 5],
    /// Bumped by each completed poll and each PUBACK: what the watchdog looks at.
    pub poll_progress: AtomicU64,
    pub uplink_progress: AtomicU64,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            started: Instant::now(),
            gateway_id: String::new(),
            config_path: String::new(),
            config_sha256: String::new(),
            devices: Mutex::default(),
            buses: Mutex::default(),
            uplink: Mutex::default(),
            spool: Mutex::default(),
            histograms: Histograms::default(),
            alarm_events: Default::default(),
            poll_progress: AtomicU64::new(0),
            uplink_progress: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the status page down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Board {
    pub fn new(config: &Config) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|d| DeviceStatus {
                name: d.name.to_string(),
                bus: config.bus_of(d).name.to_string(),
                unit: d.unit,
                poll_ms: d.poll.as_millis() as u64,
                points: d
                    .points
                    .iter()
                    .map(|p| PointStatus {
                        name: p.name.to_string(),
                        unit: p.unit.clone(),
                        is_alarm: p.alarm.is_some(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        let buses = config
            .buses
            .iter()
            .map(|b| BusStatus {
                name: b.name.to_string(),
                link: match &b.link {
                    crate::config::Link::Rtu(r) => format!("RTU {} {} baud", r.port, r.baud),
                    crate::config::Link::Tcp { address } => format!("TCP {address}"),
                },
                busy: Duration::ZERO,
            })
            .collect();
        Board {
            gateway_id: config.gateway.id.to_string(),
            config_path: config.source.path.display().to_string(),
            config_sha256: config.source.sha256.clone(),
            devices: Mutex::new(devices),
            buses: Mutex::new(buses),
            uplink: Mutex::new(UplinkStatus {
                configured: config.upstream.is_some(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Records one poll of device `index` on bus `bus`, which kept the line busy for `latency`;
    /// `error` is the first failed read in words, if any.
    pub fn device_polled(
        &self,
        index: usize,
        bus: usize,
        poll: &DevicePoll,
        latency: Duration,
        error: Option<&str>,
    ) {
        self.poll_progress.fetch_add(1, Ordering::Relaxed);
        {
            let mut buses = lock(&self.buses);
            if let Some(b) = buses.get_mut(bus) {
                b.busy += latency;
                self.histograms
                    .poll
                    .get_or_create(&vec![("bus".into(), b.name.clone())])
                    .observe(latency.as_secs_f64());
            }
        }
        let mut devices = lock(&self.devices);
        let Some(d) = devices.get_mut(index) else {
            return;
        };
        d.polls += 1;
        d.last_poll_ms = Some(now_ms());
        d.last_latency = latency;
        for s in &poll.samples {
            d.reads.add(s.quality);
        }
        match poll.samples.iter().find(|s| s.quality != Quality::Good) {
            Some(s) => {
                d.failed_polls += 1;
                d.last_error = Some(match error {
                    Some(e) => e.to_string(),
                    None => format!("{}: {}", s.point, s.quality),
                });
            }
            None => d.last_error = None,
        }
        for s in &poll.samples {
            if let Some(p) = d.points.iter_mut().find(|p| *p.name == *s.point) {
                if s.quality == Quality::Good {
                    p.last_good_ms = Some(s.ts_ms);
                }
                p.sample = Some(s.clone());
            }
        }
        for a in &poll.alarms {
            if let Some(p) = d.points.iter_mut().find(|p| *p.name == *a.sample.point) {
                p.level = Some(a.level);
            }
            self.alarm_events[a.level as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn devices(&self) -> Vec<DeviceStatus> {
        lock(&self.devices).clone()
    }

    pub fn buses(&self) -> Vec<BusStatus> {
        lock(&self.buses).clone()
    }

    /// Alarm transitions since start, by level.
    pub fn alarm_events(&self) -> Vec<(AlarmLevel, u64)> {
        AlarmLevel::ALL
            .iter()
            .map(|l| (*l, self.alarm_events[*l as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn uplink(&self) -> UplinkStatus {
        lock(&self.uplink).clone()
    }

    pub fn update_uplink(&self, f: impl FnOnce(&mut UplinkStatus)) {
        f(&mut lock(&self.uplink));
    }

    pub fn spool(&self) -> SpoolStatus {
        lock(&self.spool).clone()
    }

    pub fn update_spool(&self, f: impl FnOnce(&mut SpoolStatus)) {
        f(&mut lock(&self.spool));
    }
}
