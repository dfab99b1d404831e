//! The head of the spool: numbered records that are not durable yet, in memory, in sequence
//! order, each with the deadline by which it must be on disk unless the broker acknowledges it
//! first.
//!
//! Owns which records are due for a commit ([`Head::take_due`]: alarms at once, readings at their
//! deadline), what an acknowledgement settles in memory ([`Head::ack`]), the lowest number not
//! yet settled (the watermark), and reads of pending records for the uplink. Pure: must never
//! do I/O or read a clock; the caller passes `now`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::record::{AlarmEvent, Reading, Seq};

/// A numbered record batch as captured: one device poll's readings, or one alarm transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Readings numbered `first..first + len`; never empty.
    Readings(Arc<Vec<Reading>>),
    Alarm(Arc<AlarmEvent>),
}

impl Entry {
    /// The first sequence number: the entry's key in the head and in the store.
    pub fn key(&self) -> Seq {
        match self {
            Entry::Readings(r) => r.first().map(|r| r.seq).unwrap_or_default(),
            Entry::Alarm(a) => a.seq,
        }
    }

    /// Sequence numbers the entry takes.
    pub fn len(&self) -> u64 {
        match self {
            Entry::Readings(r) => r.len() as u64,
            Entry::Alarm(_) => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    deadline: Instant,
    /// Handed to a commit that has not returned yet.
    committing: bool,
    /// Acknowledged while its commit was running: delete it from the store afterwards.
    acked: bool,
}

/// Records captured but not yet durable.
#[derive(Debug, Default)]
pub struct Head {
    slots: BTreeMap<Seq, Slot>,
    readings: usize,
}

impl Head {
    /// Adds a captured entry that must be durable by `deadline` (alarms: at once).
    pub fn push(&mut self, entry: Entry, deadline: Instant) {
        if let Entry::Readings(r) = &entry {
            self.readings += r.len();
        }
        self.slots.insert(
            entry.key(),
            Slot {
                entry,
                deadline,
                committing: false,
                acked: false,
            },
        );
    }

    fn remove(&mut self, key: Seq) -> Option<Slot> {
        let slot = self.slots.remove(&key)?;
        if let Entry::Readings(r) = &slot.entry {
            self.readings -= r.len();
        }
        Some(slot)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Readings in the head (acknowledged ones awaiting their commit included).
    pub fn readings(&self) -> usize {
        self.readings
    }

    /// Entries that must be made durable now: every alarm at once, readings once their deadline
    /// has passed. They stay readable until [`Head::committed`]; marked as committing.
    pub fn take_due(&mut self, now: Instant) -> Vec<Entry> {
        self.take(|s| matches!(s.entry, Entry::Alarm(_)) || s.deadline <= now)
    }

    /// [`Head::take_due`], and when a reading is past its deadline (the broker is not keeping
    /// up) also the readings due within `ahead`: one commit per `sync_ms` during an outage
    /// instead of one per device poll. An alarm alone takes no reading with it, since readings
    /// on a healthy link are acknowledged long before their deadline.
    pub fn take_due_batched(&mut self, now: Instant, ahead: std::time::Duration) -> Vec<Entry> {
        let late = self.slots.values().any(|s| {
            !s.committing && !s.acked && s.deadline <= now && matches!(s.entry, Entry::Readings(_))
        });
        self.take_due(if late { now + ahead } else { now })
    }

    /// Everything not yet committing (on shutdown).
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.take(|_| true)
    }

    fn take(&mut self, due: impl Fn(&Slot) -> bool) -> Vec<Entry> {
        self.slots
            .values_mut()
            .filter(|s| !s.committing && !s.acked && due(s))
            .map(|s| {
                s.committing = true;
                s.entry.clone()
            })
            .collect()
    }

    /// The commit of `keys` returned: they leave the head. Returns the keys acknowledged while
    /// it ran, which must now be deleted from the store.
    pub fn committed(&mut self, keys: &[Seq]) -> Vec<Seq> {
        keys.iter()
            .filter_map(|k| self.remove(*k))
            .filter(|s| s.acked)
            .map(|s| s.entry.key())
            .collect()
    }

    /// The commit of `keys` failed: they are due again at the next attempt.
    pub fn failed(&mut self, keys: &[Seq]) {
        let mut done = Vec::new();
        for k in keys {
            if let Some(s) = self.slots.get_mut(k) {
                s.committing = false;
                if s.acked {
                    done.push(*k);
                }
            }
        }
        // Acknowledged meanwhile: nothing to write any more.
        for k in done {
            self.remove(k);
        }
    }

    /// The broker acknowledged the entry `key`. Returns false when it is not in the head (it is
    /// in the store: delete it there). An entry whose commit is running is deleted from the
    /// store once that commit returns ([`Head::committed`]).
    pub fn ack(&mut self, key: Seq) -> bool {
        match self.slots.get_mut(&key) {
            None => false,
            Some(s) if s.committing => {
                s.acked = true;
                true
            }
            Some(_) => {
                self.remove(key);
                true
            }
        }
    }

    /// The lowest number that is neither durable nor acknowledged: below it, every record is
    /// on disk or with the broker. `None` when the head holds nothing unsettled.
    pub fn unsettled_from(&self) -> Option<Seq> {
        self.slots
            .values()
            .find(|s| !s.acked)
            .map(|s| s.entry.key())
    }

    /// The lowest number that will be neither durable nor acknowledged once the commit now
    /// running returns: the watermark that commit may store.
    pub fn unsettled_after_commit(&self) -> Option<Seq> {
        self.slots
            .values()
            .find(|s| !s.acked && !s.committing)
            .map(|s| s.entry.key())
    }

    /// Capture time of the oldest reading in the head.
    pub fn oldest_ts_ms(&self) -> Option<i64> {
        self.slots.values().find_map(|s| match &s.entry {
            Entry::Readings(r) => r.first().map(|r| r.sample.ts_ms),
            Entry::Alarm(_) => None,
        })
    }

    /// When the next reading falls due (alarms are due at once), if any is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| !s.committing && !s.acked)
            .map(|s| s.deadline)
            .min()
    }

    /// Unacknowledged alarms from `from`, oldest first.
    pub fn alarms(&self, from: Seq, max: usize) -> Vec<Arc<AlarmEvent>> {
        self.slots
            .range(from..)
            .filter(|(_, s)| !s.acked)
            .filter_map(|(_, s)| match &s.entry {
                Entry::Alarm(a) => Some(a.clone()),
                Entry::Readings(_) => None,
            })
            .take(max)
            .collect()
    }

    /// Unacknowledged reading batches with keys in `from..below`, oldest first, at most `max`.
    pub fn batches(&self, from: Seq, below: Seq, max: usize) -> Vec<(Seq, Arc<Vec<Reading>>)> {
        if from >= below {
            return Vec::new();
        }
        self.slots
            .range(from..below)
            .filter(|(_, s)| !s.acked)
            .filter_map(|(k, s)| match &s.entry {
                Entry::Readings(r) => Some((*k, r.clone())),
                Entry::Alarm(_) => None,
            })
            .take(max)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlarmLevel, Quality, Sample, Value};
    use std::time::Duration;

    fn sample() -> Sample {
        Sample {
            point: "p".into(),
            ts_ms: 1,
            value: Some(Value::Int(1)),
            quality: Quality::Good,
        }
    }

    fn readings(first: Seq, n: u64) -> Entry {
        Entry::Readings(Arc::new(
            (first..first + n)
                .map(|seq| Reading {
                    seq,
                    device: "d".into(),
                    sample: sample(),
                })
                .collect(),
        ))
    }

    fn alarm(seq: Seq) -> Entry {
        Entry::Alarm(Arc::new(AlarmEvent {
            seq,
            device: "d".into(),
            sample: sample(),
            level: AlarmLevel::High,
            prev: AlarmLevel::Normal,
            warn: None,
        }))
    }

    fn keys(e: &[Entry]) -> Vec<Seq> {
        e.iter().map(Entry::key).collect()
    }

    #[test]
    fn alarms_are_due_at_once_readings_at_their_deadline() {
        let t0 = Instant::now();
        let sync = Duration::from_millis(100);
        let mut h = Head::default();
        h.push(readings(10, 4), t0 + sync);
        h.push(alarm(14), t0 + sync);
        h.push(readings(15, 4), t0 + sync * 2);
        assert_eq!(keys(&h.take_due(t0)), [14]);
        assert_eq!(h.next_deadline(), Some(t0 + sync));
        assert_eq!(keys(&h.take_due(t0 + sync)), [10]);
        assert!(h.take_due(t0 + sync).is_empty(), "nothing is taken twice");
        assert_eq!(keys(&h.take_all()), [15]);
    }

    #[test]
    fn a_late_reading_takes_the_next_window_with_it_but_an_alarm_takes_none() {
        let t0 = Instant::now();
        let sync = Duration::from_millis(100);
        let mut h = Head::default();
        h.push(alarm(1), t0);
        h.push(readings(2, 4), t0 + sync);
        h.push(readings(6, 4), t0 + sync + sync / 2);
        h.push(readings(10, 4), t0 + sync * 3);
        // only the alarm is due: readings stay in memory for their acknowledgement
        assert_eq!(keys(&h.take_due_batched(t0, sync)), [1]);
        // the first reading is late: the ones due within the next sync_ms go with it
        assert_eq!(keys(&h.take_due_batched(t0 + sync, sync)), [2, 6]);
    }

    #[test]
    fn a_record_acknowledged_before_its_deadline_is_never_due() {
        let t0 = Instant::now();
        let mut h = Head::default();
        h.push(readings(10, 4), t0);
        assert!(h.ack(10));
        assert!(h.take_due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(h.readings(), 0);
        assert_eq!(h.unsettled_from(), None);
        assert!(!h.ack(99), "a key not in the head is the store's");
    }

    #[test]
    fn an_ack_during_its_commit_deletes_it_from_the_store_afterwards() {
        let t0 = Instant::now();
        let mut h = Head::default();
        h.push(readings(10, 4), t0);
        h.push(readings(14, 4), t0);
        let due = h.take_due(t0);
        assert!(h.ack(10));
        assert!(h.batches(0, Seq::MAX, 10).iter().all(|(k, _)| *k != 10));
        assert_eq!(h.committed(&keys(&due)), [10]);
        assert_eq!(h.readings(), 0);
        // a failed commit makes the rest due again, except what was acknowledged meanwhile
        h.push(readings(20, 2), t0);
        h.push(readings(22, 2), t0);
        let due = h.take_due(t0);
        h.ack(22);
        h.failed(&keys(&due));
        assert_eq!(keys(&h.take_due(t0)), [20]);
    }

    #[test]
    fn the_watermark_is_the_lowest_unsettled_number() {
        let t0 = Instant::now();
        let mut h = Head::default();
        h.push(readings(10, 4), t0);
        h.push(alarm(14), t0);
        h.push(readings(15, 4), t0);
        assert_eq!(h.unsettled_from(), Some(10));
        h.ack(10);
        assert_eq!(h.unsettled_from(), Some(14));
        let due = h.take_due(t0);
        // while they are being committed they still count, but not for the commit's own mark
        assert_eq!(h.unsettled_from(), Some(14));
        assert_eq!(h.unsettled_after_commit(), None);
        h.committed(&keys(&due));
        assert_eq!(h.unsettled_from(), None);
    }

    #[test]
    fn reads_return_unacknowledged_entries_in_order_within_bounds() {
        let t0 = Instant::now();
        let mut h = Head::default();
        h.push(readings(10, 4), t0);
        h.push(alarm(14), t0);
        h.push(readings(15, 4), t0);
        h.push(alarm(19), t0);
        assert_eq!(
            h.batches(0, Seq::MAX, 10)
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>(),
            [10, 15]
        );
        assert_eq!(h.batches(11, 15, 10).len(), 0);
        assert_eq!(h.batches(0, Seq::MAX, 1).len(), 1);
        assert_eq!(
            h.alarms(15, 10).iter().map(|a| a.seq).collect::<Vec<_>>(),
            [19]
        );
        h.ack(19);
        assert!(h.alarms(0, 10).iter().all(|a| a.seq != 19));
    }
}
