//! The spool: the durable queue between polling and the uplink. Its design, in full:
//!
//! **Owns** every record from the moment a poll produced it until the platform's broker
//! acknowledged it. **Must never** delete a record that was not acknowledged (except by the
//! documented eviction of readings), evict an alarm, or let a sequence number go back.
//!
//! # Layout
//! One redb file, `{data_dir}/spool.redb` ([`store`] is the only module that imports redb):
//! - `readings`: key = sequence number of the batch's first reading → one device poll's samples
//!   ([`crate::record::codec`]); the batch's readings are numbered key, key+1, …
//! - `alarms`: key = sequence number → one alarm transition.
//! - `meta`: `next_seq`, pending reading count, logical bytes, evicted readings, all updated in
//!   the same transaction as the data they describe.
//!
//! # Invariants
//! - *Persist before publish*: the uplink reads only committed entries; every commit that adds
//!   records is `Durability::Immediate` (fsync before `commit()` returns, two-slot header with
//!   checksums).
//! - *Group commit*: the appender gathers polls for at most `[spool] sync_ms` (default 100 ms)
//!   and commits them in one transaction. That window is what a power cut can lose: records still
//!   in memory, never records already reported to anyone (nothing downstream sees a record
//!   before its commit).
//! - *Delete only after PUBACK*: the uplink calls [`Spool::ack`] with the keys of entries whose
//!   message the broker acknowledged; deletion is a durable commit. A crash before it re-sends
//!   those entries: duplicates, never loss; `(gw, seq)` lets the platform drop them.
//! - *Sequence numbers never go back*: `next_seq` advances in the commit that uses it. A new
//!   store (first start, or after a damaged one was moved aside) starts at
//!   `now_ms × 1000`, above anything an earlier store can have issued below 1,000,000 records/s,
//!   and below 2^53 (JSON-safe) until the year 2255.
//! - *Bounded disk*: entries are charged their size plus [`store::ENTRY_OVERHEAD`]; when the
//!   charge would pass the budget, the oldest reading batches are evicted in the same
//!   transaction, counted in `evicted_readings`. Alarms are never evicted. The budget starts at
//!   45 % of `[spool] max_bytes` (measured: redb's file settles at ~2.1× the charge, since
//!   copy-on-write needs free pages beside the live ones) and shrinks whenever the file comes
//!   near `max_bytes`, so it adapts to the real overhead. Freed pages are reused: the file stops
//!   growing; it never shrinks by itself.
//! - *Disk full*: an I/O error on commit leaves the group in memory (pollers wait on the
//!   bounded channel). redb refuses all work after an I/O error, so the spool closes and reopens
//!   the file, lowers its budget to nine tenths of what the disk took, evicts the oldest
//!   readings in a commit of their own, and retries the rest in ever smaller chunks with
//!   backoff. Alarms are kept; evictions and failed commits are counted.
//!
//! - *Disk given back*: redb reuses freed pages but never shrinks its file. When acks leave
//!   the file larger than 16 MiB and eight times its live data (a drained outage backlog), the
//!   spool compacts it, at most every 10 minutes, and only when no reader holds the store.
//!
//! # Recovery
//! - `kill -9` or power loss: redb reopens at the last completed commit (its repair walks the
//!   file after an unclean shutdown: ~0.3 s per million records).
//! - A file that cannot be opened as a spool is renamed `spool.redb.damaged-<unix-ms>` with an
//!   ERROR log, and a fresh spool is started, so polling and forwarding go on. The old file is
//!   kept for inspection.
//! - A spool held by another process is a fatal error: two gateways must not share one.

pub mod status;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::config::SpoolSettings;
use crate::record::{codec, now_ms, AlarmEvent, DevicePoll, Reading, Seq};
use status::{SpoolMetrics, SpoolState, SpoolStatus};
use store::{NewEntry, Store, StoreError};

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

/// Records as committed, with their sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    pub readings: Vec<Reading>,
    pub alarms: Vec<AlarmEvent>,
}

