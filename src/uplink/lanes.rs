//! The order in which a session publishes: alarms, then gaps, then live readings, then backlog,
//! each lane with its own cursor into the spool.
//!
//! Owns filling the in-flight window from the spool's pending records in that order ([`pick`],
//! the choice, is pure and unit-tested), what counts as live, and how much of the window backlog
//! may take. Must never skip a record: a lane's cursor moves only past what was handed to the
//! client. Must never hand it a record twice in one session: after a rewind, what is in hand
//! (in flight, or acknowledged and maybe not yet deleted) is passed over.

use std::collections::HashSet;

use rumqttc::{AsyncClient, QoS};

use super::acks::Acks;
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
    /// What was in hand at the last rewind: never sent again in this session.
    in_hand: InHand,
}

/// Keys of reading batches and alarms handed to the client and maybe still in the store: in
/// flight, or acknowledged and waiting for their delete or lately handed to one
/// ([`Acks::held`]).
#[derive(Default, Debug, PartialEq)]
struct InHand {
    readings: HashSet<Seq>,
    alarms: HashSet<Seq>,
}

impl InHand {
    fn of(window: &Window, acks: &Acks) -> Self {
        let (readings, alarms) = acks.held();
        let mut held = InHand {
            readings: readings.collect(),
            alarms: alarms.collect(),
        };
        for c in window.unacked() {
            match c {
                Carried::Readings { keys, .. } => held.readings.extend(keys),
                Carried::Alarm(k) => {
                    held.alarms.insert(*k);
                }
                Carried::Gap { .. } | Carried::Status => {}
            }
        }
        held
    }
}

impl Lanes {
    /// A session's lanes: readings below `live_mark` are its backlog.
    pub(super) fn starting_at(live_mark: Seq) -> Self {
        Lanes {
            live_mark,
            live_from: live_mark,
            ..Lanes::default()
        }
    }

    /// The reading and alarm lanes from their start again: while the store could not be read (a
    /// failing disk, compaction, a reopen, a write that hangs) the cursors may have passed
    /// records it held. What is in hand (see [`InHand`]) is not sent again: it is acknowledged
    /// or will be, and a second copy would reach the platform as a duplicate. Gaps need no
    /// rewind: they are read from the store alone, and picked by what was sent.
    fn rewind(&mut self, window: &Window, acks: &Acks) {
        self.in_hand = InHand::of(window, acks);
        tracing::debug!(
            in_hand = self.in_hand.readings.len() + self.in_hand.alarms.len(),
            "the spool's store is back: the uplink reads it from the start again"
        );
        self.alarm_from = 0;
        self.live_from = self.live_mark;
        self.backlog_from = 0;
    }
}

/// A lane of the publish order; [`pick`] asks them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Alarm,
    Gap,
    Live,
    Backlog,
}

