//! The performance suite: the real `plantgate run` binary against the project's simulator (many
//! GD-16 units over Modbus TCP) and a real mosquitto over mutual TLS, all on loopback. Not a
//! test: it prints a table and one JSON line per figure (`{"figure": ..., "value": ...}`).
//!
//!     cargo bench --bench perf                  # everything, about four minutes
//!     PLANTGATE_PERF=wear,latency cargo bench --bench perf   # a subset
//!     PLANTGATE_PERF_BIN=/path/to/older/plantgate cargo bench --bench perf   # another build
//!     PLANTGATE_PERF_WEAR=20,200 ...             # the device counts of the wear figures
//!
//! Figures: bytes written per reading and per day (healthy link and outage) at 20, 200 and
//! 1,000 devices; end-to-end readings/s and CPU seconds per 1,000 readings; capture → subscriber
//! latency; alarm latency from the register change, idle and while a 1,000,000-reading backlog
//! drains; resident memory at 10 and 200 devices; the first reading after the broker returns;
//! reopening a 1,000,000-record spool after a clean stop and after `kill -9`, and the start's
//! integrity check of the file at 1M records and at ~16M (`PLANTGATE_PERF_BIG_RECORDS`).

#![allow(clippy::unwrap_used)]

#[path = "disk.rs"]
mod disk;

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, pki, Mosquitto, Pki, Proc};
use plantgate::record::now_ms;
use plantgate::sim::Controller;

fn profile() -> &'static str {
    "[[profile]]\nname = \"gd16\"\n\
     [[profile.point]]\nname = \"ch{nn}.gas\"\ntable = \"input\"\naddress = 0\nrepeat = 16\ntype = \"u16\"\nscale = 0.1\nunit = \"%LEL\"\n\
     [[profile.point]]\nname = \"ch{nn}.status\"\ntable = \"input\"\naddress = 100\nrepeat = 16\ntype = \"u16\"\nalarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\", 3 = \"fault\" }\n\
     [[profile.point]]\nname = \"mains_failure\"\ntable = \"discrete\"\naddress = 0\ntype = \"bool\"\nalarm = true\n"
}

/// `devices` GD-16 units on `buses` Modbus TCP connections to one simulator.
fn config(data: &Path, pki: &Pki, mqtt: u16, sim: u16, devices: usize, poll_ms: u64) -> String {
    let buses = devices.clamp(1, 10);
    let mut s = format!(
        "[gateway]\nid = \"gw-test\"\ndata_dir = \"{}\"\n",
        data.display()
    );
    for b in 0..buses {
        s += &format!("[[bus]]\nname = \"tcp{b}\"\ntcp = {{ address = \"127.0.0.1:{sim}\" }}\ntimeout_ms = 1000\n");
    }
    s += profile();
    for d in 0..devices {
        s += &format!(
            "[[device]]\nname = \"gas-{d}\"\nbus = \"tcp{}\"\nunit = {}\npoll_ms = {poll_ms}\nprofile = \"gd16\"\n",
            d % buses,
            d / buses + 1
        );
    }
    s += "[spool]\nsync_ms = 100\n";
    s += &format!("[web]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    s += &pki.upstream(mqtt, "inflight = 64\nbatch_max = 500");
    s
}

/// One simulator per unit id, shared by every bus (the unit id picks the controller).
async fn simulator(units: usize) -> (u16, Vec<Arc<Controller>>) {
    use plantgate::sim::server::SimBus;
    let per_bus = units.div_ceil(units.clamp(1, 10));
    let controllers: Vec<_> = (0..per_bus).map(|_| Controller::gas16()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bus = SimBus::new(
        controllers
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, c)| (i as u8 + 1, c)),
    );
    tokio::spawn(plantgate::sim::server::serve_tcp(listener, bus));
    (port, controllers)
}

/// What the platform saw: readings counted, capture → arrival latencies, alarm arrivals.
#[derive(Default)]
struct Seen {
    readings: u64,
    latency_ms: Vec<i64>,
    /// (device, point, level) → arrival ms
    alarms: Vec<(String, String, String, i64)>,
}

