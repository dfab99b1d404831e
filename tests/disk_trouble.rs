//! A spool disk that goes bad under a running gateway (the real binary, a real mosquitto over
//! mTLS): a filesystem that the kernel remounts read-only after an error (ext4
//! `errors=remount-ro`, what an eMMC with failing sectors does), and one that is frozen
//! (`fsfreeze`, a disk that hangs). Each shows on `/readyz`, `/metrics` and `/api/status` within
//! seconds, live values keep flowing to the platform, a stop ends within 10 s, and the frozen
//! one recovers without loss when thawed.
//!
//! Needs root (loop-mounted ext4, fsfreeze), as CI runs; tests/run.sh names them for others.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A 64 MiB ext4 image loop-mounted at `mnt`, `errors=remount-ro`: unmounted (and thawed) when
/// dropped.
struct Ext4 {
    mnt: PathBuf,
    /// `/sys/fs/ext4/loopN`, for `trigger_fs_error`.
    sys: PathBuf,
}

impl Ext4 {
    fn mount(dir: &Path) -> Ext4 {
        let img = dir.join("disk.img");
        let mnt = dir.join("data");
        std::fs::create_dir(&mnt).unwrap();
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
        let loopdev = String::from_utf8(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&img)
                .output()
                .expect("losetup (util-linux) is needed")
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        assert!(
            loopdev.starts_with("/dev/loop"),
            "these tests need root to attach a loop device (run as root, as CI does)"
        );
        run(
            "mount",
            &["-o", "errors=remount-ro", &loopdev, mnt.to_str().unwrap()],
        );
        let name = loopdev.trim_start_matches("/dev/");
        Ext4 {
            mnt,
            sys: Path::new("/sys/fs/ext4").join(name),
        }
    }

