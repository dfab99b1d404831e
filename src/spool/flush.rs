//! The spool's commits: making due records durable, the settled watermark, compaction, the
//! clean close, and the status each of them leaves (a failing disk: [`super::recover`]).
//!
//! Owns the order of those writes. Every function here blocks on the disk: call them off the
//! runtime ([`super::run`] does). Must never write a record the broker has already acknowledged
//! or advance the watermark past a record that is neither durable nor acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::head::Entry;
use super::store::{NewEntry, StoreError, Write};
use super::{lock, Spool, MAX_CHUNK, SETTLE_EVERY};
use crate::record::{codec, now_ms};

/// How long a clean close keeps trying a disk that refuses commits (the next start then
/// announces what could not be kept as a gap).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Files smaller than this are never compacted.
pub(super) const COMPACT_ABOVE: u64 = 16 << 20;
/// A backlog counts as drained, for compaction, when less than this is left of it.
pub(super) const DRAINED_BELOW: u64 = 1 << 20;

fn encode(e: &Entry) -> NewEntry {
    match e {
        Entry::Readings(r) => NewEntry::Readings {
            key: e.key(),
            count: r.len() as u64,
            bytes: codec::encode_readings(r),
        },
        Entry::Alarm(a) => NewEntry::Alarm {
            key: a.seq,
            bytes: codec::encode_alarm(a),
        },
    }
}

impl Spool {
    /// Commits what is due in the head (every alarm, readings past their deadline), or only the
    /// watermark when it is due; `all` commits everything (on a clean close `close` also ends
    /// the reservation at the last number handed out). Returns whether anything was written.
    pub(super) fn flush(&self, now: Instant, all: bool, close: bool) -> Result<bool, StoreError> {
        let max = self.chunk.load(Ordering::Relaxed) as usize;
        let (due, settled) = {
            let mut head = lock(&self.head);
            let mut due = if all {
                head.take_all()
            } else {
                head.take_due_batched(now, self.settings.sync)
            };
            if due.len() > max {
                let rest: Vec<u64> = due.split_off(max).iter().map(Entry::key).collect();
                head.failed(&rest);
            }
            // Everything below the lowest record that is neither being committed nor settled is
            // durable once this commit returns, or acknowledged.
            let next = lock(&self.numbers).next();
            (due, head.unsettled_after_commit().unwrap_or(next))
        };
        let (last_at, last_value) = *lock(&self.settled);
        let settle_due = settled > last_value && now.duration_since(last_at) >= SETTLE_EVERY;
        if due.is_empty() && !settle_due && !all {
            return Ok(false);
        }
        let keys: Vec<u64> = due.iter().map(Entry::key).collect();
        let records: u64 = due.iter().map(Entry::len).sum();
        let started = Instant::now();
        let written = self.durable(|s| {
            s.write(Write {
                entries: due.iter().map(encode).collect(),
                budget: self.budget(),
                settled_below: Some(settled),
                reserved_until: close.then(|| lock(&self.numbers).next()),
                gaps: Vec::new(),
                now_ms: now_ms(),
            })
        });
        let done = match written {
            Ok(done) => done,
            Err(e) => {
                lock(&self.head).failed(&keys);
                self.failing.store(true, Ordering::Relaxed);
                let smaller = (self.chunk.load(Ordering::Relaxed) / 4).max(1);
                self.chunk.store(smaller, Ordering::Relaxed);
                return Err(e);
            }
        };
        // Back to full chunks step by step: on a nearly full disk a full chunk right after the
        // first small one that fitted fails again, and each failure costs a reopen.
        let larger = self.chunk.load(Ordering::Relaxed).saturating_mul(2);
        self.chunk.store(larger.min(MAX_CHUNK), Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
        self.regain_budget();
        self.undurable_deletes.store(0, Ordering::Relaxed);
        *lock(&self.settled) = (now, settled);
        self.metrics.commit.observe(started.elapsed().as_secs_f64());
        self.metrics.durable_records.inc_by(records);
        self.metrics.durable_commits.inc();
        self.metrics.evicted.inc_by(done.evicted_readings);
        if done.evicted_readings > 0 {
            // Once every ten seconds at most, with what was evicted since the last line.
            let mut said = lock(&self.evictions_said);
            said.1 += done.evicted_readings;
            if said
                .0
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                tracing::warn!(
                    readings = said.1,
                    budget = self.budget(),
                    max_bytes = self.settings.max_bytes,
                    "spool full: evicted the oldest readings (alarms are kept; the range is announced as a gap; budget: the size limit in force)"
                );
                *said = (Some(Instant::now()), 0);
            }
        }
        // Acknowledged while the commit ran: written for nothing, deleted now.
        let late = lock(&self.head).committed(&keys);
        if !late.is_empty() {
            // Numbers are unique across tables: each key is in one of them.
            self.store()?.delete(&late, &late, &[], false)?;
        }
        self.refresh_status()?;
        Ok(true)
    }

