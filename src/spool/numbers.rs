//! Sequence numbers: handed out at capture from blocks reserved durably in advance, and the
//! ranges a restart cannot vouch for.
//!
//! Owns the reservation rule (a new block is reserved, in a durable commit, while half of the
//! current one is still left, so capture never waits for it) and [`unvouched`], which turns what
//! the store remembers after an unclean stop into the gap ranges announced to the platform.
//! Pure: must never do I/O.

use crate::record::Seq;

/// Numbers reserved per durable reservation. A restart skips at most this many.
pub const BLOCK: u64 = 1 << 16;

/// The numbers this run may hand out: `next..reserved_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    next: Seq,
    reserved_until: Seq,
}

impl Numbers {
    pub fn new(next: Seq, reserved_until: Seq) -> Self {
        Numbers {
            next,
            reserved_until: reserved_until.max(next),
        }
    }

    /// The number the next record gets.
    pub fn next(&self) -> Seq {
        self.next
    }

    pub fn reserved_until(&self) -> Seq {
        self.reserved_until
    }

    /// Takes `n` consecutive numbers and returns the first, or `None` when they are not
    /// reserved yet (reserve first: [`Numbers::wants_reserve`]).
    pub fn take(&mut self, n: u64) -> Option<Seq> {
        self.take_keeping(n, 0)
    }

    /// [`Numbers::take`], but only while `keep` reserved numbers would be left after it.
    pub fn take_keeping(&mut self, n: u64, keep: u64) -> Option<Seq> {
        let first = self.next;
        let end = first.checked_add(n)?;
        (end.saturating_add(keep) <= self.reserved_until).then(|| {
            self.next = end;
            first
        })
    }

    /// The limit to reserve up to (durably) before `need` more numbers can be taken with half a
    /// block to spare, or `None` while enough is reserved.
    pub fn wants_reserve(&self, need: u64) -> Option<Seq> {
        let left = self.reserved_until - self.next;
        (left < need.saturating_add(BLOCK / 2))
            .then(|| self.next.saturating_add(need).saturating_add(BLOCK))
    }

    /// A reservation up to `until` is durable.
    pub fn reserved(&mut self, until: Seq) {
        self.reserved_until = self.reserved_until.max(until);
    }
}

/// After an unclean stop: the inclusive ranges of numbers the last run may have handed out
/// (`settled_below..reserved_until`) of which the store holds nothing. Every record below
/// `settled_below` was durable or acknowledged; the store's entries at or above it (`present`:
/// key and length, in key order) will still be sent. A number in a returned range either reached
/// the platform already or never will.
pub fn unvouched(
    settled_below: Seq,
    reserved_until: Seq,
    present: impl IntoIterator<Item = (Seq, u64)>,
) -> Vec<(Seq, Seq)> {
    let mut out = Vec::new();
    let mut from = settled_below;
    for (key, len) in present {
        if key >= reserved_until {
            break;
        }
        if key > from {
            out.push((from, key - 1));
        }
        from = from.max(key.saturating_add(len.max(1)));
    }
    if from < reserved_until {
        out.push((from, reserved_until - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_taken_only_from_what_is_reserved() {
        let mut n = Numbers::new(1000, 1000);
        assert_eq!(n.take(1), None);
        let until = n.wants_reserve(32).unwrap();
        assert_eq!(until, 1000 + 32 + BLOCK);
        n.reserved(until);
        assert_eq!(n.take(32), Some(1000));
        assert_eq!(n.next(), 1032);
        assert_eq!(n.wants_reserve(32), None, "a whole block is left");
        // half a block before the end, the next reservation is asked for
        assert!(n.take(BLOCK / 2).is_some());
        assert!(n.wants_reserve(32).is_some());
        // a reservation never shrinks
        n.reserved(5);
        assert_eq!(n.reserved_until(), until);
    }

    #[test]
    fn a_clean_store_has_nothing_unvouched() {
        assert_eq!(unvouched(500, 500, []), vec![]);
    }

    #[test]
    fn unvouched_ranges_leave_out_what_the_store_still_holds() {
        // the last run reserved up to 1000; everything below 100 was settled; the store still
        // holds an alarm at 120 and a 32-reading batch at 200
        assert_eq!(
            unvouched(100, 1000, [(120, 1), (200, 32)]),
            vec![(100, 119), (121, 199), (232, 999)]
        );
        // entries at the very start and end leave no empty ranges
        assert_eq!(unvouched(100, 133, [(100, 1), (101, 32)]), vec![]);
        // store entries below the watermark (older backlog) change nothing
        assert_eq!(unvouched(100, 110, [(10, 32), (100, 5)]), vec![(105, 109)]);
    }
}
