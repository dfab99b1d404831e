//! What the spool shows the outside: its latest counts as a [`SpoolStatus`] snapshot, and its
//! metrics.
//!
//! Owns [`SpoolState`] (written by the spool after each commit or acknowledgement, read by the
//! page, health and the demo) and [`SpoolMetrics`]. Must never be on the data path: readers get
//! copies, and no lock is held across an await or a commit.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{labels, seconds_histogram, Computed, Labels, Registry};
use crate::record::now_ms;

/// The spool as last seen.
#[derive(Debug, Clone, Default)]
pub struct SpoolStatus {
    /// Whether the store is open (false only before the first open and while it is reopened).
    pub open: bool,
    /// Readings and alarms stored on disk, waiting for the broker.
    pub readings: u64,
    pub alarms: u64,
    /// Gaps stored, waiting to be announced.
    pub gaps: u64,
    /// Readings captured, not yet durable nor acknowledged (in memory, at most `sync_ms` old
    /// unless the disk refuses them).
    pub head_readings: u64,
    /// Records numbered since start.
    pub captured_records: u64,
    /// Size of the file on disk.
    pub bytes: u64,
    pub oldest_ts_ms: Option<i64>,
    pub next_seq: u64,
    /// Readings evicted because the spool was full, over the store's life.
    pub evicted_readings: u64,
    /// Commits that failed since start.
    pub append_errors: u64,
    /// Readings dropped since start because the disk refused them and the numbers left were
    /// kept for alarms, or the memory for them was full: never numbered, never sent.
    pub uncaptured_readings: u64,
    /// Spool files found damaged and salvaged since start, and why the last one was.
    pub damaged_files: u64,
    pub last_damage: Option<String>,
    /// The durable write running now (commit or reservation), if any: when it started. A disk
    /// that hangs (frozen, dying) shows as a write that does not end.
    pub write_started_ms: Option<i64>,
    /// Durable writes running now (a commit and a reservation can overlap).
    pub writes_in_flight: u32,
    /// Since when durable writes fail (disk full, read-only, I/O errors), while they do.
    pub failing_since_ms: Option<i64>,
    /// The last durable write's error, while writes fail.
    pub last_error: Option<String>,
    /// When the last durable write succeeded.
    pub last_durable_ms: Option<i64>,
    /// The largest charge before readings are evicted (`max_bytes` less headroom, lower after
    /// a disk-full failure until commits succeed again): the limit in force.
    pub budget_bytes: u64,
}

/// How long a durable write may hang, or writes may keep failing, before the disk counts as in
/// trouble: on the page, in readiness and in `spool_disk_trouble_seconds`. An eMMC's slow
/// fsync takes well under a second; a frozen or read-only filesystem never ends or never
/// succeeds.
pub const TROUBLE_AFTER_MS: i64 = 5_000;

/// Why the spool's disk is in trouble, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTrouble {
    pub since_ms: i64,
    pub reason: String,
}

impl SpoolStatus {
    /// Whether the disk has been in trouble for at least [`TROUBLE_AFTER_MS`] at `now_ms`: a
    /// write hanging that long, or writes failing that long.
    pub fn disk_trouble(&self, now_ms: i64) -> Option<DiskTrouble> {
        let hung = self
            .write_started_ms
            .filter(|t| now_ms - t >= TROUBLE_AFTER_MS)
            .map(|t| DiskTrouble {
                since_ms: t,
                reason: format!(
                    "a spool write has not finished for {} s (the filesystem is frozen or the disk hangs)",
                    (now_ms - t) / 1000
                ),
            });
        let failing = self
            .failing_since_ms
            .filter(|t| now_ms - t >= TROUBLE_AFTER_MS)
            .map(|t| DiskTrouble {
                since_ms: t,
                reason: format!(
                    "spool writes have failed for {} s: {}",
                    (now_ms - t) / 1000,
                    self.last_error.as_deref().unwrap_or("unknown error")
                ),
            });
        match (hung, failing) {
            (Some(h), Some(f)) => Some(if h.since_ms <= f.since_ms { h } else { f }),
            (h, f) => h.or(f),
        }
    }
}

