//! The spool's task: captures every poll at once (numbered, into the head, to the tap) and
//! commits what falls due, one commit at a time, off the runtime.
//!
//! Owns the loop that joins the pollers' channel to the disk: capture never waits for a commit
//! (a slow fsync delays durability, not publishing), a failed commit is retried with backoff,
//! and capture waits only when the head is full or a reservation of numbers is due. Must never
//! drop a poll: when it cannot take more, it stops reading its bounded input and the pollers
//! wait.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::store::StoreError;
use super::{Spool, Stored};
use crate::record::DevicePoll;

type Flush = JoinHandle<Result<bool, StoreError>>;

/// While commits keep failing, how often the log repeats it.
const REPEAT_LOG: Duration = Duration::from_secs(60);

/// Runs until every poller has dropped its sender; captured records go to `tap` (live
/// consumers: demo printer, local broker; best effort). Ends after committing what is due; the
/// clean close ([`Spool::close`]) is the caller's, once the uplink has stopped.
pub async fn run_appender(
    spool: Arc<Spool>,
    mut input: mpsc::Receiver<DevicePoll>,
    tap: broadcast::Sender<Arc<Stored>>,
) {
    let mut flush: Option<Flush> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let mut open = true;
    let mut failures = 0u64;
    let mut said: Option<Instant> = None;
    let mut reservation = Reservation::default();
    while open || flush.is_some() {
        let due = next_flush(&spool, retry_at);
        tokio::select! {
            biased;
            r = async { flush.as_mut().expect("guarded").await }, if flush.is_some() => {
                flush = None;
                match r {
                    Ok(Ok(_)) => {
                        retry_at = None;
                        backoff = Duration::from_millis(100);
                        failures = 0;
                    }
                    Ok(Err(e)) => {
                        spool.count_append_error();
                        failures += 1;
                        // The first failure, then one line a minute while the disk refuses.
                        let say = failures == 1 || said.is_none_or(|t| t.elapsed() >= REPEAT_LOG);
                        if say {
                            said = Some(Instant::now());
                            tracing::error!(error = %e, failures, retry_in = ?backoff, "spool commit failed; holding the records in memory (published live, not stored) and retrying");
                        }
                        let s = spool.clone();
                        match tokio::task::spawn_blocking(move || s.recover()).await {
                            Ok(Err(e)) if say => tracing::error!(error = %e, "spool could not recover yet; retrying"),
                            _ => {}
                        }
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(join) => tracing::error!(error = %join, "spool commit task failed"),
                }
            }
            p = input.recv(), if open && !spool.head_full() => match p {
                Some(p) => capture(&spool, &p, &tap, &mut reservation).await,
                None => open = false,
            },
            () = sleep_until(due.unwrap_or_else(far)), if flush.is_none() && due.is_some() => {}
        }
        if flush.is_none() && next_flush(&spool, retry_at).is_some_and(|t| t <= Instant::now()) {
            let s = spool.clone();
            flush = Some(tokio::task::spawn_blocking(move || {
                s.flush(std::time::Instant::now(), false, false)
            }));
        }
        if !open && flush.is_none() {
            // Input closed: commit what is due now; the rest waits for the clean close.
            break;
        }
    }
    // A reservation still under way must land before the clean close ends the reservation at
    // the last number handed out, or the next start would take its block for an unclean stop.
    if let Some((task, _)) = reservation.task.take() {
        let _ = task.await;
    }
    tracing::debug!("spool: input closed");
}

/// When the next commit should start: the head's next deadline (alarms: now), the watermark's
/// next write, or after a failure's backoff.
fn next_flush(spool: &Spool, retry_at: Option<Instant>) -> Option<Instant> {
    let head = spool.next_deadline().map(Instant::from_std);
    let settle = spool.settle_due_at().map(Instant::from_std);
    let at = match (head, settle) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    Some(retry_at.map_or(at, |r| r.max(at)))
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Numbers kept for alarms while the disk refuses reservations: when the reserved numbers run
/// low, readings are dropped (counted) so that alarm transitions can still be numbered and sent.
pub const ALARM_NUMBERS: u64 = 2048;

/// A reservation still running after this counts as refused (the disk hangs): capture does not
/// wait for it, and the numbers kept for alarms apply.
const RESERVE_HANGS_AFTER: Duration = Duration::from_secs(1);

/// The reservation of the next block of numbers, which runs beside capture: capture never waits
/// for a disk that hangs.
#[derive(Default)]
struct Reservation {
    task: Option<(JoinHandle<Result<(), StoreError>>, Instant)>,
    /// The last reservation failed (the disk refuses writes).
    refused: bool,
    /// When the store was last reopened from here, while reservations failed.
    recovered_at: Option<Instant>,
}

impl Reservation {
    /// Collects a finished reservation, and starts one when the numbers run low.
    async fn tend(&mut self, spool: &Arc<Spool>, need: u64) {
        if self.task.as_ref().is_some_and(|(h, _)| h.is_finished()) {
            self.wait(Duration::ZERO, spool).await;
        }
        if self.task.is_none() && spool.needs_reserve(need) {
            let s = spool.clone();
            let task = tokio::task::spawn_blocking(move || s.reserve(need));
            self.task = Some((task, Instant::now()));
        }
    }

    /// Refused, or hanging: capture must do with the numbers it has.
    fn stuck(&self) -> bool {
        self.refused
            || self
                .task
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= RESERVE_HANGS_AFTER)
    }

    /// Waits up to `max` for the running reservation and notes how it went.
    async fn wait(&mut self, max: Duration, spool: &Arc<Spool>) {
        let Some((task, _)) = self.task.as_mut() else {
            tokio::time::sleep(max).await;
            return;
        };
        let Ok(done) = tokio::time::timeout(max, task).await else {
            return;
        };
        self.task = None;
        match done {
            Ok(Ok(())) => self.refused = false,
            Ok(Err(e)) => {
                self.refused = true;
                spool.count_append_error();
                tracing::debug!(error = %e, "cannot reserve sequence numbers; retrying");
                // The spool's task is held here while alarms wait for numbers: reopen the store
                // now and then, or a disk that comes back would never be used again.
                if self
                    .recovered_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
                {
                    self.recovered_at = Some(Instant::now());
                    let s = spool.clone();
                    let _ = tokio::task::spawn_blocking(move || s.recover()).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "reservation task failed"),
        }
    }
}

async fn capture(
    spool: &Arc<Spool>,
    p: &DevicePoll,
    tap: &broadcast::Sender<Arc<Stored>>,
    reservation: &mut Reservation,
) {
    let need = (p.samples.len() + p.alarms.len()) as u64;
    // Set once this poll's readings are dropped: then only its alarms are left to number.
    let mut alarms_only: Option<DevicePoll> = None;
    loop {
        reservation.tend(spool, need).await;
        // The head is full of readings neither the disk nor the broker took: no more readings.
        let full = spool.refuses_readings() && alarms_only.is_none();
        let degraded = reservation.stuck() || full;
        let keep = if degraded && alarms_only.is_none() {
            ALARM_NUMBERS
        } else {
            0
        };
        if !full {
            if let Some(stored) = spool.capture_keeping(alarms_only.as_ref().unwrap_or(p), keep) {
                let _ = tap.send(Arc::new(stored));
                return;
            }
        }
        if degraded && alarms_only.is_none() {
            // Nothing is numbered without a durable reservation, and the disk refuses or hangs:
            // the readings go (counted, on the page), the alarms wait for the numbers kept for
            // them.
            spool.count_uncaptured(p.samples.len());
            if p.alarms.is_empty() {
                return;
            }
            alarms_only = Some(DevicePoll {
                device: p.device.clone(),
                samples: Vec::new(),
                alarms: p.alarms.clone(),
            });
            continue;
        }
        // Short of numbers while the reservation runs: wait for it a little. Nothing is
        // numbered without a durable reservation.
        reservation.wait(Duration::from_millis(200), spool).await;
    }
}
