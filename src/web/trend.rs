//! The page's memory of the recent past: a trend ring per point (the last 10 minutes in 5 s
//! buckets, min and max of each) and the alarm log (the last [`LOG_LEN`] alarm and warning
//! events), both filled from the tap by [`follow`].
//!
//! Owns [`Book`] and the task that fills it. Web-owned state, built from the tap (the broadcast
//! of captured records the local broker also follows), so polling, the spool and the uplink
//! keep no history for the page and their status stays cheap to copy. Must never slow the tap's
//! sender (a lag is counted, in `web_tap_lagged_batches_total` and on the page, never hidden)
//! and never grow: a ring is fixed at [`BUCKETS`], the log at [`LOG_LEN`], and only points the
//! gateway polls appear. Bound: [`Ring`] is 968 bytes, so 3,400 points hold 3.3 MB of rings
//! (about 3.5 MB with names and maps), the log under 40 kB.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio_util::sync::CancellationToken;

use crate::record::{AlarmEvent, AlarmLevel, Quality, Reading, Seq, Value, Warn};
use crate::spool::Stored;

/// Width of one trend bucket.
pub const BUCKET_MS: i64 = 5_000;
/// Buckets per ring: 10 minutes.
pub const BUCKETS: usize = 120;
/// Alarm and warning events the log keeps.
pub const LOG_LEN: usize = 200;

/// One point's trend: min and max of the good values in each bucket, NaN where none was read.
/// Slot `b % BUCKETS` holds bucket `b` (bucket = `ts_ms / BUCKET_MS`).
#[derive(Debug, Clone)]
pub struct Ring {
    newest: i64,
    min: [f32; BUCKETS],
    max: [f32; BUCKETS],
}

fn slot(bucket: i64) -> usize {
    bucket.rem_euclid(BUCKETS as i64) as usize
}

impl Ring {
    fn new(bucket: i64) -> Self {
        Ring {
            newest: bucket,
            min: [f32::NAN; BUCKETS],
            max: [f32::NAN; BUCKETS],
        }
    }

    /// Adds a good value read at `ts_ms`; false when it changed nothing (too old, or inside
    /// the bucket's min and max already).
    fn add(&mut self, ts_ms: i64, v: f64) -> bool {
        let b = ts_ms.div_euclid(BUCKET_MS);
        if b > self.newest {
            let steps = (b - self.newest).min(BUCKETS as i64);
            for k in 1..=steps {
                let s = slot(self.newest + k);
                self.min[s] = f32::NAN;
                self.max[s] = f32::NAN;
            }
            self.newest = b;
        } else if b <= self.newest - BUCKETS as i64 {
            return false;
        }
        let (s, v) = (slot(b), v as f32);
        let (lo, hi) = (&mut self.min[s], &mut self.max[s]);
        if lo.is_nan() {
            (*lo, *hi) = (v, v);
            return true;
        }
        let changed = v < *lo || v > *hi;
        *lo = lo.min(v);
        *hi = hi.max(v);
        changed
    }

    /// Buckets from `since` (clamped to the window) to the newest: (first bucket, min, max),
    /// `None` where nothing good was read.
    pub fn since(&self, since: Option<i64>) -> (i64, Vec<Option<f32>>, Vec<Option<f32>>) {
        let oldest = self.newest - BUCKETS as i64 + 1;
        let from = since.unwrap_or(oldest).clamp(oldest, self.newest);
        let pick = |a: &[f32; BUCKETS], b: i64| Some(a[slot(b)]).filter(|v| !v.is_nan());
        let lo = (from..=self.newest).map(|b| pick(&self.min, b)).collect();
        let hi = (from..=self.newest).map(|b| pick(&self.max, b)).collect();
        (from, lo, hi)
    }
}

/// The trends of one device's points, in the order they were first read.
#[derive(Debug, Default)]
pub struct DeviceTrend {
    /// Bumped whenever one of its rings changes: the ETag of its trends.
    pub version: u64,
    pub points: Vec<(Arc<str>, Ring)>,
}

/// One alarm or warning event as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub seq: Seq,
    pub ts_ms: i64,
    pub device: Arc<str>,
    pub point: Arc<str>,
    pub level: AlarmLevel,
    pub prev: AlarmLevel,
    pub warn: Option<Warn>,
    pub value: Option<Value>,
}

