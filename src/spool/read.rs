//! The spool's reads for the uplink: pending alarms, gaps and reading batches, from the head
//! (captured, not yet durable) and the store together, in key order.
//!
//! Owns the merge: the head is read first, then the store, so an entry moving from one to the
//! other meanwhile is seen at least once, and duplicates fall out by key. Must never change
//! what is pending, except to drop an entry that cannot be decoded (logged).

use std::sync::atomic::Ordering;
use std::sync::TryLockError;

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
    /// it; compaction or a reopen holds the store, which takes up to a second or more on a big
    /// file, and an alarm must not wait that long): the head alone still holds everything
    /// captured since, so live records keep flowing. Such reads are partial:
    /// [`Spool::partial_reads_healed`] tells the reader to start again from the beginning once
    /// the store is back.
    fn stored_rows<T>(&self, read: impl FnOnce(&Store) -> Result<Vec<T>, StoreError>) -> Vec<T> {
        // `None`: compaction or a reopen holds the store, routine and not worth a warning. The
        // lock's guard ends with this statement: no read runs under it.
        let store = if self.disk_hangs() {
            Err(Some("a spool write hangs; reading from memory".into()))
        } else {
            match self.store.try_read() {
                Ok(guard) => Ok(guard.clone()),
                Err(TryLockError::Poisoned(p)) => Ok(p.into_inner().clone()),
                Err(TryLockError::WouldBlock) => Err(None),
            }
        };
        let rows = match store {
            Ok(Some(store)) => read(&store).map_err(|e| Some(e.to_string())),
            Ok(None) => Err(Some("the spool is being reopened".into())),
            Err(why) => Err(why),
        };
        match rows {
            Ok(rows) => {
                self.read_failure_said.store(false, Ordering::Relaxed);
                if self.partial_reads.swap(false, Ordering::Relaxed) {
                    self.reads_healed.store(true, Ordering::Relaxed);
                }
                rows
            }
            Err(why) => {
                let first = !self.partial_reads.swap(true, Ordering::Relaxed);
                match why {
                    Some(e) if !self.read_failure_said.swap(true, Ordering::Relaxed) => {
                        tracing::warn!(error = %e, "the spool's store cannot be read: sending what is in memory only")
                    }
                    None if first => {
                        tracing::debug!("the spool's store is being compacted or reopened: sending from memory meanwhile")
                    }
                    _ => {}
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

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::*;
    use crate::config::SpoolSettings;
    use crate::record::{now_ms, AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Value};

    fn alarm_poll() -> DevicePoll {
        let sample = Sample {
            point: "ch01.status".into(),
            ts_ms: now_ms(),
            value: Some(Value::Int(2)),
            quality: Quality::Good,
        };
        DevicePoll {
            device: "gas-1".into(),
            samples: vec![sample.clone()],
            alarms: vec![AlarmChange {
                sample,
                level: AlarmLevel::High,
                prev: AlarmLevel::Normal,
                warn: None,
            }],
        }
    }

    /// Compaction and a reopen hold the store's write lock for as long as they take (about a
    /// second on a big file); the uplink's reads must answer from memory meanwhile, so a new
    /// alarm is sent at once, and say so once the store is back.
    #[test]
    fn a_read_never_waits_for_the_store_held_by_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SpoolSettings {
            sync: Duration::from_secs(1),
            max_bytes: 16 << 20,
            cache_bytes: 1 << 20,
        };
        let spool = Arc::new(Spool::open(dir.path(), &settings).unwrap());
        spool.reserve(4).unwrap();
        let committed = spool.capture(&alarm_poll()).unwrap();
        assert!(spool.flush(std::time::Instant::now(), true, false).unwrap());
        let stored = spool.capture(&alarm_poll()).unwrap();
        let held = spool.store.write().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = spool.clone();
        std::thread::spawn(move || {
            let alarms: Vec<Seq> = reader
                .alarms(0, 10)
                .unwrap()
                .iter()
                .map(|a| a.seq)
                .collect();
            let readings = reader.readings(0, u64::MAX, 100).unwrap().len();
            tx.send((alarms, readings)).ok()
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        // what is only in the store is left out meanwhile, the head's records are not
        let (alarms, readings) = got.expect("the read waited for the store");
        assert_eq!(alarms, [stored.alarms[0].seq]);
        assert_eq!(readings, 1);
        assert!(!spool.partial_reads_healed());
        let again: Vec<Seq> = spool.alarms(0, 10).unwrap().iter().map(|a| a.seq).collect();
        assert_eq!(again, [committed.alarms[0].seq, stored.alarms[0].seq]);
        assert!(
            spool.partial_reads_healed(),
            "a partial read must be made good"
        );
        assert!(!spool.partial_reads_healed(), "said once");
    }
}
