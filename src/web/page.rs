//! `/api/status?since=<version>`: the status page's own form of the status, carrying only what
//! changed since the version the page holds.
//!
//! Owns [`Changes`] (at which version each device last changed) and the page's compact form. A
//! device's layout (its points' names, units and limits: configuration) goes out only in a full
//! answer; after that a device goes out again only when what the page shows of it changed
//! (health, success rate, last error, a point's value, quality or level). What moves every
//! second (the clock, each device's last poll, each bus's load) is a few small arrays. A first
//! load, or a version this process did not hand out (a restarted gateway), gets the full
//! answer. Reads the components' status only; the tracker is the web's own. Must never hold
//! the tracker's lock across an await.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::api::{gateway_json, limits_json, spool_json, uplink_json, value_json};
use crate::health;
use crate::poll::status::{DeviceStatus, PointStatus};
use crate::record::{now_ms, Quality};
use crate::status::Status;

/// Which version each device last changed at. One per web server.
#[derive(Debug, Default)]
pub struct Changes(Mutex<Tracker>);

#[derive(Debug, Default)]
struct Tracker {
    version: u64,
    /// Device name → (version it last changed at, what the page was last sent of it).
    seen: HashMap<String, (u64, String)>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What the page shows of a point that can change: `[value, quality, level]`, and when the
/// value is not good also when it last was and the exception code.
fn point_dyn(p: &PointStatus) -> Value {
    let s = p.sample.as_ref();
    let quality = s.map(|s| s.quality);
    let mut v = vec![
        value_json(s),
        json!(quality.map(Quality::as_str)),
        json!(p.level.map(|l| l.as_str())),
    ];
    if quality.is_some_and(|q| q != Quality::Good) {
        v.push(json!(p.last_good_ms));
        v.push(json!(quality.and_then(Quality::exception_code)));
    }
    Value::Array(v)
}

/// What the page shows of a device that can change, apart from its last poll's time.
fn device_dyn(d: &DeviceStatus) -> Value {
    let total = d.reads.total();
    json!({
        "health": health::device(d).as_str(),
        "success_rate": (total > 0).then(|| round3(d.reads.good as f64 / total as f64)),
        "last_error": d.last_error,
        "p": d.points.iter().map(point_dyn).collect::<Vec<_>>(),
    })
}

/// A device's configuration as the page lays it out; its points (each `[name, unit, alarm,
/// limits]`) as an index into `points`, the lists sent once each: devices of one profile
/// share one, which keeps a plant's first load small.
fn layout(d: &DeviceStatus, points: &mut Vec<Value>) -> Value {
    let mine = Value::Array(
        d.points
            .iter()
            .map(|p| json!([p.name, p.unit, p.is_alarm, limits_json(&p.limits)]))
            .collect(),
    );
    let k = points.iter().position(|p| *p == mine).unwrap_or_else(|| {
        points.push(mine);
        points.len() - 1
    });
    json!({"name": d.name, "bus": d.bus, "unit": d.unit, "poll_ms": d.poll_ms, "points": k})
}

impl Tracker {
    /// Notes what each device looks like now; returns the version at which each last changed.
    fn note(&mut self, devices: &[&DeviceStatus], dyns: &[String]) -> Vec<u64> {
        let t = self;
        devices
            .iter()
            .zip(dyns)
            .map(|(d, now)| match t.seen.get_mut(&d.name) {
                Some((at, was)) if was == now => *at,
                Some((at, was)) => {
                    t.version += 1;
                    (*at, *was) = (t.version, now.clone());
                    *at
                }
                None => {
                    t.version += 1;
                    t.seen.insert(d.name.clone(), (t.version, now.clone()));
                    t.version
                }
            })
            .collect()
    }
}

impl Changes {
    /// The page's status: everything when `since` is not a version this server handed out,
    /// else only the devices that changed after it.
    pub fn page(&self, st: &Status, since: Option<&str>) -> Value {
        let now = now_ms();
        let buses = st.buses();
        let devices: Vec<&DeviceStatus> = buses.iter().flat_map(|b| &b.devices).collect();
        let dyns: Vec<Value> = devices.iter().map(|d| device_dyn(d)).collect();
        let texts: Vec<String> = dyns.iter().map(Value::to_string).collect();
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let changed_at = t.note(&devices, &texts);
        let boot = st.identity.started_ms;
        let base = since
            .and_then(|s| s.split_once('-'))
            .filter(|(b, _)| b.parse() == Ok(boot))
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .filter(|n| *n <= t.version);
        let version = format!("{boot}-{}", t.version);
        drop(t);
        let mut layouts = Vec::new();
        let out: Vec<Value> = dyns
            .into_iter()
            .enumerate()
            .filter(|(i, _)| base.is_none_or(|b| changed_at[*i] > b))
            .map(|(i, mut v)| {
                v["i"] = json!(i);
                if base.is_none() {
                    v["layout"] = layout(devices[i], &mut layouts);
                }
                v
            })
            .collect();
        let full = base.is_none();
        let polled: Vec<Value> = devices
            .iter()
            .map(|d| json!(d.last_poll_ms.map(|t| (now - t).max(0) / 1000)))
            .collect();
        json!({
            "version": version,
            "full": full,
            "gateway": gateway_json(st, now),
            "uplink": uplink_json(st, now),
            "spool": spool_json(st, now),
            "buses": full.then(|| buses.iter().map(|b| json!({"name": b.name, "link": b.link, "devices": b.devices.len()})).collect::<Vec<_>>()),
            "layouts": full.then_some(layouts),
            "util": buses.iter().map(|b| round3(b.utilisation)).collect::<Vec<_>>(),
            "polled": polled,
            "devices": out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AlarmLevel;
    use crate::web::testkit::{board, poll, sample};

    fn names(v: &Value) -> Vec<u64> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["i"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn a_first_load_gets_everything_then_only_what_changed() {
        let (st, bus) = board();
        let c = Changes::default();
        let full = c.page(&st, Some("0"));
        assert_eq!(full["full"], true);
        assert_eq!(names(&full), vec![0, 1]);
        assert_eq!(full["devices"][0]["layout"]["name"], "t101");
        assert_eq!(full["devices"][0]["layout"]["points"], 0);
        assert_eq!(
            full["devices"][1]["layout"]["points"], 1,
            "t102 has other points"
        );
        assert_eq!(
            full["layouts"][0][0],
            json!(["level", "m", true, [{"above": 9.0, "level": "hi"}, {"below": 1.0, "level": "lo"}]])
        );
        assert_eq!(full["layouts"].as_array().unwrap().len(), 2);
        assert_eq!(full["buses"][0]["devices"], 2);
        let v = full["version"].as_str().unwrap().to_string();

        let same = c.page(&st, Some(&v));
        assert_eq!(
            (same["full"].as_bool(), names(&same)),
            (Some(false), vec![]),
            "nothing changed"
        );
        assert_eq!(same["version"], v.as_str());
        assert_eq!(
            same["buses"],
            Value::Null,
            "the layout only in a full answer"
        );

        let now = now_ms();
        poll(
            &bus,
            1,
            vec![sample("level", now, Some(4.0), Quality::Good)],
            None,
        );
        let delta = c.page(&st, Some(&v));
        assert_eq!(names(&delta), vec![1]);
        assert_eq!(delta["devices"][0]["p"][0], json!([4.0, "good", null]));
        assert_eq!(delta["devices"][0]["layout"], Value::Null);
        assert!(delta["polled"][1].is_i64() && delta["polled"][0].is_null());
        let v2 = delta["version"].as_str().unwrap().to_string();
        assert_ne!(v2, v);

        // The same value read again later is not a change: its age is in `polled`.
        poll(
            &bus,
            1,
            vec![sample("level", now + 1000, Some(4.0), Quality::Good)],
            None,
        );
        assert!(names(&c.page(&st, Some(&v2))).is_empty());
        // A page that missed a version still gets what changed since the one it holds.
        assert_eq!(names(&c.page(&st, Some(&v))), vec![1]);
    }

    #[test]
    fn a_version_from_another_start_or_the_future_gets_the_full_answer() {
        let (st, _) = board();
        let c = Changes::default();
        let v = c.page(&st, None)["version"].as_str().unwrap().to_string();
        let (boot, n) = v.split_once('-').unwrap();
        for other in [
            format!("{}-{n}", boot.parse::<i64>().unwrap() - 1),
            format!("{boot}-999"),
            "garbage".into(),
        ] {
            let p = c.page(&st, Some(&other));
            assert_eq!(
                (p["full"].as_bool(), names(&p)),
                (Some(true), vec![0, 1]),
                "{other}"
            );
        }
    }

    #[test]
    fn a_failed_read_sends_when_the_value_was_last_good_and_a_level_change_is_a_change() {
        let (st, bus) = board();
        let c = Changes::default();
        let now = now_ms();
        poll(
            &bus,
            0,
            vec![sample("level", now, Some(5.0), Quality::Good)],
            None,
        );
        let v = c.page(&st, Some("0"))["version"]
            .as_str()
            .unwrap()
            .to_string();
        poll(
            &bus,
            0,
            vec![sample("level", now + 1000, None, Quality::Timeout)],
            None,
        );
        let p = c.page(&st, Some(&v));
        assert_eq!(
            p["devices"][0]["p"][0],
            json!([null, "timeout", null, now, null])
        );
        assert_eq!(p["devices"][0]["health"], "degraded");
        let v = p["version"].as_str().unwrap().to_string();
        poll(
            &bus,
            0,
            vec![sample("level", now + 2000, Some(9.5), Quality::Good)],
            Some(AlarmLevel::Hi),
        );
        let p = c.page(&st, Some(&v));
        assert_eq!(p["devices"][0]["p"][0], json!([9.5, "good", "hi"]));
    }
}
