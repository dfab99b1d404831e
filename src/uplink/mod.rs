//! The uplink: publishes the spool to the command platform over MQTT (QoS 1, mutual TLS).
//!
//! Owns the MQTT session, the order in which pending records are sent, and acknowledging them
//! to the spool. Must never delete a record itself, hold a record only in memory, or trust
//! rumqttc's own session state: the spool is the source of truth.
//!
//! One session = one fresh rumqttc client and event loop (clean session). Any error ends the
//! session; everything unacknowledged is simply read from the spool again by the next one,
//! when [`reconnect`] says, trying the configured brokers in order. Records are published as
//! soon as they are captured (the spool wakes the session); within a session, each free slot of
//! the [`window::Window`] takes, in this order:
//! 1. the oldest pending **alarm** (one per message, topic `{prefix}/alarms`);
//! 2. the oldest pending **gap** (`{prefix}/gaps`: numbers that will never be sent);
//! 3. **live** readings: captured since this session connected, or since start when the first
//!    session connects within 10 s (`hist: false`);
//! 4. **backlog**: readings that were already waiting on disk when it connected (`hist: true`).
//!
//! A PUBACK hands the message's spool keys to the spool (in memory if the records are not
//! durable yet, else a delete). A retained `online` on `{prefix}/status` opens each session;
//! the last will says `offline`.

mod acks;
mod lanes;
pub mod reconnect;
pub mod status;
pub mod tls;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerAddr, Upstream};
use crate::record::{now_ms, Seq};
use crate::spool::store::StoreError;
use crate::spool::Spool;
use acks::{join_running, report, Acks};
use lanes::Lanes;
use status::{UplinkMetrics, UplinkState, UplinkStatus};
use window::{Carried, Window};

/// Largest MQTT packet either way; batches stay well below it (`batch_max` ≤ 5000 readings).
const MAX_PACKET: usize = 4 << 20;
/// How long a stopping uplink waits for outstanding PUBACKs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub struct Uplink {
    cfg: Upstream,
    gw: Arc<str>,
    /// SHA-256 of the configuration file, announced on `{prefix}/info`.
    config_sha256: String,
    spool: Arc<Spool>,
    tls: Arc<rustls::ClientConfig>,
    state: Arc<UplinkState>,
    metrics: UplinkMetrics,
    /// The first number of this run, and when the uplink was built: readings captured since
    /// start count as live if the first session comes up within [`FIRST_SESSION_GRACE`].
    run_first: Seq,
    built: Instant,
}

/// How soon after start the first session must connect for the readings captured meanwhile
/// to count as live rather than backlog.
const FIRST_SESSION_GRACE: Duration = Duration::from_secs(10);

