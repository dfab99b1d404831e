//! A started gateway under test: [`Gateway::start`] starts it and gathers every record it
//! commits into [`Seen`] in the background; [`Gateway::wait_until`] waits on that, and fails if
//! the collector lost anything. Also the GD-16 configurations the tests poll.
#![allow(dead_code, clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plantgate::app::Running;
use plantgate::config::Config;
use plantgate::record::{AlarmEvent, Reading};
use plantgate::sim::GD16_PROFILE;
use plantgate::spool::Stored;
use tokio::sync::broadcast::{self, error::RecvError};

/// What the gateway captured, gathered from its tap (in capture order).
#[derive(Default, Debug)]
pub struct Seen {
    pub readings: Vec<Reading>,
    pub alarms: Vec<AlarmEvent>,
    /// Commits the tap dropped because the collector fell behind.
    pub lagged: u64,
    /// The first sequence number of this run: nothing below it is gathered.
    first_seq: u64,
    seqs: BTreeSet<u64>,
}

impl Seen {
    pub fn latest(&self, device: &str, point: &str) -> Option<&Reading> {
        self.readings
            .iter()
            .rev()
            .find(|r| &*r.device == device && &*r.sample.point == point)
    }

    /// Records captured in this run that were never gathered: within a run sequence numbers
    /// are consecutive, so a hole below the highest one seen is a record the collector missed.
    pub fn missed(&self) -> u64 {
        self.seqs
            .last()
            .map_or(0, |last| last + 1 - self.first_seq - self.seqs.len() as u64)
    }

    /// An empty `Seen` for a run whose first record is numbered `first_seq`.
    pub fn starting_at(first_seq: u64) -> Seen {
        Seen {
            first_seq,
            ..Seen::default()
        }
    }

    /// Adds committed records; those from before this run or already seen are ignored.
    pub fn add(&mut self, readings: &[Reading], alarms: &[AlarmEvent]) {
        let first = self.first_seq;
        for r in readings {
            if r.seq >= first && self.seqs.insert(r.seq) {
                self.readings.push(r.clone());
            }
        }
        for a in alarms {
            if a.seq >= first && self.seqs.insert(a.seq) {
                self.alarms.push(a.clone());
            }
        }
    }

    /// Panics if the collector lost a record: a test must never judge an incomplete `Seen`.
    pub fn assert_complete(&self, what: &str) {
        assert!(
            self.lagged == 0 && self.missed() == 0,
            "the tap collector lost records ({} commits lagged, {} records missed) while waiting for {what}",
            self.lagged,
            self.missed()
        );
    }
}

/// A configuration given as TOML text or already parsed.
pub trait AsConfig {
    fn as_config(&self) -> Cow<'_, Config>;
}

impl AsConfig for Config {
    fn as_config(&self) -> Cow<'_, Config> {
        Cow::Borrowed(self)
    }
}

impl AsConfig for str {
    fn as_config(&self) -> Cow<'_, Config> {
        Cow::Owned(super::config(self))
    }
}

impl AsConfig for String {
    fn as_config(&self) -> Cow<'_, Config> {
        Cow::Owned(super::config(self))
    }
}

/// A running gateway and everything it committed so far.
pub struct Gateway {
    /// `None` once shut down; the status view outlives it (see `status.rs`).
    running: Option<Running>,
    pub(super) status: plantgate::status::Status,
    pub web_addr: Option<std::net::SocketAddr>,
    /// The spool's next sequence number before the gateway started: its first record's.
    pub first_seq: u64,
    seen: Arc<Mutex<Seen>>,
    collector: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts the gateway and its tap collector, on the tap subscribed before the first poll
    /// (`Running::take_first_tap`), so nothing this run captures is missed.
    pub async fn start(cfg: &(impl AsConfig + ?Sized)) -> Gateway {
        let cfg = cfg.as_config();
        let first_seq = super::next_seq(&cfg);
        let mut running = plantgate::app::start(&cfg)
            .await
            .expect("the gateway starts");
        let tap = running
            .take_first_tap()
            .expect("a fresh gateway has its first tap");
        let seen = Arc::new(Mutex::new(Seen::starting_at(first_seq)));
        let collector = tokio::spawn(collect(tap, seen.clone()));
        Gateway {
            status: running.status.clone(),
            web_addr: running.web_addr,
            running: Some(running),
            first_seq,
            seen,
            collector,
        }
    }