/// Every trend ring and the alarm log.
#[derive(Debug, Default)]
pub struct Book {
    devices: HashMap<Arc<str>, DeviceTrend>,
    log: VecDeque<LogEntry>,
    versions: u64,
    /// Tap batches this book missed because it fell behind.
    pub lagged: u64,
}

impl Book {
    /// Takes in one captured batch.
    pub fn add(&mut self, s: &Stored) {
        for r in &s.readings {
            self.reading(r);
        }
        for a in s.alarms.iter().filter(|a| worth_logging(a)) {
            if self.log.len() == LOG_LEN {
                self.log.pop_front();
            }
            self.log.push_back(LogEntry {
                seq: a.seq,
                ts_ms: a.sample.ts_ms,
                device: a.device.clone(),
                point: a.sample.point.clone(),
                level: a.level,
                prev: a.prev,
                warn: a.warn,
                value: a.sample.value,
            });
        }
    }

    fn reading(&mut self, r: &Reading) {
        let (Quality::Good, Some(v)) = (r.sample.quality, r.sample.value) else {
            return;
        };
        let ts = r.sample.ts_ms;
        let d = self.devices.entry(r.device.clone()).or_default();
        let i = match d.points.iter().position(|(n, _)| *n == r.sample.point) {
            Some(i) => i,
            None => {
                let ring = Ring::new(ts.div_euclid(BUCKET_MS));
                d.points.push((r.sample.point.clone(), ring));
                d.points.len() - 1
            }
        };
        if d.points[i].1.add(ts, v.as_f64()) {
            self.versions += 1;
            d.version = self.versions;
        }
    }

    pub fn device(&self, name: &str) -> Option<&DeviceTrend> {
        self.devices.get(name)
    }

    /// Logged events newer than `since`, oldest first.
    pub fn log_since(&self, since: Seq) -> impl Iterator<Item = &LogEntry> {
        self.log.iter().filter(move |e| e.seq > since)
    }

    /// The newest logged event's number (0 while the log is empty).
    pub fn newest_seq(&self) -> Seq {
        self.log.back().map_or(0, |e| e.seq)
    }
}

/// Every alarm and warning event, except a start-up report of a quiet point (`unknown →
/// normal`): a gateway start would otherwise push every real alarm out of the log.
fn worth_logging(a: &AlarmEvent) -> bool {
    !(a.prev == AlarmLevel::Unknown && a.level == AlarmLevel::Normal)
}

