//! Benchmark: redb against sled on the spool's workload, so the choice of store stays checked.
//!
//!     cargo bench --features bench-sled --bench store_compare
//!
//! The workload: ~120-byte records under big-endian u64 keys, appended durably in batches of
//! 100, then deleted in the order a broker acknowledges them. Reported per engine: durable
//! appends/s, peak disk during append + delete of N records, disk after reopening, RSS.
//! Durable means: redb `Durability::Immediate` commits; sled `flush()` after each batch (which
//! on Linux is `sync_file_range`, not fsync: sled's best, and weaker than redb's).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use redb::{ReadableDatabase, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("q");

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn record(i: u64) -> Vec<u8> {
    let mut v = format!(
        "gas-{};ch{:02}.gas;{};{}",
        i % 8,
        i % 16,
        1_700_000_000_000u64 + i,
        i % 600
    )
    .into_bytes();
    v.resize(120, b' ');
    v
}

fn redb_run(dir: &Path, n: u64) -> (f64, u64, u64) {
    let path = dir.join("q.redb");
    let db = redb::Database::builder()
        .set_cache_size(32 << 20)
        .create(&path)
        .unwrap();
    let start = Instant::now();
    let mut peak = 0;
    for b in 0..n / 100 {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for i in b * 100..(b + 1) * 100 {
                t.insert(i, record(i).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for b in 0..n / 100 {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for i in b * 100..(b + 1) * 100 {
                t.remove(i).unwrap();
            }
        }
        tx.commit().unwrap();
        if b % 500 == 0 {
            peak = peak.max(dir_bytes(dir));
        }
    }
    peak = peak.max(dir_bytes(dir));
    drop(db);
    let db = redb::Database::create(&path).unwrap();
    let _ = db.begin_read().unwrap();
    (rate, peak, dir_bytes(dir))
}

fn sled_run(dir: &Path, n: u64) -> (f64, u64, u64) {
    let path = dir.join("q.sled");
    let db = sled::open(&path).unwrap();
    let start = Instant::now();
    let mut peak = 0;
    for b in 0..n / 100 {
        let mut batch = sled::Batch::default();
        for i in b * 100..(b + 1) * 100 {
            batch.insert(&i.to_be_bytes(), record(i));
        }
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for b in 0..n / 100 {
        let mut batch = sled::Batch::default();
        for i in b * 100..(b + 1) * 100 {
            batch.remove(&i.to_be_bytes());
        }
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
        if b % 500 == 0 {
            peak = peak.max(dir_bytes(dir));
        }
    }
    peak = peak.max(dir_bytes(dir));
    drop(db);
    let db = sled::open(&path).unwrap();
    let _ = db.len();
    drop(db);
    (rate, peak, dir_bytes(dir))
}

fn main() {
    let n: u64 = std::env::var("PLANTGATE_BENCH_READINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("store comparison: {n} records of 120 bytes, batches of 100, appended then deleted");
    let engine = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    // Each engine in its own process, so RSS is its own.
    match engine.as_deref() {
        Some("redb") | Some("sled") => {
            let dir = tempfile::tempdir().unwrap();
            let name = engine.unwrap();
            let (rate, peak, after) = if name == "redb" {
                redb_run(dir.path(), n)
            } else {
                sled_run(dir.path(), n)
            };
            println!(
                "{name:<5} durable appends {rate:>9.0} records/s | peak disk {:>7.1} MB | disk after reopen {:>7.1} MB | peak RSS {:>5} MB",
                peak as f64 / 1e6,
                after as f64 / 1e6,
                rss_kib() / 1024
            );
        }
        _ => {
            let me = std::env::current_exe().unwrap();
            for e in ["redb", "sled"] {
                let out = std::process::Command::new(&me)
                    .arg(e)
                    .env("PLANTGATE_BENCH_READINGS", n.to_string())
                    .output()
                    .unwrap();
                print!(
                    "{}",
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                println!();
            }
        }
    }
}
