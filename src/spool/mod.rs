//! The spool: the queue between polling and the uplink, durable where it has to be. Its design,
//! in full:
//!
//! **Owns** every record from the moment a poll produced it until the platform's broker
//! acknowledged it. **Must never** delete a record that was not acknowledged (except by the
//! documented eviction of readings), evict an alarm, hand out a sequence number twice, or lose
//! a record without announcing its number as a gap.
//!
//! # The rule: durable by `sync_ms`, or acknowledged, whichever comes first
//! A captured record is numbered and published at once. It sits in the in-memory [`head`] with
//! a deadline of `[spool] sync_ms`; if the broker acknowledges it first, it never touches the
//! disk. Whatever is still unacknowledged at its deadline is committed to the store (one
//! fsynced transaction for everything due). Alarm transitions and device offline/online events
//! are committed at once, in parallel with their publication. During an outage nothing is
//! acknowledged, so everything reaches the disk within `sync_ms`, as before.
//!
//! # Layout
//! One redb file, `{data_dir}/spool.redb` ([`store`] is the only module that imports redb, but
//! for [`scan`], which reads damaged files in the salvage's child processes):
//! - `readings`: key = sequence number of the batch's first reading → one device poll's samples
//!   ([`crate::record::codec`]); the batch's readings are numbered key, key+1, …
//! - `alarms`: key = sequence number → one alarm transition.
//! - `gaps`: key = first number of a range → a [`Gap`] to announce, kept until acknowledged.
//! - `meta`: `reserved_until`, `settled_below`, pending reading count, logical bytes, evicted
//!   readings, each updated in the transaction that changes what it describes.
//!
//! # Invariants
//! - *Numbers at capture, never reused*: numbers come from blocks reserved durably in advance
//!   ([`numbers`]); a restart continues after the last reservation. A new store (first start,
//!   or after a damaged one was moved aside) starts at `now_ms × 1000`, above anything an
//!   earlier store can have issued below 1,000,000 records/s, and below 2^53 until 2255.
//! - *Settled watermark*: each durable commit (and at least every [`SETTLE_EVERY`] while
//!   records flow) stores `settled_below`: every record below it is on disk or acknowledged.
//! - *Nothing lost silently*: a start after an unclean stop announces every number in
//!   `settled_below..reserved_until` that the store does not hold as a gap (`unclean_stop`):
//!   at most `sync_ms` of unacknowledged readings, and for alarms one commit's time, are in it.
//!   Evicted readings are announced the same way (`evicted`). A clean stop commits what is
//!   unacknowledged and leaves no gap.
//! - *Delete only after PUBACK*: [`Spool::ack`] settles records in the head in memory and
//!   deletes stored ones in a commit that is not fsynced: a lost delete is a resend, which the
//!   platform drops by `(gw, seq)`.
//! - *Bounded disk*: entries are charged their size plus [`store::ENTRY_OVERHEAD`]; when the
//!   charge would pass the budget, the oldest reading batches are evicted in the same
//!   transaction. Alarms and gaps are never evicted. The budget starts at 45 % of
//!   `[spool] max_bytes` (redb's file settles at ~2.1× the charge) and shrinks when the file
//!   nears `max_bytes`.
//! - *Bounded memory*: the head holds at most [`HEAD_MAX_READINGS`] readings; when the disk
//!   refuses them, capture stops and the pollers wait on their bounded channel.
//! - *Disk full*: a failed commit leaves its records in the head. redb refuses all work after
//!   an I/O error, so the spool reopens the file, lowers its budget to nine tenths of what the
//!   disk took, evicts the oldest readings in a commit of their own, and retries with backoff.
//! - *Disk given back*: when acks have drained a backlog (less than 1 MiB left) from a file
//!   larger than 16 MiB, the spool compacts it, at most every 10 minutes.
//!
//! # Recovery
//! - `kill -9` or power loss: redb reopens at the last completed durable commit.
//! - A file that cannot be opened as a spool is renamed `spool.redb.damaged-<unix-ms>` with an
//!   ERROR log, and a fresh spool is started, so polling and forwarding go on.
//! - The gateway opens through [`salvage::open_guarded`]: a child process checks every page
//!   first (redb panics on some damaged pages, and release builds abort on a panic); a damaged
//!   file, or a crash loop (3 starts without a clean close within 10 min), is moved aside and
//!   what children can read of it goes into a fresh spool with its numbers and reservation;
//!   what they cannot read is announced as a `damaged` gap. [`scan`] is the only other module
//!   that imports redb, and runs only in those children.
//! - A spool held by another process is a fatal error: two gateways must not share one.
//! - An operator looks inside with `plantgate spool stats|export|verify` ([`forensics`]): a
//!   child reads the file through [`store::inspect`] (read-only descriptor, redb's writes kept
//!   in memory, locks that a running gateway's refuse), so it never changes the file.
//! - Tests and tools can keep a spool on any redb storage backend
//!   ([`Spool::open_with_backend`]): `tests/power_loss.rs` cuts the power on one at random
//!   moments and checks every promise above after each cut.