fn subscribe(pki: &Pki, port: u16) -> Arc<Mutex<Seen>> {
    let mut rx = plantgate::app::demo::subscribe_platform(
        "localhost",
        port,
        pki.platform_tls(),
        "pg/test",
        Some("perf-platform"),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let now = now_ms();
            let mut s = s.lock().unwrap();
            if m.topic.ends_with("/readings") {
                let rs = m.body["readings"].as_array().cloned().unwrap_or_default();
                s.readings += rs.len() as u64;
                if !m.body["hist"].as_bool().unwrap_or(false) {
                    if let Some(ts) = rs.first().and_then(|r| r["ts"].as_i64()) {
                        s.latency_ms.push(now - ts);
                    }
                }
            } else if m.topic.ends_with("/alarms") {
                s.alarms.push((
                    m.body["dev"].as_str().unwrap_or_default().into(),
                    m.body["pt"].as_str().unwrap_or_default().into(),
                    m.body["level"].as_str().unwrap_or_default().into(),
                    now,
                ));
            }
        }
    });
    seen
}

/// CPU seconds, resident KiB and bytes written to storage of process `pid`.
fn proc_figures(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0; // utime, stime (fields 14, 15), USER_HZ = 100
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let written = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (cpu, rss, written)
}

/// The binary under test: this build's, or `PLANTGATE_PERF_BIN` (an older build, to compare).
fn binary() -> String {
    std::env::var("PLANTGATE_PERF_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_plantgate").into())
}

