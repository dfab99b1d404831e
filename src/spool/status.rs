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
    /// Spool files found damaged and salvaged since start, and why the last one was.
    pub damaged_files: u64,
    pub last_damage: Option<String>,
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

    pub(super) fn update(&self, f: impl FnOnce(&mut SpoolStatus)) {
        f(&mut lock(&self.0));
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
        reg.register_collector(Computed::new(
            "spool_oldest_age_seconds",
            "Age of the oldest unacknowledged reading (0 when none)",
            move || {
                let age = state
                    .get()
                    .oldest_ts_ms
                    .map(|t| (now_ms() - t).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                vec![(Vec::new(), age)]
            },
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
