//! A hostile or confused Modbus TCP device, written here as a plain TCP listener speaking raw
//! MBAP bytes, polled through the real pipeline: a frame sent before it is asked (with the next
//! transaction id, waiting on the socket or landing just after the request), an oversized PDU
//! and a byte count that lies are each `bad_frame`, never a good value, a false alarm or
//! `disconnected`; polling recovers on a fresh connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_get, metric, Gateway, Seen};
use plantgate::record::{AlarmLevel, Quality, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
enum Misdeed {
    /// Answers, and in the same write a forged answer to the *next* request (transaction id +
    /// 1), unasked: it waits on the socket when the next request is sent.
    Unsolicited,
    /// Answers; once the next request has arrived, and before reading it, sends a forged answer
    /// made from the *previous* request (its transaction id + 1), then answers honestly. It
    /// lands just after the request, as a frame sent early on a busy line would.
    AfterRequest,
    /// Answers with an MBAP length of 300 (a 299-byte PDU; the spec allows 253).
    Oversized,
    /// Answers with a byte count of twice the data it carries.
    LyingCount,
}

/// The honest registers: input 0 = status 0 (normal), input 1 = gas 42.
const HONEST: [u16; 2] = [0, 42];
/// The forged ones: status 3 (fault), gas 0.
const FORGED: [u16; 2] = [3, 0];

fn frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = tid.to_be_bytes().to_vec();
    f.extend([0, 0]);
    f.extend(((pdu.len() + 1) as u16).to_be_bytes());
    f.push(unit);
    f.extend(pdu);
    f
}

fn registers(fc: u8, words: &[u16]) -> Vec<u8> {
    let mut pdu = vec![fc, (words.len() * 2) as u8];
    for w in words {
        pdu.extend(w.to_be_bytes());
    }
    pdu
}

/// Serves every connection; the first `left` requests (over all connections) get the misdeed.
async fn device(listener: TcpListener, misdeed: Misdeed, left: Arc<AtomicUsize>) {
    loop {
        let (s, _) = listener.accept().await.unwrap();
        tokio::spawn(connection(s, misdeed, left.clone()));
    }
}

