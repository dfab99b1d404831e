//! Wiring: builds every component from a [`Config`], spawns them, and stops them in order.
//!
//! Owns the gateway's task tree and the shutdown order: pollers stop first, the appender
//! commits what they produced and ends when its input closes, then the uplink gets a grace
//! period to collect acknowledgements. It also assembles the one metrics registry (each
//! component registers its own metrics) and the read-only [`Status`] view. Must never hold data
//! itself. (The local broker and the status page's server spawn their own connection tasks:
//! see `broker::local` and `web`.)

pub mod check;
pub mod demo;
pub mod pki;
pub mod probe;
pub mod spool_cmd;
pub mod watchdog;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Registry;
use crate::poll::metrics::PollMetrics;
use crate::poll::BusPoller;
use crate::spool::{self, Spool, Stored};
use crate::status::{Identity, Status};
use crate::uplink::Uplink;

/// A start-up failure the configuration caused (a `data_dir` that is a file, a port already
/// taken): a person must change the file or the machine, so `plantgate run` exits 78 (EX_CONFIG)
/// and systemd does not restart into the same failure. Shown as the key to look at, then the
/// cause.
#[derive(Debug, thiserror::Error)]
#[error("{key}")]
pub struct ConfigCaused {
    /// The configuration key to look at, e.g. `web.listen`.
    pub key: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl ConfigCaused {
    fn new(key: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConfigCaused {
            key,
            source: Box::new(source),
        }
    }
}

/// Polls waiting for capture; pollers wait when it is full (backpressure, nothing dropped).
const POLL_QUEUE: usize = 1024;

/// A started gateway.
pub struct Running {
    /// Read-only handles on every component's status.
    pub status: Status,
    /// Every component's metrics, as `/metrics` serves them.
    pub registry: Arc<Registry>,
    pub spool: Arc<Spool>,
    /// Every captured record, numbered, for live consumers (best effort: a slow one lags).
    pub tap: broadcast::Sender<Arc<Stored>>,
    /// A receiver subscribed before the first poll, so whoever takes it misses nothing.
    first_tap: Option<broadcast::Receiver<Arc<Stored>>>,
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
    let spool = open_spool(config, &mut registry).await?;
    // The uplink's TLS material is checked before anything polls, so a bad certificate is a
    // clear start-up error rather than a retry loop.
    let uplink = build_uplink(config, &spool, &mut registry)?;
    let uplink_status = uplink
        .as_ref()
        .map_or_else(Arc::default, |u| u.status_handle());

    let (tx, rx) = mpsc::channel(POLL_QUEUE);
    let (tap, first_tap) = broadcast::channel(1024);
    // The page's trends and alarm log follow the tap from before the first poll.
    let web_tap = tap.subscribe();
    let appender = tokio::spawn(spool::run_appender(spool.clone(), rx, tap.clone()));
    let poll_cancel = CancellationToken::new();
    let (pollers, bus_status) = spawn_pollers(config, tx, &poll_cancel, &mut registry);
    let status = Status::new(identity, bus_status, spool.status_handle(), uplink_status);