    /// The running gateway's spool.
    pub fn spool(&self) -> Arc<plantgate::spool::Spool> {
        self.running.as_ref().expect("running").spool.clone()
    }

    /// What was gathered so far. Do not hold it across an await.
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Waits until `done` holds for what was gathered; panics after `timeout` naming `what`,
    /// and at once if the collector lost a record.
    pub async fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let seen = self.seen();
                seen.assert_complete(what);
                if done(&seen) {
                    return;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = self.seen();
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({} readings, {} alarms gathered)",
                    seen.readings.len(),
                    seen.alarms.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Gathers for `d` whatever comes (no condition), failing if anything was lost.
    pub async fn gather_for(&self, d: Duration, what: &str) {
        tokio::time::sleep(d).await;
        self.seen().assert_complete(what);
    }

    /// Stops the gateway in order and lets the collector take the last commits. The status
    /// helpers still answer afterwards; `seen()` holds everything the run committed.
    pub async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        // Every tap sender is gone now: the collector drains what is buffered and ends.
        tokio::time::timeout(Duration::from_secs(10), &mut self.collector)
            .await
            .expect("the tap collector did not end after shutdown")
            .unwrap();
        self.seen().assert_complete("the shutdown");
    }
}

/// Follows the tap from before the first poll until it closes.
async fn collect(mut tap: broadcast::Receiver<Arc<Stored>>, seen: Arc<Mutex<Seen>>) {
    loop {
        match tap.recv().await {
            Ok(s) => seen.lock().unwrap().add(&s.readings, &s.alarms),
            Err(RecvError::Lagged(n)) => seen.lock().unwrap().lagged += n,
            Err(RecvError::Closed) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GD-16 configurations (the profile is `plantgate::sim::GD16_PROFILE`: 33 points per device).

/// `[gateway]` with its data in `data`, one `[[bus]]` named `bus` with `line` (its `tcp = ...`
/// or `rtu = ...`) and the GD-16 profile.
pub fn gd16_bus(data: &Path, bus: &str, line: &str, timeout_ms: u64) -> String {
    format!(
        "[gateway]\nid = \"gw-test\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"{bus}\"\n{line}\ntimeout_ms = {timeout_ms}\n{GD16_PROFILE}",
        data.display()
    )
}

/// A GD-16 `[[device]]` named `gas-{unit}` per unit on `bus`.
pub fn gd16_devices(bus: &str, units: impl IntoIterator<Item = u8>, poll_ms: u64) -> String {
    units
        .into_iter()
        .map(|u| format!("[[device]]\nname = \"gas-{u}\"\nbus = \"{bus}\"\nunit = {u}\npoll_ms = {poll_ms}\nprofile = \"gd16\"\n"))
        .collect()
}

/// The `rtu = ...` line of a bus on the serial port `port` at 19200 baud.
pub fn rtu_line(port: &Path) -> String {
    format!("rtu = {{ port = \"{}\", baud = 19200 }}", port.display())
}

/// A gateway configuration: `units` GD-16 controllers on one Modbus TCP bus polled every
/// `poll_ms`, the spool in `data`, and `upstream` appended as is.
pub fn gateway_toml(
    data: &Path,
    sim_port: u16,
    units: u8,
    poll_ms: u64,
    spool: &str,
    upstream: &str,
) -> String {
    let line = format!("tcp = {{ address = \"127.0.0.1:{sim_port}\" }}");
    format!(
        "{}{}[spool]\n{spool}\n{upstream}",
        gd16_bus(data, "tcp", &line, 500),
        gd16_devices("tcp", 1..=units, poll_ms)
    )
}

/// Waits until `cond` holds (checked every 50 ms); panics after `timeout` naming `what`.
pub async fn until(timeout: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
