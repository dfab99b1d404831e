//! Store and forward over real mutual TLS (the embedded rumqttd): what the platform receives.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use plantgate::record::{AlarmChange, AlarmLevel, DevicePoll, Quality, Sample, Value};

fn synthetic_poll(device: &str, points: usize, alarm: Option<AlarmLevel>) -> DevicePoll {
    let ts = plantgate::record::now_ms();
    let samples: Vec<Sample> = (0..points)
        .map(|i| Sample {
            point: format!("ch{:02}.gas", i + 1).into(),
            ts_ms: ts,
            value: Some(Value::Float(i as f64 * 0.1 + 2.0)),
            quality: Quality::Good,
        })
        .collect();
    let alarms = alarm
        .map(|level| AlarmChange {
            sample: Sample {
                point: "ch01.status".into(),
                ts_ms: ts,
                value: Some(Value::Int(2)),
                quality: Quality::Good,
            },
            level,
            prev: AlarmLevel::Normal,
            warn: None,
        })
        .into_iter()
        .collect();
    DevicePoll {
        device: device.into(),
        samples,
        alarms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_platform_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = rumqttd(&pki);
    let platform = platform(&pki, port, None).await;
    let (sim, _c) = simulators(2).await;
    let cfg = config(&gateway_toml(
        &dir.path().join("data"),
        sim,
        2,
        100,
        "sync_ms = 20",
        &pki.upstream(port, ""),
    ));
    let mut gw = Gateway::start(&cfg).await;
    let first = gw.first_seq;
    wait_for(&platform, Duration::from_secs(20), "2000 readings", |p| {
        p.seen.len() >= 2000
    })
    .await;
    gw.shutdown().await;
    let next = spool_next_seq(&gw);
    wait_for(&platform, Duration::from_secs(10), "every record", |p| {
        p.missing(first..next).is_empty()
    })
    .await;

    let p = platform.lock().unwrap();
    assert_eq!(p.duplicates(), 0);
    assert_eq!(p.seen.keys().next(), Some(&first));
    assert_eq!(p.seen.keys().last(), Some(&(next - 1)));
    assert_eq!(spool_backlog(&gw), 0, "acknowledged readings are deleted");
    assert_eq!(spool_alarms(&gw), 0);
    assert!(p.statuses.iter().any(|s| s == "online"), "{:?}", p.statuses);
    let info = p
        .raw
        .iter()
        .find(|(t, _)| t == "pg/test/info")
        .map(|(_, b)| plantgate::app::demo::decode_any(b))
        .expect("no info message");
    assert_eq!(
        info["config_sha256"].as_str(),
        Some(cfg.source.sha256.as_str()),
        "{info}"
    );
    // 2 devices × 17 alarm points (16 statuses, mains failure): the start-up state of each, once
    assert_eq!(
        p.alarms.iter().filter(|a| a["prev"] == "unknown").count(),
        2 * 17
    );
    assert!(
        p.messages
            .iter()
            .filter(|m| m.0.ends_with("/readings"))
            .all(|m| !m.2),
        "nothing was backlog"
    );
}

/// How many backlog (`hist`) readings the platform has received, duplicates included.
fn hist_readings(p: &Platform) -> usize {
    p.messages.iter().filter(|m| m.2).map(|m| m.1.len()).sum()
}

/// A gateway's config (one simulated controller polled every 100 ms, batches of 100 readings,
/// 8 messages in flight), its spool holding `backlog` readings of an earlier outage (a
/// multiple of 10,000), and the platform listening on its broker.
async fn backlogged(
    dir: &std::path::Path,
    backlog: usize,
) -> (
    plantgate::config::Config,
    Arc<std::sync::Mutex<Platform>>,
    Vec<Arc<plantgate::sim::Controller>>,
) {
    let pki = pki(dir);
    let port = rumqttd(&pki);
    let (sim, controllers) = simulators(1).await;
    let cfg = config(&gateway_toml(
        &dir.join("data"),
        sim,
        1,
        100,
        "sync_ms = 10",
        &pki.upstream(port, "batch_max = 100\ninflight = 8"),
    ));
    {
        let spool = open_spool(&cfg.gateway.data_dir, &cfg.spool).spool;
        let polls: Vec<DevicePoll> = (0..100)
            .map(|_| synthetic_poll("old-dev", 100, None))
            .collect();
        for _ in 0..backlog / 10_000 {
            spool.append(&polls).unwrap();
        }
    }
    let platform = platform(&pki, port, None).await;
    (cfg, platform, controllers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_overtakes_a_large_backlog() {
    const BACKLOG: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    // what an outage of a few hours leaves behind
    let (cfg, platform, controllers) = backlogged(dir.path(), BACKLOG).await;
    let mut gw = Gateway::start(&cfg).await;
    wait_for(
        &platform,
        Duration::from_secs(30),
        "the backlog to start draining",
        |p| p.messages.iter().any(|m| m.2),
    )
    .await;

    controllers[0].set_concentration(3, 450); // a leak on channel 3: high alarm
    wait_for(&platform, Duration::from_secs(30), "the high alarm", |p| {
        p.alarms.iter().any(|a| a["level"] == "high")
    })
    .await;
    // Alarms first: once captured, the alarm takes the next free slot, so at most the messages
    // already in flight (the window, 32) can arrive between its capture and its arrival.
    let overtaken_by = {
        let p = platform.lock().unwrap();
        let alarm = p.alarms.iter().find(|a| a["level"] == "high").unwrap();
        let captured = alarm["ts"].as_i64().unwrap();
        let at = p
            .messages
            .iter()
            .position(|m| m.0.ends_with("/alarms") && m.1 == [alarm["seq"].as_u64().unwrap()])
            .unwrap();
        (0..at)
            .filter(|&i| p.messages[i].2 && p.arrived_ms[i] > captured)
            .count()
    };
    assert!(
        overtaken_by <= 32 + 4,
        "{overtaken_by} backlog messages arrived between the alarm's capture and its arrival"
    );
    wait_for(
        &platform,
        Duration::from_secs(120),
        "the whole backlog",
        |p| hist_readings(p) >= BACKLOG,
    )
    .await;
    let connections = uplink_reconnects(&gw);
    gw.shutdown().await;
    let p = platform.lock().unwrap();
    let alarm = p.alarms.iter().find(|a| a["level"] == "high").unwrap();
    assert_eq!(alarm["pt"], "ch03.status");
    assert_eq!(alarm["prev"], "normal");
    assert_eq!(p.duplicates(), 0, "over {connections} connection(s)");
}

/// Compaction holds the store while a backlog drains (so do a reopen and a write that hangs):
/// the uplink reads from memory meanwhile, then from the start again. What it had already
/// handed to the broker, acknowledged or not yet, must not go a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_compactions_sends_nothing_twice() {
    const BACKLOG: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, platform, _controllers) = backlogged(dir.path(), BACKLOG).await;
    let mut gw = Gateway::start(&cfg).await;
    let draining = Arc::new(AtomicBool::new(true));
    let compactor = std::thread::spawn({
        let (spool, draining) = (gw.spool(), draining.clone());
        move || {
            let mut n = 0;
            while draining.load(Ordering::Relaxed) {
                spool.compact_now();
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        }
    });
    wait_for(
        &platform,
        Duration::from_secs(120),
        "the whole backlog",
        |p| hist_readings(p) >= BACKLOG,
    )
    .await;
    draining.store(false, Ordering::Relaxed);
    let compactions = compactor.join().unwrap();
    let connections = uplink_reconnects(&gw);
    gw.shutdown().await;
    let p = platform.lock().unwrap();
    assert!(compactions >= 10, "only {compactions} compactions");
    assert_eq!(
        p.duplicates(),
        0,
        "sent twice, over {compactions} compactions and {connections} connection(s)"
    );
    assert_eq!(hist_readings(&p), BACKLOG);
}

/// An `[upstream]` section with explicit TLS files.
fn upstream(port: u16, ca: &std::path::Path, cert: &plantgate::app::pki::Issued) -> String {
    format!(
        "[upstream]\nbrokers = [\"localhost:{port}\"]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ntopic_prefix = \"pg/test\"\n",
        ca.display(),
        cert.cert_file.display(),
        cert.key_file.display()
    )
}

/// Runs a gateway with `upstream` until it reports an uplink error containing `expect`, and
/// checks that nothing was published and the records stayed in the spool.
async fn refused(upstream: String, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(1).await;
    let mut gw = Gateway::start(&gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &upstream,
    ))
    .await;
    until(Duration::from_secs(20), "an uplink error", || {
        uplink_error(&gw).is_some() && spool_backlog(&gw) > 0
    })
    .await;
    let error = uplink_error(&gw).unwrap();
    assert!(error.contains(expect), "expected {expect:?} in {error:?}");
    assert_eq!(
        uplink_published(&gw),
        0,
        "nothing may be sent over a refused connection"
    );
    assert!(spool_backlog(&gw) > 0, "records stay in the spool");
    gw.shutdown().await;
}

/// Starts rumqttd over mutual TLS with the given server certificate and client CA.
fn broker_with(ca: &std::path::Path, server: &plantgate::app::pki::Issued) -> u16 {
    let port = plantgate::broker::free_port().unwrap();
    plantgate::broker::start(
        ([127, 0, 0, 1], port).into(),
        Some(plantgate::broker::BrokerTls {
            ca_file: ca.to_owned(),
            cert_file: server.cert_file.clone(),
            key_file: server.key_file.clone(),
        }),
    )
    .unwrap();
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_from_another_ca_or_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = pki(dir.path());
    // A broker whose certificate comes from another CA.
    let rogue_dir = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue_dir).unwrap();
    let rogue = pki(&rogue_dir);
    let rogue_port = rumqttd(&rogue);
    let rogue_platform = platform(&rogue, rogue_port, None).await;
    refused(
        upstream(rogue_port, &ours.ca.cert_file, &ours.gateway),
        "not signed by the configured CA",
    )
    .await;
    assert!(
        rogue_platform.lock().unwrap().messages.is_empty(),
        "the rogue broker got something"
    );

    // A broker with a certificate from the right CA, but for another host name.
    let elsewhere = ours
        .ca
        .issue(dir.path(), "elsewhere", &["mqtt.elsewhere.example"], true)
        .unwrap();
    let port = broker_with(&ours.ca.cert_file, &elsewhere);
    refused(
        upstream(port, &ours.ca.cert_file, &ours.gateway),
        "not issued for the host name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_broker_does_not_trust_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let platform_pki = pki(dir.path());
    let port = rumqttd(&platform_pki);
    let platform = platform(&platform_pki, port, None).await;
    // The gateway trusts the platform's CA but presents a certificate from a CA of its own.
    let own_ca = plantgate::app::pki::Ca::new(dir.path(), "gateway-own-ca").unwrap();
    let own = own_ca
        .issue(dir.path(), "own-gateway", &["gw-test"], false)
        .unwrap();
    refused(
        upstream(port, &platform_pki.ca.cert_file, &own),
        "the broker rejected our client certificate",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(platform
        .lock()
        .unwrap()
        .messages
        .iter()
        .all(|m| !m.0.ends_with("/readings")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_evicts_readings_and_keeps_every_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = rumqttd(&pki);
    let (sim, _c) = simulators(1).await;
    // 1 MiB: the smallest spool; readings are evicted past half of it.
    let cfg = config(&gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        100,
        "max_bytes = 1048576",
        &pki.upstream(port, ""),
    ));
    let mut alarms = 0;
    let kept = {
        let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
        for i in 0..400 {
            let polls: Vec<DevicePoll> = (0..10)
                .map(|j| synthetic_poll("old", 32, ((i + j) % 7 == 0).then_some(AlarmLevel::High)))
                .collect();
            alarms += polls.iter().map(|p| p.alarms.len()).sum::<usize>();
            s.spool.append(&polls).unwrap();
        }
        assert!(s.evicted() > 0, "nothing was evicted: {}", s.state());
        assert_eq!(s.alarms(), alarms as u64, "an alarm was evicted");
        assert_eq!(s.backlog() + s.evicted(), 400 * 10 * 32);
        assert!(
            s.file_bytes() <= 1 << 20,
            "the spool file grew past max_bytes: {}",
            s.file_bytes()
        );
        s.backlog() as usize
    };

    // Everything that was kept reaches the platform, every alarm among it.
    let platform = platform(&pki, port, None).await;
    let mut gw = Gateway::start(&cfg).await;
    wait_for(
        &platform,
        Duration::from_secs(30),
        "the kept records",
        |p| {
            p.alarms.iter().filter(|a| a["dev"] == "old").count() == alarms
                && hist_readings(p) == kept
        },
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cbor2_decodes_what_we_send() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = rumqttd(&pki);
    let platform = platform(&pki, port, None).await;
    let (sim, c) = simulators(1).await;
    c[0].set_concentration(1, 123);
    c[0].set_concentration(2, 450);
    let text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(port, ""),
    );
    let mut gw = Gateway::start(&text).await;
    wait_for(
        &platform,
        Duration::from_secs(20),
        "readings and alarms",
        |p| {
            p.alarms.iter().any(|a| a["level"] == "high")
                && p.raw.iter().any(|(t, _)| t.ends_with("/readings"))
        },
    )
    .await;
    gw.shutdown().await;
    let (readings, alarm) = {
        let p = platform.lock().unwrap();
        let r = p
            .raw
            .iter()
            .find(|(t, _)| t.ends_with("/readings"))
            .unwrap()
            .1
            .clone();
        let a = p
            .raw
            .iter()
            .filter(|(t, _)| t.ends_with("/alarms"))
            .map(|(_, b)| b.clone())
            .find(|b| plantgate::app::demo::decode_any(b)["level"] == "high");
        (r, a.unwrap())
    };
    std::fs::write(dir.path().join("readings.cbor"), &readings).unwrap();
    std::fs::write(dir.path().join("alarm.cbor"), &alarm).unwrap();
    let script = r#"
import cbor2, json, sys
r = cbor2.load(open(sys.argv[1], 'rb'))
a = cbor2.load(open(sys.argv[2], 'rb'))
print(json.dumps({"readings": r, "alarm": a}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("readings.cbor"))
        .arg(dir.path().join("alarm.cbor"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "cbor2 could not decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["readings"];
    assert_eq!(r["gw"], "gw-test");
    assert_eq!(r["hist"], false);
    let gas = r["readings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pt"] == "ch01.gas")
        .unwrap();
    assert_eq!(gas["dev"], "gas-1");
    assert_eq!(gas["q"], "good");
    assert!((gas["v"].as_f64().unwrap() - 12.3).abs() < 1e-9, "{gas}");
    assert!(gas["seq"].as_u64().is_some() && gas["ts"].as_i64().unwrap() > 1_600_000_000_000);
    let a = &v["alarm"];
    assert_eq!(
        (a["pt"].as_str(), a["level"].as_str(), a["v"].as_i64()),
        (Some("ch02.status"), Some("high"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_broker_takes_over_when_the_first_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = rumqttd(&pki);
    let primary = Proxy::start(port).await;
    let secondary = Proxy::start(port).await;
    primary.cut();
    let platform = platform(&pki, port, None).await;
    let (sim, _c) = simulators(1).await;
    let up = pki.upstream(primary.port, "").replace(
        &format!("brokers = [\"localhost:{}\"]", primary.port),
        &format!(
            "brokers = [\"localhost:{}\", \"localhost:{}\"]",
            primary.port, secondary.port
        ),
    );
    let mut gw = Gateway::start(&gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        100,
        "",
        &up,
    ))
    .await;
    wait_for(
        &platform,
        Duration::from_secs(30),
        "readings through the second broker",
        |p| p.seen.len() > 100,
    )
    .await;
    assert_eq!(
        uplink_connected(&gw),
        Some(format!("localhost:{}", secondary.port))
    );
    gw.shutdown().await;
}

/// What a platform connecting *now* finds retained on `topic`: (payload, QoS, retain flag).
/// Subscribed at QoS 1, so a message published at QoS 0 arrives at QoS 0.
async fn retained(pki: &Pki, port: u16, topic: &str) -> (String, rumqttc::QoS, bool) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let mut opts = MqttOptions::new(format!("late-{}", rand::random::<u32>()), "localhost", port);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        pki.platform_tls(),
    )));
    let (client, mut events) = AsyncClient::new(opts, 8);
    let wait = async {
        loop {
            match events.poll().await.unwrap() {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => {
                    return (
                        String::from_utf8_lossy(&p.payload).into_owned(),
                        p.qos,
                        p.retain,
                    );
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("nothing retained on {topic}"))
}

/// `{prefix}/status` and `{prefix}/info` are QoS 1 and retained, so a platform that connects
/// later learns the state: `online` and the build while running, `offline` after a clean stop
/// and after a crash (the last will).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_info_are_retained_at_qos_1_online_offline_and_the_last_will() {
    use rumqttc::QoS::AtLeastOnce;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = Mosquitto::start(&pki, free_port());
    let (sim, _c) = simulators(1).await;
    let text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(broker.port, ""),
    );
    let path = dir.path().join("plantgate.toml");
    std::fs::write(&path, &text).unwrap();
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
    };

    let mut gw = plantgate_run(&path, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let online = loop {
        let got = retained(&pki, broker.port, "pg/test/status").await;
        // (a message that arrives live during the wait is not flagged retained: ask again)
        if (got.0 == "online" && got.2) || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(online, ("online".into(), AtLeastOnce, true));
    let (info, qos, retain) = retained(&pki, broker.port, "pg/test/info").await;
    assert_eq!((qos, retain), (AtLeastOnce, true), "{info}");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["gw"], "gw-test");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["config_sha256"], sha.as_str());

    // a clean stop says offline itself, retained at QoS 1: before it exits (a last will would
    // come only after, when the broker sees the connection drop)
    let live = platform(&pki, broker.port, None).await;
    assert!(gw.terminate().success());
    let exited_ms = plantgate::record::now_ms();
    {
        let p = live.lock().unwrap();
        // `raw` and `arrived_ms` are in step: one entry per message
        let offline = p
            .raw
            .iter()
            .position(|(t, b)| t.ends_with("/status") && b == b"offline")
            .map(|i| p.arrived_ms[i])
            .expect("no offline while the gateway stopped");
        assert!(
            offline <= exited_ms,
            "offline arrived {} ms after the exit: the last will, not the gateway's own",
            offline - exited_ms
        );
    }
    assert_eq!(
        retained(&pki, broker.port, "pg/test/status").await,
        ("offline".into(), AtLeastOnce, true)
    );

    // a crash: the broker sends the last will, retained at QoS 1, in place of `online`
    let mut gw = plantgate_run(&path, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while retained(&pki, broker.port, "pg/test/status").await.0 != "online" {
        assert!(tokio::time::Instant::now() < deadline, "never online again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.0.kill().unwrap(); // SIGKILL
    gw.0.wait().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let will = loop {
        let got = retained(&pki, broker.port, "pg/test/status").await;
        if (got.0 != "online" && got.2) || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(will, ("offline".into(), AtLeastOnce, true));
}

/// `[upstream] format = "json"`, end to end: every record message is strict JSON (Python's
/// json module reads it too), in README's shape, with the values the devices hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_end_to_end_in_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = rumqttd(&pki);
    let platform = platform(&pki, port, None).await;
    let (sim, c) = simulators(1).await;
    c[0].set_concentration(1, 123); // ch01.gas 12.3
    c[0].set_concentration(2, 450); // ch02 high
    let text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(port, "format = \"json\""),
    );
    let cfg = config(&text);
    // A run that stopped uncleanly, so the start announces a gap too.
    {
        let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
        s.spool.append(&[synthetic_poll("old-1", 4, None)]).unwrap();
    }
    let mut gw = Gateway::start(&cfg).await;
    wait_for(
        &platform,
        Duration::from_secs(20),
        "readings, an alarm and a gap",
        |p| {
            p.alarms.iter().any(|a| a["level"] == "high")
                && !p.gaps.is_empty()
                && p.raw.iter().any(|(t, _)| t.ends_with("/readings"))
        },
    )
    .await;
    gw.shutdown().await;
    let p = platform.lock().unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let fields = ["dev", "gw", "pt", "q", "seq", "ts", "v"];
    let mut seen = std::collections::BTreeSet::new();
    for (topic, raw) in p
        .raw
        .iter()
        .filter(|(t, _)| !t.ends_with("/status") && !t.ends_with("/info"))
    {
        let v: serde_json::Value = serde_json::from_slice(raw)
            .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {raw:?}"));
        let kind = topic.rsplit('/').next().unwrap();
        seen.insert(kind.to_string());
        match kind {
            "readings" => {
                assert_eq!(keys(&v), ["gw", "hist", "readings"], "{v}");
                for r in v["readings"].as_array().unwrap() {
                    assert_eq!(keys(r), fields, "{r}");
                    assert_eq!(r["gw"], "gw-test");
                    if r["dev"] == "gas-1" && r["pt"] == "ch01.gas" && r["q"] == "good" {
                        assert_eq!(r["v"].as_f64(), Some(12.3), "{r}");
                    }
                }
            }
            "alarms" => {
                let mut want: Vec<&str> = fields.iter().copied().chain(["level", "prev"]).collect();
                if v.get("warn").is_some() {
                    want.push("warn");
                }
                want.sort_unstable();
                assert_eq!(keys(&v), want, "{v}");
            }
            "gaps" => {
                assert_eq!(keys(&v), ["from", "gw", "reason", "to", "ts"], "{v}");
                assert_eq!(v["reason"], "unclean_stop");
            }
            other => panic!("unexpected topic {other}"),
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let high = p.alarms.iter().find(|a| a["level"] == "high").unwrap();
    assert_eq!(
        (&high["pt"], &high["prev"]),
        (&"ch02.status".into(), &"unknown".into())
    );
    // and a JSON reader nobody here wrote agrees
    let alarm = &p
        .raw
        .iter()
        .find(|(t, _)| t.ends_with("/alarms"))
        .unwrap()
        .1;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys; print(json.load(sys.stdin)['level'])",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(alarm)?;
            c.wait_with_output()
        })
        .expect("python3 is needed");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}
