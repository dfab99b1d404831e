//! The real binary under systemd's notify protocol: READY=1 once running, watchdog pings while
//! it makes progress (and only then: a hung broker starves it), STOPPING=1 on SIGTERM. (The
//! verdict itself is unit-tested in src/health.rs; systemd/plantgate.service is checked with
//! systemd-analyze.) The notify socket is the test's own: no systemd needed.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// What the gateway told its notify socket, with when it arrived, collected on a thread.
#[derive(Clone)]
struct Notices(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notices {
    fn listen(path: &Path) -> Notices {
        let socket = UnixDatagram::bind(path).unwrap();
        let got = Notices(Arc::default());
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                g.0.lock().unwrap().push((Instant::now(), msg));
            }
        });
        got
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// When each watchdog ping arrived.
    fn pings(&self) -> Vec<Instant> {
        let got = self.0.lock().unwrap();
        got.iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(t, _)| *t)
            .collect()
    }

    /// Waits (up to `timeout`) until `done` holds for the pings so far.
    async fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&[Instant]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.pings()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The gateway under a notify socket with a 400 ms watchdog (fed every 200 ms).
fn run_notified(dir: &Path, config: &str) -> (Proc, Notices) {
    let path = dir.join("plantgate.toml");
    std::fs::write(&path, config).unwrap();
    let socket_path = dir.join("notify.sock");
    let notices = Notices::listen(&socket_path);
    let gw = plantgate_run(
        &path,
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
    );
    (gw, notices)
}

fn terminate_says_stopping(mut gw: Proc, notices: &Notices) {
    let status = gw.terminate();
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !notices.all().iter().any(|m| m == "STOPPING=1") {
        assert!(Instant::now() < deadline, "{:?}", notices.all());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(1).await;
    let text = gateway_toml(&dir.path().join("data"), sim, 1, 200, "", "");
    let (gw, notices) = run_notified(dir.path(), &text);
    notices
        .wait(Duration::from_secs(20), "15 watchdog pings", |p| {
            p.len() >= 15
        })
        .await;
    let got = notices.all();
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    terminate_says_stopping(gw, &notices);
}

/// A timer would feed the watchdog whatever happens; the verdict reads the uplink's PUBACKs. A
/// frozen broker keeps the connection open and acknowledges nothing: after `ack_stall_s` the
/// pings stop (systemd would kill and restart the gateway), and they start again when the
/// broker answers.
/// `[upstream] ack_stall_s` in this test.
const STALL: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_starves_the_watchdog_until_it_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = Mosquitto::start(&pki, free_port());
    let (sim, _c) = simulators(1).await;
    // keep-alive far beyond the stall: the link must not be declared dead instead
    let up = pki.upstream(broker.port, "").replace(
        "keep_alive_s = 5",
        &format!("keep_alive_s = 600\nack_stall_s = {}", STALL.as_secs()),
    );
    let text = gateway_toml(&dir.path().join("data"), sim, 1, 200, "", &up);
    let (gw, notices) = run_notified(dir.path(), &text);
    notices
        .wait(Duration::from_secs(20), "pings while connected", |p| {
            p.len() >= 10
        })
        .await;

    broker.freeze();
    let frozen = Instant::now();
    let quiet = Duration::from_secs(3);
    notices
        .wait(STALL + Duration::from_secs(60), "the pings to stop", |p| {
            p.last().is_some_and(|t| t.elapsed() > quiet)
        })
        .await;
    let pings = notices.pings();
    let last = *pings.last().unwrap();
    // Fed all through the stall allowed (a hung broker is given its time; the last PUBACK
    // may predate the freeze by a commit interval), then no more.
    let fed = last.duration_since(frozen);
    assert!(
        fed + Duration::from_secs(5) >= STALL,
        "the pings stopped {fed:?} into the freeze, before the {STALL:?} allowed"
    );
    assert!(
        fed <= STALL + Duration::from_secs(3),
        "the pings went on {fed:?} into the freeze, past the {STALL:?} allowed"
    );
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < Duration::from_secs(2),
        "a pause in the pings before they stopped: {longest:?}"
    );

    broker.thaw();
    let thawed = Instant::now();
    notices
        .wait(Duration::from_secs(30), "the pings to start again", |p| {
            p.last().is_some_and(|t| *t > thawed)
        })
        .await;
    terminate_says_stopping(gw, &notices);
}
