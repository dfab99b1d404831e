//! `/api/trends` and `/api/alarms`: the page's trend lines and alarm log as JSON, from the
//! web's own [`Book`].
//!
//! Owns their JSON shapes. Each answer carries its version (a device's trend version, the
//! newest logged sequence number) for `If-None-Match`, and takes `since` so a page that holds
//! most of it is sent only the rest. Must never take anything but the book (no status, no
//! spool): it shows what the tap delivered, and says when the tap outran it (`lagged`).

use serde::Serialize;

use super::trend::{Book, LogEntry, BUCKET_MS};
use crate::record::Seq;

#[derive(Serialize)]
pub struct PointTrend<'a> {
    name: &'a str,
    /// Bucket number of `lo[0]` and `hi[0]` (bucket = ms since the epoch / `bucket_ms`).
    from: i64,
    lo: Vec<Option<f32>>,
    hi: Vec<Option<f32>>,
}

#[derive(Serialize)]
pub struct Trends<'a> {
    device: &'a str,
    pub version: u64,
    bucket_ms: i64,
    points: Vec<PointTrend<'a>>,
}

/// The trends of `device` from bucket `since` on (the whole window without), `None` for a
/// device nothing good was read from yet.
pub fn trends<'a>(book: &'a Book, device: &'a str, since: Option<i64>) -> Option<Trends<'a>> {
    let d = book.device(device)?;
    let points = d
        .points
        .iter()
        .map(|(name, ring)| {
            let (from, lo, hi) = ring.since(since);
            PointTrend { name, from, lo, hi }
        })
        .collect();
    Some(Trends {
        device,
        version: d.version,
        bucket_ms: BUCKET_MS,
        points,
    })
}

#[derive(Serialize)]
struct Event<'a> {
    seq: Seq,
    ts_ms: i64,
    device: &'a str,
    point: &'a str,
    level: &'static str,
    prev: &'static str,
    warn: Option<&'static str>,
    value: serde_json::Value,
}

impl<'a> From<&'a LogEntry> for Event<'a> {
    fn from(e: &'a LogEntry) -> Self {
        Event {
            seq: e.seq,
            ts_ms: e.ts_ms,
            device: &e.device,
            point: &e.point,
            level: e.level.as_str(),
            prev: e.prev.as_str(),
            warn: e.warn.map(|w| w.as_str()),
            value: match e.value {
                None => serde_json::Value::Null,
                Some(v) => super::api::number_json(v),
            },
        }
    }
}

#[derive(Serialize)]
pub struct Alarms<'a> {
    /// The newest event's sequence number: the log's version.
    pub newest: Seq,
    /// True when this is the whole log (`since` was absent or newer than anything logged).
    full: bool,
    /// Tap batches the log missed: events in them are not shown.
    pub lagged: u64,
    /// Oldest first.
    events: Vec<Event<'a>>,
}

/// The log's events after `since` (all of them without, or when `since` is from elsewhere).
pub fn alarms(book: &Book, since: Option<Seq>) -> Alarms<'_> {
    let newest = book.newest_seq();
    let base = since.filter(|s| *s <= newest);
    Alarms {
        newest,
        full: base.is_none(),
        lagged: book.lagged,
        events: book.log_since(base.unwrap_or(0)).map(Event::from).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlarmEvent, AlarmLevel, Quality, Reading, Sample, Value, Warn};
    use crate::spool::Stored;

    fn sample(ts_ms: i64, v: f64) -> Sample {
        Sample {
            point: "t101.level".into(),
            ts_ms,
            value: Some(Value::Float(v)),
            quality: Quality::Good,
        }
    }

    fn book() -> Book {
        let mut b = Book::default();
        let t0 = 100 * BUCKET_MS;
        let readings = (0..3)
            .map(|k| Reading {
                seq: k,
                device: "tank-1".into(),
                sample: sample(t0 + k as i64 * BUCKET_MS, 8.5 + k as f64 * 0.25),
            })
            .collect();
        let alarms = vec![AlarmEvent {
            seq: 7,
            device: "tank-1".into(),
            sample: sample(t0, 8.9),
            level: AlarmLevel::Warning,
            prev: AlarmLevel::Normal,
            warn: Some(Warn::Rise),
        }];
        b.add(&Stored { readings, alarms });
        b
    }

    #[test]
    fn trends_carry_the_window_or_what_follows_since_as_short_numbers() {
        let b = book();
        assert!(trends(&b, "tank-2", None).is_none());
        let all = serde_json::to_value(trends(&b, "tank-1", None).unwrap()).unwrap();
        let p = &all["points"][0];
        assert_eq!(p["name"], "t101.level");
        assert_eq!(p["from"], 102 - 119);
        assert_eq!(p["lo"].as_array().unwrap().len(), 120);
        let tail = serde_json::to_string(
            trends(&b, "tank-1", Some(101))
                .unwrap()
                .points
                .first()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            tail,
            r#"{"name":"t101.level","from":101,"lo":[8.75,9.0],"hi":[8.75,9.0]}"#
        );
    }

    #[test]
    fn the_log_answers_with_its_newest_number_and_says_whether_it_is_whole() {
        let b = book();
        let all = serde_json::to_value(alarms(&b, None)).unwrap();
        assert_eq!(
            (all["newest"].as_u64(), all["full"].as_bool()),
            (Some(7), Some(true))
        );
        let e = &all["events"][0];
        assert_eq!(
            (e["level"].as_str(), e["prev"].as_str(), e["warn"].as_str()),
            (Some("warning"), Some("normal"), Some("rise"))
        );
        assert_eq!(e["value"], 8.9);
        let none = serde_json::to_value(alarms(&b, Some(7))).unwrap();
        assert_eq!(
            (
                none["full"].as_bool(),
                none["events"].as_array().map(Vec::len)
            ),
            (Some(false), Some(0))
        );
        // A number this log never reached (another gateway's, a replaced spool): all of it.
        let other = serde_json::to_value(alarms(&b, Some(999))).unwrap();
        assert_eq!(
            (
                other["full"].as_bool(),
                other["events"].as_array().map(Vec::len)
            ),
            (Some(true), Some(1))
        );
    }
}
