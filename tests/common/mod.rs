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

// ---------------------------------------------------------------------------------------------
// Brokers and the platform side.

use plantgate::app::demo::{subscribe_platform, PlatformMsg};
use plantgate::app::pki::{Ca, Issued};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The platform's PKI: a CA, the broker's certificate for localhost, and two clients.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Ca,
    pub broker: Issued,
    pub gateway: Issued,
    pub platform: Issued,
}

pub fn pki(dir: &Path) -> Pki {
    let ca = Ca::new(dir, "platform-ca").unwrap();
    Pki {
        broker: ca.issue(dir, "broker", &["localhost"], true).unwrap(),
        gateway: ca.issue(dir, "gateway", &["gw-test"], false).unwrap(),
        platform: ca.issue(dir, "platform", &["platform"], false).unwrap(),
        dir: dir.to_owned(),
        ca,
    }
}

impl Pki {
    pub fn platform_tls(&self) -> Arc<rustls::ClientConfig> {
        plantgate::uplink::tls::client_config(
            &self.ca.cert_file,
            &self.platform.cert_file,
            &self.platform.key_file,
        )
        .unwrap()
    }

    /// An `[upstream]` section for the gateway certificate against `localhost:port`.
    pub fn upstream(&self, port: u16, extra: &str) -> String {
        format!(
            "[upstream]\nbrokers = [\"localhost:{port}\"]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ntopic_prefix = \"pg/test\"\nkeep_alive_s = 5\n{extra}\n",
            self.ca.cert_file.display(),
            self.gateway.cert_file.display(),
            self.gateway.key_file.display()
        )
    }
}

pub fn free_port() -> u16 {
    plantgate::broker::free_port().unwrap()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real mosquitto over mutual TLS, with persistence so a restart keeps the platform's session.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl Mosquitto {
    pub fn start(pki: &Pki, port: u16) -> Mosquitto {
        let data = pki.dir.join("mosquitto");
        std::fs::create_dir_all(&data).unwrap();
        let conf = pki.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nuse_identity_as_username true\npersistence true\npersistence_location {}/\n\
                 autosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n",
                pki.ca.cert_file.display(),
                pki.broker.cert_file.display(),
                pki.broker.key_file.display(),
                data.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            proc: None,
        };
        m.resume();
        m
    }

    /// Starts (again) on the same port with the same persistence.
    pub fn resume(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto is needed (apt-get install mosquitto)");
        self.proc = Some(Proc(child));
        wait_listening(self.port, "mosquitto");
    }

    /// Stops it the way an operator would (SIGTERM: it saves its sessions first).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(p.0.id().to_string())
                .status();
            let _ = p.0.wait();
        }
    }
}

/// The embedded rumqttd over mutual TLS on a free port.
pub fn rumqttd(pki: &Pki) -> u16 {
    let port = free_port();
    plantgate::broker::start(
        ([127, 0, 0, 1], port).into(),
        Some(plantgate::broker::BrokerTls {
            ca_file: pki.ca.cert_file.clone(),
            cert_file: pki.broker.cert_file.clone(),
            key_file: pki.broker.key_file.clone(),
        }),
    )
    .unwrap();
    port
}

/// A TCP proxy in front of a broker whose link can be cut (every connection dropped, no new
/// ones accepted) and restored: a broker outage as the gateway sees it.
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (u, c) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = c.notified() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Everything the platform received, in arrival order.
#[derive(Default)]
pub struct Platform {
    /// (topic, seqs in the message, hist)
    pub messages: Vec<(String, Vec<u64>, bool)>,
    pub raw: Vec<(String, Vec<u8>)>,
    /// seq → times received
    pub seen: BTreeMap<u64, u32>,
    pub alarms: Vec<serde_json::Value>,
    pub statuses: Vec<String>,
    /// Announced gaps: (from, to, reason), inclusive.
    pub gaps: Vec<(u64, u64, String)>,
    /// What each number first carried (device, point, time, value): a resend must carry the
    /// same, a reused number would not.
    pub first_payload: BTreeMap<u64, String>,
    /// Numbers that arrived again with a different payload.
    pub reused: Vec<u64>,
}

impl Platform {
    pub fn duplicates(&self) -> u64 {
        self.seen.values().map(|n| u64::from(n - 1)).sum()
    }

