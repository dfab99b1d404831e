//! The write-behind spool's rule, on the real spool and its redb file: a record is durable by
//! `sync_ms` or acknowledged by the broker, whichever comes first; alarms are committed at once.
//! What is "on disk" is read back by reopening the file after the spool is dropped like a
//! crash (no clean close), so nothing only in memory can pass for durable.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use plantgate::config::SpoolSettings;
use plantgate::record::{now_ms, AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Value};
use plantgate::spool::Spool;

const SYNC: Duration = Duration::from_millis(200);

fn settings() -> SpoolSettings {
    SpoolSettings {
        sync: SYNC,
        max_bytes: 64 << 20,
        cache_bytes: 1 << 20,
    }
}

fn poll(device: &str, alarm: bool) -> DevicePoll {
    let s = |p: &str, v: i64| Sample {
        point: p.into(),
        ts_ms: now_ms(),
        value: Some(Value::Int(v)),
        quality: Quality::Good,
    };
    DevicePoll {
        device: device.into(),
        samples: (0..8).map(|i| s(&format!("p{i}"), i)).collect(),
        alarms: if alarm {
            vec![AlarmChange {
                sample: s("st", 2),
                level: AlarmLevel::High,
                prev: AlarmLevel::Normal,
                warn: None,
            }]
        } else {
            vec![]
        },
    }
}

/// Captures `p` (reserving numbers first, as the spool's task does).
fn capture(spool: &Spool, p: &DevicePoll) -> plantgate::spool::Stored {
    spool.reserve(9).unwrap();
    spool.capture(p).unwrap()
}

/// What a crash would leave: the spool dropped without its clean close, the file reopened.
/// Returns (reading batch keys, alarm keys) on disk.
fn on_disk_after_crash(spool: Spool, dir: &Path) -> (Vec<u64>, Vec<u64>) {
    drop(spool);
    let again = Spool::open(dir, &settings()).unwrap();
    let readings = again
        .readings(0, u64::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let alarms = again
        .alarms(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|a| a.seq)
        .collect();
    (readings, alarms)
}

#[test]
fn a_record_acknowledged_before_its_deadline_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), &settings()).unwrap();
    let acked = capture(&spool, &poll("acked", false));
    let key = acked.readings[0].seq;
    spool.ack(&[key], &[], &[]).unwrap();
    // past the deadline, the spool's commit finds nothing of it to write
    let later = Instant::now() + SYNC * 2;
    spool.commit_due(later).unwrap();
    let (readings, _) = on_disk_after_crash(spool, dir.path());
    assert!(
        !readings.contains(&key),
        "an acknowledged record was written: {readings:?}"
    );
}

#[test]
fn a_record_not_acknowledged_is_durable_by_its_deadline_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), &settings()).unwrap();
    let pending = capture(&spool, &poll("pending", false));
    let captured_by = Instant::now();
    let key = pending.readings[0].seq;
    // before its deadline nothing is due: it stays in memory, waiting for its PUBACK
    assert!(!spool.commit_due(captured_by + SYNC / 2).unwrap());
    assert_eq!(spool.status().readings, 0, "written before its deadline");
    // at its deadline it is committed (fsync before commit_due returns)
    assert!(spool.commit_due(captured_by + SYNC).unwrap());
    let (readings, _) = on_disk_after_crash(spool, dir.path());
    assert_eq!(readings, [key], "the unacknowledged record is not on disk");
}

#[test]
fn an_alarm_is_committed_at_once_and_its_readings_wait() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), &settings()).unwrap();
    let now = Instant::now();
    let c = capture(&spool, &poll("gas", true));
    assert!(
        spool.commit_due(now).unwrap(),
        "the alarm was not due at once"
    );
    let (readings, alarms) = on_disk_after_crash(spool, dir.path());
    assert_eq!(alarms, [c.alarms[0].seq], "the alarm is not on disk");
    assert!(
        readings.is_empty(),
        "readings were written with the alarm before their deadline: {readings:?}"
    );
}

#[test]
fn numbers_after_a_crash_are_above_everything_handed_out_and_the_rest_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), &settings()).unwrap();
    let first = capture(&spool, &poll("gas", false));
    let second = capture(&spool, &poll("gas", false));
    let last = second.readings.last().unwrap().seq;
    // neither durable nor acknowledged: a crash loses both, and must say so
    drop(spool);
    let again = Spool::open(dir.path(), &settings()).unwrap();
    assert!(
        again.next_seq() > last,
        "a number could be handed out twice"
    );
    let gaps = again.gaps(0, 100).unwrap();
    let covered = |s: u64| gaps.iter().any(|g| g.from <= s && s <= g.to);
    for r in first.readings.iter().chain(&second.readings) {
        assert!(covered(r.seq), "{} was lost without a gap: {gaps:?}", r.seq);
    }
    // and a clean close after that owes nothing more
    let next = again.next_seq();
    again.close().unwrap();
    drop(again);
    let clean = Spool::open(dir.path(), &settings()).unwrap();
    assert_eq!(clean.next_seq(), next);
    assert_eq!(
        clean.gaps(0, 100).unwrap().len(),
        gaps.len(),
        "a clean stop announced a gap"
    );
}
