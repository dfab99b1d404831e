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
    std::thread::sleep(Duration::from_millis(5));

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
async fn a_full_disk_evicts_readings_keeps_alarms_and_polling_goes_on() {
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
