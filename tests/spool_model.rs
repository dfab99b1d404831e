//! Property tests of the spool against a plain in-memory model: random sequences of capture,
//! acknowledgement (of records and gaps), commits, evictions (a small `max_bytes`), compaction,
//! clean reopen and power cut, on the real spool kept on the power-loss backend. After every
//! step the spool holds exactly what the model says is pending, less readings it announced as
//! evicted; gaps appear only for a reason the step can give; numbering only goes up.

#![allow(clippy::unwrap_used)]

#[path = "power_cut/mod.rs"]
mod power_cut;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantgate::config::SpoolSettings;
use plantgate::record::{
    AlarmChange, AlarmLevel, DevicePoll, GapReason, Quality, Sample, Seq, Value,
};
use plantgate::spool::Spool;
use power_cut::PowerCutBackend;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Capture {
        samples: usize,
        alarm: bool,
    },
    /// Acknowledge the pending entries whose bit is set (by position).
    Ack(u32),
    AckGaps,
    CommitAlarms,
    CommitAll,
    Compact,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..=6, proptest::bool::weighted(0.2))
            .prop_map(|(samples, alarm)| Op::Capture { samples, alarm }),
        4 => any::<u32>().prop_map(Op::Ack),
        1 => Just(Op::AckGaps),
        2 => Just(Op::CommitAlarms),
        3 => Just(Op::CommitAll),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rec {
    alarm: bool,
    len: u64,
    durable: bool,
}

#[derive(Debug, Default)]
struct Model {
    pending: BTreeMap<Seq, Rec>,
    /// Acknowledged while stored: a power cut may bring them back (their delete was not durable).
    acked_stored: BTreeSet<Seq>,
    /// Gaps announced, by first number (an eviction gap may grow).
    gaps: BTreeMap<Seq, GapReason>,
    next: Seq,
}

fn settings(max_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        sync: Duration::from_secs(3600),
        max_bytes,
        cache_bytes: 1 << 20,
    }
}

fn open(b: &PowerCutBackend, max_bytes: u64) -> Spool {
    Spool::open_with_backend(
        Arc::new(b.clone()),
        Path::new("m.redb"),
        &settings(max_bytes),
    )
    .unwrap()
}

fn poll(samples: usize, alarm: bool) -> DevicePoll {
    let s = |p: &str, v: f64| Sample {
        point: p.into(),
        ts_ms: 1_700_000_000_000,
        value: Some(Value::Float(v)),
        quality: Quality::Good,
    };
    DevicePoll {
        device: "gas-1".into(),
        samples: (0..samples).map(|i| s("ch.gas", i as f64)).collect(),
        alarms: if alarm {
            vec![AlarmChange {
                sample: s("ch.status", 2.0),
                level: AlarmLevel::High,
                prev: AlarmLevel::Normal,
                warn: None,
            }]
        } else {
            vec![]
        },
    }
}

struct Seen {
    entries: BTreeMap<Seq, (bool, u64)>,
    gaps: Vec<(Seq, Seq, GapReason)>,
    next: Seq,
}

fn seen(spool: &Spool) -> Seen {
    let mut entries = BTreeMap::new();
    for (k, r) in spool.readings(0, u64::MAX, usize::MAX).unwrap() {
        entries.insert(k, (false, r.len() as u64));
    }
    for a in spool.alarms(0, usize::MAX).unwrap() {
        entries.insert(a.seq, (true, 1));
    }
    let gaps = spool.gaps(0, usize::MAX).unwrap();
    Seen {
        entries,
        gaps: gaps.into_iter().map(|g| (g.from, g.to, g.reason)).collect(),
        next: spool.next_seq(),
    }
}

fn covered(gaps: &[(Seq, Seq, GapReason)], k: Seq, len: u64, reason: GapReason) -> bool {
    gaps.iter()
        .any(|&(from, to, r)| r == reason && from <= k && k + len - 1 <= to)
}

