//! The status board: the latest state of every component, for the status page, metrics and demo.
//!
//! Owns plain snapshots that components write after each step and readers copy out. Must never
//! be on the data path: nothing here is durable, nothing waits on it, and no lock is held across
//! an await.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::config::Config;
use crate::record::{now_ms, DevicePoll, Quality, Sample};

/// One device as last seen.
#[derive(Debug, Clone, Default)]
pub struct DeviceStatus {
    pub name: String,
    pub bus: String,
    pub polls: u64,
    /// Polls in which at least one point was not good.
    pub failed_polls: u64,
    pub last_poll_ms: Option<i64>,
    pub last_latency: Duration,
    pub last_error: Option<String>,
    pub samples: Vec<Sample>,
}

/// The uplink as last seen.
#[derive(Debug, Clone, Default)]
pub struct UplinkStatus {
    pub connected_to: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub last_puback_ms: Option<i64>,
    pub last_error: Option<String>,
    pub published: u64,
    pub acked_records: u64,
    pub reconnects: u64,
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
    pub append_errors: u64,
}

#[derive(Debug, Default)]
pub struct Board {
    devices: Mutex<Vec<DeviceStatus>>,
    uplink: Mutex<UplinkStatus>,
    spool: Mutex<SpoolStatus>,
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
                ..Default::default()
            })
            .collect();
        Board {
            devices: Mutex::new(devices),
            ..Default::default()
        }
    }

    pub fn device_polled(
        &self,
        index: usize,
        poll: &DevicePoll,
        latency: Duration,
        _line_open: bool,
    ) {
        let mut devices = lock(&self.devices);
        let Some(d) = devices.get_mut(index) else {
            return;
        };
        d.polls += 1;
        d.last_poll_ms = Some(now_ms());
        d.last_latency = latency;
        let bad = poll.samples.iter().find(|s| s.quality != Quality::Good);
        if let Some(s) = bad {
            d.failed_polls += 1;
            d.last_error = Some(format!("{}: {}", s.point, s.quality));
        }
        d.samples.clone_from(&poll.samples);
    }

    pub fn devices(&self) -> Vec<DeviceStatus> {
        lock(&self.devices).clone()
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
