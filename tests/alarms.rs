//! Limit alarms and early warnings end to end: a simulated tank (and a gas controller) over
//! Modbus TCP, polled by the real gateway, its alarm events read from what it committed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{http_get, metric, point_level, Gateway};
use plantgate::record::{now_ms, AlarmEvent, AlarmLevel, Quality, Warn};
use plantgate::sim::{self, server::SimBus, Behaviour, Controller};
use AlarmLevel::*;

const LEVEL: &str = "t101.level";
const WAIT: Duration = Duration::from_secs(10);

/// A gateway polling unit 1 (a tank) and unit 2 (a gas controller) every 100 ms; `keys` go
/// on the tank's level point.
struct Rig {
    tank: Arc<Controller>,
    gas: Arc<Controller>,
    gw: Gateway,
    _dir: tempfile::TempDir,
    sim: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Rig {
    async fn start(keys: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let tank = Controller::tank(5.0);
        let gas = Controller::gas16();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = tokio::spawn(sim::server::serve_tcp(
            listener,
            SimBus::new([(1, tank.clone()), (2, gas.clone())]),
        ));
        let text = format!(
            r#"[gateway]
id = "t"
data_dir = "{}"
[web]
listen = "127.0.0.1:0"
[[bus]]
name = "tcp"
tcp = {{ address = "{addr}" }}
timeout_ms = 200
[[device]]
name = "tank-1"
bus = "tcp"
unit = 1
poll_ms = 100
[[device.point]]
name = "{LEVEL}"
table = "holding"
address = 20
type = "u16"
scale = 0.01
unit = "m"
{keys}
[[device.point]]
name = "t101.temperature"
table = "holding"
address = 21
type = "i16"
scale = 0.1
unit = "°C"
stuck_after_s = 1
[[device]]
name = "gas-2"
bus = "tcp"
unit = 2
poll_ms = 100
[[device.point]]
name = "ch01.status"
table = "input"
address = 100
type = "u16"
alarm = {{ 0 = "normal", 1 = "low", 2 = "high", 3 = "fault", 4 = "inhibit" }}
"#,
            dir.path().display()
        );
        let gw = Gateway::start(&text).await;
        Rig {
            tank,
            gas,
            gw,
            _dir: dir,
            sim,
        }
    }

    /// Every alarm event of `point` so far.
    fn events(&self, point: &str) -> Vec<AlarmEvent> {
        self.gw
            .seen()
            .alarms
            .iter()
            .filter(|a| &*a.sample.point == point)
            .cloned()
            .collect()
    }

    /// Level changes (not warnings) of `point`, as `(prev, level)`.
    fn levels(&self, point: &str) -> Vec<(AlarmLevel, AlarmLevel)> {
        self.events(point)
            .iter()
            .filter(|a| a.warn.is_none())
            .map(|a| (a.prev, a.level))
            .collect()
    }

    /// Waits for the start-up report of `point`.
    async fn started(&self, point: &str) {
        self.gw
            .wait_until(WAIT, &format!("{point}'s start-up level"), |s| {
                s.alarms.iter().any(|a| &*a.sample.point == point)
            })
            .await;
    }

    /// Waits until `point` entered `level` once more than it had so far.
    async fn entered(&self, point: &str, level: AlarmLevel) {
        let n = self.levels(point).iter().filter(|l| l.1 == level).count();
        self.gw
            .wait_until(WAIT, &format!("{point} {level}"), |s| {
                s.alarms
                    .iter()
                    .filter(|a| &*a.sample.point == point && a.warn.is_none() && a.level == level)
                    .count()
                    > n
            })
            .await;
    }

    /// Sets the tank's level and waits until the gateway saw `level` entered.
    async fn step(&self, m: f64, level: AlarmLevel) {
        self.tank.set_level(m);
        self.entered(LEVEL, level).await;
    }

    /// Waits until `warn` reached `level` on some point.
    async fn warned(&self, warn: Warn, level: AlarmLevel) {
        self.gw
            .wait_until(Duration::from_secs(20), &format!("{warn:?} {level}"), |s| {
                s.alarms
                    .iter()
                    .any(|a| a.warn == Some(warn) && a.level == level)
            })
            .await;
    }

    /// `plantgate_poll_alarms_active` of `device`, from `/metrics`.
    async fn active_metric(&self, device: &str) -> f64 {
        let (_, _, text) = http_get(self.gw.web_addr.unwrap(), "/metrics").await;
        let key = format!("plantgate_poll_alarms_active{{device=\"{device}\"}}");
        metric(&text, &key).unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    }

    /// The status page's JSON: `(level shown for device/point, active alarms as "dev pt level")`.
    async fn page(&self, device: &str, point: &str) -> (Option<String>, Vec<String>) {
        let (_, _, body) = http_get(self.gw.web_addr.unwrap(), "/api/status").await;
        let j: serde_json::Value = serde_json::from_str(&body).unwrap();
        let level = j["buses"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["devices"].as_array().into_iter().flatten())
            .filter(|d| d["name"] == device)
            .flat_map(|d| d["points"].as_array().into_iter().flatten())
            .find(|p| p["name"] == point)
            .and_then(|p| p["level"].as_str().map(str::to_string));
        let active = j["active_alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a["device"].as_str().unwrap(),
                    a["point"].as_str().unwrap(),
                    a["level"].as_str().unwrap()
                )
            })
            .collect();
        (level, active)
    }

    async fn stop(mut self) {
        self.gw.shutdown().await;
        self.sim.abort();
    }
}

