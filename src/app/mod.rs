//! Wiring: builds every component from a [`Config`], spawns them, and stops them in order.
//!
//! Owns the gateway's task tree and the shutdown order: pollers stop first, the appender
//! commits what they produced and ends when its input closes, then the uplink gets a grace
//! period to collect acknowledgements. It also assembles the one metrics registry (each
//! component registers its own metrics) and the read-only [`Status`] view. Must never hold data
//! itself. (The embedded brokers run on threads of their own, and the status page's server
//! spawns its connection tasks: see `broker` and `web`.)

pub mod check;
pub mod demo;
pub mod pki;
pub mod watchdog;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Registry;
use crate::poll::status::PollMetrics;
use crate::poll::BusPoller;
use crate::spool::{self, Spool, Stored};
use crate::status::{Identity, Status};
use crate::uplink::Uplink;

/// Polls waiting for capture; pollers wait when it is full (backpressure, nothing dropped).
const POLL_QUEUE: usize = 1024;

/// A started gateway.
pub struct Running {
    /// Read-only handles on every component's status.
    pub status: Status,
    /// Every component's metrics, as `/metrics` serves them.
    pub registry: Arc<Registry>,
    pub spool: Arc<Spool>,
    /// Every committed record, numbered, for live consumers (best effort: a slow one lags).
    pub tap: broadcast::Sender<Arc<Stored>>,
    poll_cancel: CancellationToken,
    uplink_cancel: CancellationToken,
    pollers: JoinSet<()>,
    appender: JoinHandle<()>,
    uplink: Option<JoinHandle<()>>,
    web_cancel: CancellationToken,
    web: Option<JoinHandle<()>>,
    /// Where the status page listens, if configured.
    pub web_addr: Option<std::net::SocketAddr>,
}

/// Builds and spawns every component of `config`.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let mut registry = Registry::with_prefix("plantgate");
    let identity = Identity::new(config);
    crate::web::metrics::register_build_info(&mut registry, identity.started);
    let spool = {
        let (dir, settings) = (config.gateway.data_dir.clone(), config.spool.clone());
        tokio::task::spawn_blocking(move || open_spool(&dir, &settings))
            .await?
            .context("cannot open the spool")?
    };
    let spool = Arc::new(spool);
    spool.register_metrics(&mut registry);
    // The uplink's TLS material is checked before anything polls, so a bad certificate is a
    // clear start-up error rather than a retry loop.
    let uplink = match &config.upstream {
        Some(up) => Some(
            Uplink::build(
                up.clone(),
                config.gateway.id.clone(),
                config.source.sha256.clone(),
                spool.clone(),
            )
            .context("cannot set up the uplink's TLS")?,
        ),
        None => None,
    };
    let uplink_status = match &uplink {
        Some(u) => {
            u.register_metrics(&mut registry);
            u.status_handle()
        }
        None => Arc::default(),
    };

    let (tx, rx) = mpsc::channel(POLL_QUEUE);
    let (tap, _) = broadcast::channel(256);
    let appender = tokio::spawn(spool::run_appender(spool.clone(), rx, tap.clone()));

    let poll_cancel = CancellationToken::new();
    let mut pollers = JoinSet::new();
    let poll_metrics = PollMetrics::default();
    let mut bus_status = Vec::new();
    for (b, bus) in config.buses.iter().enumerate() {
        let devices: Vec<_> = config
            .devices
            .iter()
            .filter(|d| d.bus == b)
            .cloned()
            .collect();
        if devices.is_empty() {
            tracing::warn!(bus = %bus.name, "no device is configured on this bus; it is not polled");
            continue;
        }
        let poller = BusPoller::new(bus.clone(), devices, tx.clone(), poll_metrics.clone());
        bus_status.push(poller.status());
        pollers.spawn(poller.run(poll_cancel.clone()));
    }
    drop(tx);
    poll_metrics.register(&mut registry, bus_status.clone());
    let status = Status::new(identity, bus_status, spool.status_handle(), uplink_status);
    let registry = Arc::new(registry);

    if let Some(lb) = &config.local_broker {
        let (listen, prefix) = (lb.listen, lb.topic_prefix.clone());
        let local =
            tokio::task::spawn_blocking(move || crate::broker::LocalBroker::start(listen, prefix))
                .await?
                .context("cannot start the local MQTT broker")?;
        tokio::spawn(local.mirror(config.gateway.id.clone(), tap.subscribe()));
    }
    let web_cancel = CancellationToken::new();
    let (web, web_addr) = match &config.web {
        Some(w) => {
            let (handle, addr) = crate::web::serve(
                w.listen,
                status.clone(),
                registry.clone(),
                web_cancel.clone(),
            )
            .await?;
            (Some(handle), Some(addr))
        }
        None => (None, None),
    };

    let uplink_cancel = CancellationToken::new();
    let uplink = uplink.map(|u| tokio::spawn(u.run(uplink_cancel.clone())));
    if uplink.is_none() {
        tracing::warn!("no [upstream] configured: records are kept in the spool and not forwarded");
    }
    Ok(Running {
        status,
        registry,
        spool,
        tap,
        poll_cancel,
        uplink_cancel,
        pollers,
        appender,
        uplink,
        web_cancel,
        web,
        web_addr,
    })
}

impl Running {
    /// Stops in order: pollers, then the spool's task (ends when its input closes), then the
    /// uplink (a grace period for acknowledgements), then the spool's clean close.
    pub async fn shutdown(mut self) {
        self.poll_cancel.cancel();
        while self.pollers.join_next().await.is_some() {}
        let _ = self.appender.await;
        self.uplink_cancel.cancel();
        if let Some(u) = self.uplink {
            let _ = u.await;
        }
        // What the broker did not acknowledge is committed now, so the next start owes the
        // platform no gap.
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the spool could not be closed cleanly: the next start announces the records it cannot vouch for as a gap")
            }
            Err(e) => tracing::error!(error = %e, "spool close task failed"),
        }
        self.web_cancel.cancel();
        if let Some(w) = self.web {
            let _ = w.await;
        }
        tracing::info!("stopped");
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `plantgate run`: the gateway until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(gateway = %config.gateway.id, config = %config.source.path.display(), sha256 = %config.source.sha256,
        buses = config.buses.len(), devices = config.devices.len(), "plantgate starting");
    let running = start(&config).await?;
    let watchdog_cancel = CancellationToken::new();
    let watchdog = tokio::spawn(watchdog::run(
        running.status.clone(),
        watchdog_cancel.clone(),
    ));
    stop_signal().await;
    tracing::info!("stop requested");
    watchdog_cancel.cancel();
    let _ = watchdog.await;
    running.shutdown().await;
    Ok(())
}

/// Opens the spool through a check in a child process when this process is the `plantgate`
/// binary (or `PLANTGATE_EXE` names it), so that no damaged file can stop the gateway; inside
/// another program (tests that start the gateway in-process) directly.
fn open_spool(
    dir: &std::path::Path,
    settings: &crate::config::SpoolSettings,
) -> Result<Spool, crate::spool::SpoolError> {
    let exe = std::env::var_os("PLANTGATE_EXE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .filter(|p| p.file_name().is_some_and(|n| n == "plantgate"));
    match exe {
        Some(exe) => crate::spool::salvage::open_guarded(dir, settings, &exe),
        None => Spool::open(dir, settings),
    }
}
