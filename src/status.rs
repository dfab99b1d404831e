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

    /// For unit tests: the status of `config`'s first bus alone (never polled, no spool or
    /// uplink written), and that bus's handle to record polls with.
    #[cfg(test)]
    pub(crate) fn of_first_bus(config: &Config) -> (Status, Arc<BusStatus>) {
        let bus = BusStatus::new(&config.buses[0], &config.devices);
        let st = Status::new(
            Identity::new(config),
            vec![bus.clone()],
            Arc::default(),
            Arc::default(),
        );
        (st, bus)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::record::{DevicePoll, Quality, Sample, Value};

    const GATEWAY: &str =
        "[gateway]\nid = \"gw-s\"\ndata_dir = \"/nonexistent/plantgate-status-unit\"\n\
        [[bus]]\nname = \"rio-1\"\ntcp = { address = \"127.0.0.1:1502\" }\n\
        [[device]]\nname = \"t101\"\nbus = \"rio-1\"\nunit = 1\npoll_ms = 1000\n\
        [[device.point]]\nname = \"level\"\ntable = \"holding\"\naddress = 20\ntype = \"u16\"\n";
    const UPSTREAM: &str = "[upstream]\nbrokers = [\"platform.example.com:8883\"]\n\
        ca_file = \"/etc/plantgate/ca.crt\"\ncert_file = \"/etc/plantgate/gw.crt\"\n\
        key_file = \"/etc/plantgate/gw.key\"\nack_stall_s = 45\n";

    fn config(text: &str) -> Config {
        Config::from_str(text, Path::new("unit.toml")).expect("the fixture parses")
    }

    #[test]
    fn the_identity_is_the_configuration_it_runs() {
        let text = format!("{UPSTREAM}{GATEWAY}");
        let before = now_ms();
        let id = Identity::new(&config(&text));
        assert_eq!(id.gateway_id, "gw-s");
        assert_eq!(id.config_path, "unit.toml");
        assert_eq!(id.config_sha256, config(&text).source.sha256);
        assert_eq!(id.config_sha256.len(), 64);
        assert_ne!(
            id.config_sha256,
            Identity::new(&config(GATEWAY)).config_sha256
        );
        assert!((before..=now_ms()).contains(&id.started_ms));
        assert_eq!(id.ack_stall, Duration::from_secs(45));
        // no upstream, no session whose acknowledgements the watchdog could judge
        assert_eq!(Identity::new(&config(GATEWAY)).ack_stall, Duration::MAX);
    }

    /// The handles are live: what a component records after the bundle was made shows in the
    /// next copy, and health's snapshot carries the identity's settings.
    #[test]
    fn every_copy_is_of_now() {
        let (st, bus) = Status::of_first_bus(&config(&format!("{UPSTREAM}{GATEWAY}")));
        assert_eq!(st.devices()[0].last_poll_ms, None);
        let ts_ms = now_ms();
        bus.polled_for_test(
            0,
            &DevicePoll {
                device: "t101".into(),
                samples: vec![Sample {
                    point: "level".into(),
                    ts_ms,
                    value: Some(Value::Int(7)),
                    quality: Quality::Good,
                }],
                alarms: Vec::new(),
            },
        );
        let devices = st.devices();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].name, "t101");
        assert!(devices[0].last_poll_ms.is_some());
        let h = st.health();
        assert!(h.now_ms >= ts_ms);
        assert_eq!(h.started_ms, st.identity.started_ms);
        assert_eq!(h.ack_stall, Duration::from_secs(45));
        assert_eq!(h.buses.len(), 1);
        assert_eq!(h.buses[0].devices[0].last_poll_ms, devices[0].last_poll_ms);
        assert!(!h.spool.open);
    }
}
