//! The only place the tests read the gateway's internal status (`plantgate::status::Status`
//! and the components' own status): small named questions, adapted here once when it changes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plantgate::config::{Config, SpoolSettings};
use plantgate::spool::Spool;

use super::Gateway;

/// Readings in the spool not yet acknowledged upstream.
pub fn spool_backlog(gw: &Gateway) -> u64 {
    gw.status.spool().readings
}

/// Alarms in the spool not yet acknowledged upstream.
pub fn spool_alarms(gw: &Gateway) -> u64 {
    gw.status.spool().alarms
}

/// Readings the spool evicted because it was full, over the store's life.
pub fn spool_evicted(gw: &Gateway) -> u64 {
    gw.status.spool().evicted_readings
}

/// The sequence number the spool gives its next record.
pub fn spool_next_seq(gw: &Gateway) -> u64 {
    gw.status.spool().next_seq
}

/// The spool's state in words, for failure messages.
pub fn spool_state(gw: &Gateway) -> String {
    format!("{:?}", gw.status.spool())
}

/// The broker the uplink is connected to, if any.
pub fn uplink_connected(gw: &Gateway) -> Option<String> {
    gw.status.uplink().connected_to
}

/// The uplink's last error, if any.
pub fn uplink_error(gw: &Gateway) -> Option<String> {
    gw.status.uplink().last_error
}

/// Messages the uplink published.
pub fn uplink_published(gw: &Gateway) -> u64 {
    gw.status.uplink().published
}

/// Records the broker acknowledged.
pub fn uplink_acked(gw: &Gateway) -> u64 {
    gw.status.uplink().acked_records
}

/// Times the uplink reconnected.
pub fn uplink_reconnects(gw: &Gateway) -> u64 {
    gw.status.uplink().reconnects
}

/// Whether every configured device has been polled at least once.
pub fn all_devices_polled(gw: &Gateway) -> bool {
    gw.status.devices().iter().all(|d| d.polls > 0)
}

/// Waits (up to 10 s) until every configured device has been polled at least once.
pub async fn wait_all_polled(gw: &Gateway) {
    super::until(Duration::from_secs(10), "a poll of each device", || {
        all_devices_polled(gw)
    })
    .await;
}

/// The last error of the `index`-th configured device ("" if none).
pub fn device_error(gw: &Gateway, index: usize) -> String {
    gw.status.devices()[index]
        .last_error
        .clone()
        .unwrap_or_default()
}

/// A spool opened by the test itself, with no gateway running (to fill it beforehand or read
/// it afterwards), and the status it shows.
pub struct OfflineSpool {
    pub spool: Arc<Spool>,
}

/// Opens (or creates) the spool in `dir`; panics if that fails, as a damaged file must not.
pub fn open_spool(dir: &Path, settings: &SpoolSettings) -> OfflineSpool {
    OfflineSpool {
        spool: Arc::new(
            Spool::open(dir, settings)
                .unwrap_or_else(|e| panic!("the spool in {} must open: {e}", dir.display())),
        ),
    }
}

impl OfflineSpool {
    pub fn backlog(&self) -> u64 {
        self.spool.status().readings
    }

    pub fn alarms(&self) -> u64 {
        self.spool.status().alarms
    }

    pub fn evicted(&self) -> u64 {
        self.spool.status().evicted_readings
    }

    /// The spool file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.spool.status().bytes
    }

    pub fn append_errors(&self) -> u64 {
        self.spool.status().append_errors
    }

    /// Its state in words, for failure messages.
    pub fn state(&self) -> String {
        format!("{:?}", self.spool.status())
    }

    /// Closes it cleanly (what a stopping gateway does), so the next start owes no gap.
    pub fn close(&self) {
        self.spool.close().unwrap();
    }
}

/// The spool's next sequence number, read from its file (the gateway must not be running);
/// the spool is closed cleanly again, so the gateway continues from exactly there.
pub fn next_seq(cfg: &Config) -> u64 {
    let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
    let next = s.spool.next_seq();
    s.close();
    next
}

/// The level the status board shows for an alarm point (`None`: not reported yet).
pub fn point_level(
    gw: &Gateway,
    device: &str,
    point: &str,
) -> Option<plantgate::record::AlarmLevel> {
    let devices = gw.status.devices();
    let d = devices.iter().find(|d| d.name == device).unwrap();
    d.points.iter().find(|p| p.name == point).unwrap().level
}
