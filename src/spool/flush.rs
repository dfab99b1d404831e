//! The spool's commits: making due records durable, the settled watermark, recovery from a
//! failed commit, compaction, the clean close, and the status each of them leaves.
//!
//! Owns the order of those writes. Every function here blocks on the disk: call them off the
//! runtime ([`super::run`] does). Must never write a record the broker has already acknowledged
//! or advance the watermark past a record that is neither durable nor acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::head::Entry;
use super::store::{NewEntry, Store, StoreError, Write};
use super::{lock, Spool, MAX_CHUNK, SETTLE_EVERY};
use crate::record::{codec, now_ms};

/// How long a clean close keeps trying a disk that refuses commits (the next start then
/// announces what could not be kept as a gap).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// How often a lowered budget may be raised again while commits succeed.
const REGAIN_EVERY: Duration = Duration::from_secs(30);

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
        self.chunk.store(MAX_CHUNK, Ordering::Relaxed);
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
                Ok(_) => {}
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

    /// Runs one durable write (a commit or a reservation) and shows it on the spool's status:
    /// the write in progress, so that a disk that hangs shows as a write that does not end, and
    /// since when writes fail.
    pub(super) fn durable<T>(
        &self,
        write: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Being reopened after a failure: that failure is what the status shows.
        let store = self.store()?;
        let started = now_ms();
        self.state.update(|s| {
            // A commit and a reservation may overlap (redb runs one after the other): the
            // oldest start counts until both have ended.
            s.writes_in_flight += 1;
            s.write_started_ms.get_or_insert(started);
        });
        let result = write(&store);
        let ended = now_ms();
        let failed_since = self.state.update(|s| {
            s.writes_in_flight = s.writes_in_flight.saturating_sub(1);
            if s.writes_in_flight == 0 {
                s.write_started_ms = None;
            }
            match &result {
                Ok(_) => {
                    s.last_error = None;
                    s.last_durable_ms = Some(ended);
                    s.failing_since_ms.take()
                }
                Err(e) => {
                    s.failing_since_ms.get_or_insert(started);
                    s.last_error = Some(e.to_string());
                    None
                }
            }
        });
        if let Some(since) = failed_since {
            tracing::warn!(
                failed_for_s = (ended - since) / 1000,
                budget = self.budget(),
                max_bytes = self.settings.max_bytes,
                "spool writes succeed again (budget: the size limit in force)"
            );
        }
        if ended - started >= super::status::TROUBLE_AFTER_MS {
            tracing::warn!(
                took_ms = ended - started,
                "a spool write hung for seconds: is the filesystem frozen or the disk failing?"
            );
        }
        result
    }

    pub(super) fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    pub(super) fn count_append_error(&self) {
        self.metrics.append_errors.inc();
        self.state.update(|s| s.append_errors += 1);
    }

    /// After an I/O error redb refuses every further operation until the database is closed
    /// and opened again: drop ours, wait for readers to let go of theirs, open it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let old = self.store.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(old);
        self.state.update(|s| s.open = false);
        let mut last = None;
        for _ in 0..50 {
            match Store::open_origin(&self.origin, self.settings.cache_bytes, 0) {
                Ok(s) => {
                    *self.store.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
                    tracing::debug!(spool = %self.origin.path().display(), "spool reopened after an I/O error");
                    return Ok(());
                }
                // a reader still holds the old handle for a moment
                Err(e @ StoreError::Locked(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| StoreError::Io("cannot reopen the spool".into())))
    }

    /// The budget a failure lowered comes back once commits succeed again: doubled (plus
    /// 1 MiB) at most every [`REGAIN_EVERY`], up to its start value, while the file is not near
    /// `max_bytes`. If the disk is still short, the next failure lowers it again; without this
    /// one ENOSPC would shrink the spool (and evict every reading of the next outage) until a
    /// restart.
    fn regain_budget(&self) {
        let full = self.settings.max_bytes / 100 * 45;
        let mut last = lock(&self.last_lowered);
        // Only what a failure lowered: a budget tightened because the file neared max_bytes
        // stays tight, and nothing is raised while the file is near its limit.
        let Some(at) = *last else { return };
        let near_limit = self.state.get().bytes > self.settings.max_bytes / 10 * 9;
        if at.elapsed() < REGAIN_EVERY || near_limit {
            return;
        }
        let raised = self
            .budget()
            .saturating_mul(2)
            .saturating_add(1 << 20)
            .min(full);
        self.budget.store(raised, Ordering::Relaxed);
        *last = (raised < full).then(Instant::now);
        tracing::info!(
            budget = raised,
            max_bytes = self.settings.max_bytes,
            "spool commits succeed again: budget raised (the limit now in force)"
        );
    }

    /// After a failed commit (disk full, I/O error): reopens the store and evicts a tenth of the
    /// buffered readings in a commit of its own, so the next attempt finds free pages.
    pub(super) fn recover(&self) -> Result<(), StoreError> {
        self.reopen()?;
        let (counts, _) = self.store()?.counts()?;
        // The disk holds less than max_bytes: charge no more than it took, less a tenth.
        let fits = counts.logical_bytes / 10 * 9;
        let before = self.budget.fetch_min(fits, Ordering::Relaxed);
        *lock(&self.last_lowered) = Some(Instant::now());
        if fits < before {
            tracing::warn!(
                budget = fits,
                was = before,
                max_bytes = self.settings.max_bytes,
                "the disk refused a spool commit: budget lowered to what the disk held (the size limit in force until commits succeed again)"
            );
        }
        let done = self.store()?.write(Write {
            budget: fits,
            now_ms: now_ms(),
            ..Write::default()
        })?;
        self.metrics.evicted.inc_by(done.evicted_readings);
        tracing::debug!(
            readings = done.evicted_readings,
            budget = fits,
            max_bytes = self.settings.max_bytes,
            "spool could not write: evicted the oldest readings to make room"
        );
        self.refresh_status()?;
        Ok(())
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
