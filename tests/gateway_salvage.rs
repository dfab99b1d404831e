//! The gateway itself, as the issue reproduced it: a real `plantgate run` builds a backlog while
//! the broker is away and stops; pages in the middle of its spool are zeroed; the next
//! `plantgate run` must keep running, forward the readable backlog under its old numbers and
//! announce what it lost as a `damaged` gap, so nothing is lost silently.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn gateway(config: &std::path::Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_plantgate"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    )
}

fn sigterm(p: &mut Proc) {
    let pid = i32::try_from(p.0.id()).unwrap();
    assert_eq!(term(pid), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while p.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not stop the gateway"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kill -TERM` on a child this test started, by its PID.
fn term(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}

/// Zeroes 8 pages of `spool` at the first offset from the middle where the check finds damage
/// (zeroing free pages harms nothing); returns whether it found one.
fn damage_in_the_middle(spool: &std::path::Path) -> bool {
    let original = std::fs::read(spool).unwrap();
    let probe = spool.with_extension("probe");
    let mut at = original.len() / 2 / 4096 * 4096;
    while at + 8 * 4096 <= original.len() {
        let mut bytes = original.clone();
        bytes[at..at + 8 * 4096].fill(0);
        std::fs::write(&probe, &bytes).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_plantgate"))
            .arg("spool-check")
            .arg(&probe)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let _ = std::fs::remove_file(&probe);
        if status.code() != Some(0) {
            std::fs::write(spool, &bytes).unwrap();
            return true;
        }
        at += 8 * 4096;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeroed_pages_in_the_spool_do_not_stop_the_gateway_and_the_loss_is_announced() {
    damaged_spool_run(false).await;
}

/// Nothing readable at all (what damage to redb's table catalogue leaves too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_spool_does_not_stop_the_gateway_and_everything_is_announced() {
    damaged_spool_run(true).await;
}

async fn damaged_spool_run(garbage: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = free_port();
    let (sim, _c) = simulators(2).await;
    let data = dir.path().join("data");
    let text = gateway_toml(&data, sim, 2, 100, "sync_ms = 50", &pki.upstream(port, ""));
    let path = dir.path().join("plantgate.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = config(&text);
    let first = next_seq(&cfg);

    // No broker yet: a backlog builds up on disk.
    let mut gw = gateway(&path);
    tokio::time::sleep(Duration::from_secs(8)).await;
    sigterm(&mut gw);
    drop(gw);
    let next_before = next_seq(&cfg);
    assert!(next_before - first > 2000, "too small a backlog");
    let file = data.join("spool.redb");
    if garbage {
        let len = std::fs::metadata(&file).unwrap().len() as usize;
        let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&file, junk).unwrap();
    } else {
        assert!(damage_in_the_middle(&file), "no damage found to make");
    }

    let mut broker = Mosquitto::start(&pki, port);
    let platform = platform(
        &pki,
        port,
        Some(if garbage {
            "platform-garbage"
        } else {
            "platform-salvage"
        }),
    )
    .await;
    let mut gw = gateway(&path);
    wait_for(
        &platform,
        Duration::from_secs(60),
        "the salvaged backlog and a damaged gap",
        |p| p.gaps.iter().any(|g| g.2 == "damaged") && p.seen.range(next_before..).count() > 200,
    )
    .await;
    assert!(gw.0.try_wait().unwrap().is_none(), "the gateway stopped");
    sigterm(&mut gw);
    let next = next_seq(&cfg);
    wait_for(
        &platform,
        Duration::from_secs(30),
        "every number received or announced",
        |p| p.unannounced(first..next).is_empty(),
    )
    .await;
    let p = platform.lock().unwrap();
    let kept = p.seen.range(first..next_before).count() as u64;
    let lost: u64 = p
        .gaps
        .iter()
        .filter(|g| g.2 == "damaged")
        .map(|g| g.1.min(next_before) - g.0.max(first).min(g.1) + 1)
        .sum();
    eprintln!(
        "backlog of {} numbers: {kept} forwarded after the salvage, {lost} announced damaged",
        next_before - first
    );
    // A zeroed branch page hides every leaf below it: what lies between the last entry read
    // forward and the first read backward is lost, and announced (checked above); what was
    // read either side is forwarded under its old numbers.
    // Where the zeroed pages fall decides how much: a leaf costs its own entries, the table
    // catalogue costs everything (then the gap runs from 0).
    let _ = kept;
    assert!(
        p.reused.is_empty(),
        "numbers were reused: {:?}",
        &p.reused[..p.reused.len().min(5)]
    );
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .count();
    assert_eq!(aside, 1, "the damaged file is kept");
    broker.stop();
}
