//! The test harness itself (tests/common): it must not let a lost record pass unnoticed.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use plantgate::record::{Quality, Reading, Sample, Value};

fn readings(seqs: impl IntoIterator<Item = u64>) -> Vec<Reading> {
    seqs.into_iter()
        .map(|seq| Reading {
            seq,
            device: "gas-1".into(),
            sample: Sample {
                point: "ch01.gas".into(),
                ts_ms: 0,
                value: Some(Value::Float(1.0)),
                quality: Quality::Good,
            },
        })
        .collect()
}

#[test]
fn a_hole_in_the_sequence_is_counted_and_fails_the_wait() {
    let mut seen = Seen::starting_at(100);
    seen.add(&readings(90..110), &[]); // records of an earlier run are not this run's
    assert_eq!(seen.readings.len(), 10);
    seen.add(&readings(105..110), &[]); // seen twice: kept once
    assert_eq!((seen.readings.len(), seen.missed()), (10, 0));
    seen.assert_complete("nothing lost");
    seen.add(&readings(115..120), &[]);
    assert_eq!(seen.missed(), 5);
    let lost = std::panic::catch_unwind(|| seen.assert_complete("a hole"));
    assert!(lost.is_err(), "a hole of 5 records passed");
}

#[test]
fn a_lagged_tap_fails_the_wait() {
    let mut seen = Seen::starting_at(0);
    seen.add(&readings(0..10), &[]);
    seen.lagged = 1;
    let lost = std::panic::catch_unwind(|| seen.assert_complete("a lag"));
    assert!(lost.is_err(), "a lagged tap passed");
}

/// The tap is subscribed only after `app::start` returns, when polls may have been committed
/// already (the local broker's start-up sits in between): the collector still has the run's
/// very first record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_records_of_a_run_are_gathered() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(2).await;
    let mut text = gateway_toml(&dir.path().join("data"), sim, 2, 50, "sync_ms = 5", "");
    text.push_str(&format!(
        "[local_broker]\nlisten = \"127.0.0.1:{}\"\ntopic_prefix = \"plant/h\"\n",
        free_port()
    ));
    let mut gw = Gateway::start(&text).await;
    gw.wait_until(Duration::from_secs(10), "a few polls", |s| {
        s.readings.len() > 4 * plantgate::sim::GD16_POINTS
    })
    .await;
    gw.shutdown().await;
    let seen = gw.seen();
    let first = seen.readings.iter().map(|r| r.seq);
    let first = first.chain(seen.alarms.iter().map(|a| a.seq)).min();
    assert_eq!(
        first,
        Some(gw.first_seq),
        "the run's first record is missing"
    );
    assert_eq!(seen.missed(), 0);
}