    /// Captures `polls` and commits them at once, durably: for tools and tests that fill a
    /// spool directly. Blocking.
    pub fn append(&self, polls: &[crate::record::DevicePoll]) -> Result<super::Stored, StoreError> {
        let mut out = super::Stored::default();
        for p in polls {
            let need = (p.samples.len() + p.alarms.len()) as u64;
            self.reserve(need)?;
            let s = self
                .capture(p)
                .ok_or_else(|| StoreError::Io("no sequence numbers reserved".into()))?;
            out.readings.extend(s.readings);
            out.alarms.extend(s.alarms);
        }
        while self.flush(Instant::now(), true, false)? && lock(&self.head).readings() > 0 {}
        Ok(out)
    }

    /// Commits what is due at `now`, as the spool's task does: for tools and tests that drive a
    /// spool without its task (a `now` past every deadline commits the whole head). Returns
    /// whether anything was written. Blocking.
    pub fn commit_due(&self, now: Instant) -> Result<bool, StoreError> {
        self.flush(now, false, false)
    }

    /// Compacts the file now, whatever its size and the time of the last compaction: for tools
    /// and tests. Blocking.
    pub fn compact_now(&self) {
        *lock(&self.last_compaction) = None;
        self.compact();
    }

    /// When the settled watermark should next be written (it has advanced, and the last write
    /// is [`SETTLE_EVERY`] old then), if it has advanced at all.
    pub(super) fn settle_due_at(&self) -> Option<Instant> {
        let candidate = {
            let head = lock(&self.head);
            head.unsettled_after_commit()
                .unwrap_or_else(|| lock(&self.numbers).next())
        };
        let (at, value) = *lock(&self.settled);
        (candidate > value).then_some(at + SETTLE_EVERY)
    }

    /// On a clean stop: commits every unacknowledged record and ends the reservation at the
    /// last number handed out, so the next start announces no gap. Blocking.
    /// A disk that refuses the commit (full, failing) is retried with recovery for up to
    /// [`CLOSE_WITHIN`].
    pub fn close(&self) -> Result<(), StoreError> {
        self.close_within(CLOSE_WITHIN)
    }

    /// [`Spool::close`], retrying a refusing disk for at most `within`.
    pub fn close_within(&self, within: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + within;
        let mut wait = Duration::from_millis(50);
        loop {
            match self.flush(Instant::now(), true, true) {
                Ok(_) if lock(&self.head).is_empty() => {
                    if let super::store::Origin::File(p) = &self.origin {
                        if let Some(dir) = p.parent() {
                            super::salvage::clean_close(dir);
                        }
                    }
                    tracing::info!(
                        next_seq = lock(&self.numbers).next(),
                        "spool closed cleanly"
                    );
                    return Ok(());
                }
                // A commit went through: a failure after it waits from the shortest step again.
                Ok(_) => wait = Duration::from_millis(50),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    self.count_append_error();
                    tracing::warn!(error = %e, "the spool cannot commit on close; retrying");
                    if let Err(e) = self.recover() {
                        tracing::warn!(error = %e, "spool recovery failed");
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Gives the disk back after a drained backlog (redb reuses free pages but never shrinks).
    pub(super) fn compact(&self) {
        let mut last = lock(&self.last_compaction);
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(600)) {
            return;
        }
        *last = Some(Instant::now());
        let mut guard = self.store.write().unwrap_or_else(|p| p.into_inner());
        let Some(arc) = guard.take() else { return };
        match Arc::try_unwrap(arc) {
            Ok(mut store) => {
                // Pages freed by deletes that were not fsynced become reusable only after a
                // durable commit.
                if let Err(e) = store.write(Write {
                    budget: u64::MAX,
                    ..Write::default()
                }) {
                    tracing::warn!(error = %e, "spool: commit before compaction failed");
                }
                let before = self.origin.len();
                let started = Instant::now();
                match store.compact(now_ms()) {
                    Ok(_) => {
                        let after = self.origin.len();
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

    /// Publishes the spool's state; returns the charged bytes and the file's size.
    pub(super) fn refresh_status(&self) -> Result<(u64, u64), StoreError> {
        let store = self.store()?;
        let (c, oldest) = store.counts()?;
        let bytes = store.origin().len();
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
        let (head_readings, head_oldest) = {
            let head = lock(&self.head);
            (head.readings() as u64, head.oldest_ts_ms())
        };
        let next = lock(&self.numbers).next();
        self.state.update(|s| {
            s.open = true;
            s.readings = c.readings;
            s.alarms = c.alarms;
            s.gaps = c.gaps;
            s.head_readings = head_readings;
            s.bytes = bytes;
            s.oldest_ts_ms = match (oldest_ts, head_oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            s.next_seq = next;
            s.evicted_readings = c.evicted_readings;
            s.budget_bytes = self.budget();
            self.metrics.show(s);
        });
        Ok((c.logical_bytes, bytes))
    }
}
