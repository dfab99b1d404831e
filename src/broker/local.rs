//! The local broker for plant-side consumers (an HMI, a local SCADA): a small, read-only MQTT
//! 3.1.1 server of our own on the plant LAN, fed in-process with live records. Topics, JSON of
//! the upstream shape:
//! - `{prefix}/readings`: each captured batch of readings (`hist: false`);
//! - `{prefix}/alarms`: each alarm transition.
//!
//! Owns the LAN side: CONNECT (no last will, since a will is a publish), SUBSCRIBE (only filters
//! under the prefix, see `fanout`), UNSUBSCRIBE, PINGREQ, DISCONNECT, and delivery at QoS 0.
//! A PUBLISH, or any other packet, from a client closes its connection and is counted. Bounded:
//! [`MAX_CLIENTS`] connections, a [`CONNECT_TIMEOUT`], a keep-alive deadline, a
//! [`WRITE_TIMEOUT`], [`MAX_INCOMING`]-byte packets, and each client's own bounded queue. Best
//! effort by design: the mirror reads the tap and never waits for a client, so a slow consumer
//! loses its own oldest copies (counted), and is dropped if it stops reading, never slowing the
//! spool or the uplink. With `[local_broker] username` and `password`, every client must give
//! them in its CONNECT (compared in constant time; a wrong one is refused and counted). Must
//! never accept data from the LAN, keep a session, or log a password.
//!
//! rumqttd cannot be this broker: it has no way to refuse a client's PUBLISH or will, and no
//! write timeout (see `broker` for the rumqttd we keep for the demo and tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::fanout::{selects, Fanout, Topic};
use super::BrokerError;
use crate::config::Login;
use crate::metrics::{labels, Labels, Registry};

/// Clients served at once; more are closed as soon as they are accepted.
pub const MAX_CLIENTS: usize = 64;
/// A client must send CONNECT within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that takes longer to accept one packet is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients only send CONNECT, SUBSCRIBE, UNSUBSCRIBE and pings.
pub const MAX_INCOMING: usize = 4096;
/// The longest keep-alive honoured (a client asking for 0, "none", gets this).
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(600);

/// The local broker's metrics.
#[derive(Clone, Default)]
pub struct LocalMetrics {
    clients: Gauge,
    refused_publishes: Counter,
    refused: Family<Labels, Counter>,
    refused_subscriptions: Counter,
    dropped: Counter,
}

impl LocalMetrics {
    pub fn register(reg: &mut Registry) -> LocalMetrics {
        let m = LocalMetrics::default();
        let sub = reg.sub_registry_with_prefix("local_broker");
        sub.register(
            "clients",
            "Clients connected to the local broker now",
            m.clients.clone(),
        );
        sub.register(
            "refused_publishes",
            "PUBLISH packets from local broker clients (each closes its connection)",
            m.refused_publishes.clone(),
        );
        sub.register(
            "refused_connections",
            "Local broker connections refused or closed, by reason",
            m.refused.clone(),
        );
        sub.register(
            "refused_subscriptions",
            "Subscription filters refused (not under the topic prefix, or too many)",
            m.refused_subscriptions.clone(),
        );
        sub.register(
            "dropped_messages",
            "Copies a slow local broker client lost because its own queue was full",
            m.dropped.clone(),
        );
        m
    }

    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }
}

/// A started local broker; [`LocalBroker::mirror`] feeds it.
pub struct LocalBroker {
    fanout: Arc<Fanout>,
    prefix: String,
}

/// Why a client's connection ended early (the `reason` label).
struct Refused(&'static str);

impl LocalBroker {
    /// Binds `listen` (a taken port is a start-up error) and serves clients in the background
    /// until `cancel` fires (then the listener and every client connection close).
    /// With `login`, every client must give that username and password in its CONNECT.
    pub async fn start(
        listen: SocketAddr,
        prefix: String,
        login: Option<Login>,
        metrics: LocalMetrics,
        cancel: CancellationToken,
    ) -> Result<LocalBroker, BrokerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| BrokerError::Bind(listen, e))?;
        let fanout = Arc::new(Fanout::new(metrics.dropped.clone()));
        tracing::info!(%listen, topics = %format!("{prefix}/#"), "local MQTT broker (read-only)");
        tokio::spawn(accept(
            listener,
            fanout.clone(),
            prefix.clone(),
            login.map(Arc::new),
            metrics,
            cancel,
        ));
        Ok(LocalBroker { fanout, prefix })
    }

    /// Mirrors every committed record until the tap closes.
    pub async fn mirror(
        self,
        gw: Arc<str>,
        mut tap: tokio::sync::broadcast::Receiver<Arc<crate::spool::Stored>>,
    ) {
        use crate::record::wire::{encode_alarm, encode_readings, Format};
        use tokio::sync::broadcast::error::RecvError;
        let mut lagged: u64 = 0;
        loop {
            match tap.recv().await {
                Ok(s) => {
                    if !s.readings.is_empty() {
                        let payload = encode_readings(Format::Json, &gw, false, &s.readings);
                        self.send(Topic::Readings, payload);
                    }
                    for a in &s.alarms {
                        self.send(Topic::Alarms, encode_alarm(Format::Json, &gw, a));
                    }
                    // Encoding is CPU work: let the clients it woke write before the next.
                    tokio::task::yield_now().await;
                }
                Err(RecvError::Lagged(n)) => lagged += n,
                Err(RecvError::Closed) => break,
            }
        }
        if lagged > 0 {
            tracing::info!(
                lagged,
                "local broker mirror: updates not mirrored (mirror too slow)"
            );
        }
    }

    /// Encodes once; every subscribed client shares the bytes.
    fn send(&self, t: Topic, payload: Vec<u8>) {
        let topic = format!("{}/{}", self.prefix, t.suffix());
        let mut buf = BytesMut::new();
        let p = Packet::Publish(Publish::from_bytes(topic, QoS::AtMostOnce, payload.into()));
        if p.write(&mut buf, usize::MAX).is_ok() {
            self.fanout.publish(t, buf.freeze());
        }
    }
}

