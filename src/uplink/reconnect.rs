//! When the uplink tries a broker again.
//!
//! Owns the reconnect policy: while a broker is unreachable, a cheap TCP probe every
//! [`PROBE_EVERY`] (jittered ±50 %, so a district's gateways spread out), and a full TLS + MQTT
//! session only once the port accepts; a handshake the broker refuses backs off exponentially
//! from [`REFUSED_MIN`] to [`REFUSED_MAX`] (jittered), since repeating it at once would only
//! load the broker. A session that held for a while earns an immediate retry. So a broker that
//! comes back is found within about a second and a half, without a thundering herd. The policy
//! is pure; [`reachable`] is the probe. Must never sleep itself.

use std::time::Duration;

/// Probe interval while the broker's port does not accept connections.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Backoff after the first refused handshake (TLS or MQTT), doubling per refusal...
pub const REFUSED_MIN: Duration = Duration::from_secs(1);
/// ...up to this.
pub const REFUSED_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long counts as a good one: its loss is retried at once.
pub const HELD: Duration = Duration::from_secs(10);

/// Consecutive refused handshakes, across the configured brokers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Policy {
    refused: u32,
}

impl Policy {
    /// The wait before probing again after a failed probe; `jitter` in 0.0..1.0.
    pub fn probe_delay(&self, jitter: f64) -> Duration {
        PROBE_EVERY.mul_f64(0.5 + jitter)
    }

    /// A session ended after `connected_for` (`None`: no CONNACK, the handshake was refused).
    /// Returns the wait before the next attempt and whether to start again from the first
    /// broker.
    pub fn session_ended(
        &mut self,
        connected_for: Option<Duration>,
        jitter: f64,
    ) -> (Duration, bool) {
        if connected_for.is_some_and(|d| d >= HELD) {
            self.refused = 0;
            return (Duration::ZERO, true);
        }
        let base = REFUSED_MIN
            .saturating_mul(1u32 << self.refused.min(8))
            .min(REFUSED_MAX);
        self.refused = self.refused.saturating_add(1);
        (base.mul_f64(0.8 + 0.4 * jitter), false)
    }
}

/// Whether `host:port` accepts a TCP connection within `timeout`: the cheap probe before a TLS
/// handshake.
pub async fn reachable(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_is_probed_about_every_second_with_jitter() {
        let p = Policy::default();
        assert_eq!(p.probe_delay(0.0), Duration::from_millis(500));
        assert_eq!(p.probe_delay(0.999).as_millis(), 1499);
    }

    #[test]
    fn refused_handshakes_back_off_exponentially_to_thirty_seconds() {
        let mut p = Policy::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| p.session_ended(None, 0.5).0.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        // a short session that is dropped at once counts as refused too
        assert_eq!(
            p.session_ended(Some(Duration::from_secs(1)), 0.0).0,
            Duration::from_secs(24)
        );
    }

    #[test]
    fn a_session_that_held_is_retried_at_once_from_the_first_broker() {
        let mut p = Policy::default();
        p.session_ended(None, 0.5);
        p.session_ended(None, 0.5);
        assert_eq!(p.session_ended(Some(HELD), 0.5), (Duration::ZERO, true));
        assert_eq!(
            p.session_ended(None, 0.5).0,
            REFUSED_MIN,
            "the count starts over"
        );
    }

    #[tokio::test]
    async fn the_probe_tells_an_open_port_from_a_closed_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(reachable("127.0.0.1", port, Duration::from_secs(1)).await);
        drop(l);
        assert!(!reachable("127.0.0.1", port, Duration::from_secs(1)).await);
    }
}
