//! What the uplink shows the outside: the session's latest state as an [`UplinkStatus`]
//! snapshot, and the uplink's metrics.
//!
//! Owns [`UplinkState`] (written only by the uplink, read by the page, health and the demo) and
//! [`UplinkMetrics`]. Must never be on the data path: readers get copies, and no lock is held
//! across an await.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{seconds_histogram, Computed, Registry};
use crate::record::now_ms;

/// The uplink as last seen.
#[derive(Debug, Clone, Default)]
pub struct UplinkStatus {
    pub configured: bool,
    pub connected_to: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub last_puback_ms: Option<i64>,
    pub last_error: Option<String>,
    pub published: u64,
    pub acked_records: u64,
    pub reconnects: u64,
    /// Our client certificate's expiry, ms since the epoch.
    pub cert_not_after_ms: Option<i64>,
}

/// The shared, read-only-for-others state of the uplink.
#[derive(Debug, Default)]
pub struct UplinkState(Mutex<UplinkStatus>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UplinkState {
    pub fn get(&self) -> UplinkStatus {
        lock(&self.0).clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut UplinkStatus)) {
        f(&mut lock(&self.0));
    }
}

/// The uplink's metrics.
#[derive(Debug, Clone)]
pub struct UplinkMetrics {
    pub(super) connected: Gauge,
    pub(super) published: Counter,
    pub(super) acked: Counter,
    pub(super) connections: Counter,
    pub(super) puback: Histogram,
}

impl Default for UplinkMetrics {
    fn default() -> Self {
        UplinkMetrics {
            connected: Gauge::default(),
            published: Counter::default(),
            acked: Counter::default(),
            connections: Counter::default(),
            puback: seconds_histogram(),
        }
    }
}

impl UplinkMetrics {
    /// Registers the uplink's metrics; the certificate's remaining life is computed from
    /// `state` at each scrape.
    pub fn register(&self, reg: &mut Registry, state: Arc<UplinkState>) {
        reg.register(
            "uplink_connected",
            "1 while connected to a broker",
            self.connected.clone(),
        );
        reg.register(
            "uplink_published_messages",
            "Messages published (QoS 1)",
            self.published.clone(),
        );
        reg.register(
            "uplink_acked_records",
            "Records the broker acknowledged",
            self.acked.clone(),
        );
        reg.register(
            "uplink_connections",
            "Connections established (the first and every reconnect)",
            self.connections.clone(),
        );
        reg.register(
            "uplink_puback_duration_seconds",
            "Seconds from publish to PUBACK",
            self.puback.clone(),
        );
        reg.register_collector(Computed::new(
            "uplink_certificate_expiry_seconds",
            "Seconds until our client certificate expires",
            move || {
                state
                    .get()
                    .cert_not_after_ms
                    .map(|t| vec![(Vec::new(), (t - now_ms()) as f64 / 1000.0)])
                    .unwrap_or_default()
            },
        ));
    }
}
