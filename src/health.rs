//! Health: the one place that decides whether a device is fresh, whether the gateway is ready,
//! and whether the systemd watchdog may be fed.
//!
//! Owns the staleness rule ([`allowed_silence`]) and the three verdicts built on it. Pure: takes
//! copies of the components' status and the time, so every case (a cut cable, a slow bus, a
//! broker outage, a stuck uplink) is a unit test. Must never read a clock, a lock or a socket
//! itself.

use std::time::Duration;

use crate::poll::breaker::LONGEST_SILENCE;
use crate::poll::status::{BusSnapshot, DeviceStatus};
use crate::record::Quality;
use crate::spool::status::SpoolStatus;
use crate::uplink::status::UplinkStatus;

/// Slack beyond the longest expected silence, for timeouts and retries inside a poll.
pub const GRACE: Duration = Duration::from_secs(30);

/// Health of a device, as the page colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not polled yet.
    Unknown,
    Ok,
    /// Some points fail.
    Degraded,
    /// Nothing read in the last polls (the poller's breaker said so).
    Offline,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Offline => "offline",
        }
    }
}

/// A device's health from its last poll. The breaker in the poller decides offline (its samples
/// then carry `offline`); this only reads that verdict.
pub fn device(d: &DeviceStatus) -> Health {
    let qualities = || {
        d.points
            .iter()
            .filter_map(|p| p.sample.as_ref())
            .map(|s| s.quality)
    };
    if d.polls == 0 {
        Health::Unknown
    } else if qualities().any(|q| q == Quality::Offline) {
        Health::Offline
    } else if qualities().any(|q| q != Quality::Good) {
        Health::Degraded
    } else {
        Health::Ok
    }
}

/// The staleness rule: how long something polled every `poll_ms` may go without a completed
/// poll before it counts as stuck. Three periods, but never less than an offline device's
/// longest probe interval (a cut cable is a finding, not a hung gateway), plus [`GRACE`].
pub fn allowed_silence(poll_ms: u64) -> Duration {
    Duration::from_millis(poll_ms.saturating_mul(3)).max(LONGEST_SILENCE) + GRACE
}

/// Milliseconds since `last` (or since start, if never), when that exceeds the rule.
fn overdue(poll_ms: u64, last_ms: Option<i64>, now_ms: i64, started_ms: i64) -> Option<i64> {
    let since = now_ms - last_ms.unwrap_or(started_ms);
    (since > allowed_silence(poll_ms).as_millis() as i64).then_some(since)
}

/// What the verdicts look at: copies of every component's status and the time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now_ms: i64,
    pub started_ms: i64,
    /// How long a connected uplink with records waiting may go without a PUBACK
    /// (`[upstream] ack_stall_s`).
    pub ack_stall: Duration,
    pub buses: Vec<BusSnapshot>,
    pub spool: SpoolStatus,
    pub uplink: UplinkStatus,
}

/// Ready when every device completed a poll recently (whatever its outcome: a dead detector is
/// a finding on the page, not a gateway fault) and the spool is open.
pub fn readiness(s: &Snapshot) -> Result<(), String> {
    for d in s.buses.iter().flat_map(|b| &b.devices) {
        if let Some(since) = overdue(d.poll_ms, d.last_poll_ms, s.now_ms, s.started_ms) {
            return Err(match d.last_poll_ms {
                None => format!("device {} was never polled", d.name),
                Some(_) => format!("device {} was last polled {} s ago", d.name, since / 1000),
            });
        }
    }
    if let Some(t) = s.spool.disk_trouble(s.now_ms) {
        return Err(t.reason);
    }
    if !s.spool.open {
        return Err(match &s.spool.last_error {
            Some(e) => format!("the spool is not open: {e}"),
            None => "the spool is not open".into(),
        });
    }
    Ok(())
}

