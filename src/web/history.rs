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
    lagged: u64,
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
