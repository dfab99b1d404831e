//! `/api/status`: every component's status as one JSON document, the same data the page shows.
//!
//! Owns the JSON shape. Must never include secrets: TLS material appears only as its effects
//! (connected or not, certificate expiry), never as content.

use serde_json::{json, Value};

use crate::config::{Bound, Limit};
use crate::health;
use crate::poll::status::{BusSnapshot, DeviceStatus};
use crate::record::{now_ms, AlarmLevel, Sample};
use crate::status::Status;

pub fn value_json(s: Option<&Sample>) -> Value {
    s.and_then(|s| s.value).map_or(Value::Null, number_json)
}

pub fn number_json(v: crate::record::Value) -> Value {
    match v {
        crate::record::Value::Bool(b) => json!(b),
        crate::record::Value::Int(i) => json!(i),
        crate::record::Value::Float(f) => json!(f),
    }
}

/// A point's limits as the configuration writes them: `[{"above": 9.0, "level": "hi"}]`.
pub fn limits_json(limits: &[Limit]) -> Value {
    limits
        .iter()
        .map(|l| match l.bound {
            Bound::Above(t) => json!({"above": t, "level": l.level.as_str()}),
            Bound::Below(t) => json!({"below": t, "level": l.level.as_str()}),
        })
        .collect()
}

/// An alarm point at an active level, for the box at the top of the page.
struct Active<'a> {
    device: &'a str,
    point: &'a str,
    level: AlarmLevel,
    sample: Option<&'a Sample>,
}

fn device_json<'a>(d: &'a DeviceStatus, now: i64, active: &mut Vec<Active<'a>>) -> Value {
    let points: Vec<Value> = d
        .points
        .iter()
        .map(|p| {
            let s = p.sample.as_ref();
            if let Some(level) = p.level.filter(|l| l.is_active()) {
                active.push(Active {
                    device: &d.name,
                    point: &p.name,
                    level,
                    sample: s,
                });
            }
            json!({
                "name": p.name,
                "unit": p.unit,
                "alarm": p.is_alarm,
                "level": p.level.map(|l| l.as_str()),
                "value": value_json(s),
                "quality": s.map(|s| s.quality.as_str()),
                "exception": s.and_then(|s| s.quality.exception_code()),
                "age_s": s.map(|s| (now - s.ts_ms).max(0) / 1000),
                "last_good_age_s": p.last_good_ms.map(|t| (now - t).max(0) / 1000),
                "limits": limits_json(&p.limits),
            })
        })
        .collect();
    let total = d.reads.total();
    json!({
        "name": d.name,
        "unit": d.unit,
        "poll_ms": d.poll_ms,
        "health": health::device(d).as_str(),
        "polls": d.polls,
        "success_rate": (total > 0).then(|| d.reads.good as f64 / total as f64),
        "last_poll_ms": d.last_poll_ms,
        "last_latency_ms": d.last_latency.as_millis() as u64,
        "last_error": d.last_error,
        "points": points,
    })
}

fn bus_json<'a>(b: &'a BusSnapshot, now: i64, active: &mut Vec<Active<'a>>) -> Value {
    let devices: Vec<Value> = b
        .devices
        .iter()
        .map(|d| device_json(d, now, active))
        .collect();
    json!({
        "name": b.name,
        "link": b.link,
        "utilisation": b.utilisation,
        "devices": devices,
    })
}

pub fn status(st: &Status) -> Value {
    let now = now_ms();
    let snapshots = st.buses();
    let mut active = Vec::new();
    let buses: Vec<Value> = snapshots
        .iter()
        .map(|b| bus_json(b, now, &mut active))
        .collect();
    // Most severe first; the sort is stable, so equal levels keep the page's order.
    active.sort_by_key(|a| std::cmp::Reverse(a.level.severity()));
    let active: Vec<Value> = active
        .iter()
        .map(|a| {
            json!({"device": a.device, "point": a.point, "level": a.level.as_str(),
                   "value": value_json(a.sample), "ts_ms": a.sample.map(|s| s.ts_ms)})
        })
        .collect();
    json!({
        "gateway": gateway_json(st, now),
        "uplink": uplink_json(st, now),
        "spool": spool_json(st, now),
        "active_alarms": active,
        "buses": buses,
    })
}

/// Who the gateway is, and its clock (the page computes every age from `now_ms`).
pub fn gateway_json(st: &Status, now: i64) -> Value {
    let id = &st.identity;
    json!({
        "id": id.gateway_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": id.started.elapsed().as_secs(),
        "config_path": id.config_path,
        "config_sha256": id.config_sha256,
        "now_ms": now,
    })
}

