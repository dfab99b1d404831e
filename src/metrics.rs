//! Metric primitives every component builds its own metrics from: the label type, the seconds
//! histogram, and [`Computed`] gauges whose value is worked out at scrape time.
//!
//! Owns nothing but these building blocks. Each component (poll, spool, uplink, broker) creates
//! its metrics in its constructor and registers them with the one [`Registry`] that `app` hands
//! round; `web` only encodes that registry. Must never import a component, or label by point or
//! by anything else unbounded. Names follow `plantgate_<subsystem>_<name>_<unit>`;
//! prometheus-client appends `_total` to counters itself.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;

pub use prometheus_client::registry::Registry;

/// Label pairs, e.g. `[("device", "gas-1")]`.
pub type Labels = Vec<(String, String)>;

/// Builds a label set from string pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A histogram of durations in seconds: 0.5 ms … ~16 s.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

type Values = dyn Fn() -> Vec<(Labels, f64)> + Send + Sync;

/// A gauge family computed when scraped (an age from a stored timestamp, a ratio over uptime):
/// values that a stored number would let go stale while nothing happens.
pub struct Computed {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    values: Box<Values>,
}

impl Computed {
    /// A gauge family; `values` is called at every scrape, and an empty result leaves it out.
    pub fn new(
        name: &'static str,
        help: &'static str,
        values: impl Fn() -> Vec<(Labels, f64)> + Send + Sync + 'static,
    ) -> Box<Self> {
        Self::of(MetricType::Gauge, name, help, Box::new(values))
    }

    /// A counter family read from a total kept elsewhere (the kernel's, say); `_total` is
    /// appended to `name`.
    pub fn new_counter(
        name: &'static str,
        help: &'static str,
        values: impl Fn() -> Vec<(Labels, f64)> + Send + Sync + 'static,
    ) -> Box<Self> {
        Self::of(MetricType::Counter, name, help, Box::new(values))
    }

    fn of(
        kind: MetricType,
        name: &'static str,
        help: &'static str,
        values: Box<Values>,
    ) -> Box<Self> {
        Box::new(Computed {
            name,
            help,
            kind,
            values,
        })
    }
}

/// Bytes this process caused to be sent to the storage layer (`write_bytes` in
/// `/proc/self/io`), the figure that wears out flash; `None` where the kernel does not say.
pub fn process_write_bytes() -> Option<f64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|b| b as f64)
}

impl fmt::Debug for Computed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed")
            .field("name", &self.name)
            .finish()
    }
}

impl Collector for Computed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let values = (self.values)();
        if values.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (l, v) in &values {
            let metric = family.encode_family(l)?;
            match self.kind {
                MetricType::Counter => ConstCounter::new(*v).encode(metric)?,
                _ => ConstGauge::new(*v).encode(metric)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_gauges_are_evaluated_at_each_scrape_and_prefixed() {
        let mut reg = Registry::with_prefix("plantgate");
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
        let m = n.clone();
        reg.register_collector(Computed::new("x_age_seconds", "An age", move || {
            vec![(
                labels(&[("device", "d")]),
                m.load(std::sync::atomic::Ordering::Relaxed) as f64,
            )]
        }));
        let scrape = |reg: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
            s
        };
        assert!(scrape(&reg).contains("plantgate_x_age_seconds{device=\"d\"} 1.0"));
        n.store(7, std::sync::atomic::Ordering::Relaxed);
        assert!(scrape(&reg).contains("plantgate_x_age_seconds{device=\"d\"} 7.0"));
    }
}
