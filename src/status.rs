//! The read-only view of a running gateway: who it is, and a handle on each component's own
//! status, for the page, `/api/status`, health, the watchdog and the demo.
//!
//! Owns [`Identity`] and [`Status`], a bundle of read-only handles that `app` assembles from the
//! components it built. Each component owns and writes its own status (`poll::status`,
//! `spool::status`, `uplink::status`); this module only copies them out. Must never be imported
//! by a component on the data path, and never hand out anything that can write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::health;
use crate::poll::status::{BusSnapshot, BusStatus, DeviceStatus};
use crate::record::now_ms;
use crate::spool::status::{SpoolState, SpoolStatus};
use crate::uplink::status::{UplinkState, UplinkStatus};

/// Which gateway this is, and which configuration it runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub gateway_id: String,
    pub config_path: String,
    pub config_sha256: String,
    pub started: Instant,
    pub started_ms: i64,
    /// `[upstream] ack_stall_s`, for the watchdog's verdict (never reached without an upstream).
    pub ack_stall: Duration,
}

impl Identity {
    pub fn new(config: &Config) -> Self {
        Identity {
            gateway_id: config.gateway.id.to_string(),
            config_path: config.source.path.display().to_string(),
            config_sha256: config.source.sha256.clone(),
            started: Instant::now(),
            started_ms: now_ms(),
            ack_stall: config
                .upstream
                .as_ref()
                .map_or(Duration::MAX, |u| u.ack_stall),
        }
    }
}

/// Read-only handles on every component's status.
#[derive(Debug, Clone)]
pub struct Status {
    pub identity: Arc<Identity>,
    buses: Vec<Arc<BusStatus>>,
    spool: Arc<SpoolState>,
    uplink: Arc<UplinkState>,
}

impl Status {
    pub fn new(
        identity: Identity,
        buses: Vec<Arc<BusStatus>>,
        spool: Arc<SpoolState>,
        uplink: Arc<UplinkState>,
    ) -> Self {
        Status {
            identity: Arc::new(identity),
            buses,
            spool,
            uplink,
        }
    }

    pub fn buses(&self) -> Vec<BusSnapshot> {
        self.buses.iter().map(|b| b.snapshot()).collect()
    }

    /// Every device of every bus.
    pub fn devices(&self) -> Vec<DeviceStatus> {
        self.buses().into_iter().flat_map(|b| b.devices).collect()
    }

    pub fn spool(&self) -> SpoolStatus {
        self.spool.get()
    }

    pub fn uplink(&self) -> UplinkStatus {
        self.uplink.get()
    }

    /// What [`health`]'s verdicts look at, now.
    pub fn health(&self) -> health::Snapshot {
        health::Snapshot {
            now_ms: now_ms(),
            started_ms: self.identity.started_ms,
            ack_stall: self.identity.ack_stall,
            buses: self.buses(),
            spool: self.spool(),
            uplink: self.uplink(),
        }
    }
}