/// Why a session ended. Every variant is retried: the next session starts after a backoff and
/// re-reads everything unacknowledged from the spool.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The connection failed or broke: network, TLS, or the broker.
    #[error("{}", tls::explain(.0.as_ref()))]
    Connection(Box<rumqttc::ConnectionError>),
    /// The spool could not be read.
    #[error("spool: {0}")]
    Spool(#[from] StoreError),
    /// rumqttc refused a request (its event loop is gone).
    #[error("cannot queue a publish: {0}")]
    Queue(#[from] rumqttc::ClientError),
}

impl From<rumqttc::ConnectionError> for UplinkError {
    fn from(e: rumqttc::ConnectionError) -> Self {
        UplinkError::Connection(Box::new(e))
    }
}

enum End {
    Cancelled,
    Failed {
        connected_for: Option<Duration>,
        error: UplinkError,
    },
}

impl Uplink {
    /// Loads the TLS material; fails with a clear message if it is unusable.
    pub fn build(
        cfg: Upstream,
        gw: Arc<str>,
        config_sha256: String,
        spool: Arc<Spool>,
    ) -> Result<Self, tls::TlsError> {
        let tls = tls::client_config(&cfg.ca_file, &cfg.cert_file, &cfg.key_file)?;
        let state = Arc::new(UplinkState::default());
        let not_after = tls::not_after_ms(&cfg.cert_file);
        state.update(|u| {
            u.configured = true;
            u.cert_not_after_ms = not_after;
        });
        Ok(Uplink {
            cfg,
            gw,
            config_sha256,
            run_first: spool.next_seq(),
            built: Instant::now(),
            spool,
            tls,
            state,
            metrics: UplinkMetrics::default(),
        })
    }

    /// A read-only handle on the uplink's status, for the page and health.
    pub fn status_handle(&self) -> Arc<UplinkState> {
        self.state.clone()
    }

    /// The uplink's latest state.
    pub fn status(&self) -> UplinkStatus {
        self.state.get()
    }

    /// Registers the uplink's metrics with the gateway's registry.
    pub fn register_metrics(&self, reg: &mut crate::metrics::Registry) {
        self.metrics.register(reg, self.state.clone());
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.cfg.topic_prefix)
    }

    /// Runs sessions until `cancel` fires, reconnecting by [`reconnect::Policy`].
    pub async fn run(self, cancel: CancellationToken) {
        let mut policy = reconnect::Policy::default();
        let mut broker = 0usize;
        loop {
            let addr = self.cfg.brokers[broker].clone();
            let probe = reconnect::reachable(&addr.host, addr.port, Duration::from_secs(3));
            let up = tokio::select! {
                () = cancel.cancelled() => return,
                up = probe => up,
            };
            let delay = if !up {
                self.down(&addr, "not reachable (TCP connect failed)".into());
                broker = (broker + 1) % self.cfg.brokers.len();
                policy.probe_delay(rand::rng().random_range(0.0..1.0))
            } else {
                let End::Failed {
                    connected_for,
                    error,
                } = self.session(&addr, &cancel).await
                else {
                    return;
                };
                let (delay, first) =
                    policy.session_ended(connected_for, rand::rng().random_range(0.0..1.0));
                if first {
                    tracing::warn!(broker = %addr, %error, "uplink lost; reconnecting");
                    broker = 0;
                } else {
                    tracing::warn!(broker = %addr, %error, retry_in = ?delay, "uplink cannot connect");
                    broker = (broker + 1) % self.cfg.brokers.len();
                }
                self.down(&addr, error.to_string());
                delay
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Shows the link as down, with why.
    fn down(&self, addr: &BrokerAddr, why: String) {
        self.metrics.connected.set(0);
        self.state.update(|u| {
            u.connected_to = None;
            u.connected_since_ms = None;
            u.last_error = Some(format!("{addr}: {why}"));
        });
    }

    fn options(&self, addr: &BrokerAddr) -> MqttOptions {
        let mut o = MqttOptions::new(self.cfg.client_id.clone(), addr.host.clone(), addr.port);
        o.set_keep_alive(self.cfg.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(self.cfg.inflight)
            .set_request_channel_capacity(usize::from(self.cfg.inflight) + 8)
            .set_last_will(LastWill::new(
                self.topic("status"),
                "offline",
                QoS::AtLeastOnce,
                true,
            ))
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                self.tls.clone(),
            )));
        o
    }

    async fn session(&self, addr: &BrokerAddr, cancel: &CancellationToken) -> End {
        let (client, mut events) =
            AsyncClient::new(self.options(addr), usize::from(self.cfg.inflight) + 8);
        events.network_options.set_connection_timeout(10);
        // Small messages (an alarm) must leave at once, not wait for the ACK of the previous
        // segment: with Nagle on, a broker's delayed ACK added ~40 ms to the p99 latency.
        events.network_options.set_tcp_nodelay(true);
        let mut window = Window::new(self.cfg.inflight);
        let mut lanes = Lanes::default();
        let mut acks = Acks::default();
        let mut committed = self.spool.subscribe();
        let mut connected_at: Option<Instant> = None;
        // When each packet id went out, for the PUBACK latency.
        let mut sent_at: std::collections::HashMap<u16, Instant> = std::collections::HashMap::new();
        let end = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let lanes = connected_at.is_some().then_some(&mut lanes);
                    self.drain(&client, &mut events, &mut window, &mut acks, lanes).await;
                    break End::Cancelled;
                }
                Some(r) = join_running(&mut acks.running), if acks.running.is_some() => report(r),
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_at = Some(Instant::now());
                        lanes = self.connected(addr, &client, &mut window);
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        sent_at.insert(pkid, Instant::now());
                        window.on_outgoing(pkid);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(t) = sent_at.remove(&ack.pkid) {
                            self.metrics.puback.observe(t.elapsed().as_secs_f64());
                        }
                        if let Some(c) = window.on_puback(ack.pkid) {
                            self.count_acked(&c);
                            acks.add(c);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break End::Failed {
                        connected_for: connected_at.map(|t| t.elapsed()),
                        error: e.into(),
                    },
                },
                changed = committed.changed(), if connected_at.is_some() => {
                    if changed.is_err() {
                        // the spool is gone: the gateway is stopping
                        cancel.cancelled().await;
                    }
                }
            }
            acks.start(&self.spool);
            if connected_at.is_some() {
                if let Err(e) =
                    lanes::off_runtime(|| self.fill(&client, &mut window, &mut lanes, &acks))
                {
                    break End::Failed {
                        connected_for: connected_at.map(|t| t.elapsed()),
                        error: e,
                    };
                }
            }
        };
        // Whatever the broker acknowledged is deleted before the next session reads the spool.
        acks.flush(&self.spool).await;
        end
    }

    /// A CONNACK: where this session's lanes start, the link shown as up, and the retained
    /// `online` and `info` messages that open it.
    fn connected(&self, addr: &BrokerAddr, client: &AsyncClient, window: &mut Window) -> Lanes {
        let first = self.state.get().reconnects == 0;
        let mark = if first && self.built.elapsed() < FIRST_SESSION_GRACE {
            self.run_first
        } else {
            self.spool.live_mark()
        };
        tracing::info!(broker = %addr, backlog_below = mark, "uplink connected");
        self.metrics.connected.set(1);
        self.metrics.connections.inc();
        self.state.update(|u| {
            u.connected_to = Some(addr.to_string());
            u.connected_since_ms = Some(now_ms());
            u.reconnects += 1;
            u.last_error = None;
        });
        let status = self.topic("status");
        if client
            .try_publish(status, QoS::AtLeastOnce, true, "online")
            .is_ok()
        {
            window.sent(Carried::Status);
        }
        // Which build and which configuration this gateway runs, for the platform.
        let info = serde_json::json!({
            "gw": &*self.gw,
            "version": env!("CARGO_PKG_VERSION"),
            "config_sha256": self.config_sha256,
            "connected_ms": now_ms(),
        });
        if client
            .try_publish(self.topic("info"), QoS::AtLeastOnce, true, info.to_string())
            .is_ok()
        {
            window.sent(Carried::Status);
        }
        Lanes::starting_at(mark)
    }

    /// Counts what a PUBACK acknowledged.
    fn count_acked(&self, c: &Carried) {
        let n = match c {
            Carried::Readings { count, .. } => *count,
            Carried::Alarm(_) => 1,
            Carried::Gap { .. } | Carried::Status => 0,
        };
        self.metrics.acked.inc_by(n);
        self.state.update(|u| {
            u.last_puback_ms = Some(now_ms());
            u.acked_records += n;
        });
    }

    /// On shutdown, within [`SHUTDOWN_GRACE`]: publish what is still pending (the pollers have
    /// stopped, so that is bounded), collect the PUBACKs, say `offline` (QoS 1, retained),
    /// disconnect. What is not acknowledged by then stays in the spool for the next start.
    async fn drain(
        &self,
        client: &AsyncClient,
        events: &mut EventLoop,
        window: &mut Window,
        acks: &mut Acks,
        lanes: Option<&mut Lanes>,
    ) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut lanes = lanes;
        let mut offline_sent = false;
        loop {
            if let Some(l) = lanes.as_deref_mut() {
                if lanes::off_runtime(|| self.fill(client, window, l, acks)).is_err() {
                    lanes = None;
                }
            }
            if window.outstanding() == 0 {
                if offline_sent || lanes.is_none() {
                    let _ = client.try_disconnect();
                } else if client
                    .try_publish(self.topic("status"), QoS::AtLeastOnce, true, "offline")
                    .is_ok()
                {
                    window.sent(Carried::Status);
                    offline_sent = true;
                    continue;
                } else {
                    let _ = client.try_disconnect();
                }
            }
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => window.on_outgoing(pkid),
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if let Some(c) = window.on_puback(ack.pkid) {
                        acks.add(c);
                    }
                }
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        tracing::info!(
            unacknowledged = window.outstanding(),
            "uplink stopped; unacknowledged records stay in the spool"
        );
    }
}
