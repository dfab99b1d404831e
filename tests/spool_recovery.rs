//! The spool when the disk is against us: a damaged file, and a disk that is full.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::open_spool;
use plantgate::config::SpoolSettings;
use plantgate::record::{now_ms, AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Value};

fn settings(max_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        sync: Duration::from_millis(10),
        max_bytes,
        cache_bytes: 1 << 20,
    }
}

fn poll(alarm: bool) -> DevicePoll {
    let s = |p: &str, v| Sample {
        point: p.into(),
        ts_ms: now_ms(),
        value: Some(Value::Float(v)),
        quality: Quality::Good,
    };
    DevicePoll {
        device: "gas-1".into(),
        samples: (0..32)
            .map(|i| s(&format!("ch{i:02}.gas"), f64::from(i) / 10.0))
            .collect(),
        alarms: if alarm {
            vec![AlarmChange {
                sample: s("ch01.status", 2.0),
                level: AlarmLevel::High,
                prev: AlarmLevel::Normal,
                warn: None,
            }]
        } else {
            vec![]
        },
    }
}

#[test]
fn a_damaged_spool_is_moved_aside_and_a_new_one_numbers_above_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let last_old_seq = {
        let spool = open_spool(dir.path(), &settings(64 << 20)).spool;
        spool.append(&[poll(true)]).unwrap();
        spool.next_seq() - 1
    };
    // Scribble over the file's header, as a failing eMMC might.
    let path = dir.path().join("spool.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().take(4096) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    // With the header gone its reservation is unreadable: the new store numbers from the
    // floor kept beside it (numbers.floor) or the clock, whichever is higher; no wait needed.

    let s = open_spool(dir.path(), &settings(64 << 20));
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("spool.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept for inspection");
    assert_eq!(aside[0].metadata().unwrap().len(), bytes.len() as u64);
    let stored = s.spool.append(&[poll(false)]).unwrap();
    assert!(
        stored.readings[0].seq > last_old_seq,
        "sequence numbers went back after replacing the spool"
    );
    assert_eq!(s.backlog(), 32);
}

/// A tmpfs of 2 MiB under a spool allowed 64 MiB: the OS says "disk full" long before the
/// spool's own budget would evict. Needs root (mount); CI runs as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_evicts_readings_keeps_alarms_and_capture_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs to mount a tmpfs (run as root, as CI does)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());

    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let s = open_spool(&mnt, &settings(64 << 20));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (tap, mut taps) = tokio::sync::broadcast::channel(4096);
    let appender = tokio::spawn(plantgate::spool::run_appender(s.spool.clone(), rx, tap));
    let mut alarms_sent = 0;
    let mut committed_alarms = 0;
    for i in 0..5000 {
        let alarm = i % 10 == 0;
        alarms_sent += usize::from(alarm);
        tokio::time::timeout(Duration::from_secs(20), tx.send(poll(alarm)))
            .await
            .expect("the appender stalled")
            .unwrap();
        while let Ok(s) = taps.try_recv() {
            committed_alarms += s.alarms.len();
        }
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), appender)
        .await
        .expect("the appender did not finish")
        .unwrap();
    // What a stopping gateway does last: commit what is still in memory, on a full disk too.
    let spool = s.spool.clone();
    tokio::task::spawn_blocking(move || spool.close())
        .await
        .unwrap()
        .expect("the spool closed with every record committed");
    while let Ok(s) = taps.try_recv() {
        committed_alarms += s.alarms.len();
    }
    let state = s.state();
    assert!(s.append_errors() > 0, "the disk never filled: {state}");
    assert!(s.evicted() > 0, "nothing was evicted: {state}");
    assert_eq!(committed_alarms, alarms_sent, "every alarm was committed");
    assert_eq!(
        s.alarms(),
        alarms_sent as u64,
        "an alarm was evicted: {state}"
    );
}

