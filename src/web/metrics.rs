//! `/metrics`: the status board in the OpenMetrics text format (prometheus-client).
//!
//! Owns metric names, help texts and labels: `plantgate_<subsystem>_<name>_<unit>`, labels of
//! low cardinality (bus, device, kind, level, lane). Counters and gauges are read from the
//! board at scrape time; histograms are the board's own, observed as events happen. Must never
//! label by point or by anything unbounded.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::record::now_ms;
use crate::status::{Board, Health};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A counter family whose values are set from the board's totals.
fn counters(values: impl IntoIterator<Item = (Labels, u64)>) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    for (l, v) in values {
        f.get_or_create(&l).inc_by(v);
    }
    f
}

fn gauges(
    values: impl IntoIterator<Item = (Labels, f64)>,
) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (l, v) in values {
        f.get_or_create(&l).set(v);
    }
    f
}

fn gauge(v: f64) -> Gauge<f64, AtomicU64> {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// Renders every metric.
pub fn render(board: &Board) -> String {
    let mut reg = Registry::with_prefix("plantgate");
    let uptime = board.started.elapsed().as_secs_f64();
    reg.register(
        "build_info",
        "Version of this plantgate build (always 1)",
        gauges([(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)]),
    );
    reg.register(
        "uptime_seconds",
        "Seconds since the gateway started",
        gauge(uptime),
    );

    // polling
    let devices = board.devices();
    reg.register(
        "poll_device_polls",
        "Polls of each device",
        counters(
            devices
                .iter()
                .map(|d| (labels(&[("bus", &d.bus), ("device", &d.name)]), d.polls)),
        ),
    );
    reg.register(
        "poll_values",
        "Point values read good",
        counters(
            devices
                .iter()
                .map(|d| (labels(&[("device", &d.name)]), d.reads.good)),
        ),
    );
    reg.register(
        "poll_errors",
        "Point reads that failed, by kind (timeout, exception, bad_frame, disconnected, offline)",
        counters(devices.iter().flat_map(|d| {
            d.reads
                .errors()
                .map(|(kind, n)| (labels(&[("device", &d.name), ("kind", kind)]), n))
        })),
    );
    reg.register(
        "poll_device_up",
        "1 when the device answered in its last polls, 0 when offline or never polled",
        gauges(devices.iter().map(|d| {
            (
                labels(&[("device", &d.name)]),
                f64::from(u8::from(matches!(
                    d.health(),
                    Health::Ok | Health::Degraded
                ))),
            )
        })),
    );
    reg.register(
        "poll_alarms_active",
        "Alarm points of the device at low, high or fault",
        gauges(devices.iter().map(|d| {
            let n = d
                .points
                .iter()
                .filter(|p| p.level.is_some_and(|l| l.is_active()))
                .count();
            (labels(&[("device", &d.name)]), n as f64)
        })),
    );
    reg.register(
        "poll_duration_seconds",
        "Seconds one device poll kept its bus busy",
        board.histograms.poll.clone(),
    );
    reg.register(
        "poll_device_latency_seconds",
        "Seconds the last poll of each device took (all its reads)",
        gauges(
            devices
                .iter()
                .map(|d| (labels(&[("device", &d.name)]), d.last_latency.as_secs_f64())),
        ),
    );
    reg.register(
        "poll_bus_utilisation_ratio",
        "Share of wall time each bus spent in requests since start",
        gauges(board.buses().iter().map(|b| {
            (
                labels(&[("bus", &b.name)]),
                if uptime > 0.0 {
                    b.busy.as_secs_f64() / uptime
                } else {
                    0.0
                },
            )
        })),
    );
    reg.register(
        "poll_alarm_events",
        "Alarm transitions, by the level entered",
        counters(
            board
                .alarm_events()
                .into_iter()
                .map(|(l, n)| (labels(&[("level", l.as_str())]), n)),
        ),
    );

    // spool
    let s = board.spool();
    reg.register(
        "spool_backlog_records",
        "Records waiting for the broker's acknowledgement, by lane",
        gauges([
            (labels(&[("lane", "readings")]), s.readings as f64),
            (labels(&[("lane", "alarms")]), s.alarms as f64),
        ]),
    );
    reg.register(
        "spool_file_bytes",
        "Size of the spool file on disk",
        gauge(s.bytes as f64),
    );
    let oldest = s
        .oldest_ts_ms
        .map(|t| (now_ms() - t).max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    reg.register(
        "spool_oldest_age_seconds",
        "Age of the oldest unacknowledged reading (0 when none)",
        gauge(oldest),
    );
    reg.register(
        "spool_appended_records",
        "Records made durable",
        counter(s.appended_records),
    );
    reg.register(
        "spool_evicted_readings",
        "Readings evicted because the spool was full (alarms never are)",
        counter(s.evicted_readings),
    );
    reg.register(
        "spool_append_errors",
        "Commits that failed (disk full, I/O error) and were retried",
        counter(s.append_errors),
    );
    reg.register(
        "spool_commit_duration_seconds",
        "Seconds a durable commit took, fsync included",
        board.histograms.commit.clone(),
    );

    // uplink
    let u = board.uplink();
    reg.register(
        "uplink_connected",
        "1 while connected to a broker",
        gauge(f64::from(u8::from(u.connected_to.is_some()))),
    );
    reg.register(
        "uplink_published_messages",
        "Messages published (QoS 1)",
        counter(u.published),
    );
    reg.register(
        "uplink_acked_records",
        "Records the broker acknowledged",
        counter(u.acked_records),
    );
    reg.register(
        "uplink_connections",
        "Connections established (the first and every reconnect)",
        counter(u.reconnects),
    );
    reg.register(
        "uplink_puback_duration_seconds",
        "Seconds from publish to PUBACK",
        board.histograms.puback.clone(),
    );
    if let Some(t) = u.cert_not_after_ms {
        reg.register(
            "uplink_certificate_expiry_seconds",
            "Seconds until our client certificate expires",
            gauge((t - now_ms()) as f64 / 1000.0),
        );
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// The same metrics in the classic Prometheus text format (0.0.4), for scrapers and tools that
/// do not ask for OpenMetrics: counter families are named with their `_total` suffix there, and
/// `# UNIT` / `# EOF` lines do not exist.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.strip_suffix(" counter"))
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_with_total() {
        let om = "# HELP x_polls Polls.\n# TYPE x_polls counter\nx_polls_total{d=\"a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP x_polls_total Polls.\n# TYPE x_polls_total counter\nx_polls_total{d=\"a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1.0\n"
        );
    }

    #[test]
    fn a_fresh_board_renders_every_family() {
        let text = render(&Board::default());
        for family in [
            "plantgate_build_info",
            "plantgate_spool_backlog_records",
            "plantgate_uplink_connected",
            "plantgate_spool_commit_duration_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
