//! `/api/status`: the status board as one JSON document, the same data the page shows.
//!
//! Owns the JSON shape. Must never include secrets: TLS material appears only as file paths'
//! effects (connected or not, certificate expiry), never as content.

use serde_json::{json, Value};

use crate::record::now_ms;
use crate::status::{Board, Health};

fn value_json(v: Option<crate::record::Value>) -> Value {
    match v {
        None => Value::Null,
        Some(crate::record::Value::Bool(b)) => json!(b),
        Some(crate::record::Value::Int(i)) => json!(i),
        Some(crate::record::Value::Float(f)) => json!(f),
    }
}

pub fn status(board: &Board) -> Value {
    let now = now_ms();
    let up = board.uplink();
    let sp = board.spool();
    let devices = board.devices();
    let mut active = Vec::new();
    let buses: Vec<Value> = board
        .buses()
        .iter()
        .map(|b| {
            let uptime = board.started.elapsed().as_secs_f64();
            let devs: Vec<Value> = devices
                .iter()
                .filter(|d| d.bus == b.name)
                .map(|d| {
                    let points: Vec<Value> = d
                        .points
                        .iter()
                        .map(|p| {
                            let s = p.sample.as_ref();
                            if let Some(l) = p.level.filter(|l| l.is_active()) {
                                active.push(json!({"device": d.name, "point": p.name, "level": l.as_str(), "value": value_json(s.and_then(|s| s.value)), "ts_ms": s.map(|s| s.ts_ms)}));
                            }
                            json!({
                                "name": p.name,
                                "unit": p.unit,
                                "alarm": p.is_alarm,
                                "level": p.level.map(|l| l.as_str()),
                                "value": value_json(s.and_then(|s| s.value)),
                                "quality": s.map(|s| s.quality.as_str()),
                                "exception": s.and_then(|s| s.quality.exception_code()),
                                "age_s": s.map(|s| (now - s.ts_ms).max(0) / 1000),
                                "last_good_age_s": p.last_good_ms.map(|t| (now - t).max(0) / 1000),
                            })
                        })
                        .collect();
                    let good = d.reads.good;
                    let total = good + d.reads.errors().iter().map(|(_, n)| n).sum::<u64>();
                    json!({
                        "name": d.name,
                        "unit": d.unit,
                        "poll_ms": d.poll_ms,
                        "health": match d.health() { Health::Unknown => "unknown", Health::Ok => "ok", Health::Degraded => "degraded", Health::Offline => "offline" },
                        "polls": d.polls,
                        "success_rate": if total > 0 { Some(good as f64 / total as f64) } else { None },
                        "last_poll_ms": d.last_poll_ms,
                        "last_latency_ms": d.last_latency.as_millis() as u64,
                        "last_error": d.last_error,
                        "points": points,
                    })
                })
                .collect();
            json!({
                "name": b.name,
                "link": b.link,
                "utilisation": if uptime > 0.0 { b.busy.as_secs_f64() / uptime } else { 0.0 },
                "devices": devs,
            })
        })
        .collect();
    active.sort_by_key(|a| std::cmp::Reverse(level_rank(a["level"].as_str())));
    json!({
        "gateway": {
            "id": board.gateway_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": board.started.elapsed().as_secs(),
            "config_path": board.config_path,
            "config_sha256": board.config_sha256,
            "now_ms": now,
        },
        "uplink": {
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
        },
        "spool": {
            "readings": sp.readings,
            "alarms": sp.alarms,
            "bytes": sp.bytes,
            "oldest_age_s": sp.oldest_ts_ms.map(|t| (now - t).max(0) / 1000),
            "evicted_readings": sp.evicted_readings,
            "append_errors": sp.append_errors,
        },
        "active_alarms": active,
        "buses": buses,
    })
}

fn level_rank(l: Option<&str>) -> u8 {
    match l {
        Some("high") => 3,
        Some("fault") => 2,
        Some("low") => 1,
        _ => 0,
    }
}
