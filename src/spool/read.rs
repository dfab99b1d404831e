//! The spool's reads for the uplink: pending alarms, gaps and reading batches, from the head
//! (captured, not yet durable) and the store together, in key order.
//!
//! Owns the merge: the head is read first, then the store, so an entry moving from one to the
//! other meanwhile is seen at least once, and duplicates fall out by key. Must never change
//! what is pending, except to drop an entry that cannot be decoded (logged).

use std::sync::atomic::Ordering;

use super::store::{Store, StoreError};
use super::{lock, Spool};
use crate::record::{codec, AlarmEvent, Gap, Reading, Seq};

impl Spool {
    /// Pending gaps from `from`, oldest first. Blocking.
    pub fn gaps(&self, from: Seq, max: usize) -> Result<Vec<Gap>, StoreError> {
        let rows = self.stored_rows(|s| s.gaps(from, max));
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| codec::decode_gap(k, &v).ok())
            .collect())
    }

    /// Pending alarms from sequence `from`, oldest first, captured or stored. Blocking.
    pub fn alarms(&self, from: Seq, max: usize) -> Result<Vec<AlarmEvent>, StoreError> {
        // The head first, then the store: an entry moving from one to the other meanwhile is
        // seen at least once, and duplicates fall out by key.
        let mut out: std::collections::BTreeMap<Seq, AlarmEvent> = lock(&self.head)
            .alarms(from, max)
            .into_iter()
            .map(|a| (a.seq, (*a).clone()))
            .collect();
        for (k, v) in self.stored_rows(|s| s.alarms(from, max)) {
            match codec::decode_alarm(k, &v) {
                Ok(a) => {
                    out.insert(k, a);
                }
                Err(e) => self.discard_undecodable(&[], &[k], &e),
            }
        }
        Ok(out.into_values().take(max).collect())
    }

    /// Pending reading batches with keys in `from..below`, oldest first, captured or stored, at
    /// most about `max_readings` readings (always at least one batch). Blocking.
    pub fn readings(
        &self,
        from: Seq,
        below: Seq,
        max_readings: usize,
    ) -> Result<Vec<(Seq, Vec<Reading>)>, StoreError> {
        let max = max_readings.max(1);
        let mut all: std::collections::BTreeMap<Seq, Vec<Reading>> = lock(&self.head)
            .batches(from, below, max)
            .into_iter()
            .map(|(k, r)| (k, (*r).clone()))
            .collect();
        for (k, v) in self.stored_rows(|s| s.readings(from, below, max)) {
            match codec::decode_batch(k, &v) {
                Ok(r) => {
                    all.insert(k, r);
                }
                Err(e) => self.discard_undecodable(&[k], &[], &e),
            }
        }
        let mut out = Vec::new();
        let mut n = 0;
        for (k, r) in all {
            if n > 0 && n + r.len() > max_readings {
                break;
            }
            n += r.len();
            out.push((k, r));
        }
        Ok(out)
    }

    /// The store's rows, or none when it cannot be read (being reopened after an I/O error, a
    /// read-only or failing disk) or should not be (a write hangs, and a read could wait behind
    /// it): the head alone still holds everything captured since, so live
    /// records keep flowing. Such reads are partial: [`Spool::partial_reads_healed`] tells the
    /// reader to start again from the beginning once the store is back.
    fn stored_rows<T>(&self, read: impl FnOnce(&Store) -> Result<Vec<T>, StoreError>) -> Vec<T> {
        let rows = if self.disk_hangs() {
            Err(StoreError::Io(
                "a spool write hangs; reading from memory".into(),
            ))
        } else {
            self.store().and_then(|s| read(&s))
        };
        match rows {
            Ok(rows) => {
                if self.partial_reads.swap(false, Ordering::Relaxed) {
                    self.reads_healed.store(true, Ordering::Relaxed);
                }
                rows
            }
            Err(e) => {
                if !self.partial_reads.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the spool's store cannot be read: sending what is in memory only");
                }
                Vec::new()
            }
        }
    }

    /// Whether reads were served from memory alone while the store could not be read, and a
    /// read of the store has succeeded since: the reader's cursors may have passed stored
    /// records, so it should read from the beginning again. Clears the mark.
    pub fn partial_reads_healed(&self) -> bool {
        self.reads_healed.swap(false, Ordering::Relaxed)
    }

    fn discard_undecodable(&self, readings: &[u64], alarms: &[u64], e: &codec::DecodeError) {
        tracing::error!(?readings, ?alarms, error = %e, "dropping an unreadable spool entry");
        if let Ok(store) = self.store() {
            let _ = store.delete(readings, alarms, &[], false);
        }
    }
}
