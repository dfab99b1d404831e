//! Acknowledgements on their way to the spool: the keys of what the broker acknowledged,
//! handed to [`Spool::ack`] one batch at a time off the runtime.
//!
//! Owns batching the acknowledged keys while a previous batch is being applied, reporting a
//! failure (the records are then simply sent again), and remembering the last keys handed to a
//! delete, which a rewind must not send again ([`Acks::held`]). Must never decide what was
//! acknowledged: that is the in-flight window's.

use std::collections::VecDeque;
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
    /// The reading and alarm keys of the last [`RECENT`] of each handed to a delete, oldest
    /// first. A delete that has returned may still leave a copy in the store for a moment (a
    /// record acknowledged while its commit ran is deleted just after that commit), and one
    /// skipped behind a hanging write leaves it for longer: a rewind must not send those again.
    recent: (VecDeque<u64>, VecDeque<u64>),
}

/// How many acknowledged keys of each kind [`Acks::held`] remembers after their delete.
const RECENT: usize = 4096;

/// Appends `keys` to `recent`, keeping the last [`RECENT`].
fn remember(recent: &mut VecDeque<u64>, keys: &[u64]) {
    recent.extend(keys);
    let over = recent.len().saturating_sub(RECENT);
    recent.drain(..over);
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
        remember(&mut self.recent.0, &r);
        remember(&mut self.recent.1, &a);
        let spool = spool.clone();
        self.running = Some(tokio::task::spawn_blocking(move || spool.ack(&r, &a, &g)));
    }

    /// The reading and alarm keys acknowledged and maybe still in the store: waiting for their
    /// delete, or among the last [`RECENT`] handed to one.
    pub(super) fn held(
        &self,
    ) -> (
        impl Iterator<Item = u64> + '_,
        impl Iterator<Item = u64> + '_,
    ) {
        (
            self.readings.iter().chain(&self.recent.0).copied(),
            self.alarms.iter().chain(&self.recent.1).copied(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_keys_handed_to_a_delete_are_remembered_up_to_a_bound() {
        let mut recent = VecDeque::new();
        remember(&mut recent, &[1, 2, 3]);
        assert_eq!(recent, [1, 2, 3]);
        let many: Vec<u64> = (10..10 + RECENT as u64).collect();
        remember(&mut recent, &many);
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent.front(), Some(&10), "the oldest go first");
        assert_eq!(recent.back(), many.last());
    }
}
