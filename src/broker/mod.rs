//! The MQTT brokers plantgate embeds: rumqttd as the demo's stand-in for the command platform
//! (and the tests'), and in [`local`] the read-only local broker for plant-side consumers.
//!
//! Owns building `rumqttd::Config` from our own settings (no rumqttd types in our config file)
//! and running rumqttd on a thread of its own, since `Broker::start()` blocks forever and has
//! no shutdown. Must never install rumqttd's global metrics recorder (its `[prometheus]` section
//! stays off), sit on the uplink's path in production, or face the plant LAN: rumqttd cannot
//! refuse a client's publishes, so the LAN gets [`LocalBroker`] instead.

mod fanout;
pub mod local;

pub use local::{LocalBroker, LocalMetrics};

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
    /// The local broker's port is taken or not ours to bind. Not retried.
    #[error("cannot listen for the local MQTT broker on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
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