fn gateway(path: &Path) -> Proc {
    Proc(
        Command::new(binary())
            .args(["run", "--config"])
            .arg(path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn figure(results: &Mutex<Vec<(String, f64, String)>>, name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({"figure": name, "value": value, "unit": unit})
    );
    results
        .lock()
        .unwrap()
        .push((name.to_string(), value, unit.to_string()));
}

fn percentile(v: &mut [i64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize] as f64
}

struct Stage {
    _dir: tempfile::TempDir,
    pki: Pki,
    broker: Mosquitto,
    path: std::path::PathBuf,
    controllers: Vec<Arc<Controller>>,
}

async fn stage(devices: usize, poll_ms: u64) -> Stage {
    let dir = disk::bench_dir();
    let pki = pki(dir.path());
    let broker = Mosquitto::start(&pki, free_port());
    let (sim, controllers) = simulator(devices).await;
    let path = dir.path().join("plantgate.toml");
    std::fs::write(
        &path,
        config(
            &dir.path().join("data"),
            &pki,
            broker.port,
            sim,
            devices,
            poll_ms,
        ),
    )
    .unwrap();
    Stage {
        _dir: dir,
        pki,
        broker,
        path,
        controllers,
    }
}

/// Records the gateway at `path` captured so far, from its /metrics.
async fn captured(path: &Path) -> f64 {
    let cfg = plantgate::config::Config::load(path).unwrap();
    let addr = cfg.web.unwrap().listen;
    let (_, _, body) = common::http_get(addr, "/metrics").await;
    common::metric(&body, "plantgate_spool_captured_records_total")
        // builds before the write-behind spool counted records at commit
        .or_else(|| common::metric(&body, "plantgate_spool_appended_records_total"))
        .unwrap_or(0.0)
}

/// Bytes written per reading over `secs`, healthy link and then with the broker stopped.
async fn wear(results: &Mutex<Vec<(String, f64, String)>>, devices: usize, secs: u64) {
    let mut st = stage(devices, 1000).await;
    let seen = subscribe(&st.pki, st.broker.port);
    let gw = gateway(&st.path);
    let pid = gw.0.id();
    tokio::time::sleep(Duration::from_secs(8)).await; // connected, first reservations made
    for (label, outage) in [("healthy", false), ("outage", true)] {
        if outage {
            st.broker.stop();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let (_, _, w0) = proc_figures(pid);
        let c0 = captured(&st.path).await;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (_, _, w1) = proc_figures(pid);
        let readings = (captured(&st.path).await - c0).max(1.0);
        let per = (w1 - w0) as f64 / readings;
        figure(
            results,
            &format!("wear.{label}.{devices}dev.bytes_per_reading"),
            per,
            "B",
        );
        figure(
            results,
            &format!("wear.{label}.{devices}dev.bytes_per_day"),
            (w1 - w0) as f64 / secs as f64 * 86_400.0,
            "B",
        );
    }
    drop(gw);
    drop(seen);
}

/// Throughput, CPU per 1,000 readings, RSS and capture → subscriber latency.
async fn load(
    results: &Mutex<Vec<(String, f64, String)>>,
    devices: usize,
    poll_ms: u64,
    secs: u64,
) {
    let st = stage(devices, poll_ms).await;
    let seen = subscribe(&st.pki, st.broker.port);
    let gw = gateway(&st.path);
    let pid = gw.0.id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c0, _, _) = proc_figures(pid);
    let n0 = seen.lock().unwrap().readings;
    seen.lock().unwrap().latency_ms.clear();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, rss, _) = proc_figures(pid);
    let n1 = seen.lock().unwrap().readings;
    let rate = (n1 - n0) as f64 / secs as f64;
    let tag = format!("{devices}dev.{poll_ms}ms");
    figure(results, &format!("load.{tag}.readings_per_s"), rate, "1/s");
    figure(
        results,
        &format!("load.{tag}.cpu_s_per_1000_readings"),
        (c1 - c0) / ((n1 - n0).max(1) as f64 / 1000.0),
        "s",
    );
    figure(
        results,
        &format!("load.{tag}.rss"),
        rss as f64 / 1024.0,
        "MiB",
    );
    let mut lat = std::mem::take(&mut seen.lock().unwrap().latency_ms);
    figure(
        results,
        &format!("load.{tag}.capture_to_subscriber_p50"),
        percentile(&mut lat, 0.5),
        "ms",
    );
    figure(
        results,
        &format!("load.{tag}.capture_to_subscriber_p99"),
        percentile(&mut lat, 0.99),
        "ms",
    );
    drop(gw);
    drop(st);
}

/// Flips channel 1's status on unit 1 every `every` and measures register change → alarm
/// arrival; with `backlog`, while that many readings drain from a full spool.
async fn alarms(results: &Mutex<Vec<(String, f64, String)>>, backlog: u64) {
    let mut st = stage(2, 250).await;
    if backlog > 0 {
        fill_spool(&st.path, backlog);
    }
    let seen = subscribe(&st.pki, st.broker.port);
    let gw = gateway(&st.path);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = st.controllers[0].clone();
    let mut lat: Vec<i64> = Vec::new();
    for i in 0..20 {
        let level = if i % 2 == 0 { 450 } else { 10 }; // high, then normal
        let before = seen.lock().unwrap().alarms.len();
        let t = now_ms();
        c.set_concentration(1, level);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let arrived = seen.lock().unwrap().alarms[before..]
                .iter()
                .find(|a| a.0 == "gas-0" && a.1 == "ch01.status")
                .map(|a| a.3);
            if let Some(at) = arrived {
                lat.push(at - t);
                break;
            }
            assert!(Instant::now() < deadline, "alarm {i} never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // a random pause, so the flips fall anywhere in the poll cycle
        tokio::time::sleep(Duration::from_millis(300 + rand::random_range(0..250))).await;
    }
    let tag = if backlog > 0 { "draining" } else { "idle" };
    figure(
        results,
        &format!("alarm.{tag}.latency_p50"),
        percentile(&mut lat, 0.5),
        "ms",
    );
    figure(
        results,
        &format!("alarm.{tag}.latency_p99"),
        percentile(&mut lat, 0.99),
        "ms",
    );
    drop(gw);
    st.broker.stop();
}

/// Fills the spool of the configuration at `path` with `n` readings, closed cleanly.
fn fill_spool(path: &Path, n: u64) {
    let cfg = plantgate::config::Config::load(path).unwrap();
    let spool = plantgate::spool::Spool::open(&cfg.gateway.data_dir, &cfg.spool).unwrap();
    let poll = |t: i64| plantgate::record::DevicePoll {
        device: "old".into(),
        samples: (0..32)
            .map(|i| plantgate::record::Sample {
                point: format!("ch{:02}.gas", i % 16 + 1).into(),
                ts_ms: t,
                value: Some(plantgate::record::Value::Float(
                    ((t / 100 + i) % 600) as f64 / 10.0,
                )),
                quality: plantgate::record::Quality::Good,
            })
            .collect(),
        alarms: Vec::new(),
    };
    let t0 = now_ms() - 3_600_000;
    for k in 0..n / 32 / 100 {
        let polls: Vec<_> = (0..100).map(|j| poll(t0 + (k * 100 + j) as i64)).collect();
        spool.append(&polls).unwrap();
    }
    spool.close().unwrap();
}

/// Broker stopped for 5 s and started again: time to the first new reading.
async fn reconnect(results: &Mutex<Vec<(String, f64, String)>>) {
    let mut st = stage(2, 200).await;
    let seen = subscribe(&st.pki, st.broker.port);
    let gw = gateway(&st.path);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut waits = Vec::new();
    for _ in 0..3 {
        st.broker.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let n = seen.lock().unwrap().readings;
        let t = Instant::now();
        st.broker.resume();
        while seen.lock().unwrap().readings == n {
            assert!(t.elapsed() < Duration::from_secs(60), "never reconnected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waits.push(t.elapsed().as_millis() as i64);
    }
    figure(
        results,
        "reconnect.first_reading_after_broker_returns_max",
        *waits.iter().max().unwrap() as f64,
        "ms",
    );
    drop(gw);
}

/// Reopening a 1,000,000-record spool: after a clean close, and after `kill -9` of a process
/// that was committing into it.
async fn reopen(results: &Mutex<Vec<(String, f64, String)>>) {
    let st = stage(1, 1000).await;
    fill_spool(&st.path, 1_000_000);
    let cfg = plantgate::config::Config::load(&st.path).unwrap();
    let t = Instant::now();
    let spool = plantgate::spool::Spool::open(&cfg.gateway.data_dir, &cfg.spool).unwrap();
    figure(
        results,
        "reopen.1M.clean",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    spool.close().unwrap();
    drop(spool);
    start_check(results, &cfg, "1M");
    // a child that appends until it is killed
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("PLANTGATE_PERF_CHILD", &st.path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    let spool = plantgate::spool::Spool::open(&cfg.gateway.data_dir, &cfg.spool).unwrap();
    figure(
        results,
        "reopen.1M.after_kill_9",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    drop(spool);
    // A spool near a plant PC's max_bytes: PLANTGATE_PERF_BIG_RECORDS more records (default
    // 15M, ~400 MB in all), then the start's check again.
    let more: u64 = std::env::var("PLANTGATE_PERF_BIG_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000_000);
    if more > 0 {
        fill_spool(&st.path, more);
        start_check(results, &cfg, "big");
    }
}

/// What every start does before it opens the spool: redb's integrity check of the whole file,
/// in a child process (`plantgate spool-check`), with the file's size beside it.
fn start_check(
    results: &Mutex<Vec<(String, f64, String)>>,
    cfg: &plantgate::config::Config,
    what: &str,
) {
    let file = cfg.gateway.data_dir.join("spool.redb");
    let size = std::fs::metadata(&file).unwrap().len();
    let t = Instant::now();
    let out = Command::new(binary())
        .arg("spool-check")
        .arg(&file)
        .output()
        .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(out.status.success(), "spool-check failed: {out:?}");
    figure(
        results,
        &format!("start_check.{what}.file_mb"),
        size as f64 / 1e6,
        "MB",
    );
    figure(results, &format!("start_check.{what}"), ms, "ms");
}

fn child_appender(path: &str) -> ! {
    let cfg = plantgate::config::Config::load(Path::new(path)).unwrap();
    let spool = plantgate::spool::Spool::open(&cfg.gateway.data_dir, &cfg.spool).unwrap();
    loop {
        let polls: Vec<_> = (0..10)
            .map(|_| plantgate::record::DevicePoll {
                device: "kill".into(),
                samples: (0..32)
                    .map(|i| plantgate::record::Sample {
                        point: format!("p{i}").into(),
                        ts_ms: now_ms(),
                        value: Some(plantgate::record::Value::Int(i)),
                        quality: plantgate::record::Quality::Good,
                    })
                    .collect(),
                alarms: Vec::new(),
            })
            .collect();
        spool.append(&polls).unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(p) = std::env::var("PLANTGATE_PERF_CHILD") {
        child_appender(&p);
    }
    let only = std::env::var("PLANTGATE_PERF").unwrap_or_default();
    let want = |k: &str| only.is_empty() || only.split(',').any(|o| o == k);
    let results = Mutex::new(Vec::new());
    if want("wear") {
        let sizes = std::env::var("PLANTGATE_PERF_WEAR").unwrap_or_else(|_| "20,200,1000".into());
        for n in sizes.split(',').filter_map(|n| n.parse().ok()) {
            wear(&results, n, 20).await;
        }
    }
    if want("load") {
        load(&results, 10, 1000, 15).await;
        load(&results, 200, 1000, 15).await;
        // 320 GD-16 units at 100 ms: 105,600 readings/s offered
        load(&results, 320, 100, 15).await;
    }
    if want("latency") {
        alarms(&results, 0).await;
        alarms(&results, 1_000_000).await;
    }
    if want("reconnect") {
        reconnect(&results).await;
    }
    if want("reopen") {
        reopen(&results).await;
    }
    println!("\n| figure | value |\n|---|---|");
    for (name, v, unit) in results.lock().unwrap().iter() {
        let v = if v.abs() < 10.0 {
            format!("{v:.4}")
        } else {
            format!("{v:.0}")
        };
        println!("| {name} | {v} {unit} |");
    }
    println!(
        "\nPublished peer figures (their own harnesses): EMQ Neuron 15,000 tags/s at ~124 % of a core; \
         NeuronEX 100,000 points/s at 497 MB; Telegraf ~70 MB resident; ThingsBoard IoT Gateway 3.8.5: \
         66 MiB, 39/75 ms capture to platform (median/p99), first reading 15 s after the broker returns."
    );
}
