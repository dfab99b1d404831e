//! Helpers shared by the integration tests: real parts only (simulators, socat, brokers).
//!
//! - [`gateway`]: a started gateway with a tap collector ([`Gateway`], [`Seen`]) and the GD-16
//!   configurations the tests poll.
//! - [`status`]: the only place that reads the gateway's internal status board.
//! - [`platform`]: PKI, brokers and the platform's subscriber.
//! - [`browser`]: headless Chromium on the status page.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantgate::config::Config;

mod browser;
mod gateway;
mod platform;
mod status;

pub use browser::*;
pub use gateway::*;
pub use platform::*;
pub use status::*;

/// A child process killed (by its PID, which we started) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Stops it the way an operator or systemd would (SIGTERM, by its PID) and waits for it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        self.0.wait().unwrap()
    }
}

/// The real binary: `plantgate run --config <config>` with `RUST_LOG=warn` and `env` added.
pub fn plantgate_run(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plantgate"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// A pseudo-terminal pair made by socat: the gateway opens `gw`, the simulator `sim`.
pub struct PtyPair {
    pub gw: PathBuf,
    pub sim: PathBuf,
    _socat: Proc,
}

/// Unplugged as udev would: socat is killed and reaped, and its links are removed. A link
/// left dangling could point to the next pty the kernel hands out, another test's.
impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self._socat.0.kill();
        let _ = self._socat.0.wait();
        let _ = std::fs::remove_file(&self.gw);
        let _ = std::fs::remove_file(&self.sim);
    }
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

/// A Modbus TCP simulator with `units` GD-16 controllers; returns its port and the controllers.
pub async fn simulators(units: u8) -> (u16, Vec<Arc<plantgate::sim::Controller>>) {
    use plantgate::sim::{server::SimBus, Controller};
    let controllers: Vec<_> = (0..units).map(|_| Controller::gas16()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bus = SimBus::new(
        controllers
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, c)| (i as u8 + 1, c)),
    );
    tokio::spawn(plantgate::sim::server::serve_tcp(listener, bus));
    (port, controllers)
}

/// GET `path` from the status server; returns (status, headers as text, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    http_get_with(addr, path, "").await
}

/// GET `path` with `headers` (each line ending in `\r\n`) added to the request.
pub async fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

/// The value of a sample line `name{labels} value` in metrics text (labels must match exactly).
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Modbus CRC-16 (poly 0xA001, init 0xFFFF), low byte first on the wire.
pub fn crc16(data: &[u8]) -> [u8; 2] {
    let mut crc: u16 = 0xFFFF;
    for b in data {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc.to_le_bytes()
}