async fn accept(
    listener: TcpListener,
    fanout: Arc<Fanout>,
    prefix: String,
    login: Option<Arc<Login>>,
    m: LocalMetrics,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let prefix: Arc<str> = prefix.into();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = cancel.cancelled() => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "local broker: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            m.refuse("limit");
            continue;
        };
        let (fanout, prefix, m, login) = (fanout.clone(), prefix.clone(), m.clone(), login.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            m.clients.inc();
            let client = fanout.join();
            let ended = tokio::select! {
                r = session(stream, &client, &prefix, login.as_deref(), &m) => r,
                () = cancel.cancelled() => Ok(()),
            };
            match ended {
                Ok(()) | Err(Refused("closed")) => {}
                Err(Refused(reason)) => {
                    if reason == "publish" {
                        m.refused_publishes.inc();
                    }
                    tracing::debug!(reason, "local broker: client dropped");
                    m.refuse(reason);
                }
            }
            fanout.leave(&client);
            m.clients.dec();
        });
    }
}

/// Reads one packet of at most [`MAX_INCOMING`] bytes. Cancel-safe: bytes read so far stay in
/// `buf`.
async fn read_packet(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Packet, Refused> {
    loop {
        match Packet::read(buf, MAX_INCOMING) {
            Ok(p) => return Ok(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)) => {
                return Err(Refused("too_large"))
            }
            Err(_) => return Err(Refused("protocol")),
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Refused("closed")),
            Ok(_) => {}
        }
    }
}

async fn write(wr: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> Result<(), Refused> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Refused("closed")),
        Err(_) => Err(Refused("slow")),
    }
}

/// Compares in time that depends only on the lengths, so the password cannot be guessed byte
/// by byte from the answer's timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn encode(p: Packet) -> Bytes {
    let mut b = BytesMut::new();
    // Our own acknowledgements are a few bytes: they always fit.
    let _ = p.write(&mut b, usize::MAX);
    b.freeze()
}

/// One client, from CONNECT to the end. `Ok` only for a client that said DISCONNECT.
async fn session(
    stream: TcpStream,
    client: &super::fanout::Client,
    prefix: &str,
    login: Option<&Login>,
    m: &LocalMetrics,
) -> Result<(), Refused> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(512);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut rd, &mut buf)).await
    {
        Err(_) => return Err(Refused("connect_timeout")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(_)) => return Err(Refused("protocol")),
    };
    if connect.last_will.is_some() {
        let nack = encode(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::NotAuthorized,
            false,
        )));
        let _ = write(&mut wr, &nack).await;
        return Err(Refused("will"));
    }
    if let Some(want) = login {
        let given = connect.login.as_ref();
        let ok = given.is_some_and(|g| {
            same(g.username.as_bytes(), want.username.as_bytes())
                & same(g.password.as_bytes(), want.password.as_bytes())
        });
        if !ok {
            let nack = encode(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::BadUserNamePassword,
                false,
            )));
            let _ = write(&mut wr, &nack).await;
            return Err(Refused("login"));
        }
    }
    let keep_alive = match connect.keep_alive {
        0 => MAX_KEEP_ALIVE,
        s => (Duration::from_secs(u64::from(s)) * 3 / 2).min(MAX_KEEP_ALIVE),
    };
    write(
        &mut wr,
        &encode(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        ))),
    )
    .await?;
    let mut deadline = tokio::time::Instant::now() + keep_alive;
    loop {
        let reply = tokio::select! {
            p = tokio::time::timeout_at(deadline, read_packet(&mut rd, &mut buf)) => {
                let p = p.map_err(|_| Refused("keep_alive"))??;
                deadline = tokio::time::Instant::now() + keep_alive;
                match answer(p, client, prefix, m)? {
                    Some(reply) => Some(reply),
                    None => return Ok(()),
                }
            }
            () = client.ready.notified() => None,
        };
        if let Some(reply) = reply {
            write(&mut wr, &reply).await?;
        }
        while let Some(msg) = client.next() {
            write(&mut wr, &msg).await?;
        }
    }
}

/// The answer to one packet from a client; `Ok(None)` for DISCONNECT.
fn answer(
    p: Packet,
    client: &super::fanout::Client,
    prefix: &str,
    m: &LocalMetrics,
) -> Result<Option<Bytes>, Refused> {
    let reply = match p {
        Packet::Subscribe(s) => {
            let codes = s
                .filters
                .iter()
                .map(|f| match selects(prefix, &f.path) {
                    Some(mask) if client.subscribe(&f.path, mask) => {
                        SubscribeReasonCode::Success(QoS::AtMostOnce)
                    }
                    _ => {
                        m.refused_subscriptions.inc();
                        SubscribeReasonCode::Failure
                    }
                })
                .collect();
            Packet::SubAck(SubAck::new(s.pkid, codes))
        }
        Packet::Unsubscribe(u) => {
            for t in &u.topics {
                client.unsubscribe(t);
            }
            Packet::UnsubAck(UnsubAck::new(u.pkid))
        }
        Packet::PingReq => Packet::PingResp,
        Packet::Disconnect => return Ok(None),
        Packet::Publish(_) => return Err(Refused("publish")),
        _ => return Err(Refused("protocol")),
    };
    Ok(Some(encode(reply)))
}
