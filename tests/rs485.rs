//! The RS-485 bus when slaves misbehave, over socat pty pairs: late replies, garbage, a wrong
//! slave id, a dead slave among live ones, and an adapter that disappears and comes back.
//! The rule under test: no wrong value is ever reported as good.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use plantgate::record::{AlarmLevel, Quality, Value};
use plantgate::sim::{self, server::SimBus, Behaviour, Controller, GD16_POINTS};

/// GD-16 controllers on an RTU bus: the gas and status blocks are two reads of 16 input
/// registers each (function 04, same length), the case where a late reply to the first could
/// pass for the second.
fn rtu_config(data: &Path, port: &Path, units: &[u8], poll_ms: u64, timeout_ms: u64) -> String {
    gd16_bus(data, "rs485", &rtu_line(port), timeout_ms)
        + &gd16_devices("rs485", units.iter().copied(), poll_ms)
}

fn serve(path: &Path, bus: SimBus) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let path = path.to_string_lossy().into_owned();
    tokio::spawn(async move { sim::server::serve_rtu(&path, 19_200, bus).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_is_never_taken_for_the_next_answer() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let c = Controller::gas16();
    c.set_concentration(1, 100); // 10.0 %LEL, status 0
    c.set_behaviour(Behaviour::Late(Duration::from_millis(300)));
    let _sim = serve(&pty.sim, SimBus::new([(1, c.clone())]));
    let mut gw = Gateway::start(&rtu_config(
        &dir.path().join("data"),
        &pty.gw,
        &[1],
        100,
        200,
    ))
    .await;
    gw.wait_until(Duration::from_secs(10), "polls of the late slave", |s| {
        s.readings.len() >= GD16_POINTS * 4
    })
    .await;

    // The slave recovers, with new values: 20.0 %LEL and status 1 (low alarm). Everything
    // gathered before the switch was polled while it was late.
    let switched = gw.seen().readings.len();
    c.set_concentration(1, 200);
    c.set_behaviour(Behaviour::Normal);
    gw.wait_until(
        Duration::from_secs(90),
        "good readings after recovery",
        |s| {
            s.readings[switched..]
                .iter()
                .filter(|r| r.sample.quality == Quality::Good)
                .count()
                >= GD16_POINTS * 5
        },
    )
    .await;
    gw.shutdown().await;
    let seen = gw.seen();

    for r in &seen.readings[..switched] {
        assert_ne!(
            r.sample.quality,
            Quality::Good,
            "a late reply was taken as good: {r:?}"
        );
    }
    for r in seen.readings[switched..]
        .iter()
        .filter(|r| r.sample.quality == Quality::Good)
    {
        match &*r.sample.point {
            "ch01.gas" => assert_eq!(
                r.sample.value,
                Some(Value::Float(20.0)),
                "stale gas value reported good"
            ),
            "ch01.status" => assert_eq!(
                r.sample.value,
                Some(Value::Int(1)),
                "wrong status reported good"
            ),
            p if p.ends_with(".status") => assert_eq!(r.sample.value, Some(Value::Int(0)), "{p}"),
            _ => {}
        }
    }
}

/// Two units on one line: unit 1 always answers late (after the timeout), unit 2 at once. The
/// simulator answers in turn, as a half-duplex bus does, so unit 1's late reply lands while the
/// gateway waits for unit 2's answer. It must never be read as unit 2's (same function and
/// length, other values), and unit 2 must still be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_from_one_unit_is_never_taken_for_another_units_answer() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let late = Controller::gas16();
    late.set_concentration(1, 100); // 10.0 %LEL, status 0
    late.set_behaviour(Behaviour::Late(Duration::from_millis(300)));
    let prompt = Controller::gas16();
    prompt.set_concentration(1, 200); // 20.0 %LEL, status 1
    let _sim = serve(&pty.sim, SimBus::new([(1, late), (2, prompt)]));
    let mut gw = Gateway::start(&rtu_config(
        &dir.path().join("data"),
        &pty.gw,
        &[1, 2],
        100,
        200,
    ))
    .await;
    let good_of_2 = |s: &Seen| {
        s.readings
            .iter()
            .filter(|r| &*r.device == "gas-2" && &*r.sample.point == "ch01.gas")
            .filter(|r| r.sample.quality == Quality::Good)
            .count()
    };
    // unit 1 times out twice, then its breaker trips (its third failed poll is offline); its
    // probes go on, each a late reply into the next request
    let timeouts_of_1 = |s: &Seen| {
        s.readings
            .iter()
            .filter(|r| &*r.device == "gas-1" && r.sample.quality == Quality::Timeout)
            .count()
    };
    gw.wait_until(
        Duration::from_secs(60),
        "good polls of unit 2 with unit 1 late",
        |s| good_of_2(s) >= 20 && timeouts_of_1(s) >= 2 * GD16_POINTS,
    )
    .await;
    gw.shutdown().await;
    let seen = gw.seen();
    // The overlap happened: unit 1's late reply arrived while unit 2 was asked, and that read
    // failed as a bad frame (a reply from the wrong unit) instead of passing as unit 2's.
    assert!(
        seen.readings
            .iter()
            .any(|r| &*r.device == "gas-2" && r.sample.quality == Quality::BadFrame),
        "no late reply ever met unit 2's request: the test proved nothing"
    );
    for r in seen
        .readings
        .iter()
        .filter(|r| r.sample.quality == Quality::Good)
    {
        assert_eq!(&*r.device, "gas-2", "the late unit read as good: {r:?}");
        match &*r.sample.point {
            "ch01.gas" => assert_eq!(r.sample.value, Some(Value::Float(20.0)), "{r:?}"),
            "ch01.status" => assert_eq!(r.sample.value, Some(Value::Int(1)), "{r:?}"),
            p if p.ends_with(".status") => assert_eq!(r.sample.value, Some(Value::Int(0)), "{p}"),
            p if p.ends_with(".gas") => assert_eq!(r.sample.value, Some(Value::Float(0.0)), "{p}"),
            _ => {}
        }
    }
}

