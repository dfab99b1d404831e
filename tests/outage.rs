//! Broker outages and crashes against a real mosquitto over mutual TLS. The platform subscribes
//! with a persistent session, so anything missing at the end was lost by the gateway.
//!
//! The outage lasts `PLANTGATE_OUTAGE_S` seconds (default 60, as the issue asks).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("PLANTGATE_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

/// Batches and window kept small so the in-flight bound on duplicates is tight.
const INFLIGHT: u64 = 8;
const BATCH: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_while_polling_at_full_rate_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut broker = Mosquitto::start(&pki, free_port());
    let platform = platform(&pki, broker.port, Some("platform-outage")).await;
    let (sim, _c) = simulators(4).await;
    let up = pki.upstream(
        broker.port,
        &format!("inflight = {INFLIGHT}\nbatch_max = {BATCH}"),
    );
    // 4 controllers × 32 points every 100 ms: ~1,280 readings/s
    let cfg = config(&gateway_toml(
        &dir.path().join("data"),
        sim,
        4,
        100,
        "sync_ms = 50",
        &up,
    ));
    let mut gw = Gateway::start(&cfg).await;
    let first = gw.first_seq;
    wait_for(
        &platform,
        Duration::from_secs(20),
        "readings before the outage",
        |p| p.seen.len() > 2000,
    )
    .await;

    broker.stop();
    let during = spool_backlog(&gw);
    tokio::time::sleep(outage()).await;
    let buffered = spool_backlog(&gw);
    assert!(
        buffered > during + 1000,
        "the spool did not buffer during the outage: {during} → {buffered}"
    );
    broker.resume();

    // Drained: the backlog is gone and live data flows again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while spool_backlog(&gw) > 2000 || uplink_connected(&gw).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlog did not drain: {}",
            spool_state(&gw)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.shutdown().await;
    let next = spool_next_seq(&gw);
    assert_eq!(
        spool_backlog(&gw),
        0,
        "unacknowledged readings after shutdown"
    );
    // and the gateway committed every one of them: the tap saw the whole run
    {
        let seen = gw.seen();
        assert_eq!(
            seen.readings.len() + seen.alarms.len(),
            (next - first) as usize
        );
    }
    wait_for(&platform, Duration::from_secs(30), "every record", |p| {
        p.missing(first..next).is_empty()
    })
    .await;
    let p = platform.lock().unwrap();
    assert!(
        next - first > outage().as_secs() * 1000,
        "too few records for a full-rate test: {}",
        next - first
    );
    assert!(
        p.duplicates() <= INFLIGHT * BATCH,
        "{} duplicates exceed the in-flight window",
        p.duplicates()
    );
    assert!(
        p.messages.iter().any(|m| m.2),
        "the backlog was not marked hist"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_outage_then_restart_loses_nothing_silently() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut broker = Mosquitto::start(&pki, free_port());
    let platform = platform(&pki, broker.port, Some("platform-kill")).await;
    let (sim, _c) = simulators(2).await;
    let up = pki.upstream(
        broker.port,
        &format!("inflight = {INFLIGHT}\nbatch_max = {BATCH}"),
    );
    // Each device also reads the simulator's request counter: a poll read from the device but
    // never delivered shows as a jump in it.
    let text = gateway_toml(&dir.path().join("data"), sim, 2, 100, "sync_ms = 50", &up).replace(
        "profile = \"gd16\"\n",
        "profile = \"gd16\"\n[[device.point]]\nname = \"requests\"\ntable = \"holding\"\naddress = 60000\ntype = \"u16\"\n",
    );
    // Its status page tells the test what each instance is doing (same port for all three).
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = format!("{text}[web]\nlisten = \"{web}\"\n");
    let path = dir.path().join("plantgate.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = config(&text);
    let first = next_seq(&cfg);
    let gateway = || plantgate_run(&path, &[]);
    let readings = |v: &serde_json::Value| v["spool"]["readings"].as_u64().unwrap();
    let connected = |v: &serde_json::Value| v["uplink"]["connected"] == true;

    let mut gw = gateway();
    wait_for(&platform, Duration::from_secs(20), "readings", |p| {
        p.seen.len() > 1000
    })
    .await;
    broker.stop();
    wait_status(web, "the first instance to buffer", |v| {
        !connected(v) && readings(v) > 1000
    })
    .await;
    drop(gw); // SIGKILL (Child::kill), in the middle of polling and committing
    gw = gateway();
    // A backlog ten times the in-flight window, so the drain lasts long enough to be cut.
    let backlog = 10 * INFLIGHT * BATCH;
    wait_status(web, "the second instance to buffer more", |v| {
        !connected(v) && readings(v) > backlog
    })
    .await;
    let hist_at_resume = hist_messages(&platform.lock().unwrap());
    broker.resume();
    // and once more while connected and draining: the platform has seen part of the backlog
    // and the spool still holds more than the in-flight window.
    wait_for(
        &platform,
        Duration::from_secs(60),
        "the drain to begin",
        |p| hist_messages(p) > hist_at_resume,
    )
    .await;
    let left = readings(&status(web).await.unwrap());
    drop(gw);
    assert!(
        left > INFLIGHT * BATCH,
        "the drain was (nearly) over before the kill: {left} readings left"
    );
    eprintln!("killed while draining, {left} readings left");
    gw = gateway();
    let before = platform.lock().unwrap().seen.len();
    wait_for(
        &platform,
        Duration::from_secs(60),
        "the backlog after the restarts",
        |p| p.messages.iter().rev().take(5).all(|m| !m.2) && p.seen.len() > before + 500,
    )
    .await;
    // the statuses before the clean stop: its own "offline" must not count as a last will
    let before_stop = platform.lock().unwrap().statuses.len();
    let status = gw.terminate();
    assert!(
        status.success(),
        "plantgate did not stop cleanly on SIGTERM: {status}"
    );

    let next = next_seq(&cfg);
    wait_for(
        &platform,
        Duration::from_secs(30),
        "every record, or a gap announcing it",
        |p| p.unannounced(first..next).is_empty(),
    )
    .await;
    let p = platform.lock().unwrap();
    // What a kill can lose is what was captured in its last sync_ms (50 ms, half a poll) and not
    // yet acknowledged: at most a poll or two of each device per kill.
    for dev in ["gas-1", "gas-2"] {
        let lost = lost_polls(&p.raw, dev);
        assert!(
            lost <= 2 * 2,
            "{dev}: {lost} polls read but never delivered in two kills"
        );
    }
    assert!(!p.gaps.is_empty(), "two kills announced no gap");
    assert!(p.gaps.iter().all(|g| g.2 == "unclean_stop"), "{:?}", p.gaps);
    // the broker announced the killed gateway's last will, and every new session said online
    assert!(
        p.statuses[..before_stop].iter().any(|s| s == "offline"),
        "no last will seen before the clean stop: {:?}",
        p.statuses
    );
    assert_eq!(
        p.statuses.last().map(String::as_str),
        Some("offline"),
        "a clean stop says offline last: {:?}",
        p.statuses
    );
    // A duplicate is a resend (the same payload), never a number used twice...
    assert!(
        p.reused.is_empty(),
        "numbers reused: {:?}",
        &p.reused[..p.reused.len().min(10)]
    );
    // ...and resends come only from what was in flight at each of the three interruptions, or
    // acknowledged since the last durable commit (deletes are not fsynced).
    let bound = 3 * (INFLIGHT + plantgate::spool::DURABLE_DELETE_EVERY) * BATCH;
    assert!(
        p.duplicates() <= bound,
        "{} duplicates (bound {bound})",
        p.duplicates()
    );
    broker.stop();
}

/// Messages the platform received marked `hist` (read from the backlog).
fn hist_messages(p: &Platform) -> usize {
    p.messages.iter().filter(|m| m.2).count()
}

/// The gateway's `/api/status`, or `None` while nothing listens at `web`.
async fn status(web: std::net::SocketAddr) -> Option<serde_json::Value> {
    tokio::net::TcpStream::connect(web).await.ok()?;
    let (code, _, body) = http_get(web, "/api/status").await;
    assert_eq!(code, 200, "{body}");
    Some(serde_json::from_str(&body).unwrap())
}

/// Waits (up to 60 s) until the gateway's status satisfies `done`.
async fn wait_status(
    web: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = status(web).await;
        if now.as_ref().is_some_and(&done) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls of `dev` that were read from the simulator but never reached the platform: jumps in
/// its request counter (three requests per poll: gas, status and the counter itself; the
/// mains-failure input is a fourth).
fn lost_polls(raw: &[(String, Vec<u8>)], dev: &str) -> u64 {
    let mut counts: Vec<u64> = raw
        .iter()
        .filter(|(t, _)| t.ends_with("/readings"))
        .flat_map(|(_, b)| {
            let body = plantgate::app::demo::decode_any(b);
            body["readings"].as_array().cloned().unwrap_or_default()
        })
        .filter(|r| r["dev"] == dev && r["pt"] == "requests")
        .filter_map(|r| r["v"].as_u64())
        .collect();
    counts.sort_unstable();
    counts.dedup();
    assert!(
        counts.len() > 100,
        "{dev}: too few polls seen: {}",
        counts.len()
    );
    let per_poll = counts
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or(1)
        .max(1);
    counts
        .windows(2)
        .map(|w| (w[1] - w[0]) / per_poll)
        .filter(|&polls| polls > 1)
        .map(|polls| polls - 1)
        .sum()
}
