//! The order in which a session publishes: alarms, then gaps, then live readings, then backlog,
//! each lane with its own cursor into the spool.
//!
//! Owns filling the in-flight window from the spool's pending records in that order, what
//! counts as live, and how much of the window backlog may take. Must never skip a record: a lane's cursor moves only past what was handed to
//! the client.

use rumqttc::{AsyncClient, QoS};

use super::window::{Carried, Window};
use super::{Uplink, UplinkError};
use crate::record::{wire, Reading, Seq};
use crate::spool::store::StoreError;

/// Where each lane of a session has got to.
#[derive(Default)]
pub(super) struct Lanes {
    pub(super) alarm_from: Seq,
    /// The gaps sent in this session, as (from, to).
    pub(super) gaps_sent: std::collections::BTreeSet<(Seq, Seq)>,
    pub(super) live_from: Seq,
    /// Readings below this were pending when the session connected.
    pub(super) live_mark: Seq,
    pub(super) backlog_from: Seq,
}

impl Uplink {
    /// Publishes while the window has room and the spool has something to send.
    pub(super) fn fill(
        &self,
        client: &AsyncClient,
        window: &mut Window,
        lanes: &mut Lanes,
    ) -> Result<(), UplinkError> {
        if self.spool.partial_reads_healed() {
            // While the store could not be read, the cursors may have passed records it held:
            // read every lane from its start again (what is in flight may go twice, with the
            // same number and payload).
            lanes.alarm_from = 0;
            lanes.gaps_sent.clear();
            lanes.live_from = lanes.live_mark;
            lanes.backlog_from = 0;
        }
        while window.can_send() {
            let fmt = self.cfg.format;
            let (topic, payload, carried) = if let Some(a) =
                self.spool.alarms(lanes.alarm_from, 1)?.pop()
            {
                lanes.alarm_from = a.seq + 1;
                (
                    self.topic("alarms"),
                    wire::encode_alarm(fmt, &self.gw, &a),
                    Carried::Alarm(a.seq),
                )
            } else if let Some(g) = self
                .spool
                .gaps(0, GAPS_READ)?
                .into_iter()
                .find(|g| !lanes.gaps_sent.contains(&(g.from, g.to)))
            {
                // Gaps are few and may appear below one already sent (an eviction of old
                // backlog after an unclean-stop gap): each is picked by what was sent, not by a
                // cursor.
                lanes.gaps_sent.insert((g.from, g.to));
                (
                    self.topic("gaps"),
                    wire::encode_gap(fmt, &self.gw, &g),
                    Carried::Gap {
                        from: g.from,
                        to: g.to,
                    },
                )
            } else if let Some((batches, hist)) = self.next_readings(lanes, window.outstanding())? {
                let keys: Vec<u64> = batches.iter().map(|(k, _)| *k).collect();
                let readings: Vec<_> = batches.into_iter().flat_map(|(_, r)| r).collect();
                let count = readings.len() as u64;
                (
                    self.topic("readings"),
                    wire::encode_readings(fmt, &self.gw, hist, &readings),
                    Carried::Readings { keys, count, hist },
                )
            } else {
                return Ok(());
            };
            client.try_publish(topic, QoS::AtLeastOnce, false, payload)?;
            window.sent(carried);
            self.metrics.published.inc();
            self.state.update(|u| u.published += 1);
        }
        Ok(())
    }

    /// Live readings if any, else backlog, but backlog only while fewer than
    /// [`backlog_inflight`] messages are in flight: whatever is in flight sits ahead of the next
    /// alarm in the connection, so a drain must not fill the whole window with big batches.
    #[allow(clippy::type_complexity)]
    fn next_readings(
        &self,
        lanes: &mut Lanes,
        in_flight: usize,
    ) -> Result<Option<(Vec<(Seq, Vec<Reading>)>, bool)>, StoreError> {
        let live = self
            .spool
            .readings(lanes.live_from, u64::MAX, self.cfg.batch_max)?;
        if let Some((k, r)) = live.last() {
            lanes.live_from = k + r.len().max(1) as u64;
            return Ok(Some((live, false)));
        }
        if in_flight >= backlog_inflight(self.cfg.inflight) {
            return Ok(None);
        }
        let backlog =
            self.spool
                .readings(lanes.backlog_from, lanes.live_mark, self.cfg.batch_max)?;
        if let Some((k, r)) = backlog.last() {
            lanes.backlog_from = k + r.len().max(1) as u64;
            return Ok(Some((backlog, true)));
        }
        Ok(None)
    }
}

/// Most pending gaps looked at per fill.
const GAPS_READ: usize = 64;

/// Most backlog messages in flight at once: a quarter of the window, 2 to 8. Enough to keep a
/// drain fast (8 batches per round trip), few enough that an alarm raised meanwhile waits
/// behind milliseconds of backlog, not the whole window's.
pub(super) fn backlog_inflight(inflight: u16) -> usize {
    usize::from(inflight / 4).clamp(2, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_takes_at_most_a_quarter_of_the_window_between_2_and_8() {
        assert_eq!(backlog_inflight(1), 2);
        assert_eq!(backlog_inflight(8), 2);
        assert_eq!(backlog_inflight(20), 5);
        assert_eq!(backlog_inflight(32), 8);
        assert_eq!(backlog_inflight(1000), 8);
    }
}
