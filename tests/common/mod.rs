//! Helpers shared by the integration tests: real parts only (simulators, socat, brokers).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantgate::config::Config;
use plantgate::record::{AlarmEvent, Reading};
use plantgate::spool::Stored;
use tokio::sync::broadcast;

/// A child process killed (by its PID, which we started) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pseudo-terminal pair made by socat: the gateway opens `gw`, the simulator `sim`.
pub struct PtyPair {
    pub gw: PathBuf,
    pub sim: PathBuf,
    _socat: Proc,
}

pub fn pty_pair(dir: &Path) -> PtyPair {
    let gw = dir.join("tty-gw");
    let sim = dir.join("tty-sim");
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", gw.display()))
        .arg(format!("pty,raw,echo=0,link={}", sim.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat is needed for serial tests (apt-get install socat)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gw.exists() && sim.exists()) {
        assert!(
            Instant::now() < deadline,
            "socat did not create the pty pair"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    PtyPair {
        gw,
        sim,
        _socat: Proc(child),
    }
}

pub fn config(text: &str) -> Config {
    Config::from_str(text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// What the gateway committed, gathered from its tap.
#[derive(Default)]
pub struct Seen {
    pub readings: Vec<Reading>,
    pub alarms: Vec<AlarmEvent>,
}

impl Seen {
    pub fn latest(&self, device: &str, point: &str) -> Option<&Reading> {
        self.readings
            .iter()
            .rev()
            .find(|r| &*r.device == device && &*r.sample.point == point)
    }
}

/// Gathers committed records until `done` says so or `timeout` passes (then panics with `what`).
pub async fn gather(
    tap: &mut broadcast::Receiver<Arc<Stored>>,
    seen: &mut Seen,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Ok(s)) => {
                seen.readings.extend(s.readings.iter().cloned());
                seen.alarms.extend(s.alarms.iter().cloned());
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("tap closed while waiting for {what}: {e}"),
            Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
        }
    }
}