/// What a free publish slot carries: the first lane, in the order alarms, gaps, live readings,
/// backlog, for which `take` finds something (lanes after it are not asked). Backlog only with
/// `backlog_room` (see [`backlog_inflight`]). Pure but for what `take` does.
pub(super) fn pick<T, E>(
    backlog_room: bool,
    mut take: impl FnMut(Lane) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    for lane in [Lane::Alarm, Lane::Gap, Lane::Live, Lane::Backlog] {
        if lane == Lane::Backlog && !backlog_room {
            break;
        }
        if let Some(t) = take(lane)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// One message for the client: topic, payload and what it carries.
type Message = (String, Vec<u8>, Carried);

impl Uplink {
    /// Publishes while the window has room and the spool has something to send.
    pub(super) fn fill(
        &self,
        client: &AsyncClient,
        window: &mut Window,
        lanes: &mut Lanes,
        acks: &Acks,
    ) -> Result<(), UplinkError> {
        loop {
            // The read that heals a partial one may be this fill's own: look before every pick,
            // and once more before giving up.
            if self.spool.partial_reads_healed() {
                lanes.rewind(window, acks);
            }
            if !window.can_send() {
                return Ok(());
            }
            // whatever is in flight sits ahead of the next alarm in the connection, so a drain
            // must not fill the whole window with big batches
            let room = window.outstanding() < backlog_inflight(self.cfg.inflight);
            let Some((topic, payload, carried)) = pick(room, |lane| self.take(lane, lanes))? else {
                if self.spool.partial_reads_healed() {
                    lanes.rewind(window, acks);
                    continue;
                }
                return Ok(());
            };
            client.try_publish(topic, QoS::AtLeastOnce, false, payload)?;
            window.sent(carried);
            self.metrics.published.inc();
            self.state.update(|u| u.published += 1);
        }
    }

    /// The next message of `lane`, if it has one; moves that lane's cursor past it.
    fn take(&self, lane: Lane, lanes: &mut Lanes) -> Result<Option<Message>, StoreError> {
        let fmt = self.cfg.format;
        Ok(match lane {
            Lane::Alarm => loop {
                let Some(a) = self.spool.alarms(lanes.alarm_from, 1)?.pop() else {
                    break None;
                };
                lanes.alarm_from = a.seq + 1;
                if !lanes.in_hand.alarms.contains(&a.seq) {
                    break Some((
                        self.topic("alarms"),
                        wire::encode_alarm(fmt, &self.gw, &a),
                        Carried::Alarm(a.seq),
                    ));
                }
            },
            // Gaps are few and may appear below one already sent (an eviction of old backlog
            // after an unclean-stop gap): each is picked by what was sent, not by a cursor.
            Lane::Gap => self
                .spool
                .gaps(0, GAPS_READ)?
                .into_iter()
                .find(|g| !lanes.gaps_sent.contains(&(g.from, g.to)))
                .map(|g| {
                    lanes.gaps_sent.insert((g.from, g.to));
                    (
                        self.topic("gaps"),
                        wire::encode_gap(fmt, &self.gw, &g),
                        Carried::Gap {
                            from: g.from,
                            to: g.to,
                        },
                    )
                }),
            Lane::Live => {
                let live = self.unsent(&mut lanes.live_from, u64::MAX, &lanes.in_hand)?;
                self.readings_message(live, false, &mut lanes.live_from)
            }
            Lane::Backlog => {
                let below = lanes.live_mark;
                let backlog = self.unsent(&mut lanes.backlog_from, below, &lanes.in_hand)?;
                self.readings_message(backlog, true, &mut lanes.backlog_from)
            }
        })
    }

    /// The next reading batches from `cursor` below `below` that are not in hand, moving
    /// `cursor` past those that are; empty if there are none.
    fn unsent(
        &self,
        cursor: &mut Seq,
        below: Seq,
        in_hand: &InHand,
    ) -> Result<Vec<(Seq, Vec<Reading>)>, StoreError> {
        loop {
            let batches = self.spool.readings(*cursor, below, self.cfg.batch_max)?;
            let Some(end) = batches.last().map(|(k, r)| k + r.len().max(1) as u64) else {
                return Ok(batches);
            };
            let unsent: Vec<_> = batches
                .into_iter()
                .filter(|(k, _)| !in_hand.readings.contains(k))
                .collect();
            if !unsent.is_empty() {
                return Ok(unsent);
            }
            *cursor = end;
        }
    }

    /// `batches` as one message (`hist` for backlog), moving `cursor` past them; `None` if empty.
    fn readings_message(
        &self,
        batches: Vec<(Seq, Vec<Reading>)>,
        hist: bool,
        cursor: &mut Seq,
    ) -> Option<Message> {
        let (k, r) = batches.last()?;
        *cursor = k + r.len().max(1) as u64;
        let keys: Vec<u64> = batches.iter().map(|(k, _)| *k).collect();
        let readings: Vec<_> = batches.into_iter().flat_map(|(_, r)| r).collect();
        let count = readings.len() as u64;
        Some((
            self.topic("readings"),
            wire::encode_readings(self.cfg.format, &self.gw, hist, &readings),
            Carried::Readings { keys, count, hist },
        ))
    }
}

/// Spool reads can wait behind a commit that hangs on the disk (a frozen filesystem, a dying
/// eMMC): they run where that holds up only the uplink, never the runtime's workers, which
/// serve the page and the pollers.
pub(super) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
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

    /// Asks `pick` with these lanes pending; returns what it picked and the lanes it asked.
    fn picked(pending: &[Lane], room: bool) -> (Option<Lane>, Vec<Lane>) {
        let mut asked = Vec::new();
        let got = pick::<Lane, ()>(room, |lane| {
            asked.push(lane);
            Ok(pending.contains(&lane).then_some(lane))
        })
        .unwrap();
        (got, asked)
    }

    #[test]
    fn a_free_slot_goes_to_alarms_then_gaps_then_live_then_backlog() {
        use Lane::*;
        let all = [Alarm, Gap, Live, Backlog];
        assert_eq!(picked(&all, true), (Some(Alarm), vec![Alarm]));
        assert_eq!(
            picked(&[Gap, Live, Backlog], true),
            (Some(Gap), vec![Alarm, Gap])
        );
        assert_eq!(picked(&[Backlog, Live], true).0, Some(Live));
        assert_eq!(picked(&[Backlog], true), (Some(Backlog), all.to_vec()));
        assert_eq!(picked(&[], true), (None, all.to_vec()));
        // an alarm raised during a drain still goes first
        assert_eq!(picked(&[Backlog, Alarm], true).0, Some(Alarm));
    }

    #[test]
    fn backlog_waits_for_room_but_live_and_alarms_do_not() {
        use Lane::*;
        assert_eq!(picked(&[Backlog], false), (None, vec![Alarm, Gap, Live]));
        assert_eq!(picked(&[Live, Backlog], false).0, Some(Live));
        assert_eq!(picked(&[Alarm, Backlog], false).0, Some(Alarm));
    }

    #[test]
    fn an_error_in_a_lane_stops_the_pick() {
        let mut asked = Vec::new();
        let r = pick::<(), &str>(true, |lane| {
            asked.push(lane);
            if lane == Lane::Gap {
                Err("disk")
            } else {
                Ok(None)
            }
        });
        assert_eq!((r, asked), (Err("disk"), vec![Lane::Alarm, Lane::Gap]));
    }

    #[test]
    fn a_rewind_keeps_what_is_in_flight_or_awaits_its_delete() {
        let mut window = Window::new(8);
        window.sent(Carried::Readings {
            keys: vec![10, 20],
            count: 5,
            hist: true,
        });
        window.sent(Carried::Alarm(30));
        window.sent(Carried::Alarm(40));
        window.sent(Carried::Gap { from: 1, to: 2 });
        for pkid in 1..=4 {
            window.on_outgoing(pkid);
        }
        let mut acks = Acks::default();
        // alarm 30 acknowledged, its delete waiting; the gap acknowledged too
        acks.add(window.on_puback(2).unwrap());
        acks.add(window.on_puback(4).unwrap());
        let mut lanes = Lanes::starting_at(100);
        lanes.gaps_sent.insert((1, 2));
        (lanes.alarm_from, lanes.live_from, lanes.backlog_from) = (41, 130, 21);
        lanes.rewind(&window, &acks);
        assert_eq!(
            lanes.in_hand,
            InHand {
                readings: [10, 20].into(),
                alarms: [30, 40].into(),
            }
        );
        assert_eq!(
            (lanes.alarm_from, lanes.live_from, lanes.backlog_from),
            (0, 100, 0)
        );
        assert!(
            lanes.gaps_sent.contains(&(1, 2)),
            "a sent gap is not sent again"
        );
    }

    #[test]
    fn backlog_takes_at_most_a_quarter_of_the_window_between_2_and_8() {
        assert_eq!(backlog_inflight(1), 2);
        assert_eq!(backlog_inflight(8), 2);
        assert_eq!(backlog_inflight(20), 5);
        assert_eq!(backlog_inflight(32), 8);
        assert_eq!(backlog_inflight(1000), 8);
    }
}