pub fn uplink_json(st: &Status, now: i64) -> Value {
    let up = st.uplink();
    json!({
        "configured": up.configured,
        "connected": up.connected_to.is_some(),
        "endpoint": up.connected_to,
        "since_ms": up.connected_since_ms,
        "last_puback_ms": up.last_puback_ms,
        "last_error": up.last_error,
        "cert_not_after_ms": up.cert_not_after_ms,
        "cert_days_left": up.cert_not_after_ms.map(|t| (t - now) / 86_400_000),
        "published": up.published,
        "acked_records": up.acked_records,
        "reconnects": up.reconnects,
    })
}

pub fn spool_json(st: &Status, now: i64) -> Value {
    let sp = st.spool();
    let id = &st.identity;
    let written = crate::metrics::process_write_bytes();
    json!({
        "readings": sp.readings,
        "alarms": sp.alarms,
        "bytes": sp.bytes,
        "oldest_age_s": sp.oldest_ts_ms.map(|t| (now - t).max(0) / 1000),
        "evicted_readings": sp.evicted_readings,
        "append_errors": sp.append_errors,
        "head_readings": sp.head_readings,
        "gaps": sp.gaps,
        // the size limit in force (lower than max_bytes after a disk-full failure)
        "budget_bytes": sp.budget_bytes,
        // the disk hangs or refuses writes: values sampled since `since_ms` are published
        // live but not stored
        "disk_trouble": sp.disk_trouble(now).map(|t| json!({
            "since_ms": t.since_ms, "for_s": (now - t.since_ms) / 1000, "reason": t.reason,
        })),
        "last_durable_ms": sp.last_durable_ms,
        "uncaptured_readings": sp.uncaptured_readings,
        // what the process wrote to storage since start: the flash-wear figure
        "written_bytes": written,
        "written_bytes_per_day": written.map(|w| w / id.started.elapsed().as_secs_f64().max(1.0) * 86_400.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Quality;
    use crate::web::testkit::{board, poll, sample};

    #[test]
    fn a_device_never_polled_is_listed_unknown_with_its_points_and_limits() {
        let (st, _) = board();
        let s = status(&st);
        assert_eq!(s["gateway"]["id"], "gw-unit");
        let d = &s["buses"][0]["devices"][0];
        assert_eq!(
            (d["name"].as_str(), d["health"].as_str()),
            (Some("t101"), Some("unknown"))
        );
        assert_eq!(d["success_rate"], Value::Null);
        let level = &d["points"][0];
        assert_eq!(level["value"], Value::Null);
        assert_eq!(level["unit"], "m");
        assert_eq!(
            level["limits"],
            json!([{"above": 9.0, "level": "hi"}, {"below": 1.0, "level": "lo"}])
        );
        assert_eq!(
            d["points"][1]["limits"],
            json!([]),
            "a point without limits"
        );
        assert_eq!(s["active_alarms"], json!([]));
    }

    #[test]
    fn a_poll_shows_values_quality_and_active_alarms_most_severe_first() {
        let (st, bus) = board();
        let now = now_ms();
        poll(
            &bus,
            0,
            vec![
                sample("level", now, Some(9.25), Quality::Good),
                sample("pump", now, None, Quality::Timeout),
            ],
            Some(AlarmLevel::Hi),
        );
        let s = status(&st);
        let d = &s["buses"][0]["devices"][0];
        assert_eq!(d["health"], "degraded", "one read timed out");
        assert_eq!(d["success_rate"], 0.5);
        assert_eq!(d["points"][0]["value"], 9.25);
        assert_eq!(d["points"][0]["level"], "hi");
        assert_eq!(d["points"][1]["quality"], "timeout");
        assert_eq!(d["points"][1]["last_good_age_s"], Value::Null, "never good");
        assert_eq!(s["active_alarms"].as_array().unwrap().len(), 1);
        assert_eq!(s["active_alarms"][0]["device"], "t101");
        assert_eq!(s["active_alarms"][0]["level"], "hi");
        assert_eq!(s["active_alarms"][0]["value"], 9.25);
    }

    #[test]
    fn values_keep_their_kind_and_nothing_secret_appears() {
        assert_eq!(number_json(crate::record::Value::Bool(true)), json!(true));
        assert_eq!(number_json(crate::record::Value::Int(-3)), json!(-3));
        assert_eq!(number_json(crate::record::Value::Float(0.5)), json!(0.5));
        let (st, _) = board();
        let text = status(&st).to_string();
        for secret in ["password", "PRIVATE KEY", "key_file"] {
            assert!(!text.contains(secret), "{secret} in the status");
        }
        assert_eq!(status(&st)["uplink"]["configured"], false);
    }
}
