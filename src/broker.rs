//! The embedded MQTT broker (rumqttd): the demo's stand-in for the command platform, and the
//! optional local broker for plant-side consumers.
//!
//! Owns building `rumqttd::Config` from our own settings (no rumqttd types in our config file)
//! and running the broker on a thread of its own, since `Broker::start()` blocks forever and has
//! no shutdown. Must never install rumqttd's global metrics recorder (its `[prometheus]` section
//! stays off) or sit on the uplink's path in production.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

/// Server certificate, key and the CA that client certificates must chain to (mutual TLS).
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listener never came up (port taken, unreadable certificate). Not retried.
    #[error("the embedded MQTT broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
    /// rumqttd refused the in-process link the local broker is fed through. Not retried.
    #[error("cannot link to the local MQTT broker: {0}")]
    Link(String),
}

/// A loopback port that was free a moment ago (rumqttd cannot report the port it bound to 0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(listen: SocketAddr, tls: Option<&BrokerTls>) -> Config {
    let server = ServerSettings {
        name: format!("plantgate-{listen}"),
        listen,
        tls: tls.map(|t| TlsConfig::Rustls {
            capath: Some(t.ca_file.to_string_lossy().into_owned()),
            certpath: t.cert_file.to_string_lossy().into_owned(),
            keypath: t.key_file.to_string_lossy().into_owned(),
        }),
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 8 << 20,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 16 << 20,
            max_segment_count: 8,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("plantgate".to_string(), server)])),
        ..Config::default()
    }
}

/// Starts a broker listening on `listen` and returns once it accepts connections.
pub fn start(listen: SocketAddr, tls: Option<BrokerTls>) -> Result<(), BrokerError> {
    let cfg = config(listen, tls.as_ref());
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(listen))
}

/// The local broker for plant-side consumers (an HMI, a local SCADA): plain MQTT on the plant
/// LAN, fed in-process with live records. Topics, JSON of the upstream shape:
/// - `{prefix}/readings`: each committed batch of readings (`hist: false`);
/// - `{prefix}/alarms`: each alarm transition.
///
/// Best effort by design: the mirror reads the tap, so a slow local consumer can only lose its
/// own copies (counted), never slow the spool or the uplink.
pub struct LocalBroker {
    link: rumqttd::local::LinkTx,
    prefix: String,
}

impl LocalBroker {
    pub fn start(listen: SocketAddr, prefix: String) -> Result<LocalBroker, BrokerError> {
        let mut broker = rumqttd::Broker::new(config(listen, None));
        let (link, mut rx) = broker
            .link("plantgate-local-mirror")
            .map_err(|e| BrokerError::Link(e.to_string()))?;
        std::thread::Builder::new()
            .name("local-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "local MQTT broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;
        // The link's receiving side must be drained, or the router stalls on it.
        std::thread::Builder::new()
            .name("local-broker-link".into())
            .spawn(move || while rx.recv().is_ok() {})
            .map_err(BrokerError::Thread)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(listen));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(%listen, topics = %format!("{prefix}/#"), "local MQTT broker");
        Ok(LocalBroker { link, prefix })
    }

    /// Mirrors every committed record until the tap closes.
    pub async fn mirror(
        mut self,
        gw: std::sync::Arc<str>,
        mut tap: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::spool::Stored>>,
    ) {
        use crate::record::wire::{encode_alarm, encode_readings, Format};
        let mut dropped: u64 = 0;
        loop {
            match tap.recv().await {
                Ok(s) => {
                    let mut ok = true;
                    if !s.readings.is_empty() {
                        let payload = encode_readings(Format::Json, &gw, false, &s.readings);
                        ok &= self
                            .link
                            .try_publish(format!("{}/readings", self.prefix), payload)
                            .is_ok();
                    }
                    for a in &s.alarms {
                        ok &= self
                            .link
                            .try_publish(
                                format!("{}/alarms", self.prefix),
                                encode_alarm(Format::Json, &gw, a),
                            )
                            .is_ok();
                    }
                    if !ok {
                        dropped += 1;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => dropped += n,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "local broker mirror: updates not mirrored (consumers too slow)"
            );
        }
    }
}
