//! Benchmark: the spool and the uplink on this machine. Not a test: it prints figures.
//!
//!     cargo bench --bench spool            # all of it (about a minute or two)
//!     PLANTGATE_BENCH_READINGS=200000 cargo bench --bench spool   # a quicker run
//!
//! 1. durable appends: readings/s when a commit (fsync) carries 1, 10 or 100 device polls of
//!    32 readings (the appender groups what arrives within `sync_ms`);
//! 2. bytes on disk per buffered reading, after N readings are buffered (no eviction);
//! 3. drain: N buffered readings published over mutual TLS and deleted on PUBACK, to the
//!    embedded rumqttd and, when installed, to mosquitto.

#![allow(clippy::unwrap_used)]

#[path = "disk.rs"]
mod disk;

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plantgate::config::SpoolSettings;
use plantgate::record::{now_ms, DevicePoll, Quality, Sample, Value};
use plantgate::spool::Spool;
use plantgate::uplink::Uplink;
use tokio_util::sync::CancellationToken;

fn poll(device: &str, n: usize, t: i64) -> DevicePoll {
    DevicePoll {
        device: device.into(),
        samples: (0..n)
            .map(|i| Sample {
                point: format!("ch{:02}.gas", i % 16 + 1).into(),
                ts_ms: t,
                // a drifting gas reading in 0.1 %LEL steps, as a GD-16 reports it
                value: Some(Value::Float(((t / 100 + i as i64) % 600) as f64 / 10.0)),
                quality: Quality::Good,
            })
            .collect(),
        alarms: Vec::new(),
    }
}

fn settings(max_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        sync: Duration::from_millis(100),
        max_bytes,
        cache_bytes: 16 << 20,
    }
}

/// Appends `total` readings in commits of `group` polls; returns readings/s.
fn appends(spool: &Spool, total: usize, group: usize) -> f64 {
    let t0 = now_ms();
    let mut done = 0;
    let start = Instant::now();
    let mut k = 0;
    while done < total {
        let polls: Vec<DevicePoll> = (0..group)
            .map(|g| poll(&format!("gas-{}", g % 8), 32, t0 + k))
            .collect();
        k += 1;
        spool.append(&polls).unwrap();
        done += group * 32;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

async fn drain(n: usize, port: u16, pki: &common::Pki, label: &str) {
    let dir = disk::bench_dir();
    let spool = Arc::new(Spool::open(dir.path(), &settings(4 << 30)).unwrap());
    appends(&spool, n, 100);
    let cfg = common::config(&format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"b\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n\
         [[device]]\nname = \"d\"\nbus = \"b\"\nunit = 1\n[[device.point]]\nname = \"p\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n{}",
        dir.path().display(),
        pki.upstream(port, "")
    ));
    let uplink = Uplink::build(
        cfg.upstream.clone().unwrap(),
        "bench".into(),
        String::new(),
        spool.clone(),
    )
    .unwrap();
    let uplink_status = uplink.status_handle();
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(uplink.run(cancel.clone()));
    while spool.status().readings > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "drain stalled: {:?} {:?}",
            spool.status(),
            uplink_status.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = task.await;
    println!(
        "drain to {label:<9} over mTLS: {n} readings in {secs:.1} s = {:>9.0} readings/s ({} messages, batch {}, window {})",
        n as f64 / secs,
        uplink_status.get().published,
        cfg.upstream.as_ref().unwrap().batch_max,
        cfg.upstream.as_ref().unwrap().inflight
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("PLANTGATE_BENCH_READINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "plantgate spool/uplink benchmark, {n} readings, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. durable append rate by commit size
    for (group, total) in [(1usize, 32 * 400), (10, 32 * 10 * 300), (100, n)] {
        let dir = disk::bench_dir();
        let spool = Spool::open(dir.path(), &settings(4 << 30)).unwrap();
        let rate = appends(&spool, total, group);
        println!(
            "durable appends, {group:>3} polls ({:>4} readings) per fsync: {rate:>9.0} readings/s",
            group * 32
        );
    }

    // 2. bytes on disk per buffered reading, in bulk and one poll per commit (a plant's pace)
    for group in [100usize, 1] {
        let total = if group == 1 { n / 4 } else { n };
        let dir = disk::bench_dir();
        let spool = Spool::open(dir.path(), &settings(4 << 30)).unwrap();
        appends(&spool, total, group);
        let s = spool.status();
        println!(
            "on disk, {group:>3} polls per commit: {} readings buffered in {} bytes = {:.1} bytes/reading",
            s.readings,
            s.bytes,
            s.bytes as f64 / s.readings as f64
        );
    }

    // 3. drain rate over mutual TLS
    let dir = disk::bench_dir();
    let pki = common::pki(dir.path());
    let port = common::rumqttd(&pki);
    drain(n, port, &pki, "rumqttd").await;
    if std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .is_ok()
    {
        let mut m = common::Mosquitto::start(&pki, common::free_port());
        drain(n, m.port, &pki, "mosquitto").await;
        m.stop();
    }
}