const TANK_LIMITS: &str = r#"limits = [ { above = 9.0, level = "hi" }, { above = 9.5, level = "hihi" },
           { below = 1.0, level = "lo" }, { below = 0.5, level = "lolo" } ]
deadband = 0.05"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_is_raised_and_cleared_in_order_and_hovering_raises_once() {
    let rig = Rig::start(TANK_LIMITS).await;
    rig.started(LEVEL).await;
    for (m, level) in [
        (9.2, Hi),
        (9.7, HiHi),
        (9.2, Hi),
        (5.0, Normal),
        (0.8, Lo),
        (0.3, LoLo),
        (0.8, Lo),
        (5.0, Normal),
    ] {
        rig.step(m, level).await;
    }
    assert_eq!(
        rig.levels(LEVEL),
        [
            (Unknown, Normal),
            (Normal, Hi),
            (Hi, HiHi),
            (HiHi, Hi),
            (Hi, Normal),
            (Normal, Lo),
            (Lo, LoLo),
            (LoLo, Lo),
            (Lo, Normal),
        ]
    );

    // Hovering on the 9.0 m limit, inside its 0.05 m deadband, for 3 s: one alarm, no chatter.
    let before = rig.events(LEVEL).len();
    for i in 0..20 {
        rig.tank.set_level(if i % 2 == 0 { 9.02 } else { 8.97 });
        rig.gw
            .gather_for(Duration::from_millis(150), "hovering")
            .await;
    }
    let hovering: Vec<_> = rig.events(LEVEL)[before..]
        .iter()
        .map(|a| (a.prev, a.level))
        .collect();
    assert_eq!(hovering, [(Normal, Hi)]);
    let low_hover = rig
        .gw
        .seen()
        .readings
        .iter()
        .filter(|r| &*r.sample.point == LEVEL && r.sample.value.is_some_and(|v| v.as_f64() < 9.0))
        .count();
    assert!(
        low_hover > 5,
        "the gateway read below the limit {low_hover} times"
    );
    rig.step(8.94, Normal).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_shorter_than_the_delay_raises_nothing_and_a_held_one_raises_once_after_it() {
    let rig = Rig::start(&format!("{TANK_LIMITS}\nalarm_delay_ms = 1000")).await;
    rig.started(LEVEL).await;
    // A 400 ms spike past both high limits, then back: about four polls beyond, no alarm.
    rig.tank.set_level(9.8);
    rig.gw
        .gather_for(Duration::from_millis(400), "the spike")
        .await;
    rig.tank.set_level(5.0);
    rig.gw
        .gather_for(Duration::from_millis(1500), "after the spike")
        .await;
    let spiked = rig
        .gw
        .seen()
        .readings
        .iter()
        .filter(|r| &*r.sample.point == LEVEL && r.sample.value.is_some_and(|v| v.as_f64() > 9.5))
        .count();
    assert!(
        spiked >= 2,
        "the gateway saw the spike in {spiked} readings"
    );
    assert_eq!(rig.levels(LEVEL), [(Unknown, Normal)]);

    // Held past 9.0 m: raised once, and not before the delay.
    let set_at = now_ms();
    rig.step(9.2, Hi).await;
    rig.gw
        .gather_for(Duration::from_millis(1500), "the held excursion")
        .await;
    assert_eq!(rig.levels(LEVEL), [(Unknown, Normal), (Normal, Hi)]);
    let raised = rig
        .events(LEVEL)
        .into_iter()
        .find(|a| a.level == Hi)
        .unwrap();
    // Counted from the first reading past the limit, as the gateway sees it: a sample is
    // stamped when its read starts, so a read already on the line when the level was set
    // carries a time a moment before `set_at`.
    let first_past = rig
        .gw
        .seen()
        .readings
        .iter()
        .filter(|r| &*r.sample.point == LEVEL && r.sample.ts_ms >= set_at - 200)
        .find(|r| {
            r.sample
                .value
                .is_some_and(|v| (v.as_f64() - 9.2).abs() < 0.01)
        })
        .map(|r| r.sample.ts_ms)
        .expect("no reading of the held level");
    assert!(
        raised.sample.ts_ms - first_past >= 1000,
        "raised {} ms after the first reading past the limit",
        raised.sample.ts_ms - first_past
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_rise_and_a_stuck_sensor_warn_without_changing_the_level() {
    let rig = Rig::start(&format!("{TANK_LIMITS}\nrise_per_min = 6.0")).await;
    // The temperature never moves: stuck after its stuck_after_s (1 s).
    rig.warned(Warn::Stuck, Warning).await;
    let stuck = rig.events("t101.temperature");
    assert_eq!(
        stuck
            .iter()
            .map(|a| (a.prev, a.level, a.warn))
            .collect::<Vec<_>>(),
        [
            (Unknown, Normal, None),
            (Normal, Warning, Some(Warn::Stuck))
        ]
    );
    // One count (0.1 °C) of noise does not end it; two counts do.
    rig.tank
        .registers()
        .holding
        .insert(sim::tank::TEMPERATURE, 181);
    rig.gw
        .gather_for(Duration::from_millis(500), "one count")
        .await;
    assert_eq!(rig.events("t101.temperature").len(), 2);
    rig.tank
        .registers()
        .holding
        .insert(sim::tank::TEMPERATURE, 182);
    rig.warned(Warn::Stuck, Normal).await;
    let end = rig.events("t101.temperature").pop().unwrap();
    assert_eq!(
        (end.prev, end.level, end.warn),
        (Warning, Normal, Some(Warn::Stuck))
    );
    assert!(
        (end.sample.value.unwrap().as_f64() - 18.2).abs() < 1e-9,
        "{end:?}"
    );

    // The level climbs 12 m/min (0.02 m per 100 ms) from 5 m, below every limit.
    let tank = rig.tank.clone();
    let ramp = tokio::spawn(async move {
        for i in 0..150 {
            tank.set_level(5.0 + f64::from(i) * 0.02);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    rig.warned(Warn::Rise, Warning).await;
    ramp.abort();
    let rise = rig
        .events(LEVEL)
        .into_iter()
        .find(|a| a.warn == Some(Warn::Rise))
        .unwrap();
    let at = rise.sample.value.unwrap().as_f64();
    assert!(at < 9.0, "warned at {at} m, before any limit");
    assert_eq!(
        rig.levels(LEVEL),
        [(Unknown, Normal)],
        "a warning is not a level"
    );
    assert_eq!(point_level(&rig.gw, "tank-1", LEVEL), Some(Normal));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inhibited_channel_is_never_active_and_a_failed_read_keeps_the_level() {
    let rig = Rig::start(TANK_LIMITS).await;
    // The gas channel alarms, then the operator inhibits it.
    rig.started("ch01.status").await;
    rig.gas.registers().input.insert(sim::STATUS_BASE, 2);
    rig.entered("ch01.status", High).await;
    rig.gw
        .gather_for(Duration::from_millis(300), "a poll after")
        .await;
    assert_eq!(rig.active_metric("gas-2").await, 1.0);
    let (_, active) = rig.page("gas-2", "ch01.status").await;
    assert!(
        active.contains(&"gas-2 ch01.status high".to_string()),
        "{active:?}"
    );
    rig.gas.registers().input.insert(sim::STATUS_BASE, 4);
    rig.entered("ch01.status", Inhibit).await;
    rig.gw
        .gather_for(Duration::from_millis(300), "a poll after")
        .await;
    assert_eq!(
        rig.levels("ch01.status"),
        [(Unknown, Normal), (Normal, High), (High, Inhibit)]
    );
    assert_eq!(point_level(&rig.gw, "gas-2", "ch01.status"), Some(Inhibit));
    assert_eq!(
        rig.active_metric("gas-2").await,
        0.0,
        "an inhibited channel is not an active alarm"
    );
    // the page shows it as inhibited, and not in its active alarms
    let (level, active) = rig.page("gas-2", "ch01.status").await;
    assert_eq!(level.as_deref(), Some("inhibit"));
    assert!(
        active.iter().all(|a| !a.starts_with("gas-2 ")),
        "{active:?}"
    );

    // The tank alarms; then its reads fail for a second, then succeed with the same value.
    rig.started(LEVEL).await;
    rig.step(9.2, Hi).await;
    rig.tank.set_behaviour(Behaviour::Exception(4));
    rig.gw
        .wait_until(WAIT, "failed reads", |s| {
            s.readings
                .iter()
                .filter(|r| &*r.sample.point == LEVEL && r.sample.value.is_none())
                .count()
                >= 3
        })
        .await;
    rig.gw
        .gather_for(Duration::from_millis(700), "failed reads")
        .await;
    assert_eq!(
        point_level(&rig.gw, "tank-1", LEVEL),
        Some(Hi),
        "no false clear"
    );
    assert_eq!(rig.active_metric("tank-1").await, 1.0);
    let bad = rig.gw.seen().latest("tank-1", LEVEL).unwrap().clone();
    assert!(
        matches!(bad.sample.quality, Quality::Exception(4) | Quality::Offline),
        "{bad:?}"
    );
    rig.tank.set_behaviour(Behaviour::Normal);
    rig.gw
        .wait_until(WAIT, "good reads again", |s| {
            s.latest("tank-1", LEVEL)
                .is_some_and(|r| r.sample.quality == Quality::Good)
        })
        .await;
    rig.gw
        .gather_for(Duration::from_millis(500), "good reads")
        .await;
    assert_eq!(
        rig.levels(LEVEL),
        [(Unknown, Normal), (Normal, Hi)],
        "no clear, no repeat"
    );
    rig.stop().await;
}

/// (point, level, prev) of the first report of each point in one run of `text`, from start
/// until all 16 status points were reported, then a clean stop.
async fn first_reports(text: &str) -> Vec<(String, AlarmLevel, AlarmLevel)> {
    let mut gw = Gateway::start(text).await;
    gw.wait_until(WAIT, "every status point reported", |s| {
        s.alarms
            .iter()
            .filter(|a| a.sample.point.ends_with(".status"))
            .count()
            >= 16
    })
    .await;
    gw.shutdown().await;
    let mut firsts: Vec<(String, AlarmLevel, AlarmLevel)> = Vec::new();
    for a in gw.seen().alarms.iter().filter(|a| a.warn.is_none()) {
        if !firsts.iter().any(|f| *f.0 == *a.sample.point) {
            firsts.push((a.sample.point.to_string(), a.level, a.prev));
        }
    }
    let status = firsts.iter().filter(|p| p.0.ends_with(".status")).count();
    assert_eq!(status, 16, "{firsts:?}");
    firsts
}

/// Each start reports every alarm point's level once with `prev: "unknown"`, also after a
/// restart on the same spool: an alarm still active is reported again, and one raised while
/// the gateway was down is reported at its level, never as a transition from the level the
/// last run saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_every_alarm_point_again_with_prev_unknown() {
    use common::{gateway_toml, simulators};
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(1).await;
    c[0].set_concentration(4, 450); // ch04: high
    let text = gateway_toml(&dir.path().join("data"), sim, 1, 100, "", "");
    let first = first_reports(&text).await;
    assert!(first.iter().all(|p| p.2 == Unknown), "{first:?}");

    // While it is down, ch05 goes high too.
    c[0].set_concentration(5, 450);
    let again = first_reports(&text).await;
    assert!(
        again.iter().all(|p| p.2 == Unknown),
        "a restart reported a transition from the last run's level: {again:?}"
    );
    let level = |f: &[(String, AlarmLevel, AlarmLevel)], pt: &str| {
        f.iter().find(|p| p.0 == pt).map(|p| p.1)
    };
    assert_eq!(level(&again, "ch04.status"), Some(High), "still active");
    assert_eq!(
        level(&again, "ch05.status"),
        Some(High),
        "raised while down"
    );
    assert_eq!(level(&again, "ch01.status"), Some(Normal));
}