/// A raw responder on `port`: every request of 8 bytes or more is answered with what `reply`
/// makes of it (`turn` counts from 1).
fn answer_with(
    port: &Path,
    reply: fn(turn: usize, request: &[u8]) -> Vec<u8>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPortBuilderExt;
    let mut port = tokio_serial::new(port.to_string_lossy(), 19_200)
        .open_native_async()
        .unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 256];
        let mut turn = 0;
        loop {
            let Ok(n) = port.read(&mut buf).await else {
                return;
            };
            if n < 8 {
                continue;
            }
            turn += 1;
            let _ = port.write_all(&reply(turn, &buf[..n])).await;
        }
    })
}

/// Registers asked for in a read request.
fn count(request: &[u8]) -> usize {
    u16::from_be_bytes([request[4], request[5]]) as usize
}

/// Polls unit 1 through `reply` until six polls' worth of readings: none may carry a value or
/// an alarm level, and each is `bad_frame` until the breaker takes the device offline (a
/// timeout would mean the bad reply went unnoticed until the deadline).
async fn all_bad_frames(reply: fn(usize, &[u8]) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let responder = answer_with(&pty.sim, reply);
    let mut gw = Gateway::start(&rtu_config(
        &dir.path().join("data"),
        &pty.gw,
        &[1],
        100,
        200,
    ))
    .await;
    gw.wait_until(Duration::from_secs(20), "polls", |s| {
        s.readings.len() >= GD16_POINTS * 6
    })
    .await;
    gw.shutdown().await;
    responder.abort();
    let seen = gw.seen();
    assert!(
        seen.readings
            .iter()
            .all(|r| r.sample.quality != Quality::Good && r.sample.value.is_none()),
        "a bad reply became a good value"
    );
    assert!(
        seen.alarms.iter().all(|a| &*a.sample.point == "_device"),
        "a bad reply produced an alarm level"
    );
    let kinds: std::collections::BTreeSet<&str> = seen
        .readings
        .iter()
        .map(|r| r.sample.quality.as_str())
        .collect();
    assert!(kinds.contains("bad_frame"), "{kinds:?}");
    assert!(
        kinds.is_subset(&["bad_frame", "offline"].into()),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_a_bad_frame_never_a_value() {
    // as long as a reply should be, bytes that are no frame (the CRC does not match)
    all_bad_frames(|turn, req| {
        (0..5 + 2 * count(req))
            .map(|i| (i * 37 + turn) as u8)
            .collect()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_the_wrong_slave_is_never_a_value() {
    // well formed (right CRC, right length), but from slave 9 instead of slave 1
    all_bad_frames(|_, req| {
        let n = count(req);
        let mut f = vec![9, req[1], (2 * n) as u8];
        f.extend((0..n).flat_map(|i| (i as u16 + 500).to_be_bytes()));
        let crc = crc16(&f);
        f.extend(crc);
        f
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_slave_of_four_leaves_the_others_their_poll_rate() {
    const POLL_MS: u64 = 300;
    const RUN: Duration = Duration::from_secs(12);
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let units: Vec<(u8, Arc<Controller>)> = (1..=3).map(|u| (u, Controller::gas16())).collect();
    let _sim = serve(&pty.sim, SimBus::new(units));
    let text = rtu_config(
        &dir.path().join("data"),
        &pty.gw,
        &[1, 2, 3, 4],
        POLL_MS,
        250,
    );
    let mut gw = Gateway::start(&text).await;
    // let every device get its first poll, then count for RUN
    gw.wait_until(Duration::from_secs(10), "first polls", |s| {
        (1..=3).all(|u| s.latest(&format!("gas-{u}"), "ch01.gas").is_some())
    })
    .await;
    let start = gw.seen().readings.len();
    gw.gather_for(RUN, "polls for the run").await;
    let end = gw.seen().readings.len();
    gw.shutdown().await;
    let seen = gw.seen();
    let window = &seen.readings[start..end];
    let expected = RUN.as_millis() as u64 / POLL_MS;
    for u in 1..=3 {
        let polls = window
            .iter()
            .filter(|r| {
                *r.device == format!("gas-{u}")
                    && &*r.sample.point == "ch01.gas"
                    && r.sample.quality == Quality::Good
            })
            .count() as u64;
        assert!(
            polls * 10 >= expected * 9,
            "gas-{u}: {polls} good polls of {expected} expected"
        );
    }
    // The dead one went offline (an event upstream) and is only probed now and then.
    let offline = seen
        .alarms
        .iter()
        .find(|a| &*a.device == "gas-4" && &*a.sample.point == "_device")
        .expect("no offline event for gas-4");
    assert_eq!(
        (offline.level, offline.prev),
        (AlarmLevel::Fault, AlarmLevel::Normal)
    );
    // Probes back off: each gap between two polls of gas-4 after it went offline is longer than
    // the one before (doubling, with ±20 % jitter), instead of one every 300 ms.
    let polls: Vec<i64> = seen
        .readings
        .iter()
        .filter(|r| {
            &*r.device == "gas-4"
                && &*r.sample.point == "ch01.gas"
                && r.sample.ts_ms >= offline.sample.ts_ms
        })
        .map(|r| r.sample.ts_ms)
        .collect();
    let gaps: Vec<i64> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "too few probes to judge: {gaps:?}");
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "probes are not backing off: gaps {gaps:?} ms"
    );
    assert!(
        *gaps.last().unwrap() > 4 * POLL_MS as i64,
        "gaps {gaps:?} ms"
    );
    // Before the breaker trips its points time out; after, they carry `offline`.
    for r in seen.readings.iter().filter(|r| &*r.device == "gas-4") {
        let expected = if r.sample.ts_ms > offline.sample.ts_ms {
            Quality::Offline
        } else {
            r.sample.quality
        };
        assert!(
            matches!(r.sample.quality, Quality::Timeout | Quality::Offline),
            "{r:?}"
        );
        assert_eq!(r.sample.quality, expected, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_line_that_goes_away_is_reopened_and_polling_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let c = Controller::gas16();
    let sim = serve(&pty.sim, SimBus::new([(1, c.clone())]));
    let mut gw = Gateway::start(&rtu_config(
        &dir.path().join("data"),
        &pty.gw,
        &[1],
        200,
        200,
    ))
    .await;
    gw.wait_until(Duration::from_secs(10), "good polls", |s| {
        s.readings.iter().any(|r| r.sample.quality == Quality::Good)
    })
    .await;

    // The USB adapter is unplugged: the pty pair disappears...
    let (gw_path, sim_path) = (pty.gw.clone(), pty.sim.clone());
    let unplugged = gw.seen().readings.len();
    drop(pty); // socat is killed and reaped: the ptys are gone
    sim.abort();
    let gone_ms = plantgate::record::now_ms();
    // ...the line is reported disconnected, and reopening is tried with backoff, not in a
    // tight loop: a failed read per attempt, their start times spread out.
    gw.wait_until(
        Duration::from_secs(30),
        "disconnected readings from four attempts",
        |s| attempts(&s.readings[unplugged..]).len() >= 4,
    )
    .await;
    let replugged = gw.seen().readings.len();
    // ...and is plugged in again under the same name.
    let again = pty_pair(dir.path());
    assert_eq!((&again.gw, &again.sim), (&gw_path, &sim_path));
    c.set_concentration(1, 77);
    let _sim = serve(&again.sim, SimBus::new([(1, c.clone())]));
    let is_new = |r: &plantgate::record::Reading| {
        &*r.sample.point == "ch01.gas" && r.sample.value == Some(Value::Float(7.7))
    };
    gw.wait_until(Duration::from_secs(60), "polling to resume", |s| {
        s.readings[replugged..].iter().filter(|r| is_new(r)).count() >= 3
    })
    .await;
    gw.shutdown().await;
    let seen = gw.seen();

    // (a poll under way at the unplug may still bring good readings taken before it)
    let away: Vec<_> = seen.readings[unplugged..replugged]
        .iter()
        .filter(|r| r.sample.ts_ms >= gone_ms)
        .cloned()
        .collect();
    assert!(!away.is_empty());
    assert!(
        away.iter().all(|r| r.sample.quality != Quality::Good),
        "a good reading from an unplugged line (gone at {gone_ms}): {:?}",
        away.iter().find(|r| r.sample.quality == Quality::Good)
    );
    // the failed open is `disconnected` (a timeout or `offline` alone would hide the cause)
    assert!(
        away.iter().all(|r| matches!(
            r.sample.quality,
            Quality::Disconnected | Quality::Timeout | Quality::Offline
        )),
        "{:?}",
        away.iter()
            .map(|r| r.sample.quality.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        away.iter()
            .any(|r| r.sample.quality == Quality::Disconnected),
        "the unplugged line was never reported disconnected"
    );
    let tried = attempts(&away);
    let spacing: Vec<i64> = tried.windows(2).map(|w| w[1] - w[0]).collect();
    // BACKOFF_MIN is 500 ms, doubling; the first failures (the old descriptor, and the first
    // reopen, tried at once) may come quick
    let quick = spacing.iter().take_while(|&&d| d < 400).count();
    assert!(quick <= 2, "reopen attempts not spaced: {spacing:?} ms");
    let reopens = &spacing[quick..];
    assert!(
        reopens.len() >= 2 && reopens[0] >= 400,
        "reopen attempts not spaced: {spacing:?} ms"
    );
    assert!(
        reopens.windows(2).all(|w| w[1] > w[0] * 3 / 2),
        "reopen attempts do not back off: {spacing:?} ms"
    );
    // After the replug: once the new value is read, every reading is good again.
    let back = &seen.readings[replugged..];
    let first_new = back.iter().position(is_new).unwrap();
    let first_good_ts = back[first_new].sample.ts_ms;
    for r in back.iter().filter(|r| r.sample.ts_ms > first_good_ts) {
        assert_eq!(r.sample.quality, Quality::Good, "{r:?}");
        if &*r.sample.point == "ch01.gas" {
            assert_eq!(r.sample.value, Some(Value::Float(7.7)), "{r:?}");
        }
    }
}

/// When each failed attempt on the line began: the distinct times of a full poll's failed
/// read of `ch01.gas`.
fn attempts(readings: &[plantgate::record::Reading]) -> Vec<i64> {
    // One point read in every full poll: a poll on a dead line is one attempt (the rest of it
    // is not sent), and once the breaker calls the device offline its probes are the attempts.
    let mut ts: Vec<i64> = readings
        .iter()
        .filter(|r| &*r.sample.point == "ch01.gas")
        .filter(|r| matches!(r.sample.quality, Quality::Disconnected | Quality::Offline))
        .map(|r| r.sample.ts_ms)
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_rs485_mode_on_a_driver_without_it_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path());
    let _sim = serve(&pty.sim, SimBus::new([(1, Controller::gas16())]));
    let text = rtu_config(&dir.path().join("data"), &pty.gw, &[1], 200, 200).replace(
        "baud = 19200 }",
        "baud = 19200, rs485 = { rts_on_send = true, delay_after_send_ms = 1 } }",
    );
    let mut gw = Gateway::start(&text).await;
    gw.wait_until(Duration::from_secs(10), "a poll", |s| {
        !s.readings.is_empty()
    })
    .await;
    // A pty has no RS-485 mode: nothing is read, and the reason is in words.
    {
        let seen = gw.seen();
        assert!(
            seen.readings
                .iter()
                .all(|r| r.sample.quality == Quality::Disconnected),
            "{:?}",
            seen.readings[0]
        );
    }
    let error = device_error(&gw, 0);
    assert!(
        error.contains("does not support kernel RS-485 mode"),
        "{error}"
    );
    gw.shutdown().await;
}
