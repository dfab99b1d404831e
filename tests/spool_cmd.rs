//! `plantgate spool stats|export|verify`, the real binary on spools with a backlog written by the
//! real spool (and by the real gateway): the figures match what was written, the export is
//! every waiting record in the wire shape and in order, verify passes on a sound file and
//! reports zeroed pages, a running gateway is refused, and no command changes the file or
//! creates one.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use plantgate::config::SpoolSettings;
use plantgate::record::{now_ms, AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Seq, Value};
use plantgate::spool::Spool;

fn settings() -> SpoolSettings {
    SpoolSettings {
        sync: Duration::from_millis(10),
        max_bytes: 256 << 20,
        cache_bytes: 1 << 20,
    }
}

fn poll(i: usize) -> DevicePoll {
    let s = |p: String, v| Sample {
        point: p.into(),
        ts_ms: 1_700_000_000_000 + i as i64,
        value: Some(Value::Float(v)),
        quality: Quality::Good,
    };
    DevicePoll {
        device: format!("gas-{}", i % 3).into(),
        samples: (0..32)
            .map(|c| s(format!("ch{c:02}.gas"), (i * 100 + c) as f64))
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

/// What a backlog holds: each reading's value and device by number, each alarm's number.
#[derive(Default)]
struct Written {
    readings: BTreeMap<Seq, (String, String, f64)>,
    alarms: Vec<Seq>,
}

/// A config whose data_dir is `dir/data`, and the spool directory.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    let path = dir.join("plantgate.toml");
    std::fs::write(
        &path,
        common::gateway_toml(&data, common::free_port(), 1, 200, "sync_ms = 50", ""),
    )
    .unwrap();
    (path, data)
}

/// 600 polls appended by the real spool, with a run that stopped without closing in the
/// middle (so the spool holds an `unclean_stop` gap), then closed cleanly.
fn backlog(data: &Path) -> Written {
    let mut w = Written::default();
    let mut add = |spool: &Spool, i: usize| {
        let s = spool.append(&[poll(i)]).unwrap();
        for r in s.readings {
            let v = match r.sample.value {
                Some(Value::Float(f)) => f,
                v => panic!("{v:?}"),
            };
            w.readings
                .insert(r.seq, (r.device.to_string(), r.sample.point.to_string(), v));
        }
        w.alarms.extend(s.alarms.iter().map(|a| a.seq));
    };
    let spool = Spool::open(data, &settings()).unwrap();
    (0..300).for_each(|i| add(&spool, i));
    drop(spool); // no close: the next open announces the rest of the reserved block as a gap
    let spool = Spool::open(data, &settings()).unwrap();
    (300..600).for_each(|i| add(&spool, i));
    spool.close().unwrap();
    w
}

fn plantgate(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// The file's bytes and modification time: what no command may change.
fn fingerprint(file: &Path) -> (Vec<u8>, SystemTime) {
    (
        std::fs::read(file).unwrap(),
        std::fs::metadata(file).unwrap().modified().unwrap(),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn stats_and_export_show_every_waiting_record_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let w = backlog(&data);
    let file = data.join("spool.redb");
    let before = fingerprint(&file);
    // What a salvage leaves beside the spool (its naming: `spool.redb.damaged-<unix ms>`).
    std::fs::write(data.join("spool.redb.damaged-1764547200000"), [0u8; 300]).unwrap();

    let out = plantgate(&["spool", "stats", "--json"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &j["stats"];
    assert_eq!(s["readings"]["records"], w.readings.len());
    assert_eq!(s["readings"]["entries"], 600);
    assert_eq!(s["alarms"]["records"], w.alarms.len());
    assert_eq!(s["gaps"]["entries"], 1, "the unclean stop's gap: {s}");
    let first = *w.readings.keys().next().unwrap().min(&w.alarms[0]);
    let last = *w
        .readings
        .keys()
        .last()
        .unwrap()
        .max(w.alarms.last().unwrap());
    assert_eq!(
        s["readings"]["first"]["seq"],
        *w.readings.keys().next().unwrap()
    );
    assert_eq!(s["alarms"]["last"]["seq"], *w.alarms.last().unwrap());
    assert_eq!(s["closed_cleanly"], true);
    assert!(s["meta"]["reserved_until"].as_u64().unwrap() > last);
    assert_eq!(j["file_bytes"], before.0.len());
    assert_eq!(
        j["beside"],
        serde_json::json!([{"name": "spool.redb.damaged-1764547200000", "bytes": 300, "moved_ms": 1_764_547_200_000_i64}])
    );

    let table = plantgate(&["spool", "stats"], &config);
    let table = text(&table.stdout);
    eprintln!("{table}");
    assert!(
        table.contains(&format!("sequence range   {first}..={last}")),
        "{table}"
    );
    assert!(
        table.contains(
            "spool.redb.damaged-1764547200000 (300 bytes, moved aside 2025-12-01 00:00:00.000 UTC)"
        ),
        "{table}"
    );
    assert!(table.contains(&format!(
        "readings         {} readings in 600 entries",
        w.readings.len()
    )));

    let export = plantgate(&["spool", "export", "--jsonl"], &config);
    let out = &export;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (mut readings, mut alarms, mut gaps, mut order) = (BTreeMap::new(), vec![], 0, vec![]);
    for line in text(&out.stdout).lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(m["gw"], "gw-test", "{line}");
        match m["lane"].as_str().unwrap() {
            "readings" => {
                let seq = m["seq"].as_u64().unwrap();
                order.push(seq);
                assert_eq!(m["q"], "good");
                let fields = (
                    m["dev"].as_str().unwrap().to_owned(),
                    m["pt"].as_str().unwrap().to_owned(),
                    m["v"].as_f64().unwrap(),
                );
                readings.insert(seq, fields);
            }
            "alarms" => {
                let seq = m["seq"].as_u64().unwrap();
                order.push(seq);
                assert_eq!(
                    (&m["level"], &m["prev"]),
                    (&"high".into(), &"normal".into())
                );
                alarms.push(seq);
            }
            "gaps" => {
                gaps += 1;
                assert_eq!(m["reason"], "unclean_stop", "{line}");
                order.push(m["from"].as_u64().unwrap());
            }
            other => panic!("lane {other}"),
        }
    }
    assert_eq!(
        readings, w.readings,
        "every reading, with its number, device, point and value"
    );
    assert_eq!(alarms, w.alarms);
    assert_eq!(gaps, 1);
    assert!(
        order.windows(2).all(|p| p[0] < p[1]),
        "lines in sequence order"
    );

    let out = plantgate(&["spool", "verify"], &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("OK: sound"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        fingerprint(&file) == before,
        "a spool command changed the file"
    );

    // --file reads another spool file: a copy gives the same export; the fake damaged file
    // beside it is no spool at all.
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&file, &copy).unwrap();
    let again = plantgate(
        &["spool", "export", "--file", copy.to_str().unwrap()],
        &config,
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(again.stdout == export.stdout, "the copy's export differs");
    let fake = data.join("spool.redb.damaged-1764547200000");
    let out = plantgate(
        &["spool", "stats", "--file", fake.to_str().unwrap()],
        &config,
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is damaged"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verify_reports_zeroed_pages_without_a_panic_or_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let w = backlog(&data);
    let file = data.join("spool.redb");
    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    let len = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
    f.write_all(&[0u8; 8 * 4096]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let before = fingerprint(&file);

    let out = plantgate(&["spool", "verify"], &config);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("{stdout}{stderr}");
    assert_eq!(
        out.status.code(),
        Some(65),
        "damage exits 65: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("damage: redb integrity check failed"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("is damaged"), "{stderr}");

    // export resumes past the damaged page: every line parses, in order, and the range it
    // left out is named.
    let out = plantgate(&["spool", "export"], &config);
    let stderr = text(&out.stderr);
    eprintln!("export: {stderr}");
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    let keys: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("only whole lines");
            v.get("seq").or(v.get("from")).unwrap().as_u64().unwrap()
        })
        .collect();
    assert!(keys.windows(2).all(|p| p[0] < p[1]), "lines in order");
    let skipped = stderr
        .split("entries numbered ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("the skipped range is named");
    let (lo, hi) = skipped.split_once("..=").expect(skipped);
    let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
    assert!(
        keys.iter().all(|k| *k < lo || *k > hi),
        "a skipped key was written"
    );
    assert!(
        keys.last().unwrap() > &hi,
        "the export went on past the damage"
    );
    assert!(keys.len() > w.readings.len() / 2, "{} lines", keys.len());
    // stats reads only each lane's ends and the gaps: a damaged page elsewhere leaves it whole.
    let out = plantgate(&["spool", "stats"], &config);
    eprintln!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        fingerprint(&file) == before,
        "a spool command changed the damaged file"
    );
}

#[test]
fn a_running_gateway_is_refused_and_its_unclean_stop_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let mut gw = common::plantgate_run(&config, &[]);
    let file = data.join("spool.redb");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() {
        assert!(Instant::now() < deadline, "the gateway made no spool");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    for cmd in ["stats", "export", "verify"] {
        let out = plantgate(&["spool", cmd], &config);
        let stderr = text(&out.stderr);
        eprintln!("{cmd}: {stderr}");
        assert_eq!(out.status.code(), Some(75), "{cmd}: {stderr}");
        assert!(stderr.contains("open by the running service"), "{stderr}");
        assert!(stderr.contains(&format!("pid {}", gw.0.id())), "{stderr}");
    }
    assert!(
        gw.0.try_wait().unwrap().is_none(),
        "the gateway must go on running"
    );
    // SIGKILL (by the PID we started): the file is left needing redb's repair.
    drop(gw);
    let before = fingerprint(&file);
    let out = plantgate(&["spool", "stats", "--json"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["stats"]["closed_cleanly"], false, "{j}");
    let out = plantgate(&["spool", "verify"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        fingerprint(&file) == before,
        "the repair must stay in memory"
    );
}

#[test]
fn no_spool_is_reported_and_none_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    for cmd in ["stats", "export", "verify"] {
        let out = plantgate(&["spool", cmd], &config);
        assert_eq!(out.status.code(), Some(66), "{cmd}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("no spool at"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!data.exists(), "a spool command created the data directory");
}

#[test]
fn the_last_compaction_is_kept_in_the_file_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    let spool = Spool::open(&data, &settings()).unwrap();
    spool.append(&[poll(1)]).unwrap();
    let t0 = now_ms();
    spool.compact_now();
    let t1 = now_ms();
    spool.close().unwrap();
    drop(spool);
    let out = plantgate(&["spool", "stats", "--json"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = j["stats"]["meta"]["last_compaction_ms"].as_i64().unwrap();
    assert!((t0..=t1).contains(&at), "{at} not in {t0}..={t1}");
}

#[test]
fn an_entry_that_does_not_decode_is_named_by_verify_and_left_out_of_the_export() {
    use plantgate::spool::store::{NewEntry, Store, Write as Commit};
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    std::fs::create_dir_all(&data).unwrap();
    let store = Store::open(&data.join("spool.redb"), 1 << 20, 1000).unwrap();
    let p = poll(1);
    let batch = |key| NewEntry::Readings {
        key,
        count: 32,
        bytes: plantgate::record::codec::encode_batch(&p.device, &p.samples),
    };
    store
        .write(Commit {
            entries: vec![
                batch(1000),
                NewEntry::Readings {
                    key: 1100,
                    count: 1,
                    bytes: b"not a batch".to_vec(),
                },
                batch(1200),
            ],
            budget: u64::MAX,
            reserved_until: Some(2000),
            ..Commit::default()
        })
        .unwrap();
    drop(store);

    let out = plantgate(&["spool", "verify"], &config);
    let stdout = text(&out.stdout);
    eprintln!("{stdout}{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(65), "{stdout}");
    assert!(
        stdout.contains("Readings entry 1100 does not decode"),
        "{stdout}"
    );
    let out = plantgate(&["spool", "export"], &config);
    assert_eq!(out.status.code(), Some(65));
    let seqs: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (1000..1032).chain(1200..1232).collect();
    assert_eq!(
        seqs, expected,
        "the readable entries on both sides of the bad one"
    );
    assert!(
        text(&out.stderr).contains("entry 1100 cannot be decoded"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_export_read_only_in_part_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = setup(dir.path());
    backlog(&data);
    let mut export = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(["spool", "export", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(export.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // and the pipe is closed here, as `| head -1` does
    assert!(
        first.starts_with(r#"{"lane":"readings","gw":"gw-test","seq":"#),
        "{first}"
    );
    let out = export.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}
