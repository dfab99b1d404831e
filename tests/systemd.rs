//! The real binary under systemd's notify protocol: READY=1 once running, watchdog pings while
//! it makes progress, STOPPING=1 on SIGTERM. (The verdict itself is unit-tested in
//! src/app/watchdog.rs; systemd/plantgate.service is checked with systemd-analyze.)

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(1).await;
    let path = dir.path().join("plantgate.toml");
    std::fs::write(
        &path,
        gateway_toml(&dir.path().join("data"), sim, 1, 200, "", ""),
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut gw = plantgate_run(
        &path,
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    // every 200 ms for 5 s while polling makes progress
    assert!(pings >= 15, "only {pings} watchdog pings: {got:?}");

    let status = gw.terminate();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}
