//! Fixtures for the web module's unit tests: a status board built from a real configuration,
//! written the way the poller writes it.
//!
//! Owns nothing the product uses (compiled for tests only). Must never fake a status the poller
//! could not write: every change goes through `BusStatus`'s own recording.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::poll::status::BusStatus;
use crate::record::{AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Value};
use crate::status::Status;

const CONFIG: &str = r#"
[gateway]
id = "gw-unit"
data_dir = "/nonexistent/plantgate-web-unit"
[[bus]]
name = "rio-1"
tcp = { address = "127.0.0.1:1502" }
[[device]]
name = "t101"
bus = "rio-1"
unit = 1
poll_ms = 1000
[[device.point]]
name = "level"
table = "holding"
address = 20
type = "u16"
scale = 0.01
unit = "m"
limits = [ { above = 9.0, level = "hi" }, { below = 1.0, level = "lo" } ]
[[device.point]]
name = "pump"
table = "holding"
address = 21
type = "u16"
[[device]]
name = "t102"
bus = "rio-1"
unit = 2
poll_ms = 1000
[[device.point]]
name = "level"
table = "holding"
address = 20
type = "u16"
"#;

/// A status board for two tanks on one bus (`t101` with limits on `level`, `t102`), never
/// polled, and its bus's handle to record polls with.
pub fn board() -> (Status, Arc<BusStatus>) {
    let cfg = Config::from_str(CONFIG, Path::new("unit.toml")).expect("the fixture parses");
    Status::of_first_bus(&cfg)
}

pub fn sample(point: &str, ts_ms: i64, value: Option<f64>, quality: Quality) -> Sample {
    Sample {
        point: point.into(),
        ts_ms,
        value: value.map(Value::Float),
        quality,
    }
}

/// One poll of device `index` (`t101` = 0) with these samples; `level` raises on the first.
pub fn poll(bus: &BusStatus, index: usize, samples: Vec<Sample>, level: Option<AlarmLevel>) {
    let device = ["t101", "t102"][index];
    let alarms = level
        .map(|l| AlarmChange {
            sample: samples[0].clone(),
            level: l,
            prev: AlarmLevel::Normal,
            warn: None,
        })
        .into_iter()
        .collect();
    bus.polled_for_test(
        index,
        &DevicePoll {
            device: device.into(),
            samples,
            alarms,
        },
    );
}