    /// What a failing sector does under ext4 `errors=remount-ro`: the kernel records an error
    /// and remounts the filesystem read-only, under the open files.
    fn fail(&self) {
        std::fs::write(self.sys.join("trigger_fs_error"), "1").unwrap();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Thaws `mnt` when dropped: declared after the gateway, so that a failing test thaws before
/// it kills the gateway (a process blocked on a frozen filesystem cannot end).
struct Thaw(PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let ok = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        ok.success(),
        "{cmd} {args:?} failed (these tests need root)"
    );
}

struct Setup {
    dir: tempfile::TempDir,
    disk: Ext4,
    broker: Mosquitto,
    platform: std::sync::Arc<std::sync::Mutex<Platform>>,
    web: std::net::SocketAddr,
    config: PathBuf,
    _sim: Vec<std::sync::Arc<plantgate::sim::Controller>>,
}

async fn setup(session: &str, units: u8, poll_ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let disk = Ext4::mount(dir.path());
    let pki = pki(dir.path());
    let broker = Mosquitto::start(&pki, free_port());
    let platform = platform(&pki, broker.port, Some(session)).await;
    let (sim, controllers) = simulators(units).await;
    let web: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = format!(
        "{}[web]\nlisten = \"{web}\"\n",
        gateway_toml(
            &disk.mnt,
            sim,
            units,
            poll_ms,
            "sync_ms = 100",
            &pki.upstream(broker.port, "")
        )
    );
    let config = dir.path().join("plantgate.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        dir,
        disk,
        broker,
        platform,
        web,
        config,
        _sim: controllers,
    }
}

/// The real gateway, its log in `log`.
fn gateway(s: &Setup, log: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(["run", "--config"])
        .arg(&s.config)
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

async fn get(s: &Setup, path: &str) -> (u16, String) {
    let (code, _, body) = http_get(s.web, path).await;
    (code, body)
}

/// Waits until `/readyz` answers `code`; returns its body.
async fn readyz(s: &Setup, code: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(s.web),
        )
        .await
        {
            drop(stream);
            let (c, body) = get(s, "/readyz").await;
            if c == code {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {code} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn trouble_seconds(s: &Setup) -> f64 {
    let (_, m) = get(s, "/metrics").await;
    metric(&m, "plantgate_spool_disk_trouble_seconds").expect("spool_disk_trouble_seconds")
}

/// Waits (up to 60 s) until readings are dropped for want of numbers.
async fn numbers_run_out(s: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = get(s, "/metrics").await;
        if metric(&m, "plantgate_spool_uncaptured_readings_total").unwrap_or(0.0) > 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the reserved numbers never ran out"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Readings the platform has received with a sample time at or after `ts_ms`.
fn readings_since(p: &Platform, ts_ms: i64) -> usize {
    // first_payload: "dev|pt|ts|value" per number
    p.first_payload
        .values()
        .filter_map(|w| w.split('|').nth(2)?.parse::<i64>().ok())
        .filter(|t| *t >= ts_ms)
        .count()
}

/// Stops `gw` with SIGTERM and returns how long it took to end.
fn stop(gw: &mut Proc) -> (Duration, std::process::ExitStatus) {
    let started = Instant::now();
    let status = gw.terminate();
    (started.elapsed(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_filesystem_remounted_read_only_shows_at_once_and_a_stop_still_ends() {
    // 10 controllers every 100 ms: ~3,400 readings/s, so the numbers reserved before the
    // failure run out within seconds.
    let s = setup("platform-ro", 10, 100).await;
    let log = s.dir.path().join("gateway.log");
    let mut gw = gateway(&s, &log);
    readyz(&s, 200, Duration::from_secs(30)).await;
    assert_eq!(trouble_seconds(&s).await, 0.0);
    let (_, api) = get(&s, "/api/status").await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(api["spool"]["disk_trouble"].is_null(), "{}", api["spool"]);

    s.disk.fail();
    let failed_ms = plantgate::record::now_ms();
    let failed = Instant::now();
    // Not ready, within seconds, saying why.
    let why = readyz(&s, 503, Duration::from_secs(20)).await;
    let took = failed.elapsed();
    // ext4 answers EIO first, then EROFS once remounted.
    assert!(
        why.contains("Read-only file system") || why.contains("Input/output error"),
        "{why}"
    );
    // After 5 s of failures the disk counts as in trouble, on every surface.
    let deadline = Instant::now() + Duration::from_secs(20);
    while trouble_seconds(&s).await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "spool_disk_trouble_seconds stayed 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let why = readyz(&s, 503, Duration::from_secs(1)).await;
    assert!(why.contains("spool writes have failed"), "{why}");
    // The page says so, in both languages, and marks what it shows as not stored.
    let url = format!("http://{}/", s.web);
    let (en, zh) = tokio::task::spawn_blocking(move || (dom(&url, "en"), dom(&url, "zh-CN")))
        .await
        .unwrap();
    assert!(
        en.contains("Disk trouble") && en.contains("not stored"),
        "{en}"
    );
    assert!(zh.contains("磁盘故障") && zh.contains("未存储"), "{zh}");
    let (_, api) = get(&s, "/api/status").await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let trouble = &api["spool"]["disk_trouble"];
    assert!(
        trouble["since_ms"].as_i64().unwrap() >= failed_ms - 1000,
        "{trouble}"
    );
    assert!(trouble["reason"].as_str().unwrap().contains("failed"));
    println!("read-only: not ready {took:?} after the remount");

    // Polling and the uplink go on: values sampled after the failure reach the platform.
    let deadline = Instant::now() + Duration::from_secs(20);
    while readings_since(&s.platform.lock().unwrap(), failed_ms + 6000) <= 100 {
        assert!(
            Instant::now() < deadline,
            "no live readings after the disk went read-only:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without the disk no new numbers can be reserved: once the reserved ones run low, readings
    // are dropped and counted, polling goes on, and the numbers kept for alarms still carry an
    // alarm to the platform.
    numbers_run_out(&s).await;
    let (_, api) = get(&s, "/api/status").await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let polls = |api: &serde_json::Value| api["buses"][0]["devices"][0]["polls"].as_u64().unwrap();
    let before = polls(&api);
    assert!(api["spool"]["uncaptured_readings"].as_u64().unwrap() > 0);
    s._sim[3].set_concentration(5, 450);
    wait_for(
        &s.platform,
        Duration::from_secs(20),
        "the alarm raised after the numbers ran low",
        |p| {
            p.alarms
                .iter()
                .any(|a| a["dev"] == "gas-4" && a["level"] == "high")
        },
    )
    .await;
    // The alarm can arrive within one poll interval of `before`: wait for the next poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, api) = get(&s, "/api/status").await;
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        if polls(&api) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "polling stopped on a read-only spool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (took, status) = stop(&mut gw);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} on a read-only spool\n{log}"
    );
    assert!(status.success(), "{status}\n{log}");
    println!("read-only: stopped in {took:?}");
    // It says what it could not keep, and the failure is logged once, not every few seconds.
    assert!(
        log.contains("could not be closed cleanly") && log.contains("readings_not_stored"),
        "{log}"
    );
    let failures = log.matches("spool commit failed").count();
    assert!(
        (1..=2).contains(&failures),
        "{failures} commit-failure lines in {:?}:\n{log}",
        failed.elapsed()
    );
    drop(s.broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_spool_filesystem_shows_within_seconds_and_thawing_loses_nothing() {
    // 10 controllers every 100 ms: the freeze outlasts the numbers reserved before it.
    let mut s = setup("platform-frozen", 10, 100).await;
    let log = s.dir.path().join("gateway.log");
    let cfg = common::config(&std::fs::read_to_string(&s.config).unwrap());
    let first = next_seq(&cfg);
    let mut gw = gateway(&s, &log);
    let _thaw = Thaw(s.disk.mnt.clone());
    readyz(&s, 200, Duration::from_secs(30)).await;

    run("fsfreeze", &["-f", s.disk.mnt.to_str().unwrap()]);
    let frozen = Instant::now();
    let why = readyz(&s, 503, Duration::from_secs(20)).await;
    let took = frozen.elapsed();
    assert!(why.contains("has not finished"), "{why}");
    assert!(trouble_seconds(&s).await >= 5.0);
    // The page and the pollers are not held up by the hung disk.
    let (code, api) = get(&s, "/api/status").await;
    assert_eq!(code, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(
        api["spool"]["disk_trouble"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "{}",
        api["spool"]
    );
    let polls = |api: &serde_json::Value| api["buses"][0]["devices"][0]["polls"].as_u64().unwrap();
    let before = polls(&api);
    // The reservation of more numbers hangs too: readings are dropped once the numbers run
    // low, polling goes on, and an alarm raised now is still numbered (the uplink's reads wait
    // behind the hung write: it is delivered after the thaw).
    numbers_run_out(&s).await;
    s._sim[2].set_concentration(4, 450);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = get(&s, "/metrics").await;
        let high = "plantgate_poll_alarm_events_total{level=\"high\"}";
        if metric(&m, high).unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alarm was not raised while frozen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, later) = get(&s, "/api/status").await;
    let later: serde_json::Value = serde_json::from_str(&later).unwrap();
    assert!(
        polls(&later) > before,
        "polling stopped while the disk hangs"
    );
    println!("frozen: not ready {took:?} after the freeze");

    run("fsfreeze", &["-u", s.disk.mnt.to_str().unwrap()]);
    let thawed = Instant::now();
    readyz(&s, 200, Duration::from_secs(20)).await;
    println!("thawed: ready again after {:?}", thawed.elapsed());
    assert_eq!(trouble_seconds(&s).await, 0.0);

    wait_for(
        &s.platform,
        Duration::from_secs(30),
        "the alarm raised while the disk was frozen",
        |p| {
            p.alarms
                .iter()
                .any(|a| a["dev"] == "gas-3" && a["level"] == "high")
        },
    )
    .await;
    let (took, status) = stop(&mut gw);
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let next = next_seq(&cfg);
    wait_for(
        &s.platform,
        Duration::from_secs(30),
        "every record of the run",
        // readings dropped for want of numbers were never numbered: nothing numbered is missing
        |p| p.missing(first..next).is_empty(),
    )
    .await;
    assert!(s.platform.lock().unwrap().gaps.is_empty());
    s.broker.stop();
}

fn readings_poll() -> plantgate::record::DevicePoll {
    use plantgate::record::{now_ms, Quality, Sample, Value};
    plantgate::record::DevicePoll {
        device: "gas-1".into(),
        samples: (0..32)
            .map(|i| Sample {
                point: format!("ch{i:02}.gas").into(),
                ts_ms: now_ms(),
                value: Some(Value::Float(f64::from(i))),
                quality: Quality::Good,
            })
            .collect(),
        alarms: Vec::new(),
    }
}

/// One disk-full event must not shrink the spool until a restart: on a 16 MiB tmpfs that a
/// filler file fills, the spool lowers its budget (and says the limit in force); once the
/// filler is gone, the budget grows back and the spool holds more than it could while short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_budget_comes_back_when_space_does() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=16m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let data = mnt.join("data");
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 13 << 20]).unwrap();

    let settings = plantgate::config::SpoolSettings {
        sync: Duration::from_millis(10),
        max_bytes: 64 << 20,
        cache_bytes: 1 << 20,
    };
    let s = open_spool(&data, &settings);
    let start_budget = s.spool.status().budget_bytes;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (tap, _keep) = tokio::sync::broadcast::channel(16);
    let appender = tokio::spawn(plantgate::spool::run_appender(s.spool.clone(), rx, tap));
    let feed = |n: usize| {
        let tx = tx.clone();
        async move {
            for _ in 0..n {
                tokio::time::timeout(Duration::from_secs(20), tx.send(readings_poll()))
                    .await
                    .expect("the appender stalled")
                    .unwrap();
            }
        }
    };
    // An outage on a nearly full disk: commits fail, the budget drops to what the disk held.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.append_errors() == 0 {
        assert!(
            Instant::now() < deadline,
            "the disk never filled: {}",
            s.state()
        );
        feed(50).await;
    }
    feed(500).await;
    let short = s.spool.status();
    assert!(short.budget_bytes < start_budget / 4, "{}", s.state());
    println!(
        "disk full: budget {} -> {} bytes, {} readings held",
        start_budget, short.budget_bytes, short.readings
    );

    // Space comes back; the budget regains (doubling every 30 s while commits succeed).
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while s.spool.status().readings <= 2 * short.readings.max(1) {
        assert!(
            Instant::now() < deadline,
            "the spool stayed small after the disk had room again: {}",
            s.state()
        );
        feed(20).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = s.spool.status();
    println!(
        "space back: budget {} bytes, {} readings held",
        back.budget_bytes, back.readings
    );
    assert!(back.budget_bytes > 2 * short.budget_bytes, "{}", s.state());
    assert!(back.disk_trouble(plantgate::record::now_ms()).is_none());
    drop(tx);
    appender.await.unwrap();
    s.close();
}
