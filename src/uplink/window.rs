//! The in-flight window: which published message carries which spool entries, pure bookkeeping.
//!
//! Owns the pairing of rumqttc's packet ids with our messages and the window rule. rumqttc's
//! `publish()` returns no packet id; its event loop reports `Outgoing::Publish(pkid)` in the
//! order it took the requests, so a FIFO of messages handed to it pairs each pkid with its
//! message. Packet ids cycle `1..=inflight` and are reused at once, so the window is anchored at
//! the oldest unacknowledged message in publish order: message *n* is sent only when message
//! *n − capacity* has been acknowledged (rumqtt #1014/#1056: out-of-order PUBACKs with a full
//! window otherwise collide). Must never do I/O or know about MQTT beyond packet ids.

use std::collections::VecDeque;

/// What a message carries, returned when the broker acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// One alarm event (its spool key).
    Alarm(u64),
    /// Reading batches (their spool keys) and the number of readings in them.
    Readings {
        keys: Vec<u64>,
        count: u64,
        hist: bool,
    },
    /// A gap announcement, as the range it said.
    Gap { from: u64, to: u64 },
    /// The retained `online` status: nothing to delete.
    Status,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    pkid: Option<u16>,
    acked: bool,
    carried: Carried,
}

#[derive(Debug)]
pub struct Window {
    capacity: u64,
    next_id: u64,
    /// In publish order, from the oldest unacknowledged message.
    slots: VecDeque<Slot>,
    /// Messages handed to the client whose packet id has not been reported yet.
    awaiting_pkid: VecDeque<u64>,
}

impl Window {
    pub fn new(capacity: u16) -> Self {
        Window {
            capacity: u64::from(capacity.max(1)),
            next_id: 0,
            slots: VecDeque::new(),
            awaiting_pkid: VecDeque::new(),
        }
    }

    /// Whether one more message may be published now.
    pub fn can_send(&self) -> bool {
        self.slots
            .front()
            .is_none_or(|oldest| self.next_id - oldest.id < self.capacity)
    }

    /// Records a message handed to the client.
    pub fn sent(&mut self, carried: Carried) {
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push_back(Slot {
            id,
            pkid: None,
            acked: false,
            carried,
        });
        self.awaiting_pkid.push_back(id);
    }

    /// The client reported the packet id of the next message it took.
    pub fn on_outgoing(&mut self, pkid: u16) {
        let Some(id) = self.awaiting_pkid.pop_front() else {
            tracing::debug!(
                pkid,
                "packet id for no message of ours (stale event): ignored"
            );
            return;
        };
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == id) {
            s.pkid = Some(pkid);
        }
    }

    /// The broker acknowledged `pkid`: returns what that message carried, once.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Carried> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| !s.acked && s.pkid == Some(pkid))?;
        slot.acked = true;
        let carried = slot.carried.clone();
        while self.slots.front().is_some_and(|s| s.acked) {
            self.slots.pop_front();
        }
        Some(carried)
    }

    /// What the messages awaiting PUBACK carry.
    pub fn unacked(&self) -> impl Iterator<Item = &Carried> {
        self.slots.iter().filter(|s| !s.acked).map(|s| &s.carried)
    }

    /// Messages awaiting PUBACK.
    pub fn outstanding(&self) -> usize {
        self.slots.iter().filter(|s| !s.acked).count()
    }

    /// The connection is gone: forget everything in flight (it will be re-read from the spool).
    pub fn reset(&mut self) {
        self.slots.clear();
        self.awaiting_pkid.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(k: u64) -> Carried {
        Carried::Alarm(k)
    }

    #[test]
    fn pkids_pair_in_fifo_order_and_acks_return_their_message_once() {
        let mut w = Window::new(4);
        w.sent(alarm(10));
        w.sent(alarm(11));
        w.on_outgoing(1);
        w.on_outgoing(2);
        assert_eq!(w.on_puback(2), Some(alarm(11)));
        assert_eq!(
            w.on_puback(2),
            None,
            "a duplicate PUBACK acknowledges nothing"
        );
        assert_eq!(w.on_puback(1), Some(alarm(10)));
        assert_eq!(w.outstanding(), 0);
    }

    #[test]
    fn window_is_anchored_at_the_oldest_unacknowledged_message() {
        let mut w = Window::new(3);
        for k in 0..3 {
            assert!(w.can_send());
            w.sent(alarm(k));
            w.on_outgoing(k as u16 + 1);
        }
        assert!(!w.can_send());
        // later messages acknowledged out of order do not open the window...
        assert!(w.on_puback(3).is_some());
        assert!(w.on_puback(2).is_some());
        assert!(!w.can_send(), "message 0 is still unacknowledged");
        // ...the oldest does, and then by as much as it has fallen behind
        assert!(w.on_puback(1).is_some());
        assert!(w.can_send());
        for k in 3..6 {
            assert!(w.can_send());
            w.sent(alarm(k));
        }
        assert!(!w.can_send());
    }

    #[test]
    fn a_reused_pkid_maps_to_the_newer_message_after_the_old_one_was_acked() {
        let mut w = Window::new(1);
        w.sent(alarm(1));
        w.on_outgoing(1);
        assert_eq!(w.on_puback(1), Some(alarm(1)));
        w.sent(alarm(2));
        w.on_outgoing(1);
        assert_eq!(w.on_puback(1), Some(alarm(2)));
    }

    #[test]
    fn reset_forgets_in_flight_and_stale_events_are_ignored() {
        let mut w = Window::new(2);
        w.sent(alarm(1));
        w.reset();
        w.on_outgoing(7); // stale event from the old connection
        assert_eq!(w.on_puback(7), None);
        assert!(w.can_send());
        assert_eq!(w.outstanding(), 0);
    }
}
