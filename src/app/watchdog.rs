//! systemd integration: `READY=1` once every component runs, `STOPPING=1` on the way out, and
//! the watchdog, fed only while the gateway makes progress.
//!
//! Owns talking to systemd. The verdict itself is [`crate::health::watchdog`] (pure,
//! unit-tested there): every bus completes polls and a connected uplink with records waiting
//! gets PUBACKs. Must never feed the watchdog from a plain timer.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health;
use crate::status::Status;

/// Tells systemd we are ready, then feeds its watchdog (if `WatchdogSec=` is set) at half its
/// interval for as long as the verdict is good. Without `NOTIFY_SOCKET` this does nothing.
pub async fn run(status: Status, cancel: CancellationToken) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let Some(interval) = sd_notify::watchdog_enabled() else {
        cancel.cancelled().await;
        return;
    };
    tracing::info!(interval = ?interval, "systemd watchdog enabled: fed only while polling and the uplink make progress");
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    let mut stuck = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match health::watchdog(&status.health()) {
            Ok(()) => {
                if stuck {
                    tracing::info!("progress again: feeding the watchdog");
                    stuck = false;
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            Err(why) => {
                if !stuck {
                    tracing::error!(%why, "the gateway is stuck: no longer feeding the systemd watchdog, which will restart it");
                    stuck = true;
                }
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}
