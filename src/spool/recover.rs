//! When the disk refuses or hangs: the status every durable write leaves (in progress, failing
//! since when), the budget a failure lowers and later regains, and the reopen after an I/O
//! error.
//!
//! Owns that bookkeeping for [`super::flush`] and the reservation. Every function here blocks on
//! the disk: call them off the runtime. Must never raise the budget while the file is near
//! `max_bytes`, nor clear a failure before a write has succeeded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{Store, StoreError, Write};
use super::{lock, Spool};
use crate::record::now_ms;

/// How often a lowered budget may be raised again while commits succeed.
const REGAIN_EVERY: Duration = Duration::from_secs(30);

impl Spool {
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
    pub(super) fn regain_budget(&self) {
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
}