pub struct Spool {
    /// `None` only while the store is being reopened after an I/O error.
    store: RwLock<Option<Arc<Store>>>,
    path: PathBuf,
    settings: SpoolSettings,
    state: Arc<SpoolState>,
    metrics: SpoolMetrics,
    /// `next_seq` after the latest commit: the uplink wakes on it.
    committed: watch::Sender<Seq>,
    /// Largest charge before readings are evicted; shrinks if the file nears `max_bytes`.
    budget: AtomicU64,
    last_compaction: std::sync::Mutex<Option<std::time::Instant>>,
}

const FILE: &str = "spool.redb";

impl Spool {
    /// Opens the spool in `dir`, moving a damaged file aside.
    pub fn open(dir: &Path, settings: &SpoolSettings) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let first_seq = u64::try_from(now_ms()).unwrap_or(0) * 1000;
        let store = match Store::open(&path, settings.cache_bytes, first_seq) {
            Ok(s) => s,
            Err(StoreError::Corrupt { detail, .. }) => {
                let aside = dir.join(format!("{FILE}.damaged-{}", now_ms()));
                tracing::error!(spool = %path.display(), moved_to = %aside.display(), %detail,
                    "the spool file is damaged: it is kept for inspection and a new spool is started; records in it are not forwarded");
                std::fs::rename(&path, &aside).map_err(|source| SpoolError::Dir {
                    path: dir.to_owned(),
                    source,
                })?;
                Store::open(&path, settings.cache_bytes, first_seq)?
            }
            Err(e) => return Err(e.into()),
        };
        let (committed, _) = watch::channel(0);
        let spool = Spool {
            store: RwLock::new(Some(Arc::new(store))),
            path,
            settings: settings.clone(),
            state: Arc::default(),
            metrics: SpoolMetrics::default(),
            committed,
            budget: AtomicU64::new(settings.max_bytes / 100 * 45),
            last_compaction: std::sync::Mutex::new(None),
        };
        spool.refresh_status()?;
        Ok(spool)
    }

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

    /// After an I/O error redb refuses every further operation until the database is closed
    /// and opened again: drop ours, wait for readers to let go of theirs, open it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let old = self.store.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(old);
        self.state.update(|s| s.open = false);
        let mut last = None;
        for _ in 0..50 {
            match Store::open(&self.path, self.settings.cache_bytes, 0) {
                Ok(s) => {
                    *self.store.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
                    tracing::warn!(spool = %self.path.display(), "spool reopened after an I/O error");
                    return Ok(());
                }
                // a reader still holds the old handle for a moment
                Err(e @ StoreError::Locked(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| StoreError::Io("cannot reopen the spool".into())))
    }

    fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    /// Makes `polls` durable in one commit and numbers them. Blocking: call off the runtime.
    pub fn append(&self, polls: &[DevicePoll]) -> Result<Stored, StoreError> {
        let mut entries = Vec::new();
        for p in polls {
            if !p.samples.is_empty() {
                entries.push(NewEntry::Readings {
                    count: p.samples.len() as u64,
                    bytes: codec::encode_batch(&p.device, &p.samples),
                });
            }
            for a in &p.alarms {
                entries.push(NewEntry::Alarm {
                    bytes: codec::encode_alarm(&p.device, a),
                });
            }
        }
        let started = std::time::Instant::now();
        let done = self.store()?.append(entries, self.budget())?;
        self.metrics.commit.observe(started.elapsed().as_secs_f64());
        let records: usize = polls.iter().map(|p| p.samples.len() + p.alarms.len()).sum();
        self.metrics.appended.inc_by(records as u64);
        self.metrics.evicted.inc_by(done.evicted_readings);
        self.state.update(|s| s.appended_records += records as u64);
        if done.evicted_readings > 0 {
            tracing::warn!(
                readings = done.evicted_readings,
                batches = done.evicted_entries,
                max_bytes = self.settings.max_bytes,
                "spool full: evicted the oldest readings (alarms are kept)"
            );
        }
        let mut keys = done.keys.into_iter();
        let mut stored = Stored::default();
        for p in polls {
            if !p.samples.is_empty() {
                let first = keys.next().unwrap_or_default();
                stored
                    .readings
                    .extend(p.samples.iter().enumerate().map(|(i, s)| Reading {
                        seq: first + i as u64,
                        device: p.device.clone(),
                        sample: s.clone(),
                    }));
            }
            for a in &p.alarms {
                stored.alarms.push(AlarmEvent {
                    seq: keys.next().unwrap_or_default(),
                    device: p.device.clone(),
                    sample: a.sample.clone(),
                    level: a.level,
                    prev: a.prev,
                });
            }
        }
        self.refresh_status()?;
        Ok(stored)
    }

    /// After a failed commit (disk full, I/O error): reopens the store and evicts a tenth of the
    /// buffered readings in a commit of its own, so the next attempt finds free pages.
    fn recover(&self) -> Result<(), StoreError> {
        self.reopen()?;
        let (counts, _) = self.store()?.counts()?;
        // The disk holds less than max_bytes: charge no more than it took, less a tenth.
        let fits = counts.logical_bytes / 10 * 9;
        self.budget.fetch_min(fits, Ordering::Relaxed);
        let done = self.store()?.append(Vec::new(), fits)?;
        self.metrics.evicted.inc_by(done.evicted_readings);
        tracing::warn!(
            readings = done.evicted_readings,
            "spool could not write: evicted the oldest readings to make room"
        );
        Ok(())
    }

    /// Deletes entries whose message the broker acknowledged. Blocking.
    pub fn ack(&self, reading_keys: &[u64], alarm_keys: &[u64]) -> Result<(), StoreError> {
        self.store()?.delete(reading_keys, alarm_keys)?;
        let (live, file) = self.refresh_status()?;
        // A drained backlog leaves the file at its peak (redb reuses free pages but never gives
        // them back): give the disk back once the file is far larger than what it holds.
        if file > COMPACT_ABOVE && file > live.saturating_mul(8) {
            self.compact();
        }
        Ok(())
    }

    fn compact(&self) {
        let mut last = self
            .last_compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(600)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let mut guard = self.store.write().unwrap_or_else(|p| p.into_inner());
        let Some(arc) = guard.take() else { return };
        match Arc::try_unwrap(arc) {
            Ok(mut store) => {
                let before = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
                let started = std::time::Instant::now();
                match store.compact() {
                    Ok(_) => {
                        let after = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
                        tracing::info!(before, after, took = ?started.elapsed(), "spool compacted after its backlog drained");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "spool compaction failed; the file keeps its size")
                    }
                }
                *guard = Some(Arc::new(store));
            }
            // Someone is reading right now: leave it for the next time.
            Err(arc) => *guard = Some(arc),
        }
        drop(guard);
        let _ = self.refresh_status();
    }

    /// Pending alarms from sequence `from`, oldest first. Blocking.
    pub fn alarms(&self, from: Seq, max: usize) -> Result<Vec<AlarmEvent>, StoreError> {
        let rows = self.store()?.alarms(from, max)?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            match codec::decode_alarm(k, &v) {
                Ok(a) => out.push(a),
                Err(e) => self.discard_undecodable(&[], &[k], &e),
            }
        }
        Ok(out)
    }

    /// Pending reading batches with keys in `from..below`, oldest first, at most about
    /// `max_readings` readings (always at least one batch). Blocking.
    pub fn readings(
        &self,
        from: Seq,
        below: Seq,
        max_readings: usize,
    ) -> Result<Vec<(Seq, Vec<Reading>)>, StoreError> {
        let rows = self.store()?.readings(from, below, max_readings.max(1))?;
        let mut out = Vec::new();
        let mut n = 0;
        for (k, v) in rows {
            match codec::decode_batch(k, &v) {
                Ok(r) => {
                    if n > 0 && n + r.len() > max_readings {
                        break;
                    }
                    n += r.len();
                    out.push((k, r));
                }
                Err(e) => self.discard_undecodable(&[k], &[], &e),
            }
        }
        Ok(out)
    }

    fn discard_undecodable(&self, readings: &[u64], alarms: &[u64], e: &codec::DecodeError) {
        tracing::error!(?readings, ?alarms, error = %e, "dropping an unreadable spool entry");
        if let Ok(store) = self.store() {
            let _ = store.delete(readings, alarms);
        }
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> Result<Seq, StoreError> {
        Ok(self.store()?.counts()?.0.next_seq)
    }

    /// Wakes when a commit adds records.
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.committed.subscribe()
    }

    /// Publishes the spool's state; returns the charged bytes and the file's size.
    fn refresh_status(&self) -> Result<(u64, u64), StoreError> {
        let store = self.store()?;
        let (c, oldest) = store.counts()?;
        let bytes = std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0);
        let oldest_ts = oldest
            .and_then(|b| codec::decode_batch(0, &b).ok())
            .and_then(|r| r.first().map(|r| r.sample.ts_ms));
        if bytes > self.settings.max_bytes / 100 * 97 {
            // The file is near its limit: charge less from now on, so eviction frees pages
            // before the file has to grow.
            let tighter = c.logical_bytes / 10 * 9;
            if tighter < self.budget() {
                self.budget.store(tighter, Ordering::Relaxed);
                tracing::info!(
                    file_bytes = bytes,
                    max_bytes = self.settings.max_bytes,
                    budget = tighter,
                    "spool near its size limit: budget lowered"
                );
            }
        }
        self.state.update(|s| {
            s.open = true;
            s.readings = c.readings;
            s.alarms = c.alarms;
            s.bytes = bytes;
            s.oldest_ts_ms = oldest_ts;
            s.next_seq = c.next_seq;
            s.evicted_readings = c.evicted_readings;
            self.metrics.show(s);
        });
        // Only a commit that added records wakes the uplink, not an acknowledgement.
        self.committed
            .send_if_modified(|seq| std::mem::replace(seq, c.next_seq) != c.next_seq);
        Ok((c.logical_bytes, bytes))
    }
}

