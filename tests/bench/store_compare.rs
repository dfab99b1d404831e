//! Benchmark: redb against sled on the spool's workload, so the choice of store stays checked.
//!
//!     cargo bench --features bench-sled --bench store_compare
//!
//! The workload: ~120-byte records under big-endian u64 keys, appended durably in batches of
//! 100 and deleted in the order a broker acknowledges them, in two modes: *churn* (acks ten
//! batches behind: a connected gateway) and *backlog* (all appended, then all deleted: an
//! outage, then the drain). Reported per engine and mode: durable appends/s, peak disk, disk
//! after reopening, peak RSS. Each run is a process of its own, so RSS is its own.
//! Durable means: redb `Durability::Immediate` commits; sled `flush()` after each batch (which
//! on Linux is `sync_file_range`, not fsync: sled's best, and weaker than redb's).

#![allow(clippy::unwrap_used)]

#[path = "disk.rs"]
mod disk;

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

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
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

/// The two engines behind one face.
trait Queue {
    fn append(&mut self, batch: u64);
    fn delete(&mut self, batch: u64);
    fn reopen(&mut self);
}

struct Redb(Option<redb::Database>, std::path::PathBuf);

impl Queue for Redb {
    fn append(&mut self, b: u64) {
        let mut tx = self.0.as_ref().unwrap().begin_write().unwrap();
        // fsync before commit returns (set here, not left to the default)
        tx.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for i in b * 100..(b + 1) * 100 {
                t.insert(i, record(i).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn delete(&mut self, b: u64) {
        let mut tx = self.0.as_ref().unwrap().begin_write().unwrap();
        // fsync before commit returns (set here, not left to the default)
        tx.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for i in b * 100..(b + 1) * 100 {
                t.remove(i).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn reopen(&mut self) {
        self.0 = None;
        let db = redb::Database::create(&self.1).unwrap();
        let _ = db.begin_read().unwrap();
        self.0 = Some(db);
    }
}

struct Sled(Option<sled::Db>, std::path::PathBuf);

impl Queue for Sled {
    fn append(&mut self, b: u64) {
        let mut batch = sled::Batch::default();
        for i in b * 100..(b + 1) * 100 {
            batch.insert(&i.to_be_bytes(), record(i));
        }
        let db = self.0.as_ref().unwrap();
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    fn delete(&mut self, b: u64) {
        let mut batch = sled::Batch::default();
        for i in b * 100..(b + 1) * 100 {
            batch.remove(&i.to_be_bytes());
        }
        let db = self.0.as_ref().unwrap();
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    fn reopen(&mut self) {
        self.0 = None;
        let db = sled::open(&self.1).unwrap();
        let _ = db.len();
        self.0 = Some(db);
    }
}

/// Appends `n` records, deleting each batch `lag` batches later; returns (appends/s, peak, after reopen).
fn run(q: &mut dyn Queue, dir: &Path, n: u64, lag: u64) -> (f64, u64, u64) {
    let batches = n / 100;
    let mut peak = 0;
    let start = Instant::now();
    for b in 0..batches {
        q.append(b);
        if b >= lag {
            q.delete(b - lag);
        }
        if b % 500 == 0 {
            peak = peak.max(dir_bytes(dir));
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for b in batches.saturating_sub(lag)..batches {
        q.delete(b);
        if b % 500 == 0 {
            peak = peak.max(dir_bytes(dir));
        }
    }
    peak = peak.max(dir_bytes(dir));
    q.reopen();
    (rate, peak, dir_bytes(dir))
}

fn main() {
    let n: u64 = std::env::var("PLANTGATE_BENCH_READINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    match (
        args.next().as_deref(),
        args.next().and_then(|l| l.parse::<u64>().ok()),
    ) {
        (Some(engine @ ("redb" | "sled")), Some(lag)) => {
            let dir = disk::bench_dir();
            let (rate, peak, after) = if engine == "redb" {
                let path = dir.path().join("q.redb");
                let db = redb::Database::builder()
                    .set_cache_size(32 << 20)
                    .create(&path)
                    .unwrap();
                run(&mut Redb(Some(db), path), dir.path(), n, lag)
            } else {
                let path = dir.path().join("q.sled");
                run(
                    &mut Sled(Some(sled::open(&path).unwrap()), path),
                    dir.path(),
                    n,
                    lag,
                )
            };
            let mode = if lag >= n / 100 { "backlog" } else { "churn" };
            // redb commits with fsync; sled's flush is sync_file_range, which a power cut can undo
            let appends = if engine == "redb" {
                "fsynced appends"
            } else {
                "flushed appends (no fsync)"
            };
            println!(
                "{engine:<5} {mode:<7} | {appends} {rate:>9.0} records/s | peak disk {:>7.1} MB | after reopen {:>7.1} MB | peak RSS {:>4} MiB",
                peak as f64 / 1e6,
                after as f64 / 1e6,
                rss_mib()
            );
        }
        _ => {
            println!("store comparison (synthetic: raw 120-byte records, no codec, not the spool): {n} records, batches of 100, each deleted after its ack");
            let me = std::env::current_exe().unwrap();
            for (engine, lag) in [
                ("redb", 10),
                ("sled", 10),
                ("redb", n / 100),
                ("sled", n / 100),
            ] {
                let out = std::process::Command::new(&me)
                    .arg(engine)
                    .arg(lag.to_string())
                    .env("PLANTGATE_BENCH_READINGS", n.to_string())
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
}
