//! The local broker's fan-out: which client wants which of our topics, and each client's own
//! bounded queue of encoded messages.
//!
//! Owns the subscription rules (only filters under the configured prefix, at most
//! [`MAX_FILTERS`] per client) and the queue bound ([`QUEUE_MESSAGES`] messages or
//! [`QUEUE_BYTES`] bytes per client: when full, that client's oldest copy is dropped and
//! counted). Pure and synchronous: publishing never waits for a client, so a slow one can only
//! lose its own copies. Must never block, allocate per message beyond a reference count, or
//! hold a lock across I/O.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

/// Messages one client may have waiting.
pub const QUEUE_MESSAGES: usize = 256;
/// Bytes one client may have waiting (a single larger message is still delivered alone).
pub const QUEUE_BYTES: usize = 1 << 20;
/// Subscription filters one client may hold.
pub const MAX_FILTERS: usize = 16;

/// The topics the local broker publishes: `{prefix}/readings` and `{prefix}/alarms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Readings = 1,
    Alarms = 2,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Readings, Topic::Alarms];

    pub fn suffix(self) -> &'static str {
        match self {
            Topic::Readings => "readings",
            Topic::Alarms => "alarms",
        }
    }
}

/// Whether MQTT filter `filter` matches `topic` (`+` one level, `#` the rest).
fn matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// A syntactically valid filter: `#` only as the last level, wildcards only as whole levels.
fn valid(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| match *l {
            "#" => i == levels.len() - 1,
            "+" => true,
            l => !l.contains(['#', '+']),
        })
}

/// The topics `filter` selects, or `None` if a client may not subscribe to it: only valid
/// filters under `{prefix}/` (so `#` alone, `$SYS/#` or another prefix are refused).
pub fn selects(prefix: &str, filter: &str) -> Option<u8> {
    let under = filter
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('/'));
    if !under || !valid(filter) {
        return None;
    }
    Some(
        Topic::ALL
            .iter()
            .filter(|t| matches(filter, &format!("{prefix}/{}", t.suffix())))
            .fold(0, |m, t| m | *t as u8),
    )
}

/// What one client has subscribed to and what waits for it.
#[derive(Default)]
struct State {
    filters: Vec<(String, u8)>,
    queue: VecDeque<Bytes>,
    bytes: usize,
}

impl State {
    fn wants(&self, t: Topic) -> bool {
        self.filters.iter().any(|(_, m)| m & t as u8 != 0)
    }
}

/// One connected client's side of the fan-out.
#[derive(Default)]
pub struct Client {
    state: Mutex<State>,
    /// Woken when something is queued.
    pub ready: Notify,
}

impl Client {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a filter; `false` if the client already holds [`MAX_FILTERS`].
    pub fn subscribe(&self, filter: &str, mask: u8) -> bool {
        let mut s = self.lock();
        if s.filters.iter().any(|(f, _)| f == filter) {
            return true;
        }
        if s.filters.len() >= MAX_FILTERS {
            return false;
        }
        s.filters.push((filter.to_string(), mask));
        true
    }

    pub fn unsubscribe(&self, filter: &str) {
        self.lock().filters.retain(|(f, _)| f != filter);
    }

    /// The next encoded packet to write, if any.
    pub fn next(&self) -> Option<Bytes> {
        let mut s = self.lock();
        let m = s.queue.pop_front()?;
        s.bytes -= m.len();
        Some(m)
    }

    /// Queues `packet` if wanted; returns how many older copies were dropped to make room.
    fn offer(&self, t: Topic, packet: &Bytes) -> u64 {
        let mut s = self.lock();
        if !s.wants(t) {
            return 0;
        }
        let mut dropped = 0;
        while !s.queue.is_empty()
            && (s.queue.len() >= QUEUE_MESSAGES || s.bytes + packet.len() > QUEUE_BYTES)
        {
            if let Some(old) = s.queue.pop_front() {
                s.bytes -= old.len();
                dropped += 1;
            }
        }
        s.bytes += packet.len();
        s.queue.push_back(packet.clone());
        drop(s);
        self.ready.notify_one();
        dropped
    }
}

/// Every connected client.
pub struct Fanout {
    clients: Mutex<Vec<Arc<Client>>>,
    /// Copies dropped because a client's queue was full.
    pub dropped: Counter,
}

impl Fanout {
    pub fn new(dropped: Counter) -> Fanout {
        Fanout {
            clients: Mutex::new(Vec::new()),
            dropped,
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn join(&self) -> Arc<Client> {
        let c = Arc::new(Client::default());
        self.clients().push(c.clone());
        c
    }

    pub fn leave(&self, c: &Arc<Client>) {
        self.clients().retain(|x| !Arc::ptr_eq(x, c));
    }

    /// Offers one encoded packet to every client subscribed to `t`.
    pub fn publish(&self, t: Topic, packet: Bytes) {
        // Each offer is a short, non-blocking push under that client's own lock.
        for c in self.clients().iter() {
            self.dropped.inc_by(c.offer(t, &packet));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_filters_under_the_prefix_are_allowed() {
        let r = Topic::Readings as u8;
        let a = Topic::Alarms as u8;
        assert_eq!(selects("plant/a", "plant/a/#"), Some(r | a));
        assert_eq!(selects("plant/a", "plant/a/+"), Some(r | a));
        assert_eq!(selects("plant/a", "plant/a/alarms"), Some(a));
        assert_eq!(selects("plant/a", "plant/a/other"), Some(0));
        for refused in [
            "#",
            "+/a/#",
            "plant/#",
            "plant/ab/#",
            "$SYS/#",
            "plant/a/#/x",
            "plant/a/al#",
            "plant/a",
        ] {
            assert_eq!(selects("plant/a", refused), None, "{refused}");
        }
    }

    #[test]
    fn a_client_holds_at_most_max_filters_and_unsubscribing_frees_one() {
        let c = Client::default();
        for i in 0..MAX_FILTERS {
            assert!(c.subscribe(&format!("p/{i}"), 0));
        }
        assert!(c.subscribe("p/0", 0), "a filter it already holds is fine");
        assert!(!c.subscribe("p/#", 3));
        c.unsubscribe("p/0");
        assert!(c.subscribe("p/#", 3));
        assert!(c.lock().wants(Topic::Alarms));
    }

    #[test]
    fn a_full_queue_drops_its_own_oldest_copies_and_others_get_everything() {
        let f = Fanout::new(Counter::default());
        let (slow, other) = (f.join(), f.join());
        slow.subscribe("p/#", 3);
        other.subscribe("p/alarms", Topic::Alarms as u8);
        for i in 0..(QUEUE_MESSAGES + 10) {
            f.publish(Topic::Readings, Bytes::from(vec![i as u8; 10]));
        }
        f.publish(Topic::Alarms, Bytes::from_static(b"alarm"));
        assert_eq!(f.dropped.get(), 11);
        assert_eq!(slow.next().unwrap()[0], 11);
        assert_eq!(other.next().unwrap(), Bytes::from_static(b"alarm"));
        assert!(other.next().is_none());

        let big = f.join();
        big.subscribe("p/readings", Topic::Readings as u8);
        for _ in 0..3 {
            f.publish(Topic::Readings, Bytes::from(vec![0u8; QUEUE_BYTES / 2 + 1]));
        }
        let (mut n, mut bytes) = (0, 0);
        while let Some(m) = big.next() {
            n += 1;
            bytes += m.len();
        }
        assert_eq!(n, 1, "two halves and a byte do not fit in the byte bound");
        assert!(bytes <= QUEUE_BYTES);
    }
}