impl Spool {
    fn count_append_error(&self) {
        self.metrics.append_errors.inc();
        self.state.update(|s| s.append_errors += 1);
    }
}

/// Files smaller than this are never compacted.
const COMPACT_ABOVE: u64 = 16 << 20;

/// Most polls in one commit.
const MAX_GROUP: usize = 4096;

/// The appender: gathers polls for up to `sync_ms`, commits them, then hands the numbered
/// records to `tap` (live consumers: demo printer, local broker; best effort). Ends when every
/// poller has dropped its sender, after committing what it holds.
pub async fn run_appender(
    spool: Arc<Spool>,
    mut input: mpsc::Receiver<DevicePoll>,
    tap: broadcast::Sender<Arc<Stored>>,
) {
    let sync = spool.settings.sync;
    while let Some(first) = input.recv().await {
        let mut group = vec![first];
        let deadline = Instant::now() + sync;
        while group.len() < MAX_GROUP {
            tokio::select! {
                biased;
                p = input.recv() => match p {
                    Some(p) => group.push(p),
                    None => break,
                },
                () = sleep_until(deadline) => break,
            }
        }
        let group = Arc::new(group);
        let (mut from, mut chunk) = (0, group.len());
        let mut backoff = Duration::from_millis(100);
        // After a failure the rest is retried in smaller chunks: a disk with little room left
        // may take a few polls where it cannot take a thousand.
        while from < group.len() {
            let to = (from + chunk).min(group.len());
            let (s, g) = (spool.clone(), group.clone());
            match tokio::task::spawn_blocking(move || s.append(&g[from..to])).await {
                Ok(Ok(stored)) => {
                    let _ = tap.send(Arc::new(stored));
                    from = to;
                    backoff = Duration::from_millis(100);
                }
                Ok(Err(e)) => {
                    spool.count_append_error();
                    tracing::error!(error = %e, polls = group.len() - from, retry_in = ?backoff, "spool commit failed; holding the records in memory and retrying");
                    let s = spool.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.recover()).await {
                        tracing::error!(error = %e, "spool could not recover yet; retrying");
                    }
                    chunk = ((to - from) / 4).max(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(join) => {
                    tracing::error!(error = %join, "spool commit task failed");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
    tracing::debug!("appender: input closed, all records committed");
}