pub fn lock(b: &Mutex<Book>) -> MutexGuard<'_, Book> {
    // A panic elsewhere must not take the page's history with it.
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fills `book` from `tap` until the tap closes or `cancel` fires; counts every batch missed.
pub async fn follow(
    book: Arc<Mutex<Book>>,
    mut tap: Receiver<Arc<Stored>>,
    lagged: Counter,
    cancel: CancellationToken,
) {
    loop {
        let r = tokio::select! {
            r = tap.recv() => r,
            () = cancel.cancelled() => return,
        };
        match r {
            Ok(s) => lock(&book).add(&s),
            Err(RecvError::Lagged(n)) => {
                lagged.inc_by(n);
                lock(&book).lagged += n;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Sample;

    fn reading(device: &str, point: &str, ts_ms: i64, v: f64) -> Reading {
        Reading {
            seq: 1,
            device: device.into(),
            sample: Sample {
                point: point.into(),
                ts_ms,
                value: Some(Value::Float(v)),
                quality: Quality::Good,
            },
        }
    }

    fn alarm(seq: Seq, level: AlarmLevel, prev: AlarmLevel) -> AlarmEvent {
        let r = reading("gas-1", "ch01.status", 1000 * seq as i64, 2.0);
        AlarmEvent {
            seq,
            device: r.device,
            sample: r.sample,
            level,
            prev,
            warn: None,
        }
    }

    #[test]
    fn a_ring_keeps_min_and_max_per_bucket_for_ten_minutes_only() {
        let t0 = 1_000 * BUCKET_MS;
        let mut r = Ring::new(t0 / BUCKET_MS);
        assert!(r.add(t0, 5.0));
        assert!(r.add(t0 + 100, 7.0));
        assert!(!r.add(t0 + 200, 6.0), "inside min and max: nothing changed");
        assert!(r.add(t0 + 300, 1.0));
        let (from, lo, hi) = r.since(None);
        assert_eq!(from, t0 / BUCKET_MS - BUCKETS as i64 + 1);
        assert_eq!(
            (lo.len(), lo.last(), hi.last()),
            (BUCKETS, Some(&Some(1.0)), Some(&Some(7.0)))
        );
        assert!(lo[..BUCKETS - 1].iter().all(Option::is_none));
        // Two buckets on, the one between is empty, the first still there.
        assert!(r.add(t0 + 2 * BUCKET_MS, 3.0));
        let (from, lo, _) = r.since(Some(t0 / BUCKET_MS));
        assert_eq!(
            (from, lo),
            (t0 / BUCKET_MS, vec![Some(1.0), None, Some(3.0)])
        );
        // Ten minutes later the first bucket has left the window; older values are refused.
        assert!(r.add(t0 + BUCKETS as i64 * BUCKET_MS, 4.0));
        let (from, lo, _) = r.since(Some(0));
        assert_eq!(
            from,
            t0 / BUCKET_MS + 1,
            "the window starts after the first bucket"
        );
        assert_eq!(lo.iter().flatten().count(), 2);
        assert!(!r.add(t0, 9.0), "older than the window");
        // A long silence clears the whole ring.
        assert!(r.add(t0 + 1_000 * BUCKET_MS, 2.0));
        assert_eq!(r.since(None).1.iter().flatten().count(), 1);
    }

    #[test]
    fn a_ring_is_small_enough_for_a_plant() {
        assert_eq!(std::mem::size_of::<Ring>(), 968);
        assert!(3_400 * std::mem::size_of::<Ring>() < 3_300_000);
    }

    #[test]
    fn the_book_versions_a_device_only_when_its_trend_changes_and_skips_bad_reads() {
        let mut b = Book::default();
        let t0 = 7 * BUCKET_MS;
        let mut bad = reading("gas-1", "ch01.gas", t0, 0.0);
        bad.sample.quality = Quality::Timeout;
        bad.sample.value = None;
        b.add(&Stored {
            readings: vec![bad],
            alarms: vec![],
        });
        assert!(b.device("gas-1").is_none(), "a failed read draws nothing");
        let batch = Stored {
            readings: vec![
                reading("gas-1", "ch01.gas", t0, 2.0),
                reading("gas-1", "ch02.gas", t0, 3.0),
            ],
            alarms: vec![],
        };
        b.add(&batch);
        let v = b.device("gas-1").unwrap().version;
        assert_eq!(b.device("gas-1").unwrap().points.len(), 2);
        b.add(&batch);
        assert_eq!(
            b.device("gas-1").unwrap().version,
            v,
            "the same values change nothing"
        );
        b.add(&Stored {
            readings: vec![reading("gas-1", "ch01.gas", t0 + 1, 2.5)],
            alarms: vec![],
        });
        assert!(b.device("gas-1").unwrap().version > v);
    }

    #[test]
    fn the_log_keeps_the_last_events_and_not_the_start_up_reports_of_quiet_points() {
        let mut b = Book::default();
        b.add(&Stored {
            readings: vec![],
            alarms: vec![
                alarm(1, AlarmLevel::Normal, AlarmLevel::Unknown),
                alarm(2, AlarmLevel::High, AlarmLevel::Unknown),
            ],
        });
        assert_eq!(b.log_since(0).map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        let many: Vec<_> = (3..3 + LOG_LEN as u64)
            .map(|s| alarm(s, AlarmLevel::Low, AlarmLevel::High))
            .collect();
        b.add(&Stored {
            readings: vec![],
            alarms: many,
        });
        assert_eq!(b.log_since(0).count(), LOG_LEN);
        assert_eq!(
            b.log_since(0).next().unwrap().seq,
            3,
            "the oldest went first"
        );
        assert_eq!(b.newest_seq(), 2 + LOG_LEN as u64);
        assert_eq!(b.log_since(b.newest_seq() - 2).count(), 2);
    }

    #[tokio::test]
    async fn follow_counts_what_it_missed() {
        let (tx, rx) = tokio::sync::broadcast::channel(2);
        let book = Arc::new(Mutex::new(Book::default()));
        let lagged = Counter::default();
        for _ in 0..5 {
            tx.send(Arc::new(Stored::default())).unwrap();
        }
        drop(tx);
        follow(book.clone(), rx, lagged.clone(), CancellationToken::new()).await;
        assert_eq!(lagged.get(), 3);
        assert_eq!(lock(&book).lagged, 3);
    }
}