/// The shared, read-only-for-others state of the spool.
#[derive(Debug, Default)]
pub struct SpoolState(Mutex<SpoolStatus>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SpoolState {
    pub fn get(&self) -> SpoolStatus {
        lock(&self.0).clone()
    }

    /// Whether a durable write has been running for at least `ms` at `now_ms`.
    pub fn write_running_for(&self, ms: i64, now_ms: i64) -> bool {
        lock(&self.0)
            .write_started_ms
            .is_some_and(|t| now_ms - t >= ms)
    }

    pub(super) fn update<R>(&self, f: impl FnOnce(&mut SpoolStatus) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

/// The spool's metrics.
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    pub(super) backlog: Family<Labels, Gauge>,
    pub(super) file_bytes: Gauge,
    pub(super) captured: Counter,
    pub(super) durable_records: Counter,
    pub(super) durable_commits: Counter,
    pub(super) evicted: Counter,
    pub(super) append_errors: Counter,
    pub(super) commit: Histogram,
    pub(super) damaged_files: Counter,
    pub(super) damaged_lost: Counter,
    pub(super) uncaptured: Counter,
}

impl Default for SpoolMetrics {
    fn default() -> Self {
        SpoolMetrics {
            backlog: Family::default(),
            file_bytes: Gauge::default(),
            captured: Counter::default(),
            durable_records: Counter::default(),
            durable_commits: Counter::default(),
            evicted: Counter::default(),
            append_errors: Counter::default(),
            commit: seconds_histogram(),
            damaged_files: Counter::default(),
            damaged_lost: Counter::default(),
            uncaptured: Counter::default(),
        }
    }
}

impl SpoolMetrics {
    pub(super) fn show(&self, s: &SpoolStatus) {
        self.backlog
            .get_or_create(&labels(&[("lane", "readings")]))
            .set(s.readings as i64);
        self.backlog
            .get_or_create(&labels(&[("lane", "alarms")]))
            .set(s.alarms as i64);
        self.backlog
            .get_or_create(&labels(&[("lane", "gaps")]))
            .set(s.gaps as i64);
        self.backlog
            .get_or_create(&labels(&[("lane", "head")]))
            .set(s.head_readings as i64);
        self.file_bytes.set(s.bytes as i64);
    }

    /// Registers the spool's metrics; the oldest reading's age is computed from `state` at
    /// each scrape.
    pub fn register(&self, reg: &mut Registry, state: Arc<SpoolState>) {
        reg.register(
            "spool_backlog_records",
            "Records waiting for the broker's acknowledgement, by lane",
            self.backlog.clone(),
        );
        reg.register(
            "spool_file_bytes",
            "Size of the spool file on disk",
            self.file_bytes.clone(),
        );
        let oldest = state.clone();
        reg.register_collector(Computed::new(
            "spool_oldest_age_seconds",
            "Age of the oldest unacknowledged reading (0 when none)",
            move || {
                let age = oldest
                    .get()
                    .oldest_ts_ms
                    .map(|t| (now_ms() - t).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                vec![(Vec::new(), age)]
            },
        ));
        let trouble = state.clone();
        reg.register_collector(Computed::new(
            "spool_disk_trouble_seconds",
            "How long durable spool writes have hung or failed (0 when the disk is fine; counted after 5 s)",
            move || {
                let now = now_ms();
                let s = trouble.get();
                let secs = s
                    .disk_trouble(now)
                    .map(|t| (now - t.since_ms).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                vec![(Vec::new(), secs)]
            },
        ));
        reg.register_collector(Computed::new(
            "spool_budget_bytes",
            "The spool's size limit in force: beyond it the oldest readings are evicted (lower than max_bytes after a disk-full failure, until commits succeed)",
            move || vec![(Vec::new(), state.get().budget_bytes as f64)],
        ));
        reg.register(
            "spool_captured_records",
            "Records numbered at capture",
            self.captured.clone(),
        );
        reg.register(
            "spool_durable_records",
            "Records written to disk because the broker had not acknowledged them within sync_ms (or alarms, at once)",
            self.durable_records.clone(),
        );
        reg.register(
            "spool_durable_commits",
            "Durable (fsynced) commits of the spool",
            self.durable_commits.clone(),
        );
        reg.register_collector(Computed::new_counter(
            "spool_written_bytes",
            "Bytes this process caused to be written to storage (/proc/self/io write_bytes): the flash wear figure",
            || crate::metrics::process_write_bytes().map(|b| vec![(Vec::new(), b)]).unwrap_or_default(),
        ));
        reg.register(
            "spool_uncaptured_readings",
            "Readings dropped because the disk refused them and no sequence numbers or memory were left for them (alarms never are); never sent",
            self.uncaptured.clone(),
        );
        reg.register(
            "spool_evicted_readings",
            "Readings evicted because the spool was full (alarms never are)",
            self.evicted.clone(),
        );
        reg.register(
            "spool_append_errors",
            "Commits that failed (disk full, I/O error) and were retried",
            self.append_errors.clone(),
        );
        reg.register(
            "spool_damaged_files",
            "Spool files found damaged (integrity check, crash loop), moved aside and salvaged",
            self.damaged_files.clone(),
        );
        reg.register(
            "spool_damaged_lost_numbers",
            "Sequence numbers announced as a damaged gap because a salvage could not read them",
            self.damaged_lost.clone(),
        );
        reg.register(
            "spool_commit_duration_seconds",
            "Seconds a durable commit took, fsync included",
            self.commit.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_healthy_disk_and_a_short_stall_are_no_trouble() {
        let mut s = SpoolStatus::default();
        assert_eq!(s.disk_trouble(T0), None);
        // an fsync that takes a while, a failure that has just begun
        s.write_started_ms = Some(T0 - TROUBLE_AFTER_MS + 1);
        s.failing_since_ms = Some(T0 - TROUBLE_AFTER_MS + 1);
        assert_eq!(s.disk_trouble(T0), None);
    }

    #[test]
    fn a_write_that_hangs_or_writes_that_keep_failing_are_trouble_from_their_start() {
        let hung = SpoolStatus {
            write_started_ms: Some(T0 - 6_500),
            ..Default::default()
        };
        assert_eq!(
            hung.disk_trouble(T0),
            Some(DiskTrouble {
                since_ms: T0 - 6_500,
                reason: "a spool write has not finished for 6 s (the filesystem is frozen or the disk hangs)".into()
            })
        );
        let failing = SpoolStatus {
            failing_since_ms: Some(T0 - TROUBLE_AFTER_MS),
            last_error: Some("Read-only file system (os error 30)".into()),
            ..Default::default()
        };
        assert_eq!(
            failing.disk_trouble(T0),
            Some(DiskTrouble {
                since_ms: T0 - TROUBLE_AFTER_MS,
                reason: "spool writes have failed for 5 s: Read-only file system (os error 30)"
                    .into()
            })
        );
        // both: the one that began first
        let both = SpoolStatus {
            write_started_ms: Some(T0 - 6_000),
            ..failing.clone()
        };
        assert_eq!(both.disk_trouble(T0).unwrap().since_ms, T0 - 6_000);
        let both = SpoolStatus {
            write_started_ms: Some(T0 - 5_000),
            failing_since_ms: Some(T0 - 9_000),
            ..failing
        };
        assert!(both
            .disk_trouble(T0)
            .unwrap()
            .reason
            .starts_with("spool writes have failed for 9 s"));
    }

    #[test]
    fn the_state_tells_how_long_a_write_has_run() {
        let state = SpoolState::default();
        assert!(!state.write_running_for(0, T0));
        state.update(|s| s.write_started_ms = Some(T0 - 1_000));
        assert!(state.write_running_for(1_000, T0));
        assert!(!state.write_running_for(1_001, T0));
        assert_eq!(state.get().write_started_ms, Some(T0 - 1_000));
    }
}
