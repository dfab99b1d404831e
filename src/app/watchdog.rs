//! systemd integration: `READY=1` once every component runs, `STOPPING=1` on the way out, and
//! the watchdog, fed only while the gateway makes progress.
//!
//! Owns the verdict ([`verdict`], pure, unit-tested) of whether the gateway is healthy: every
//! bus completed a poll recently (a dead detector still completes polls, with timeouts, so only
//! a hung bus task fails this), and a connected uplink with records waiting gets PUBACKs. A
//! broker that is down is not a fault of ours: restarting would not help, so it does not stop
//! the watchdog. Must never feed the watchdog from a plain timer.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::record::now_ms;
use crate::status::Board;

/// What the verdict looks at, copied from the status board.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now_ms: i64,
    pub started_ms: i64,
    /// Per bus: its name, the latest completed poll of any of its devices, its slowest poll_ms.
    pub buses: Vec<(String, Option<i64>, u64)>,
    pub uplink_connected_since_ms: Option<i64>,
    pub last_puback_ms: Option<i64>,
    pub backlog: u64,
}

/// Grace beyond three poll periods before a bus counts as hung (covers timeouts and retries).
const BUS_GRACE_MS: i64 = 30_000;
/// How long a connected uplink with records waiting may go without a PUBACK.
const UPLINK_GRACE_MS: i64 = 120_000;

/// `Ok` while the gateway makes progress; `Err` says what is stuck.
pub fn verdict(s: &Snapshot) -> Result<(), String> {
    // A bus whose devices are all offline (a cut cable) is polled only at the breaker's probe
    // interval: that is not a hung bus, and a restart would not mend the cable.
    let longest_probe = crate::poll::breaker::LONGEST_SILENCE.as_millis() as i64;
    for (name, last, slowest) in &s.buses {
        let allowed = (3 * (*slowest as i64)).max(longest_probe) + BUS_GRACE_MS;
        let since = s.now_ms - last.unwrap_or(s.started_ms);
        if since > allowed {
            return Err(format!(
                "bus {name} completed no poll for {} s",
                since / 1000
            ));
        }
    }
    if let Some(since) = s.uplink_connected_since_ms {
        let last = s.last_puback_ms.unwrap_or(since).max(since);
        if s.backlog > 0 && s.now_ms - last > UPLINK_GRACE_MS {
            return Err(format!(
                "the uplink is connected but nothing was acknowledged for {} s",
                (s.now_ms - last) / 1000
            ));
        }
    }
    Ok(())
}

pub fn snapshot(board: &Board, started_ms: i64) -> Snapshot {
    let devices = board.devices();
    let buses = board
        .buses()
        .into_iter()
        .filter_map(|b| {
            let on_bus: Vec<_> = devices.iter().filter(|d| d.bus == b.name).collect();
            (!on_bus.is_empty()).then(|| {
                let last = on_bus.iter().filter_map(|d| d.last_poll_ms).max();
                let slowest = on_bus.iter().map(|d| d.poll_ms).max().unwrap_or(0);
                (b.name, last, slowest)
            })
        })
        .collect();
    let up = board.uplink();
    let sp = board.spool();
    Snapshot {
        now_ms: now_ms(),
        started_ms,
        buses,
        uplink_connected_since_ms: up.connected_since_ms.filter(|_| up.connected_to.is_some()),
        last_puback_ms: up.last_puback_ms,
        backlog: sp.readings + sp.alarms,
    }
}

/// Tells systemd we are ready, then feeds its watchdog (if `WatchdogSec=` is set) at half its
/// interval for as long as the verdict is good. Without `NOTIFY_SOCKET` this does nothing.
pub async fn run(board: Arc<Board>, cancel: CancellationToken) {
    let started_ms = now_ms();
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
        match verdict(&snapshot(&board, started_ms)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Snapshot {
        Snapshot {
            now_ms: 1_000_000,
            started_ms: 0,
            buses: vec![
                ("rs485-1".into(), Some(999_000), 1000),
                ("tcp".into(), Some(990_000), 5000),
            ],
            uplink_connected_since_ms: Some(500_000),
            last_puback_ms: Some(999_500),
            backlog: 300,
        }
    }

    #[test]
    fn progress_on_every_bus_and_the_uplink_feeds_the_watchdog() {
        assert_eq!(verdict(&healthy()), Ok(()));
    }

    #[test]
    fn a_hung_bus_stops_the_watchdog() {
        let mut s = healthy();
        s.buses[0].1 = Some(1_000_000 - 72_000 - BUS_GRACE_MS - 1);
        assert_eq!(
            verdict(&s).unwrap_err(),
            "bus rs485-1 completed no poll for 102 s"
        );
        // every device on it offline (a cut cable): probes every <= 72 s are progress
        s.buses[0].1 = Some(1_000_000 - 72_000);
        assert_eq!(verdict(&s), Ok(()));
        // a bus that never completed a poll since start, long after start
        let mut s = healthy();
        s.buses[1].1 = None;
        assert!(verdict(&s).unwrap_err().starts_with("bus tcp"));
        // and a bus with a long poll interval gets three of them
        let mut s = healthy();
        s.buses[1].2 = 60_000;
        s.buses[1].1 = Some(1_000_000 - 3 * 60_000);
        assert_eq!(verdict(&s), Ok(()));
    }

    #[test]
    fn a_stuck_uplink_stops_the_watchdog_but_a_broker_outage_does_not() {
        let mut s = healthy();
        s.last_puback_ms = Some(1_000_000 - UPLINK_GRACE_MS - 1);
        assert!(verdict(&s)
            .unwrap_err()
            .starts_with("the uplink is connected but nothing was acknowledged"));
        // nothing to send: no PUBACK expected
        s.backlog = 0;
        assert_eq!(verdict(&s), Ok(()));
        // the broker is down: reconnecting is the uplink's job, a restart would not help
        s.backlog = 300;
        s.uplink_connected_since_ms = None;
        assert_eq!(verdict(&s), Ok(()));
        // just connected, PUBACK not due yet
        let mut s = healthy();
        s.uplink_connected_since_ms = Some(999_000);
        s.last_puback_ms = Some(100);
        assert_eq!(verdict(&s), Ok(()));
    }
}