/// Whether the watchdog may be fed: every bus completes polls (a dead detector still completes
/// polls, with timeouts, so only a hung bus task fails this), and a connected uplink with
/// records waiting gets PUBACKs. A broker that is down is not our fault: a restart would not
/// help, so it does not stop the watchdog.
pub fn watchdog(s: &Snapshot) -> Result<(), String> {
    for b in s.buses.iter().filter(|b| !b.devices.is_empty()) {
        let last = b.devices.iter().filter_map(|d| d.last_poll_ms).max();
        let slowest = b.devices.iter().map(|d| d.poll_ms).max().unwrap_or(0);
        if let Some(since) = overdue(slowest, last, s.now_ms, s.started_ms) {
            return Err(format!(
                "bus {} completed no poll for {} s",
                b.name,
                since / 1000
            ));
        }
    }
    let up = &s.uplink;
    if let (Some(since), true) = (up.connected_since_ms, up.connected_to.is_some()) {
        let last = up.last_puback_ms.unwrap_or(since).max(since);
        let backlog = s.spool.readings + s.spool.alarms;
        let silent = Duration::from_millis(u64::try_from(s.now_ms - last).unwrap_or(0));
        if backlog > 0 && silent > s.ack_stall {
            return Err(format!(
                "the uplink is connected but nothing was acknowledged for {} s",
                (s.now_ms - last) / 1000
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn dev(name: &str, poll_ms: u64, last: Option<i64>) -> DeviceStatus {
        DeviceStatus {
            name: name.into(),
            poll_ms,
            polls: u64::from(last.is_some()),
            last_poll_ms: last,
            ..Default::default()
        }
    }

    fn healthy() -> Snapshot {
        Snapshot {
            now_ms: NOW,
            started_ms: 0,
            ack_stall: Duration::from_secs(120),
            buses: vec![
                BusSnapshot {
                    name: "rs485-1".into(),
                    devices: vec![dev("gas-1", 1000, Some(NOW - 1000))],
                    ..Default::default()
                },
                BusSnapshot {
                    name: "tcp".into(),
                    devices: vec![dev("tank-1", 5000, Some(NOW - 10_000))],
                    ..Default::default()
                },
            ],
            spool: SpoolStatus {
                open: true,
                readings: 300,
                ..Default::default()
            },
            uplink: UplinkStatus {
                connected_to: Some("b:8883".into()),
                connected_since_ms: Some(500_000),
                last_puback_ms: Some(NOW - 500),
                ..Default::default()
            },
        }
    }

    /// Past the rule by `extra` ms for a device polled every `poll_ms`.
    fn silent(poll_ms: u64, extra: i64) -> Option<i64> {
        Some(NOW - allowed_silence(poll_ms).as_millis() as i64 - extra)
    }

    #[test]
    fn a_healthy_gateway_is_ready_and_feeds_the_watchdog() {
        assert_eq!(readiness(&healthy()), Ok(()));
        assert_eq!(watchdog(&healthy()), Ok(()));
    }

    #[test]
    fn one_rule_allows_three_polls_or_the_longest_probe_plus_grace() {
        assert_eq!(allowed_silence(1000), LONGEST_SILENCE + GRACE);
        assert_eq!(allowed_silence(60_000), Duration::from_secs(180) + GRACE);
    }

    #[test]
    fn a_cut_cable_probed_at_the_longest_interval_is_neither_unready_nor_hung() {
        let mut s = healthy();
        // every device offline: the breaker probes it every <= 72 s
        s.buses[0].devices[0].last_poll_ms = Some(NOW - LONGEST_SILENCE.as_millis() as i64);
        assert_eq!(readiness(&s), Ok(()));
        assert_eq!(watchdog(&s), Ok(()));
        // ...but a bus silent past the rule is hung, and its device not ready
        s.buses[0].devices[0].last_poll_ms = silent(1000, 1);
        assert_eq!(
            watchdog(&s).unwrap_err(),
            "bus rs485-1 completed no poll for 102 s"
        );
        assert_eq!(
            readiness(&s).unwrap_err(),
            "device gas-1 was last polled 102 s ago"
        );
    }

    #[test]
    fn a_slow_bus_gets_three_of_its_own_poll_periods() {
        let mut s = healthy();
        s.buses[1].devices[0].poll_ms = 60_000;
        s.buses[1].devices[0].last_poll_ms = silent(60_000, -1);
        assert_eq!(watchdog(&s), Ok(()));
        assert_eq!(readiness(&s), Ok(()));
        s.buses[1].devices[0].last_poll_ms = silent(60_000, 1);
        assert!(watchdog(&s).unwrap_err().starts_with("bus tcp"));
    }

    #[test]
    fn a_device_never_polled_long_after_start_fails_both() {
        let mut s = healthy();
        s.buses[1].devices[0].last_poll_ms = None;
        assert_eq!(readiness(&s).unwrap_err(), "device tank-1 was never polled");
        assert!(watchdog(&s).unwrap_err().starts_with("bus tcp"));
        // just after start it is fine
        s.started_ms = NOW - 1000;
        assert_eq!(readiness(&s), Ok(()));
    }

    #[test]
    fn a_broker_outage_is_ready_and_feeds_the_watchdog_but_a_stuck_uplink_does_not() {
        let mut s = healthy();
        s.uplink.last_puback_ms = Some(NOW - 120_000);
        assert_eq!(watchdog(&s), Ok(()));
        s.uplink.last_puback_ms = Some(NOW - 120_001);
        assert!(watchdog(&s)
            .unwrap_err()
            .starts_with("the uplink is connected but nothing was acknowledged"));
        assert_eq!(readiness(&s), Ok(()));
        // nothing to send: no PUBACK expected
        s.spool.readings = 0;
        assert_eq!(watchdog(&s), Ok(()));
        // the broker is down: reconnecting is the uplink's job
        s.spool.readings = 300;
        s.uplink.connected_to = None;
        assert_eq!(watchdog(&s), Ok(()));
        // just connected, no PUBACK due yet
        let mut s = healthy();
        s.uplink.connected_since_ms = Some(NOW - 1000);
        s.uplink.last_puback_ms = Some(100);
        assert_eq!(watchdog(&s), Ok(()));
    }

    #[test]
    fn a_spool_that_is_not_open_is_not_ready() {
        let mut s = healthy();
        s.spool.open = false;
        assert_eq!(readiness(&s).unwrap_err(), "the spool is not open");
    }

    #[test]
    fn a_disk_that_hangs_or_refuses_for_seconds_is_not_ready_but_feeds_the_watchdog() {
        use crate::spool::status::TROUBLE_AFTER_MS;
        // A slow fsync is not trouble; one that has not returned for 5 s is.
        let mut s = healthy();
        s.spool.write_started_ms = Some(NOW - TROUBLE_AFTER_MS + 1);
        assert_eq!(readiness(&s), Ok(()));
        s.spool.write_started_ms = Some(NOW - 7_000);
        let why = readiness(&s).unwrap_err();
        assert!(why.contains("not finished for 7 s"), "{why}");
        // A restart cannot mend a frozen or read-only filesystem: the watchdog stays fed.
        assert_eq!(watchdog(&s), Ok(()));

        let mut s = healthy();
        s.spool.failing_since_ms = Some(NOW - 1000);
        s.spool.last_error = Some("Read-only file system (os error 30)".into());
        assert_eq!(
            readiness(&s),
            Ok(()),
            "one failed commit, retried, is not trouble yet"
        );
        s.spool.failing_since_ms = Some(NOW - 12_000);
        let why = readiness(&s).unwrap_err();
        assert!(
            why.contains("failed for 12 s") && why.contains("Read-only"),
            "{why}"
        );
        assert_eq!(watchdog(&s), Ok(()));
    }

    #[test]
    fn device_health_reads_the_breakers_verdict_from_the_samples() {
        use crate::poll::status::PointStatus;
        use crate::record::Sample;
        let point = |q: Quality| PointStatus {
            sample: Some(Sample {
                point: "p".into(),
                ts_ms: 0,
                value: None,
                quality: q,
            }),
            ..Default::default()
        };
        let mut d = dev("d", 1000, None);
        assert_eq!(device(&d), Health::Unknown);
        d.polls = 1;
        d.points = vec![point(Quality::Good)];
        assert_eq!(device(&d), Health::Ok);
        d.points.push(point(Quality::Timeout));
        assert_eq!(device(&d), Health::Degraded);
        d.points.push(point(Quality::Offline));
        assert_eq!(device(&d), Health::Offline);
    }
}