    // The LAN side (status page, local broker) stops last, with one token.
    let web_cancel = CancellationToken::new();
    let web_metrics = crate::web::WebMetrics::register(&mut registry);
    start_local_broker(config, &mut registry, &tap, &web_cancel).await?;
    let registry = Arc::new(registry);
    let (web, web_addr) = match &config.web {
        Some(w) => {
            let (handle, addr) = crate::web::serve(
                w.listen,
                status.clone(),
                registry.clone(),
                web_metrics,
                web_tap,
                web_cancel.clone(),
            )
            .await
            .map_err(|e| ConfigCaused::new("web.listen", e))?;
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
        first_tap: Some(first_tap),
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
    /// The tap as it was before the first poll (once; later callers subscribe to `tap`).
    pub fn take_first_tap(&mut self) -> Option<broadcast::Receiver<Arc<Stored>>> {
        self.first_tap.take()
    }

    /// Stops in order: pollers, then the spool's task (ends when its input closes), then the
    /// uplink (a grace period for acknowledgements), then the spool's clean close.
    pub async fn shutdown(mut self) {
        // The clean close gets what is left of the stop's time, less a second to end.
        let close_by =
            tokio::time::Instant::now() + STOP_WITHIN - std::time::Duration::from_secs(1);
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
        let within = close_by
            .saturating_duration_since(tokio::time::Instant::now())
            .max(std::time::Duration::from_secs(1));
        match tokio::task::spawn_blocking(move || spool.close_within(within)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let sp = self.spool.status();
                tracing::error!(error = %e, readings_not_stored = sp.head_readings, "the spool could not be closed cleanly: the broker has what it acknowledged, and the next start announces the records it cannot vouch for as a gap")
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

/// Opens the spool (off the runtime) and registers its metrics. A data directory that cannot
/// be used is the configuration's fault.
async fn open_spool(config: &Config, registry: &mut Registry) -> anyhow::Result<Arc<Spool>> {
    let (dir, settings) = (config.gateway.data_dir.clone(), config.spool.clone());
    let spool =
        match tokio::task::spawn_blocking(move || open_guarded_spool(&dir, &settings)).await? {
            Ok(s) => Arc::new(s),
            Err(e @ spool::SpoolError::Dir { .. }) => {
                return Err(ConfigCaused::new("gateway.data_dir", e).into())
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot open the spool")),
        };
    spool.register_metrics(registry);
    Ok(spool)
}

/// The uplink, with its TLS material loaded and its metrics registered, if one is configured.
fn build_uplink(
    config: &Config,
    spool: &Arc<Spool>,
    registry: &mut Registry,
) -> anyhow::Result<Option<Uplink>> {
    let Some(up) = &config.upstream else {
        return Ok(None);
    };
    let uplink = Uplink::build(
        up.clone(),
        config.gateway.id.clone(),
        config.source.sha256.clone(),
        spool.clone(),
    )
    .context("cannot set up the uplink's TLS")?;
    uplink.register_metrics(registry);
    Ok(Some(uplink))
}

/// One poller per bus that has devices, feeding `tx`; returns them and their status.
fn spawn_pollers(
    config: &Config,
    tx: mpsc::Sender<crate::record::DevicePoll>,
    cancel: &CancellationToken,
    registry: &mut Registry,
) -> (JoinSet<()>, Vec<Arc<crate::poll::status::BusStatus>>) {
    let mut pollers = JoinSet::new();
    let metrics = PollMetrics::default();
    let mut status = Vec::new();
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
        let poller = BusPoller::new(bus.clone(), devices, tx.clone(), metrics.clone());
        status.push(poller.status());
        pollers.spawn(poller.run(cancel.clone()));
    }
    metrics.register(registry, status.clone());
    (pollers, status)
}

/// The local broker, if configured, fed from the tap until `cancel`. Its own listener binds the
/// port: a port that is taken is a configuration problem (exit 78).
async fn start_local_broker(
    config: &Config,
    registry: &mut Registry,
    tap: &broadcast::Sender<Arc<Stored>>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(lb) = &config.local_broker else {
        return Ok(());
    };
    let metrics = crate::broker::LocalMetrics::register(registry);
    let local = crate::broker::LocalBroker::start(
        lb.listen,
        lb.topic_prefix.clone(),
        lb.login.clone(),
        metrics,
        cancel.clone(),
    )
    .await
    .map_err(|e| match e {
        crate::broker::BrokerError::Bind(..) => {
            anyhow::Error::new(ConfigCaused::new("local_broker.listen", e))
        }
        e => anyhow::Error::new(e).context("cannot start the local MQTT broker"),
    })?;
    tokio::spawn(local.mirror(config.gateway.id.clone(), tap.subscribe()));
    Ok(())
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

/// A stop ends within this, whatever the disk does (systemd's `TimeoutStopSec` is 20 s).
pub const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(8);

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
    let status = running.status.clone();
    if tokio::time::timeout(STOP_WITHIN, running.shutdown())
        .await
        .is_err()
    {
        // The disk hangs (a frozen filesystem): what it has not taken is lost with the process,
        // and the next start announces it as a gap. systemd expects us gone.
        let sp = status.spool();
        tracing::error!(
            within = ?STOP_WITHIN,
            readings_not_stored = sp.head_readings,
            "stopping without a clean close: the spool's disk did not take the last records; the broker has those it acknowledged, and the next start announces the rest as a gap"
        );
    }
    Ok(())
}

/// Opens the spool through a check in a child process when this process is the `plantgate`
/// binary (or `PLANTGATE_EXE` names it), so that no damaged file can stop the gateway; inside
/// another program (tests that start the gateway in-process) directly.
fn open_guarded_spool(
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
