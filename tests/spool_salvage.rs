//! A damaged spool file never stops the gateway: zeroed or random pages in the middle, a
//! truncated file, garbage. The file is written by the real spool, damaged as a failing eMMC
//! would, and opened as the gateway opens it (checks and salvage in children of the real
//! `plantgate` binary). The spool must open, keep every record it can read with its number,
//! announce the rest as a gap, and number above everything the old file handed out.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use plantgate::config::SpoolSettings;
use plantgate::record::{
    now_ms, AlarmChange, AlarmLevel, DevicePoll, GapReason, Quality, Sample, Seq, Value,
};
use plantgate::spool::{salvage, Spool};
use rand::{Rng, SeedableRng};

fn settings() -> SpoolSettings {
    SpoolSettings {
        sync: Duration::from_millis(10),
        max_bytes: 256 << 20,
        cache_bytes: 1 << 20,
    }
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_plantgate"))
}

fn poll(i: usize) -> DevicePoll {
    let s = |p: String, v| Sample {
        point: p.into(),
        ts_ms: now_ms(),
        value: Some(Value::Float(v)),
        quality: Quality::Good,
    };
    DevicePoll {
        device: "gas-1".into(),
        samples: (0..32)
            .map(|c| s(format!("ch{c:02}.gas"), c as f64))
            .collect(),
        alarms: if i % 10 == 0 {
            vec![AlarmChange {
                sample: s("ch01.status".into(), 2.0),
                level: AlarmLevel::High,
                prev: AlarmLevel::Normal,
                warn: None,
            }]
        } else {
            vec![]
        },
    }
}

/// A spool with a backlog, closed cleanly: every entry's key and length.
fn backlog(dir: &Path) -> (BTreeMap<Seq, u64>, Seq) {
    let spool = Spool::open(dir, &settings()).unwrap();
    let mut all = BTreeMap::new();
    for i in 0..600 {
        let s = spool.append(&[poll(i)]).unwrap();
        all.insert(s.readings[0].seq, s.readings.len() as u64);
        for a in s.alarms {
            all.insert(a.seq, 1);
        }
    }
    let next = spool.next_seq();
    spool.close().unwrap();
    (all, next)
}

/// Opens as the gateway does and checks the promises against what the old file held.
fn reopen_and_check(dir: &Path, all: &BTreeMap<Seq, u64>, next: Seq) -> (usize, Vec<(Seq, Seq)>) {
    let spool = salvage::open_guarded(dir, &settings(), exe()).expect("the gateway must start");
    let mut kept = BTreeMap::new();
    for (k, r) in spool.readings(0, u64::MAX, usize::MAX).unwrap() {
        kept.insert(k, r.len() as u64);
    }
    for a in spool.alarms(0, usize::MAX).unwrap() {
        kept.insert(a.seq, 1);
    }
    let gaps: Vec<_> = spool.gaps(0, usize::MAX).unwrap();
    let damaged: Vec<(Seq, Seq)> = gaps
        .iter()
        .filter(|g| g.reason == GapReason::Damaged)
        .map(|g| (g.from, g.to))
        .collect();
    for (k, n) in all {
        match kept.get(k) {
            Some(m) => assert_eq!(m, n, "entry {k} came back changed"),
            None => assert!(
                gaps.iter().any(|g| g.from <= *k && k + n - 1 <= g.to),
                "entry {k} was lost without a gap: {gaps:?}"
            ),
        }
    }
    for k in kept.keys() {
        assert!(all.contains_key(k), "entry {k} appeared from nowhere");
    }
    let fresh = spool.append(&[poll(1)]).unwrap();
    assert!(fresh.readings[0].seq >= next, "a number was reused");
    assert_eq!(spool.status().damaged_files, 1, "the salvage is shown");
    let aside = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .count();
    assert_eq!(aside, 1, "the damaged file is kept for inspection");
    (kept.len(), damaged)
}

fn damage(dir: &Path, f: impl FnOnce(&mut std::fs::File, u64)) {
    let path = dir.join("spool.redb");
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    f(&mut file, len);
    file.sync_all().unwrap();
}

#[test]
fn zeroed_pages_in_the_middle_lose_only_what_they_held() {
    let dir = tempfile::tempdir().unwrap();
    let (all, next) = backlog(dir.path());
    damage(dir.path(), |f, len| {
        f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
        f.write_all(&[0u8; 8 * 4096]).unwrap();
    });
    let (kept, damaged) = reopen_and_check(dir.path(), &all, next);
    eprintln!(
        "zeroed: kept {kept} of {} entries, damaged gaps {damaged:?}",
        all.len()
    );
    assert!(
        kept * 10 >= all.len() * 8,
        "most records are readable: {kept}"
    );
}

#[test]
fn random_pages_in_the_middle_lose_only_what_they_held() {
    let dir = tempfile::tempdir().unwrap();
    let (all, next) = backlog(dir.path());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    damage(dir.path(), |f, len| {
        let mut junk = vec![0u8; 8 * 4096];
        rng.fill(&mut junk[..]);
        f.seek(SeekFrom::Start(len / 3 / 4096 * 4096)).unwrap();
        f.write_all(&junk).unwrap();
    });
    let (kept, damaged) = reopen_and_check(dir.path(), &all, next);
    eprintln!(
        "random: kept {kept} of {} entries, damaged gaps {damaged:?}",
        all.len()
    );
    assert!(
        kept * 10 >= all.len() * 8,
        "most records are readable: {kept}"
    );
}

#[test]
fn a_truncated_file_keeps_what_is_left_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (all, next) = backlog(dir.path());
    damage(dir.path(), |f, len| f.set_len(len * 2 / 3).unwrap());
    let (kept, damaged) = reopen_and_check(dir.path(), &all, next);
    eprintln!(
        "truncated: kept {kept} of {} entries, damaged gaps {damaged:?}",
        all.len()
    );
}

#[test]
fn a_garbage_file_is_replaced_and_numbering_goes_on_above() {
    let dir = tempfile::tempdir().unwrap();
    let (all, next) = backlog(dir.path());
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    damage(dir.path(), |f, len| {
        let mut junk = vec![0u8; len as usize];
        rng.fill(&mut junk[..]);
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&junk).unwrap();
    });
    let (kept, damaged) = reopen_and_check(dir.path(), &all, next);
    eprintln!(
        "garbage: kept {kept} of {} entries, damaged gaps {damaged:?}",
        all.len()
    );
}

#[test]
fn a_crash_loop_opens_in_salvage_mode_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (all, next) = backlog(dir.path());
    // three starts within the window, none closed cleanly
    let t = now_ms();
    std::fs::write(
        dir.path().join("spool.starts"),
        format!("{}\n{}\n{}\n", t - 3000, t - 2000, t - 1000),
    )
    .unwrap();
    let (kept, damaged) = reopen_and_check(dir.path(), &all, next);
    assert_eq!(kept, all.len(), "a sound file loses nothing to a salvage");
    assert!(damaged.is_empty());
}
