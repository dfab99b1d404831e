//! Acknowledgements on their way to the spool: the keys of what the broker acknowledged,
//! handed to [`Spool::ack`] one batch at a time off the runtime.
//!
//! Owns batching the acknowledged keys while a previous batch is being applied, and reporting
//! a failure (the records are then simply sent again). Must never decide what was acknowledged:
//! that is the in-flight window's.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::window::Carried;
use crate::spool::store::StoreError;
use crate::spool::Spool;

/// PUBACKed spool keys waiting for their delete, and the delete under way.
#[derive(Default)]
pub(super) struct Acks {
    readings: Vec<u64>,
    alarms: Vec<u64>,
    gaps: Vec<(u64, u64)>,
    pub(super) running: Option<JoinHandle<Result<(), StoreError>>>,
    /// The reading and alarm keys of the last delete started, running or done.
    deleting: (Vec<u64>, Vec<u64>),
}

impl Acks {
    pub(super) fn add(&mut self, c: Carried) {
        match c {
            Carried::Alarm(k) => self.alarms.push(k),
            Carried::Readings { keys, .. } => self.readings.extend(keys),
            Carried::Gap { from, to } => self.gaps.push((from, to)),
            Carried::Status => {}
        }
    }

    /// Starts a delete of everything gathered, unless one is running.
    pub(super) fn start(&mut self, spool: &Arc<Spool>) {
        if self.running.is_some()
            || (self.readings.is_empty() && self.alarms.is_empty() && self.gaps.is_empty())
        {
            return;
        }
        let (r, a, g) = (
            std::mem::take(&mut self.readings),
            std::mem::take(&mut self.alarms),
            std::mem::take(&mut self.gaps),
        );
        self.deleting = (r.clone(), a.clone());
        let spool = spool.clone();
        self.running = Some(tokio::task::spawn_blocking(move || spool.ack(&r, &a, &g)));
    }

    /// The reading and alarm keys acknowledged and maybe not deleted yet: waiting, or in the
    /// last delete started (which may be done: those keys are simply not read again).
    pub(super) fn held(
        &self,
    ) -> (
        impl Iterator<Item = u64> + '_,
        impl Iterator<Item = u64> + '_,
    ) {
        (
            self.readings.iter().chain(&self.deleting.0).copied(),
            self.alarms.iter().chain(&self.deleting.1).copied(),
        )
    }

    /// Waits for the delete under way, if any, and reports how it went.
    pub(super) async fn finished(&mut self) {
        if let Some(r) = join_running(&mut self.running).await {
            report(r);
        }
    }

    /// Waits until everything gathered is deleted.
    pub(super) async fn flush(&mut self, spool: &Arc<Spool>) {
        self.finished().await;
        self.start(spool);
        self.finished().await;
    }
}

/// Joins the delete under way and clears the slot; cancel-safe (the handle stays if dropped).
pub(super) async fn join_running(
    running: &mut Option<JoinHandle<Result<(), StoreError>>>,
) -> Option<Result<Result<(), StoreError>, tokio::task::JoinError>> {
    let h = running.as_mut()?;
    let r = h.await;
    *running = None;
    Some(r)
}

pub(super) fn report(r: Result<Result<(), StoreError>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not delete acknowledged records; they will be sent again")
        }
        Err(e) => tracing::error!(error = %e, "acknowledgement task failed"),
    }
}