    /// Sequence numbers in `range` that never arrived.
    pub fn missing(&self, range: std::ops::Range<u64>) -> Vec<u64> {
        range.filter(|s| !self.seen.contains_key(s)).collect()
    }

    /// Sequence numbers in `range` that never arrived and that no gap announced: silent loss.
    pub fn unannounced(&self, range: std::ops::Range<u64>) -> Vec<u64> {
        self.missing(range)
            .into_iter()
            .filter(|s| !self.gaps.iter().any(|(f, t, _)| f <= s && s <= t))
            .collect()
    }
}

/// Subscribes as the platform and records every message in the background.
pub fn platform(pki: &Pki, port: u16, session: Option<&str>) -> Arc<Mutex<Platform>> {
    let mut rx = subscribe_platform("localhost", port, pki.platform_tls(), "pg/test", session);
    let out = Arc::new(Mutex::new(Platform::default()));
    let o = out.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            record(&mut o.lock().unwrap(), m);
        }
    });
    out
}

fn record(p: &mut Platform, m: PlatformMsg) {
    p.raw.push((m.topic.clone(), m.raw.clone()));
    let mut seqs = Vec::new();
    let hist = m.body["hist"].as_bool().unwrap_or(false);
    if m.topic.ends_with("/readings") {
        for r in m.body["readings"].as_array().into_iter().flatten() {
            if let Some(seq) = r["seq"].as_u64() {
                seqs.push(seq);
                note_payload(p, seq, r);
            }
        }
    } else if m.topic.ends_with("/alarms") {
        if let Some(seq) = m.body["seq"].as_u64() {
            seqs.push(seq);
            note_payload(p, seq, &m.body);
        }
        p.alarms.push(m.body.clone());
    } else if m.topic.ends_with("/gaps") {
        p.gaps.push((
            m.body["from"].as_u64().unwrap(),
            m.body["to"].as_u64().unwrap(),
            m.body["reason"].as_str().unwrap_or_default().to_string(),
        ));
    } else if m.topic.ends_with("/status") {
        p.statuses
            .push(m.body.as_str().unwrap_or_default().to_string());
    }
    for s in &seqs {
        *p.seen.entry(*s).or_default() += 1;
    }
    p.messages.push((m.topic, seqs, hist));
}

fn note_payload(p: &mut Platform, seq: u64, r: &serde_json::Value) {
    let what = format!("{}|{}|{}|{}", r["dev"], r["pt"], r["ts"], r["v"]);
    match p.first_payload.get(&seq) {
        Some(first) if *first != what => p.reused.push(seq),
        Some(_) => {}
        None => {
            p.first_payload.insert(seq, what);
        }
    }
}

/// Waits until `done` holds for the platform, or panics after `timeout` with `what`.
pub async fn wait_for(
    p: &Arc<Mutex<Platform>>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Platform) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&p.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let mut s = format!(
        "[gateway]\nid = \"gw-test\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"tcp\"\ntcp = {{ address = \"127.0.0.1:{sim_port}\" }}\ntimeout_ms = 500\n\
         [[profile]]\nname = \"gd16\"\n\
         [[profile.point]]\nname = \"ch{{nn}}.gas\"\ntable = \"input\"\naddress = 0\nrepeat = 16\ntype = \"u16\"\nscale = 0.1\nunit = \"%LEL\"\n\
         [[profile.point]]\nname = \"ch{{nn}}.status\"\ntable = \"input\"\naddress = 100\nrepeat = 16\ntype = \"u16\"\nalarm = {{ 0 = \"normal\", 1 = \"low\", 2 = \"high\", 3 = \"fault\" }}\n",
        data.display()
    );
    for u in 1..=units {
        s.push_str(&format!("[[device]]\nname = \"gas-{u}\"\nbus = \"tcp\"\nunit = {u}\npoll_ms = {poll_ms}\nprofile = \"gd16\"\n"));
    }
    s.push_str(&format!("[spool]\n{spool}\n"));
    s.push_str(upstream);
    s
}

/// The spool's next sequence number, read from its file (the gateway must not be running);
/// the spool is closed cleanly again, so the gateway continues from exactly there.
pub fn next_seq(cfg: &Config) -> u64 {
    let spool = plantgate::spool::Spool::open(&cfg.gateway.data_dir, &cfg.spool).unwrap();
    let next = spool.next_seq();
    spool.close().unwrap();
    next
}

/// GET `path` from the status server; returns (status, headers as text, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
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
