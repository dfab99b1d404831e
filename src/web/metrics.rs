//! `/metrics`: the gateway's one registry, encoded as OpenMetrics or the classic Prometheus text.
//!
//! Owns the encoding and the gateway-wide families (`build_info`, `uptime_seconds`). Every other
//! family is registered by the component that owns it (`poll::status`, `spool::status`,
//! `uplink::status`), as live counters, gauges and histograms: nothing is rebuilt here. Must
//! never label by point or by anything unbounded.

use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{labels, Computed, Labels, Registry};

/// Registers `build_info` and `uptime_seconds` (since `started`).
pub fn register_build_info(reg: &mut Registry, started: Instant) {
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1);
    reg.register(
        "build_info",
        "Version of this plantgate build (always 1)",
        info,
    );
    reg.register_collector(Computed::new(
        "uptime_seconds",
        "Seconds since the gateway started",
        move || vec![(Vec::new(), started.elapsed().as_secs_f64())],
    ));
}

/// OpenMetrics text (what Prometheus asks for).
pub fn openmetrics(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}

/// The classic Prometheus text format (0.0.4), for scrapers and tools that do not ask for
/// OpenMetrics (curl, promtool).
pub fn prometheus_text(reg: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_name_counters_with_total_and_only_openmetrics_ends_with_eof() {
        let mut reg = Registry::with_prefix("plantgate");
        register_build_info(&mut reg, Instant::now());
        let c = prometheus_client::metrics::counter::Counter::<u64>::default();
        reg.register("x_polls", "Polls", c.clone());
        c.inc_by(3);
        let om = openmetrics(&reg);
        assert!(om.contains("# TYPE plantgate_x_polls counter\nplantgate_x_polls_total 3"));
        assert!(om.contains("plantgate_build_info{version=\""));
        assert!(om.ends_with("# EOF\n"));
        let classic = prometheus_text(&reg);
        assert!(
            classic.contains("# TYPE plantgate_x_polls_total counter\nplantgate_x_polls_total 3")
        );
        assert!(classic.contains("# TYPE plantgate_uptime_seconds gauge"));
        assert!(!classic.contains("# EOF"));
    }
}