/// Compares the spool with the model after `op`, and brings the model up to date with what the
/// spool may legitimately have done on its own (evictions, a power cut's losses).
fn check(spool: &Spool, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let s = seen(spool);
    prop_assert!(
        s.next >= m.next,
        "numbering went back: {} < {}",
        s.next,
        m.next
    );
    m.next = s.next;
    let crash = matches!(op, Op::Crash);
    let mut gone = Vec::new();
    for (&k, r) in &m.pending {
        match s.entries.get(&k) {
            Some(&(alarm, len)) => {
                prop_assert_eq!((alarm, len), (r.alarm, r.len), "entry {} changed", k);
                prop_assert!(
                    !crash || r.durable,
                    "entry {} outlived a power cut in memory",
                    k
                );
            }
            None if !r.alarm && r.durable && covered(&s.gaps, k, r.len, GapReason::Evicted) => {
                gone.push(k)
            }
            None if crash && !r.durable && covered(&s.gaps, k, r.len, GapReason::UncleanStop) => {
                gone.push(k)
            }
            None => prop_assert!(
                false,
                "entry {} {:?} lost without its gap after {:?}",
                k,
                r,
                op
            ),
        }
    }
    for k in gone {
        m.pending.remove(&k);
    }
    for (&k, &(alarm, len)) in &s.entries {
        if m.pending.contains_key(&k) {
            continue;
        }
        prop_assert!(
            crash && m.acked_stored.contains(&k),
            "entry {} appeared from nowhere after {:?}",
            k,
            op
        );
        // its delete was lost with the power: it will be sent again
        m.pending.insert(
            k,
            Rec {
                alarm,
                len,
                durable: true,
            },
        );
    }
    let now: BTreeMap<Seq, GapReason> = s.gaps.iter().map(|g| (g.0, g.2)).collect();
    for (from, reason) in &now {
        if m.gaps.get(from) == Some(reason) {
            continue;
        }
        match reason {
            GapReason::UncleanStop => prop_assert!(crash, "an unclean-stop gap after {:?}", op),
            GapReason::Evicted => {}
            GapReason::Damaged => prop_assert!(false, "a damaged gap after {:?}", op),
        }
    }
    if !matches!(op, Op::AckGaps) {
        for from in m.gaps.keys() {
            prop_assert!(
                now.contains_key(from),
                "gap {} vanished after {:?}",
                from,
                op
            );
        }
    }
    m.gaps = now;
    Ok(())
}

fn run(ops: &[Op], max_bytes: u64) -> Result<(), TestCaseError> {
    let mut backend = PowerCutBackend::new(0, 0.0, false);
    let mut spool = open(&backend, max_bytes);
    let mut m = Model {
        next: spool.next_seq(),
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Capture { samples, alarm } => {
                let p = poll(*samples, *alarm);
                spool
                    .reserve((samples + usize::from(*alarm)) as u64)
                    .unwrap();
                let out = spool.capture(&p).unwrap();
                let first = out.readings[0].seq;
                prop_assert!(first >= m.next, "a number was handed out twice");
                let len = out.readings.len() as u64;
                m.pending.insert(
                    first,
                    Rec {
                        alarm: false,
                        len,
                        durable: false,
                    },
                );
                for a in &out.alarms {
                    m.pending.insert(
                        a.seq,
                        Rec {
                            alarm: true,
                            len: 1,
                            durable: false,
                        },
                    );
                }
            }
            Op::Ack(mask) => {
                let picked: Vec<(Seq, Rec)> = m
                    .pending
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << (i % 32)) != 0)
                    .map(|(_, (k, r))| (*k, *r))
                    .collect();
                let keys = |alarm: bool| -> Vec<Seq> {
                    picked
                        .iter()
                        .filter(|p| p.1.alarm == alarm)
                        .map(|p| p.0)
                        .collect()
                };
                spool.ack(&keys(false), &keys(true), &[]).unwrap();
                for (k, r) in picked {
                    m.pending.remove(&k);
                    if r.durable {
                        m.acked_stored.insert(k);
                    }
                }
            }
            Op::AckGaps => {
                let sent: Vec<(Seq, Seq)> = spool
                    .gaps(0, 8)
                    .unwrap()
                    .iter()
                    .map(|g| (g.from, g.to))
                    .collect();
                spool.ack(&[], &[], &sent).unwrap();
            }
            Op::CommitAlarms | Op::CommitAll => {
                let all = matches!(op, Op::CommitAll);
                let now = Instant::now() + Duration::from_secs(if all { 7200 } else { 0 });
                spool.commit_due(now).unwrap();
                for r in m.pending.values_mut() {
                    r.durable |= all || r.alarm;
                }
            }
            Op::Compact => spool.compact_now(),
            Op::Reopen => {
                spool.close().unwrap();
                drop(spool);
                spool = open(&backend, max_bytes);
                for r in m.pending.values_mut() {
                    r.durable = true;
                }
            }
            Op::Crash => {
                let image = backend.cut_all_unsynced();
                drop(spool);
                backend = PowerCutBackend::from_image(image, 0, 0.0, false);
                spool = open(&backend, max_bytes);
            }
        }
        check(&spool, &mut m, op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_keeps_what_the_model_keeps(
        ops in proptest::collection::vec(op(), 1..80),
        small in any::<bool>(),
    ) {
        run(&ops, if small { 48 << 10 } else { 64 << 20 })?;
    }
}
