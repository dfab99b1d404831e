//! The only place the tests read the gateway's internal status board (`plantgate::status`):
//! small named questions, so a change of the board is adapted here once.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plantgate::config::{Config, SpoolSettings};
use plantgate::spool::Spool;
use plantgate::status::Board;

use super::Gateway;

/// Readings in the spool not yet acknowledged upstream.
pub fn spool_backlog(gw: &Gateway) -> u64 {
    gw.board.spool().readings
}

/// Alarms in the spool not yet acknowledged upstream.
pub fn spool_alarms(gw: &Gateway) -> u64 {
    gw.board.spool().alarms
}

/// The sequence number the spool gives its next record.
pub fn spool_next_seq(gw: &Gateway) -> u64 {
    gw.board.spool().next_seq
}

/// The spool's state in words, for failure messages.
pub fn spool_state(gw: &Gateway) -> String {
    format!("{:?}", gw.board.spool())
}

/// The broker the uplink is connected to, if any.
pub fn uplink_connected(gw: &Gateway) -> Option<String> {
    gw.board.uplink().connected_to
}

/// The uplink's last error, if any.
pub fn uplink_error(gw: &Gateway) -> Option<String> {
    gw.board.uplink().last_error
}

/// Messages the uplink published.
pub fn uplink_published(gw: &Gateway) -> u64 {
    gw.board.uplink().published
}

/// Records the broker acknowledged.
pub fn uplink_acked(gw: &Gateway) -> u64 {
    gw.board.uplink().acked_records
}

/// Times the uplink reconnected.
pub fn uplink_reconnects(gw: &Gateway) -> u64 {
    gw.board.uplink().reconnects
}

/// Whether every configured device has been polled at least once.
pub fn all_devices_polled(gw: &Gateway) -> bool {
    gw.board.devices().iter().all(|d| d.polls > 0)
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
    gw.board.devices()[index]
        .last_error
        .clone()
        .unwrap_or_default()
}

/// A spool opened by the test itself, with no gateway running (to fill it beforehand or read
/// it afterwards), and the status its own board shows.
pub struct OfflineSpool {
    pub spool: Arc<Spool>,
    board: Arc<Board>,
}

/// Opens (or creates) the spool in `dir`; panics if that fails, as a damaged file must not.
pub fn open_spool(dir: &Path, settings: &SpoolSettings) -> OfflineSpool {
    let board = Arc::new(Board::default());
    OfflineSpool {
        spool: Arc::new(
            Spool::open(dir, settings, board.clone())
                .unwrap_or_else(|e| panic!("the spool in {} must open: {e}", dir.display())),
        ),
        board,
    }
}

impl OfflineSpool {
    pub fn backlog(&self) -> u64 {
        self.board.spool().readings
    }

    pub fn alarms(&self) -> u64 {
        self.board.spool().alarms
    }

    pub fn evicted(&self) -> u64 {
        self.board.spool().evicted_readings
    }

    /// The spool file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.board.spool().bytes
    }

    pub fn append_errors(&self) -> u64 {
        self.board.spool().append_errors
    }

    /// Its state in words, for failure messages.
    pub fn state(&self) -> String {
        format!("{:?}", self.board.spool())
    }
}

/// The spool's next sequence number, read from its file (the gateway must not be running).
pub fn next_seq(cfg: &Config) -> u64 {
    open_spool(&cfg.gateway.data_dir, &cfg.spool)
        .spool
        .next_seq()
        .unwrap()
}
