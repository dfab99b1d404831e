//! The command platform's side of the demo (and of the tests): a subscriber over mutual TLS
//! that decodes what arrives, CBOR or JSON, into one generic shape.
//! Owns nothing of the gateway; must never be used by `plantgate run`.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

/// A message as the platform received it, decoded from CBOR or JSON into one generic shape.
#[derive(Debug, Clone)]
pub struct PlatformMsg {
    pub topic: String,
    pub retained: bool,
    pub body: serde_json::Value,
    /// The payload as it came over the wire.
    pub raw: Vec<u8>,
}

/// Subscribes to `{prefix}/#` as the command platform would and hands every decoded message to
/// the returned channel. Reconnects on its own until the receiver is dropped. With a
/// `session` client id the broker keeps the subscription and queues messages while the
/// subscriber is away (clean session off), as a real platform consumer would.
pub fn subscribe_platform(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    prefix: &str,
    session: Option<&str>,
) -> mpsc::UnboundedReceiver<PlatformMsg> {
    subscribe_platform_acked(host, port, tls, prefix, session).0
}

/// [`subscribe_platform`], and a flag that turns true once the broker acknowledged the
/// subscription (SUBACK): before that, an empty channel proves nothing.
pub fn subscribe_platform_acked(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    prefix: &str,
    session: Option<&str>,
) -> (
    mpsc::UnboundedReceiver<PlatformMsg>,
    tokio::sync::watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (acked_tx, acked) = tokio::sync::watch::channel(false);
    let id = session
        .map(str::to_string)
        .unwrap_or_else(|| format!("platform-{}", rand::random::<u32>()));
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_clean_session(session.is_none())
        .set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(8 << 20, 8 << 20)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let filter = format!("{prefix}/#");
    tokio::spawn(async move {
        let (client, mut events) = AsyncClient::new(opts, 64);
        events.network_options.set_tcp_nodelay(true);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = acked_tx.send(true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let body = decode_any(&p.payload);
                    if tx
                        .send(PlatformMsg {
                            topic: p.topic.clone(),
                            retained: p.retain,
                            body,
                            raw: p.payload.to_vec(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    (rx, acked)
}

/// CBOR or JSON or plain text → JSON value.
pub fn decode_any(payload: &[u8]) -> serde_json::Value {
    if let Ok(v) = serde_json::from_slice(payload) {
        return v;
    }
    if let Ok(v) = minicbor_serde::from_slice::<serde_json::Value>(payload) {
        return v;
    }
    serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
}
