//! The local web interface: the technicians' status page, `/api/status`, `/metrics`, probes.
//!
//! Owns HTTP (axum routes; the bounded accept loop is `server`), the page's embedded assets and
//! the security headers. Read-only: it reads
//! the components' status through [`Status`] and encodes the metrics registry, never the spool
//! or the buses, so a busy page cannot slow the data path. Must never show keys, passwords or
//! private key material (no status holds any).

mod api;
pub mod metrics;
mod server;

pub use server::{WebMetrics, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_LIFETIME, MAX_PER_CLIENT};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::health;
use crate::metrics::Registry;
use crate::status::Status;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// No inline script or style anywhere, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Debug, thiserror::Error)]
#[error("cannot serve the status page on {addr}: {source}")]
pub struct WebError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// What every handler may read.
#[derive(Clone)]
struct Shared {
    status: Status,
    registry: Arc<Registry>,
}

pub fn router(status: Status, registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::map_response(secure))
        .with_state(Shared { status, registry })
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn api_status(State(s): State<Shared>) -> Response {
    axum::Json(api::status(&s.status)).into_response()
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format for the
/// rest (curl, promtool).
async fn metrics_text(State(s): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics::openmetrics(&s.registry),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::prometheus_text(&s.registry),
        )
            .into_response()
    }
}

/// Ready when every device was polled recently (whatever the outcome: a dead detector is a
/// finding, not a gateway fault) and the spool is committing.
async fn ready(State(s): State<Shared>) -> Response {
    match health::readiness(&s.status.health()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Serves until `cancel` fires. Binds first, so a taken port is a start-up error. Bounded: see
/// `server` for the connection limit, timeouts and size limits.
pub async fn serve(
    listen: SocketAddr,
    status: Status,
    registry: Arc<Registry>,
    metrics: WebMetrics,
    cancel: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), WebError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| WebError {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!(url = %format!("http://{addr}/"), "status page");
    let app = router(status, registry);
    let handle = tokio::spawn(server::run(listener, app, metrics, cancel));
    Ok((handle, addr))
}
