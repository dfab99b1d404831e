//! The local web interface: the technicians' status page, `/api/status` (whole, or only what
//! changed: `page`), `/api/trends` and `/api/alarms` (`history`), `/metrics`, probes.
//!
//! Owns HTTP (axum routes; the bounded accept loop is `server`), the page's embedded assets,
//! the security headers, ETags and the bytes served by route. Read-only: it reads the
//! components' status through [`Status`], follows the tap for its own trends and alarm log
//! (`trend`), and encodes the metrics registry, never the spool or the buses, so a busy page
//! cannot slow the data path. Must never show keys, passwords or private key material (no
//! status holds any).

mod api;
mod history;
pub mod metrics;
mod page;
mod server;
#[cfg(test)]
mod testkit;
mod trend;

pub use server::{WebMetrics, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_LIFETIME, MAX_PER_CLIENT};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::HttpBody;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::health;
use crate::metrics::{labels, Registry};
use crate::spool::Stored;
use crate::status::Status;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const I18N_JS: &str = include_str!("assets/i18n.js");
const SPARK_JS: &str = include_str!("assets/spark.js");
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
    changes: Arc<page::Changes>,
    book: Arc<Mutex<trend::Book>>,
    metrics: WebMetrics,
}

fn router(shared: Shared) -> Router {
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
            "/i18n.js",
            get(|| async { asset(I18N_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/spark.js",
            get(|| async { asset(SPARK_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/api/status", get(api_status))
        .route("/api/trends", get(api_trends))
        .route("/api/alarms", get(api_alarms))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::map_response(secure))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_bytes,
        ))
        .with_state(shared)
}

/// The route label of a path: a fixed set, so the metric stays bounded.
fn route_of(path: &str) -> &'static str {
    match path {
        "/" | "/app.js" | "/i18n.js" | "/spark.js" | "/style.css" => "page",
        "/api/status" => "status",
        "/api/trends" => "trends",
        "/api/alarms" => "alarms",
        "/metrics" => "metrics",
        "/healthz" | "/readyz" => "probes",
        _ => "other",
    }
}

/// What hyper adds to a response head we build: the status line, `date` (37 bytes),
/// `content-length` (up to 25) and the blank line.
const HEAD_ADDED: usize = 17 + 37 + 25 + 2;

/// Counts each response's bytes by route: its head as built (status line, headers, and an
/// estimate for the date and length headers hyper adds) and its body.
async fn count_bytes(
    State(s): State<Shared>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_of(req.uri().path());
    let res = next.run(req).await;
    let head: usize = res
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + HEAD_ADDED;
    let body = res.body().size_hint().exact().unwrap_or(0);
    s.metrics
        .bytes
        .get_or_create(&labels(&[("route", route)]))
        .inc_by(head as u64 + body);
    res
}

/// Answers 304 when the client holds version `tag` already, else `body` tagged with it.
fn tagged(headers: &HeaderMap, tag: &str, body: impl FnOnce() -> Response) -> Response {
    let etag = format!("\"{tag}\"");
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let mut res = if held == Some(etag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
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

#[derive(serde::Deserialize)]
struct Since {
    since: Option<String>,
}

/// The whole status as JSON; with `?since=` the page's form, only what changed since then.
async fn api_status(State(s): State<Shared>, Query(q): Query<Since>) -> Response {
    match q.since {
        None => axum::Json(api::status(&s.status)).into_response(),
        Some(v) => axum::Json(s.changes.page(&s.status, Some(&v))).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct TrendQuery {
    device: String,
    since: Option<i64>,
}

/// One device's trends from bucket `since` on; 304 while they are as the page holds them.
async fn api_trends(
    State(s): State<Shared>,
    Query(q): Query<TrendQuery>,
    headers: HeaderMap,
) -> Response {
    let book = trend::lock(&s.book);
    let Some(t) = history::trends(&book, &q.device, q.since) else {
        return (StatusCode::NOT_FOUND, "no trend for that device yet\n").into_response();
    };
    let tag = format!("{}-{}", s.status.identity.started_ms, t.version);
    tagged(&headers, &tag, || axum::Json(&t).into_response())
}

#[derive(serde::Deserialize)]
struct LogQuery {
    since: Option<u64>,
}

/// The alarm log after `since`; 304 while nothing new was logged.
async fn api_alarms(
    State(s): State<Shared>,
    Query(q): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    let book = trend::lock(&s.book);
    let a = history::alarms(&book, q.since);
    // The tag changes with a new event and with a new count of missed ones.
    tagged(&headers, &format!("{}-{}", a.newest, a.lagged), || {
        axum::Json(&a).into_response()
    })
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
/// `server` for the connection limit, timeouts and size limits. `tap` feeds the trends and the
/// alarm log (subscribe it before the first poll, so the log misses nothing).
pub async fn serve(
    listen: SocketAddr,
    status: Status,
    registry: Arc<Registry>,
    metrics: WebMetrics,
    tap: broadcast::Receiver<Arc<Stored>>,
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
    let book = Arc::new(Mutex::new(trend::Book::default()));
    tokio::spawn(trend::follow(
        book.clone(),
        tap,
        metrics.lagged.clone(),
        cancel.clone(),
    ));
    let app = router(Shared {
        status,
        registry,
        changes: Arc::default(),
        book,
        metrics: metrics.clone(),
    });
    let handle = tokio::spawn(server::run(listener, app, metrics, cancel));
    Ok((handle, addr))
}
