//! The status page's HTTP/1 accept loop: bounded, so no LAN client can hold the gateway's file
//! descriptors or memory.
//!
//! Owns the connection limits ([`MAX_CONNECTIONS`] in all, [`MAX_PER_CLIENT`] per client
//! address, so one laptop or scanner cannot take every slot: a connection over either is closed
//! at once, and counted), the header-read timeout (which hyper also arms while a kept-alive connection waits
//! for its next request, so it is the idle timeout as well), the cap on a connection's lifetime
//! (slow bodies, slow readers), the header and body size limits, and graceful shutdown. Must
//! never wait on a client in the accept loop itself, nor let a connection outlive
//! [`MAX_LIFETIME`].
//!
//! File-descriptor budget (systemd/plantgate.service sets `LimitNOFILE=4096`): the web holds at
//! most [`MAX_CONNECTIONS`] (256) plus the one being refused; the local broker at most
//! `broker::local::MAX_CLIENTS` (64); the data path (spool file, uplink, one socket or serial
//! port per bus, the journal, sd_notify) a few dozen. What is left over is the reserve that keeps
//! the spool, the uplink's reconnects and the buses working whatever the LAN does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Labels, Registry};

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client address may hold at once (a browser opens up to six per host).
pub const MAX_PER_CLIENT: usize = 32;
/// A request's head must arrive within this, and a kept-alive connection is closed after this
/// long without a new request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer, whatever it is doing.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// The read buffer, and so the largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// The page takes no request bodies; anything announcing more than this is refused.
const MAX_BODY: u64 = 1024;
/// How long in-flight requests get after the cancel token fires.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The web server's own metrics.
#[derive(Clone, Default)]
pub struct WebMetrics {
    open: Gauge,
    refused: Counter,
    expired: Counter,
    /// Bytes of each response (head and body), by route.
    pub(super) bytes: Family<Labels, Counter>,
    /// Tap batches the trend and alarm-log task missed.
    pub(super) lagged: Counter,
}

impl WebMetrics {
    pub fn register(reg: &mut Registry) -> WebMetrics {
        let m = WebMetrics::default();
        reg.register(
            "web_connections",
            "Connections the status page holds open now",
            m.open.clone(),
        );
        reg.register(
            "web_connections_refused",
            "Connections closed on accept because the status page, or that client address, was at its connection limit",
            m.refused.clone(),
        );
        reg.register(
            "web_connections_expired",
            "Connections closed because they reached the status page's connection lifetime",
            m.expired.clone(),
        );
        reg.register(
            "web_response_bytes",
            "Bytes the status server sent (response head and body), by route",
            m.bytes.clone(),
        );
        reg.register(
            "web_tap_lagged_batches",
            "Captured batches the status page's trends and alarm log missed because they fell behind",
            m.lagged.clone(),
        );
        m
    }
}

/// Who holds how many connections. Only admitted addresses are kept, so it holds at most
/// [`MAX_CONNECTIONS`] entries.
#[derive(Default)]
struct Admission(Mutex<(usize, HashMap<IpAddr, usize>)>);

/// One admitted connection; gives its slot back when dropped.
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        let mine = per.get(&ip).copied().unwrap_or(0);
        if *total >= MAX_CONNECTIONS || mine >= MAX_PER_CLIENT {
            return None;
        }
        *total += 1;
        per.insert(ip, mine + 1);
        Some(Slot {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.admission.0.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// Refuses request bodies the page has no use for, before any handler runs.
async fn limit_body(req: Request<Body>, next: axum::middleware::Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked || announced.is_some_and(|n| n > MAX_BODY) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    next.run(req).await
}

/// Serves `app` on `listener` until `cancel` fires, then lets in-flight requests finish
/// (for at most [`SHUTDOWN_GRACE`]).
pub async fn run(
    listener: TcpListener,
    app: Router,
    metrics: WebMetrics,
    cancel: CancellationToken,
) {
    let app = app.layer(axum::middleware::from_fn(limit_body));
    let admission = Arc::new(Admission::default());
    let tracker = TaskTracker::new();
    let mut h1 = http1::Builder::new();
    // Without a timer hyper ignores the header timeout (and panics if one is set).
    h1.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD)
        .max_headers(64);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: back off rather than spin.
                    tracing::warn!(error = %e, "status page: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let Some(permit) = admission.admit(peer.ip()) else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let conn = h1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let (cancel, metrics) = (cancel.clone(), metrics.clone());
        tracker.spawn(async move {
            let _permit = permit;
            metrics.open.inc();
            let mut conn = std::pin::pin!(conn);
            let outcome = tokio::time::timeout(MAX_LIFETIME, async {
                tokio::select! {
                    r = conn.as_mut() => r,
                    () = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
                    }
                }
            })
            .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "status page connection"),
                Err(_) => {
                    metrics.expired.inc();
                }
            }
            metrics.open.dec();
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}
