//! The platform side: its PKI, brokers (mosquitto, the embedded rumqttd, a cuttable proxy) and a
//! subscriber recording everything the platform receives.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plantgate::app::demo::{subscribe_platform_acked, PlatformMsg};
use plantgate::app::pki::{Ca, Issued};

use super::Proc;

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
                 autosave_interval 1\nset_tcp_nodelay true\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n",
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

    /// Freezes it (SIGSTOP, by its PID): connections stay open but nothing is answered, the
    /// way a hung broker looks from the gateway.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().expect("mosquitto is not running").0.id();
        let ok = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {pid} failed");
    }

    /// Stops it the way an operator would (SIGTERM: it saves its sessions first).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
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
    /// When each message of `messages` arrived, ms since the epoch.
    pub arrived_ms: Vec<i64>,
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

/// Subscribes as the platform, waits (up to 20 s) until the broker acknowledged the
/// subscription, and records every message in the background. A platform that is not
/// listening yet would make "nothing arrived" prove nothing.
pub async fn platform(pki: &Pki, port: u16, session: Option<&str>) -> Arc<Mutex<Platform>> {
    let (mut rx, mut acked) =
        subscribe_platform_acked("localhost", port, pki.platform_tls(), "pg/test", session);
    tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|a| *a))
        .await
        .expect("the platform's subscription was never acknowledged")
        .unwrap();
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
    p.arrived_ms.push(plantgate::record::now_ms());
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