#[test]
fn a_drained_backlog_gives_its_disk_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_spool(dir.path(), &settings(1 << 30));
    let spool = &s.spool;
    // an outage's backlog: 960,000 readings
    let polls = vec![poll(false); 200];
    for _ in 0..150 {
        spool.append(&polls).unwrap();
    }
    let peak = s.file_bytes();
    assert!(
        peak > 20 << 20,
        "the backlog is too small to matter: {peak}"
    );
    // the uplink drains it, acknowledging message by message
    loop {
        let batches = spool.readings(0, u64::MAX, 500).unwrap();
        if batches.is_empty() {
            break;
        }
        let keys: Vec<u64> = batches.iter().map(|(k, _)| *k).collect();
        spool.ack(&keys, &[], &[]).unwrap();
    }
    let after = s.file_bytes();
    assert_eq!(s.backlog(), 0);
    assert!(
        after < peak / 8,
        "the file kept {after} of its {peak} bytes"
    );
    // and it still works
    assert_eq!(spool.append(&[poll(true)]).unwrap().alarms.len(), 1);
}

/// The spool's numbers come from durably reserved blocks, not from the clock: a start after
/// an unclean stop goes on above the last reservation (a block of `BLOCK` numbers), a start
/// after a clean close exactly where the last run stopped. Crashes in a row (at least 100, and
/// until the numbering is 2 s ahead) run the numbering ahead of `now_ms × 1000`, as after a
/// clock that stepped back; the next start still numbers above every number handed out.
#[test]
fn numbers_continue_from_the_reservation_whatever_the_clock_says() {
    use plantgate::spool::numbers::BLOCK;
    let dir = tempfile::tempdir().unwrap();
    let mut used = std::collections::BTreeSet::new();
    let mut expected_first: Option<u64> = None;
    // Each crash moves the numbering one block (65 ms of clock) ahead and takes 20-50 ms here,
    // longer on a slow disk: go on until the numbering is ahead, not a fixed number of times.
    let ahead = |next: Option<u64>| {
        next.is_some_and(|n| n > u64::try_from(now_ms()).unwrap() * 1000 + 2_000_000)
    };
    let mut crashes = 0;
    while crashes < 100 || !ahead(expected_first) {
        assert!(
            crashes < 2000,
            "2000 crashes did not run the numbering 2 s ahead of the clock: each took over 65 ms"
        );
        crashes += 1;
        let s = open_spool(dir.path(), &settings(64 << 20));
        let stored = s.spool.append(&[poll(true)]).unwrap();
        let first = stored.alarms[0].seq.min(stored.readings[0].seq);
        if let Some(e) = expected_first {
            // a clean close keeps the reservation: the next run starts at its end
            assert_eq!(first, e, "numbering did not continue from the reservation");
        }
        for seq in stored
            .readings
            .iter()
            .map(|r| r.seq)
            .chain(stored.alarms.iter().map(|a| a.seq))
        {
            assert!(used.insert(seq), "number {seq} handed out twice");
        }
        expected_first = Some(first + BLOCK);
        drop(s); // no close: as after kill -9, the next start skips the rest of the block
    }
    let clock = u64::try_from(now_ms()).unwrap() * 1000;
    let next = expected_first.unwrap();
    assert!(
        next > clock + 1_000_000,
        "the numbering is not ahead of the clock: {next} vs {clock}"
    );
    let s = open_spool(dir.path(), &settings(64 << 20));
    let stored = s.spool.append(&[poll(false)]).unwrap();
    assert_eq!(stored.readings[0].seq, next);
    assert!(stored.readings[0].seq > *used.last().unwrap());
    let after = s.spool.next_seq();
    s.close();
    drop(s);
    // a clean close: the next run wastes no number
    let s = open_spool(dir.path(), &settings(64 << 20));
    let last = s.spool.append(&[poll(false)]).unwrap().readings;
    assert_eq!(last[0].seq, after);
    drop(s);
    // And if the file is now damaged beyond reading while the numbering is still ahead of the
    // clock, the fresh spool numbers above the old one's reservation (kept beside it in
    // numbers.floor), not from the clock.
    let path = dir.path().join("spool.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.iter_mut().for_each(|b| *b = 0xA5);
    std::fs::write(&path, &bytes).unwrap();
    assert!(u64::try_from(now_ms()).unwrap() * 1000 < last.last().unwrap().seq);
    let s = open_spool(dir.path(), &settings(64 << 20));
    let fresh = s.spool.append(&[poll(false)]).unwrap().readings;
    assert!(
        fresh[0].seq > last.last().unwrap().seq,
        "a fresh spool reused numbers: {} after {}",
        fresh[0].seq,
        last.last().unwrap().seq
    );
}

/// A real gateway polling into a spool at its limit, with no uplink to drain it: the oldest
/// readings are evicted for the newest, every eviction is counted and announced as a gap, and
/// no alarm is ever evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_evicts_the_oldest_readings_for_a_real_pollers_newest() {
    use common::*;
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(2).await;
    c[0].set_concentration(4, 450); // an alarm during the run, too
    let text = gateway_toml(
        &dir.path().join("data"),
        sim,
        2,
        100,
        "max_bytes = 1048576\nsync_ms = 10",
        "",
    );
    let cfg = config(&text);
    // Filled to its limit beforehand, alarms among the readings: the first evictions happen.
    let (mut all_readings, mut all_alarms) = (BTreeSet::new(), BTreeSet::new());
    {
        let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
        while s.evicted() == 0 {
            let st = s
                .spool
                .append(&[poll(true), poll(false), poll(false)])
                .unwrap();
            all_readings.extend(st.readings.iter().map(|r| r.seq));
            all_alarms.extend(st.alarms.iter().map(|a| a.seq));
        }
        s.close();
    }
    let evicted_before = open_spool(&cfg.gateway.data_dir, &cfg.spool).evicted();
    let prefilled_last = *all_readings.last().unwrap();

    let mut gw = Gateway::start(&cfg).await;
    // Polling goes on, evicting: until as many readings were evicted again as prefilled ones
    // went in the first place, and beyond (some of the prefill is still there to go).
    until(Duration::from_secs(60), "evictions by the poller", || {
        spool_evicted(&gw) > evicted_before + 2000
    })
    .await;
    gw.shutdown().await;
    {
        let seen = gw.seen();
        all_readings.extend(seen.readings.iter().map(|r| r.seq));
        all_alarms.extend(seen.alarms.iter().map(|a| a.seq));
        assert!(
            seen.alarms
                .iter()
                .any(|a| &*a.sample.point == "ch04.status"),
            "no alarm during the run"
        );
    }

    let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
    let mut stored = BTreeSet::new();
    let mut from = 0;
    loop {
        let batches = s.spool.readings(from, u64::MAX, 10_000).unwrap();
        let Some((last, _)) = batches.last() else {
            break;
        };
        from = last + 1;
        stored.extend(batches.iter().flat_map(|(_, r)| r.iter().map(|r| r.seq)));
    }
    let evicted: Vec<u64> = all_readings.difference(&stored).copied().collect();
    assert!(stored.is_subset(&all_readings), "readings from nowhere");
    // the oldest went, the newest stayed: every evicted number is below every stored one
    let (newest_evicted, oldest_stored) = (*evicted.last().unwrap(), *stored.first().unwrap());
    assert!(
        newest_evicted < oldest_stored,
        "a newer reading ({newest_evicted}) was evicted while an older one ({oldest_stored}) stayed"
    );
    // the poller's readings pushed out prefilled ones
    assert!(*stored.last().unwrap() > prefilled_last);
    assert!(
        stored.last() == all_readings.last(),
        "the newest reading is gone"
    );
    // counted, over the store's life, one by one
    assert_eq!(s.evicted(), evicted.len() as u64, "{}", s.state());
    // announced: every evicted number lies in an `evicted` gap
    let gaps = s.spool.gaps(0, usize::MAX).unwrap();
    let unannounced: Vec<u64> = evicted
        .iter()
        .copied()
        .filter(|&q| {
            !gaps
                .iter()
                .any(|g| g.reason.as_str() == "evicted" && g.from <= q && q <= g.to)
        })
        .collect();
    assert!(
        unannounced.is_empty(),
        "{} evictions not announced, first {:?}",
        unannounced.len(),
        unannounced.first()
    );
    // and no alarm went: the prefill's and the run's
    let kept: BTreeSet<u64> = s
        .spool
        .alarms(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(kept, all_alarms, "an alarm was evicted");
}