mod floor;
mod flush;
pub mod forensics;
pub mod head;
mod helper;
pub mod numbers;
mod open;
mod read;
mod recover;
mod run;
pub mod salvage;
pub mod scan;
pub mod status;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::SpoolSettings;
use crate::record::{AlarmEvent, DevicePoll, Reading, Seq};
use head::{Entry, Head};
use numbers::Numbers;
use status::{SpoolMetrics, SpoolState, SpoolStatus};
use store::{Store, StoreError, Write};

pub use run::run_appender;

/// The spool cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The data directory cannot be created or written. Not retried: a person must fix it.
    #[error("cannot use data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records as captured, with their sequence numbers: what live consumers (the demo, the local
/// broker) see, at capture.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    pub readings: Vec<Reading>,
    pub alarms: Vec<AlarmEvent>,
}

/// Most readings the head holds before capture waits for the disk.
pub const HEAD_MAX_READINGS: usize = 100_000;
/// Most readings the head takes while the disk refuses commits; beyond them, new readings are
/// dropped and counted ([`Spool::count_uncaptured`]), alarms are kept.
pub const HEAD_FAILING_MAX: usize = 4096;
/// Longest time between two writes of the settled watermark while records flow.
pub const SETTLE_EVERY: Duration = Duration::from_secs(5);

pub struct Spool {
    /// `None` only while the store is being reopened after an I/O error.
    store: RwLock<Option<Arc<Store>>>,
    origin: store::Origin,
    settings: SpoolSettings,
    head: Mutex<Head>,
    numbers: Mutex<Numbers>,
    state: Arc<SpoolState>,
    metrics: SpoolMetrics,
    /// The next sequence number after each capture: the uplink wakes on it.
    captured: watch::Sender<Seq>,
    /// Largest charge before readings are evicted; shrinks if the file nears `max_bytes`.
    budget: AtomicU64,
    /// Most entries per commit: a quarter after a failure (a nearly full disk takes a few),
    /// doubled after each success up to [`MAX_CHUNK`].
    chunk: AtomicU64,
    /// The last commit failed (disk full or failing).
    failing: std::sync::atomic::AtomicBool,
    /// Deletes committed without fsync since the last durable commit.
    undurable_deletes: AtomicU64,
    /// When the watermark was last made durable, and its value.
    settled: Mutex<(Instant, Seq)>,
    last_compaction: Mutex<Option<Instant>>,
    /// While a budget lowered by a failure is not back: when it was last lowered or raised.
    last_lowered: Mutex<Option<Instant>>,
    /// When readings were last reported dropped for want of numbers or memory.
    uncaptured_said: Mutex<Option<Instant>>,
    /// Reads were served from the head alone because the store could not be read.
    partial_reads: std::sync::atomic::AtomicBool,
    /// A read of the store succeeded after partial ones.
    reads_healed: std::sync::atomic::AtomicBool,
    /// A read failed for a reason worth a warning since the store was last read.
    read_failure_said: std::sync::atomic::AtomicBool,
    /// When the last "spool full" line was logged, and the readings evicted since.
    evictions_said: Mutex<(Option<Instant>, u64)>,
}