async fn connection(mut s: TcpStream, misdeed: Misdeed, left: Arc<AtomicUsize>) {
    let mut req = [0u8; 12];
    while s.read_exact(&mut req).await.is_ok() {
        let tid = u16::from_be_bytes([req[0], req[1]]);
        let (unit, fc) = (req[6], req[7]);
        let count = usize::from(u16::from_be_bytes([req[10], req[11]])).min(2);
        let honest = frame(tid, unit, &registers(fc, &HONEST[..count]));
        let hostile = left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let sent = match (hostile, misdeed) {
            (false, _) => s.write_all(&honest).await,
            (true, Misdeed::Unsolicited) => {
                let forged = frame(tid.wrapping_add(1), unit, &registers(fc, &FORGED[..count]));
                s.write_all(&[honest, forged].concat()).await
            }
            (true, Misdeed::AfterRequest) => {
                s.write_all(&honest).await.unwrap();
                let mut next = [0u8; 12];
                while !matches!(s.peek(&mut next).await, Ok(12) | Ok(0) | Err(_)) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let forged = frame(tid.wrapping_add(1), unit, &registers(fc, &FORGED[..count]));
                s.write_all(&forged).await
            }
            (true, Misdeed::Oversized) => {
                let mut pdu = vec![fc, 252];
                pdu.resize(299, 0);
                s.write_all(&frame(tid, unit, &pdu)).await
            }
            (true, Misdeed::LyingCount) => {
                let mut pdu = registers(fc, &HONEST[..count]);
                pdu[1] *= 2;
                s.write_all(&frame(tid, unit, &pdu)).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Polls a device that misbehaves on its first `misdeeds` requests; returns what was committed
/// once it answered honestly three polls in a row, and the metrics text.
async fn poll_hostile(misdeed: Misdeed, misdeeds: usize) -> (Seen, String) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let left = Arc::new(AtomicUsize::new(misdeeds));
    let dev = tokio::spawn(device(listener, misdeed, left.clone()));
    let text = format!(
        "[gateway]\nid = \"t\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"lan\"\ntcp = {{ address = \"{addr}\" }}\ntimeout_ms = 500\n\
         [[device]]\nname = \"fire\"\nbus = \"lan\"\nunit = 1\npoll_ms = 100\n\
         [[device.point]]\nname = \"st\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\nalarm = {{ 0 = \"normal\", 3 = \"fault\" }}\n\
         [[device.point]]\nname = \"gas\"\ntable = \"input\"\naddress = 1\ntype = \"u16\"\n\
         [web]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().display()
    );
    let mut gw = Gateway::start(&text).await;
    gw.wait_until(
        Duration::from_secs(20),
        "misdeeds done, then three good polls",
        |s| {
            left.load(Ordering::SeqCst) == 0
                && s.readings
                    .iter()
                    .rev()
                    .take(6)
                    .filter(|r| r.sample.quality == Quality::Good)
                    .count()
                    == 6
        },
    )
    .await;
    let (_, _, metrics) = http_get(gw.web_addr.unwrap(), "/metrics").await;
    gw.shutdown().await;
    dev.abort();
    let seen = std::mem::take(&mut *gw.seen());
    (seen, metrics)
}

/// Every good value is the honest one, no alarm but the honest `normal`, and at least one poll
/// was `bad_frame` (never `disconnected`).
fn assert_no_forgery_and_bad_frames(seen: &Seen, misdeed: Misdeed) {
    for r in &seen.readings {
        match r.sample.quality {
            Quality::Good => {
                let want = if &*r.sample.point == "st" { 0 } else { 42 };
                assert_eq!(r.sample.value, Some(Value::Int(want)), "{misdeed:?}: {r:?}");
            }
            Quality::BadFrame => assert_eq!(r.sample.value, None),
            q => panic!("{misdeed:?}: quality {q} in {r:?}"),
        }
    }
    let bad = seen
        .readings
        .iter()
        .filter(|r| r.sample.quality == Quality::BadFrame)
        .count();
    assert!(bad >= 2, "{misdeed:?}: {bad} bad_frame readings");
    let levels: Vec<_> = seen
        .alarms
        .iter()
        .map(|a| (&*a.sample.point, a.prev, a.level))
        .collect();
    assert_eq!(
        levels,
        [("st", AlarmLevel::Unknown, AlarmLevel::Normal)],
        "{misdeed:?}"
    );
}

fn unsolicited_bytes(metrics: &str) -> Option<f64> {
    metric(
        metrics,
        "plantgate_poll_unsolicited_bytes_total{bus=\"lan\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_before_it_is_asked_is_discarded_never_taken_as_the_reply() {
    let (seen, metrics) = poll_hostile(Misdeed::Unsolicited, 3).await;
    assert_no_forgery_and_bad_frames(&seen, Misdeed::Unsolicited);
    // three forged frames of 13 bytes each (7 MBAP + fc + count + 2 registers), all discarded
    assert_eq!(unsolicited_bytes(&metrics), Some(39.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_before_it_is_asked_that_lands_after_the_request_is_not_the_reply() {
    let (seen, metrics) = poll_hostile(Misdeed::AfterRequest, 3).await;
    assert_no_forgery_and_bad_frames(&seen, Misdeed::AfterRequest);
    // each forged frame came after its request: refused by its transaction id, not drained
    assert_eq!(unsolicited_bytes(&metrics), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_pdu_is_a_bad_frame() {
    let (seen, _) = poll_hostile(Misdeed::Oversized, 2).await;
    assert_no_forgery_and_bad_frames(&seen, Misdeed::Oversized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_count_that_lies_is_a_bad_frame() {
    let (seen, _) = poll_hostile(Misdeed::LyingCount, 2).await;
    assert_no_forgery_and_bad_frames(&seen, Misdeed::LyingCount);
}