pub(crate) const FILE: &str = "spool.redb";
const MAX_CHUNK: u64 = 4096;
/// Every this many deletes of acknowledged records, one is made durable: what a crash can make
/// the uplink send again is bounded by this many messages (plus those in flight).
pub const DURABLE_DELETE_EVERY: u64 = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Spool {
    /// The spool's latest counts.
    pub fn status(&self) -> SpoolStatus {
        self.state.get()
    }

    /// A read-only handle on the spool's status, for the page and health.
    pub fn status_handle(&self) -> Arc<SpoolState> {
        self.state.clone()
    }

    /// Registers the spool's metrics with the gateway's registry.
    pub fn register_metrics(&self, reg: &mut crate::metrics::Registry) {
        self.metrics.register(reg, self.state.clone());
    }

    fn store(&self) -> Result<Arc<Store>, StoreError> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the spool is being reopened".into()))
    }

    /// Whether capturing `need` numbers should first wait for a reservation ([`Spool::reserve`]).
    pub fn needs_reserve(&self, need: u64) -> bool {
        lock(&self.numbers).wants_reserve(need).is_some()
    }

    /// Reserves the next block of numbers in a durable commit. Blocking.
    pub fn reserve(&self, need: u64) -> Result<(), StoreError> {
        let Some(until) = lock(&self.numbers).wants_reserve(need) else {
            return Ok(());
        };
        self.durable(|s| {
            s.write(Write {
                reserved_until: Some(until),
                budget: u64::MAX,
                ..Write::default()
            })
        })?;
        lock(&self.numbers).reserved(until);
        if let store::Origin::File(p) = &self.origin {
            if let Some(dir) = p.parent() {
                floor::raise(dir, until);
            }
        }
        Ok(())
    }

    /// Numbers a poll and puts it in the head, to be published at once and made durable by its
    /// deadline (alarms at once). Never blocks on the disk; returns `None` only when the numbers
    /// are not reserved ([`Spool::reserve`] first).
    pub fn capture(&self, poll: &DevicePoll) -> Option<Stored> {
        self.capture_keeping(poll, 0)
    }

    /// [`Spool::capture`], but only while `keep` reserved numbers are left after it: while the
    /// disk refuses new reservations, the last numbers are kept for alarms.
    pub fn capture_keeping(&self, poll: &DevicePoll, keep: u64) -> Option<Stored> {
        let n = (poll.samples.len() + poll.alarms.len()) as u64;
        // The numbers are taken under the head's lock (head, then numbers: the order every user
        // of both keeps): a flush that computes the settled watermark from the head and the next
        // number must never see numbers handed out whose records are not in the head yet.
        let mut head = lock(&self.head);
        let first = lock(&self.numbers).take_keeping(n, keep)?;
        let now = Instant::now();
        let deadline = now + self.settings.sync;
        let mut seq = first;
        let mut out = Stored::default();
        if !poll.samples.is_empty() {
            let readings: Vec<Reading> = poll
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| Reading {
                    seq: first + i as u64,
                    device: poll.device.clone(),
                    sample: s.clone(),
                })
                .collect();
            seq += readings.len() as u64;
            out.readings = readings.clone();
            head.push(Entry::Readings(Arc::new(readings)), deadline);
        }
        for a in &poll.alarms {
            let event = AlarmEvent {
                seq,
                device: poll.device.clone(),
                sample: a.sample.clone(),
                level: a.level,
                prev: a.prev,
                warn: a.warn,
            };
            seq += 1;
            out.alarms.push(event.clone());
            // Alarms are committed at once, in parallel with their publication.
            head.push(Entry::Alarm(Arc::new(event)), now);
        }
        let in_head = head.readings();
        drop(head);
        self.metrics.captured.inc_by(n);
        self.state.update(|s| {
            s.captured_records += n;
            s.head_readings = in_head as u64;
            s.next_seq = seq;
        });
        self.captured.send_replace(seq);
        Some(out)
    }

    /// Whether capture should wait: the head is full, or the disk refuses commits and the head
    /// already holds a commit's worth (as the pollers' channel did before the head existed).
    pub fn head_full(&self) -> bool {
        lock(&self.head).readings() >= HEAD_MAX_READINGS
    }

    /// Whether readings can no longer be taken in: the disk refuses commits and the head holds
    /// [`HEAD_FAILING_MAX`] readings that neither it nor the broker has taken. Alarms still are.
    pub fn refuses_readings(&self) -> bool {
        (self.failing.load(Ordering::Relaxed) || self.disk_hangs())
            && lock(&self.head).readings() >= HEAD_FAILING_MAX
    }

    /// A durable write has not returned for a second: the disk hangs (frozen, dying). Reads
    /// then keep off the store, which may wait behind that write.
    pub(crate) fn disk_hangs(&self) -> bool {
        self.state.write_running_for(1000, crate::record::now_ms())
    }

    /// Readings of a poll that could not be numbered (the disk refuses commits and
    /// reservations): dropped, counted and shown, never sent. Their alarms are kept.
    pub fn count_uncaptured(&self, readings: usize) {
        self.metrics.uncaptured.inc_by(readings as u64);
        let total = self.state.update(|s| {
            s.uncaptured_readings += readings as u64;
            s.uncaptured_readings
        });
        let mut said = lock(&self.uncaptured_said);
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *said = Some(Instant::now());
            tracing::error!(
                total,
                "the spool's disk refuses writes and no numbers or memory are left for readings: readings are dropped (counted) until it takes them again; alarms are still numbered and sent"
            );
        }
    }

    /// When the next record in the head falls due for a commit, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        lock(&self.head).next_deadline()
    }

    /// The broker acknowledged these entries (reading batches and alarms by key, gaps by the
    /// range as sent). Records in the head are settled in memory; stored ones are deleted in a
    /// commit that is not fsynced. Blocking.
    pub fn ack(
        &self,
        reading_keys: &[u64],
        alarm_keys: &[u64],
        gaps: &[(Seq, Seq)],
    ) -> Result<(), StoreError> {
        let (readings, alarms): (Vec<u64>, Vec<u64>) = {
            let mut head = lock(&self.head);
            (
                reading_keys
                    .iter()
                    .copied()
                    .filter(|k| !head.ack(*k))
                    .collect(),
                alarm_keys
                    .iter()
                    .copied()
                    .filter(|k| !head.ack(*k))
                    .collect(),
            )
        };
        // While a write hangs, a delete would wait behind it and hold up every later
        // acknowledgement of records in memory: stored ones are then left to be sent again.
        if (readings.is_empty() && alarms.is_empty() && gaps.is_empty()) || self.disk_hangs() {
            self.state
                .update(|s| s.head_readings = lock(&self.head).readings() as u64);
            return Ok(());
        }
        // Pages freed by deletes that are not fsynced cannot be reused until a durable commit:
        // a long drain makes every DURABLE_DELETE_EVERY-th delete durable, or the file grows.
        let durable =
            self.undurable_deletes.fetch_add(1, Ordering::Relaxed) + 1 >= DURABLE_DELETE_EVERY;
        self.store()?.delete(&readings, &alarms, gaps, durable)?;
        if durable {
            self.undurable_deletes.store(0, Ordering::Relaxed);
        }
        let (live, file) = self.refresh_status()?;
        // Compact once the backlog has (nearly) drained: compacting half way would only let the
        // file grow again while the rest drains.
        if file > flush::COMPACT_ABOVE && live < flush::DRAINED_BELOW {
            self.compact();
        }
        Ok(())
    }

    /// Where "live" starts for a session connecting now: the oldest record still in the head
    /// (captured within `sync_ms`, or held while the disk refuses it), else the next number.
    /// Below it is backlog: what an outage left waiting on disk.
    pub fn live_mark(&self) -> Seq {
        let head = lock(&self.head);
        head.unsettled_from()
            .unwrap_or_else(|| lock(&self.numbers).next())
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> Seq {
        lock(&self.numbers).next()
    }

    /// Wakes when records are captured.
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.captured.subscribe()
    }
}
