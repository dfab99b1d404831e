//! What a hostile LAN client can do to the gateway: hold the status page's connections, publish
//! to the local broker, subscribe and never read. Each test runs the real gateway
//! (`plantgate::app::start`) against real sockets.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The unit's `LimitNOFILE` (systemd/plantgate.service): the test process runs under it, though
/// it also holds the attacker's ends of every connection.
const UNIT_NOFILE: u64 = 4096;

/// Sets this process's soft RLIMIT_NOFILE to `to` (util-linux `prlimit`, so no unsafe code
/// here) and returns the soft limit now in force.
fn limit_fds(to: u64) -> u64 {
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={to}:"))
        .status()
        .expect("prlimit (util-linux) is needed")
        .success();
    assert!(ok, "prlimit failed");
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// A connection from `from` to `to` that sends half a request head (or nothing) and then
/// waits; returns how long the server let it live, or `None` if it was still open after 30 s
/// (which happens only to connections the kernel completed but whose accept queue was full:
/// the gateway never saw them, and they hold none of its descriptors).
async fn hold(from: IpAddr, to: SocketAddr, partial: bool) -> Option<Duration> {
    let sock = TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(from, 0)).ok()?;
    let mut s = sock.connect(to).await.ok()?;
    let t0 = Instant::now();
    if partial {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    }
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None, // never closed
        }
    }
}

struct Attack {
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    /// Connections never closed (see [`hold`]).
    unseen: Arc<AtomicU64>,
    /// Lifetimes of connections the server held (longer than a second): server-side closes.
    held: Arc<Mutex<Vec<Duration>>>,
    tasks: tokio::task::JoinSet<()>,
}

/// `n` connections from `from`, each reopened a second after the server closes it, so the
/// page stays at its limit for as long as the attack lasts.
fn attack(from: IpAddr, to: SocketAddr, n: usize) -> Attack {
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let unseen = Arc::new(AtomicU64::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (stop, cycles, held) = (stop.clone(), cycles.clone(), held.clone());
        let unseen = unseen.clone();
        tasks.spawn(async move {
            // The first connections spread over a second, as the reconnects are below: all n
            // at once would overflow the accept queue, and a connection whose handshake the
            // kernel completes late (its final ACK dropped) lives longer, as the client counts,
            // than the server held it.
            tokio::time::sleep(Duration::from_millis((i % 1000) as u64)).await;
            while !stop.load(Ordering::SeqCst) {
                let life = hold(from, to, i % 2 == 0).await;
                cycles.fetch_add(1, Ordering::SeqCst);
                match life {
                    None => {
                        unseen.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(d) if d > Duration::from_secs(1) => held.lock().unwrap().push(d),
                    Some(_) => {}
                }
                // Spread out, so the kernel's accept queue is not what limits the attack.
                tokio::time::sleep(Duration::from_millis(1000 + (i % 500) as u64)).await;
            }
        });
    }
    Attack {
        stop,
        cycles,
        unseen,
        held,
        tasks,
    }
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (`TcpExt: ListenOverflows`, system-wide).
fn listen_overflows() -> u64 {
    let t = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = t.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn metric_now(running: &plantgate::app::Running, name: &str) -> f64 {
    let text = plantgate::web::metrics::prometheus_text(&running.registry);
    metric(&text, name).unwrap_or_else(|| panic!("no {name} in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_and_a_broker_restart_leave_the_data_path_working() {
    let nofile = limit_fds(UNIT_NOFILE);
    assert_eq!(nofile, UNIT_NOFILE);
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let proxy = Proxy::start(broker).await;
    let platform = platform(&pki, broker, None).await;
    let (sim, _c) = simulators(1).await;
    let mut text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(proxy.port, ""),
    );
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let running = plantgate::app::start(&config(&text)).await.unwrap();
    let web = running.web_addr.unwrap();
    wait_for(&platform, Duration::from_secs(20), "first readings", |p| {
        !p.seen.is_empty()
    })
    .await;

    // One scanner or laptop, 2,000 idle and half-sent requests.
    let overflows = listen_overflows();
    let mut a = attack(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), web, 2000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = metric_now(&running, "plantgate_web_connections");
    assert!(
        open <= plantgate::web::MAX_PER_CLIENT as f64,
        "one address holds {open} connections"
    );
    // The technician's laptop still gets the page.
    assert_eq!(http_get(web, "/healthz").await.0, 200);

    // Broker outage during the attack: the uplink comes back, polling goes on.
    let before = running.status.uplink().reconnects;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen_at_cut = platform.lock().unwrap().seen.keys().max().copied().unwrap();
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.status.uplink().reconnects == before
        || running.status.uplink().connected_to.is_none()
    {
        assert!(Instant::now() < deadline, "the uplink did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(
        &platform,
        Duration::from_secs(20),
        "new readings after the restart",
        |p| p.seen.keys().max().copied().unwrap() > seen_at_cut + 64,
    )
    .await;
    assert_eq!(http_get(web, "/healthz").await.0, 200);
    // Let every held connection reach the server's timeout at least once.
    tokio::time::sleep(plantgate::web::HEADER_TIMEOUT + Duration::from_secs(2)).await;

    let refused = metric_now(&running, "plantgate_web_connections_refused_total");
    a.stop.store(true, Ordering::SeqCst);
    while a.tasks.join_next().await.is_some() {}
    let held = a.held.lock().unwrap().clone();
    let longest = held.iter().max().copied().unwrap();
    eprintln!(
        "RLIMIT_NOFILE {nofile}; attack: {} connections opened, {refused} refused at once, {} held by the server (longest {longest:?}), {open} open at once, {} never closed ({} accept-queue overflows meanwhile)",
        a.cycles.load(Ordering::SeqCst),
        held.len(),
        a.unseen.load(Ordering::SeqCst),
        listen_overflows() - overflows,
    );
    // The server sees most closes a moment after the attacker's tasks end. Twice in 20 runs one
    // connection was still open 5 s later. Likely (not proven): the kernel completed it late,
    // after its final ACK was dropped while the accept queue overflowed, so it was accepted
    // after its client was gone, with the FIN still being retransmitted. The header timeout
    // ends such a connection; nothing may outlive it.
    let ended = Instant::now();
    let deadline = ended + plantgate::web::HEADER_TIMEOUT + Duration::from_secs(3);
    loop {
        let open_after = metric_now(&running, "plantgate_web_connections");
        if open_after == 0.0 {
            eprintln!("no connection held {:?} after the attack", ended.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open_after} connections still held after the attack"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric_now(&running, "plantgate_web_connections_expired_total"),
        0.0,
        "an idle connection was cut by the lifetime cap, not the header timeout"
    );
    assert!(refused >= 1900.0, "only {refused} refused");
    assert!(
        held.len() >= plantgate::web::MAX_PER_CLIENT,
        "the server held too few to show its timeout: {}",
        held.len()
    );
    assert!(
        longest <= plantgate::web::HEADER_TIMEOUT + Duration::from_secs(2),
        "an idle connection lived {longest:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_holds_at_most_its_limit_and_closes_idle_keep_alive_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(1).await;
    let mut text = gateway_toml(&dir.path().join("data"), sim, 1, 500, "", "");
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let running = plantgate::app::start(&config(&text)).await.unwrap();
    let web = running.web_addr.unwrap();

    // A kept-alive connection after one answer is closed after the timeout.
    let mut s = TcpStream::connect(web).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("an idle kept-alive connection was never closed")
        .unwrap_or(0);
    assert_eq!(rest, 0);
    let idle = t0.elapsed();
    assert!(idle <= plantgate::web::HEADER_TIMEOUT + Duration::from_secs(2));

    // A body the page has no use for is refused before any handler.
    let mut s = TcpStream::connect(web).await.unwrap();
    s.write_all(b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Many addresses: the total is capped.
    let max = plantgate::web::MAX_CONNECTIONS;
    let mut conns = Vec::new();
    for i in 0..(max + 64) {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, (i / 16) as u8 + 1));
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
        conns.push(sock.connect(web).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = metric_now(&running, "plantgate_web_connections");
    eprintln!(
        "idle keep-alive closed after {idle:?}; {open} of {} connections held",
        max + 64
    );
    assert_eq!(open, max as f64);
    assert!(metric_now(&running, "plantgate_web_connections_refused_total") >= 64.0);
    drop(conns);
    running.shutdown().await;
}

// ---- The local broker -------------------------------------------------------------------

/// A gateway polling one simulated controller, with the local broker on `plant/a`.
async fn with_local_broker(dir: &std::path::Path) -> (plantgate::app::Running, u16) {
    let (sim, _c) = simulators(1).await;
    let port = free_port();
    let mut text = gateway_toml(&dir.join("data"), sim, 1, 200, "", "");
    text.push_str(&format!(
        "[local_broker]\nlisten = \"127.0.0.1:{port}\"\ntopic_prefix = \"plant/a\"\n"
    ));
    (plantgate::app::start(&config(&text)).await.unwrap(), port)
}

fn mqtt(id: &str, port: u16) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    rumqttc::AsyncClient::new(opts, 64)
}

/// Polls `events` until `until`, returning every publish (topic, payload) and whether the
/// connection ended in an error.
async fn drain(
    events: &mut rumqttc::EventLoop,
    until: tokio::time::Instant,
) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    use rumqttc::{Event, Packet};
    let mut got = Vec::new();
    while let Ok(ev) = tokio::time::timeout_at(until, events.poll()).await {
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) => got.push((p.topic, p.payload.to_vec())),
            Ok(_) => {}
            Err(e) => return (got, Some(e.to_string())),
        }
    }
    (got, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_client_cannot_publish_a_fake_alarm_to_the_local_broker() {
    use rumqttc::{Event, LastWill, Packet, QoS, SubscribeReasonCode};
    let dir = tempfile::tempdir().unwrap();
    let (running, port) = with_local_broker(dir.path()).await;
    let (hmi, mut hmi_events) = mqtt("hmi", port);
    hmi.subscribe("plant/a/#", QoS::AtMostOnce).await.unwrap();

    // A subscription outside the prefix is refused in the SUBACK; the client stays connected.
    let (evil, mut evil_events) = mqtt("evil", port);
    evil.subscribe("#", QoS::AtMostOnce).await.unwrap();
    let code = loop {
        if let Event::Incoming(Packet::SubAck(a)) = evil_events.poll().await.unwrap() {
            break a.return_codes[0];
        }
    };
    assert_eq!(code, SubscribeReasonCode::Failure);

    let fake =
        br#"{"gw":"gw-test","dev":"gas-1","pt":"ch01.status","level":"high","prev":"normal"}"#;
    evil.publish("plant/a/alarms", QoS::AtLeastOnce, false, fake.to_vec())
        .await
        .unwrap();
    let (_, evil_end) = drain(
        &mut evil_events,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert!(evil_end.is_some(), "the publisher was not disconnected");

    // A last will is a publish too: refused at CONNECT.
    let mut opts = rumqttc::MqttOptions::new("will", "127.0.0.1", port);
    opts.set_last_will(LastWill::new(
        "plant/a/alarms",
        fake.to_vec(),
        QoS::AtMostOnce,
        false,
    ));
    let (_will, mut will_events) = rumqttc::AsyncClient::new(opts, 8);
    let refused = will_events.poll().await;
    assert!(
        refused.is_err(),
        "a CONNECT with a will was accepted: {refused:?}"
    );

    let (got, hmi_end) = drain(
        &mut hmi_events,
        tokio::time::Instant::now() + Duration::from_secs(3),
    )
    .await;
    assert!(
        hmi_end.is_none(),
        "the HMI lost its connection: {hmi_end:?}"
    );
    assert!(
        got.iter().any(|(t, _)| t == "plant/a/readings"),
        "the HMI got no readings"
    );
    let injected: Vec<_> = got.iter().filter(|(_, p)| p.as_slice() == fake).collect();
    assert!(injected.is_empty(), "the HMI received the fake alarm");
    assert_eq!(
        metric_now(&running, "plantgate_local_broker_refused_publishes_total"),
        1.0
    );
    assert_eq!(
        metric_now(
            &running,
            "plantgate_local_broker_refused_connections_total{reason=\"will\"}"
        ),
        1.0
    );
    running.shutdown().await;
}

/// Held by the tests that flood the local broker with 1 MiB messages: the growth test reads
/// the whole test process's RSS, which another flood beside it would add to.
static FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A client that connects and subscribes with raw packets, then never reads a byte.
async fn never_reading_subscriber(port: u16, id: &str) -> TcpStream {
    use rumqttc::mqttbytes::v4::{Connect, Packet, Subscribe};
    use rumqttc::mqttbytes::QoS;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut c = Connect::new(id);
    c.keep_alive = 600;
    Packet::Connect(c).write(&mut buf, 1 << 20).unwrap();
    Packet::Subscribe(Subscribe::new("plant/a/#", QoS::AtMostOnce))
        .write(&mut buf, 1 << 20)
        .unwrap();
    s.write_all(&buf).await.unwrap();
    s
}

/// One record of 1,000 readings with long point names: ~1 MiB of JSON per message, as in the
/// finding, and cheap enough to encode in a debug build. Sent straight into the tap.
fn big_record() -> Arc<plantgate::spool::Stored> {
    use plantgate::record::{Quality, Reading, Sample, Value};
    let device: Arc<str> = "gas-9".into();
    let point: Arc<str> = "p".repeat(1000).into();
    Arc::new(plantgate::spool::Stored {
        readings: (0..1_000)
            .map(|i| Reading {
                seq: 1_000_000 + i,
                device: device.clone(),
                sample: Sample {
                    point: point.clone(),
                    ts_ms: 1_700_000_000_000 + i as i64,
                    value: Some(Value::Float(12.345678 + i as f64)),
                    quality: Quality::Good,
                },
            })
            .collect(),
        alarms: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_do_not_grow_the_gateway_or_slow_the_others() {
    let _alone = FLOOD.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, port) = with_local_broker(dir.path()).await;
    let (hmi, mut hmi_events) = mqtt("hmi", port);
    hmi.subscribe("plant/a/readings", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let mut slow = Vec::new();
    for i in 0..4 {
        slow.push(never_reading_subscriber(port, &format!("slow-{i}")).await);
    }
    let big = big_record();
    let t_enc = Instant::now();
    let size = plantgate::record::wire::encode_readings(
        plantgate::record::wire::Format::Json,
        "gw-test",
        false,
        &big.readings,
    )
    .len();
    let encode = t_enc.elapsed();
    // Let the HMI's subscription land, then measure.
    drain(
        &mut hmi_events,
        tokio::time::Instant::now() + Duration::from_secs(1),
    )
    .await;
    let before = vm_rss_kib();

    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let reader = tokio::spawn(async move {
        use rumqttc::{Event, Packet};
        while let Ok(Ok(ev)) =
            tokio::time::timeout(Duration::from_secs(20), hmi_events.poll()).await
        {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                if p.payload.len() > 500_000 {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    const SENT: u64 = 150;
    let mut peak = before;
    // At the pace the mirror encodes them (a debug build takes ~0.1 s for 1 MiB of JSON):
    // each is sent when the HMI has the one before, or after 3 s.
    for i in 0..SENT {
        running.tap.send(big.clone()).unwrap();
        let t = Instant::now();
        while received.load(Ordering::SeqCst) <= i && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak = peak.max(vm_rss_kib());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    peak = peak.max(vm_rss_kib());
    let hmi_got = received.load(Ordering::SeqCst);
    let dropped = metric_now(&running, "plantgate_local_broker_dropped_messages_total");
    eprintln!(
        "{SENT} messages of {size} bytes to 4 silent subscribers and one HMI: RSS {} MiB before, peak {} MiB (+{} MiB); the HMI got {hmi_got}; {dropped} copies dropped; encoding one took {encode:?}",
        before / 1024,
        peak / 1024,
        (peak - before) / 1024
    );
    assert!(
        size > 1_000_000,
        "messages too small to show anything: {size}"
    );
    assert!(
        peak - before < 50 * 1024,
        "the gateway grew by {} MiB",
        (peak - before) / 1024
    );
    assert!(hmi_got >= SENT / 2, "the HMI got only {hmi_got} of {SENT}");
    assert!(
        dropped >= 4.0 * (SENT as f64) * 0.5,
        "the silent subscribers lost only {dropped}"
    );

    // They are dropped once a write has waited WRITE_TIMEOUT.
    let deadline =
        Instant::now() + plantgate::broker::local::WRITE_TIMEOUT + Duration::from_secs(10);
    let slow_name = "plantgate_local_broker_refused_connections_total{reason=\"slow\"}";
    while metric(
        &plantgate::web::metrics::prometheus_text(&running.registry),
        slow_name,
    ) != Some(4.0)
    {
        assert!(
            Instant::now() < deadline,
            "the silent subscribers were never dropped"
        );
        running.tap.send(big.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(metric_now(&running, "plantgate_local_broker_clients"), 1.0);
    drop(slow);
    reader.abort();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_broker_serves_at_most_its_limit_and_drops_clients_that_never_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (running, port) = with_local_broker(dir.path()).await;
    let max = plantgate::broker::local::MAX_CLIENTS;
    let mut idle = Vec::new();
    for _ in 0..(max + 16) {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric_now(&running, "plantgate_local_broker_clients"),
        max as f64
    );
    let limit = "plantgate_local_broker_refused_connections_total{reason=\"limit\"}";
    assert_eq!(metric_now(&running, limit), 16.0);

    // None sent CONNECT: every one is closed by the server within CONNECT_TIMEOUT.
    let t0 = Instant::now();
    for s in &mut idle {
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut b))
            .await
            .expect("a silent client was never dropped")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    let waited = t0.elapsed();
    assert!(waited <= plantgate::broker::local::CONNECT_TIMEOUT + Duration::from_secs(2));
    // Each is counted as its session ends, just after its socket closes: wait for the last.
    let timed_out = "plantgate_local_broker_refused_connections_total{reason=\"connect_timeout\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_now(&running, timed_out) < max as f64 {
        assert!(
            Instant::now() < deadline,
            "{} timed out, {max} expected",
            metric_now(&running, timed_out)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric_now(&running, timed_out), max as f64);

    // And the broker serves again.
    let (hmi, mut events) = mqtt("hmi", port);
    hmi.subscribe("plant/a/readings", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let (got, end) = drain(
        &mut events,
        tokio::time::Instant::now() + Duration::from_secs(2),
    )
    .await;
    assert!(
        end.is_none() && !got.is_empty(),
        "no readings after the flood: {end:?}"
    );
    running.shutdown().await;

    // Shutdown closes the listener and the clients.
    let (_, end) = drain(
        &mut events,
        tokio::time::Instant::now() + Duration::from_secs(2),
    )
    .await;
    assert!(end.is_some(), "the HMI stayed connected after shutdown");
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the local broker still listens after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_login_set_only_clients_that_give_it_are_served() {
    use rumqttc::QoS;
    let dir = tempfile::tempdir().unwrap();
    let (sim, _c) = simulators(1).await;
    let port = free_port();
    let mut text = gateway_toml(&dir.path().join("data"), sim, 1, 200, "", "");
    text.push_str(&format!(
        "[local_broker]\nlisten = \"127.0.0.1:{port}\"\ntopic_prefix = \"plant/a\"\nusername = \"hmi\"\npassword = \"correct horse\"\n"
    ));
    let running = plantgate::app::start(&config(&text)).await.unwrap();
    let client = |id: &str, login: Option<(&str, &str)>| {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        if let Some((u, p)) = login {
            opts.set_credentials(u, p);
        }
        rumqttc::AsyncClient::new(opts, 16)
    };
    for (id, login) in [
        ("anonymous", None),
        ("wrong", Some(("hmi", "battery staple"))),
        ("other-user", Some(("scada", "correct horse"))),
    ] {
        let (_c, mut events) = client(id, login);
        let r = events.poll().await;
        assert!(r.is_err(), "{id} was let in: {r:?}");
    }
    let (hmi, mut events) = client("hmi", Some(("hmi", "correct horse")));
    hmi.subscribe("plant/a/#", QoS::AtMostOnce).await.unwrap();
    let (got, end) = drain(
        &mut events,
        tokio::time::Instant::now() + Duration::from_secs(3),
    )
    .await;
    assert!(
        end.is_none(),
        "the HMI with the login lost its connection: {end:?}"
    );
    assert!(
        got.iter().any(|(t, _)| t == "plant/a/readings"),
        "the HMI with the login got no readings"
    );
    assert_eq!(
        metric_now(
            &running,
            r#"plantgate_local_broker_refused_connections_total{reason="login"}"#
        ),
        3.0
    );
    running.shutdown().await;
}

/// `gateway` (a configuration without upstream) with an mTLS uplink to the broker on `broker`
/// and a local broker on `lan` under `plant/a`, `login` added to its section.
fn uplink_and_lan(gateway: &str, pki: &Pki, broker: u16, lan: u16, login: &str) -> String {
    format!(
        "{gateway}{}[local_broker]\nlisten = \"127.0.0.1:{lan}\"\ntopic_prefix = \"plant/a\"\n{login}",
        pki.upstream(broker, "")
    )
}

/// Nothing secret reaches the logs, at the most verbose level: not the local broker's
/// password, not a wrong one a LAN client tried, not a line of the gateway's private key. The
/// real binary runs with `RUST_LOG=trace`, its uplink on mTLS and LAN clients logging in
/// rightly and wrongly; all it writes to stdout and stderr is searched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_key_material_in_the_logs_even_at_trace() {
    use rumqttc::QoS;
    const PASSWORD: &str = "correct horse 8f3a";
    const GUESS: &str = "battery staple 77c1";
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let (sim, _c) = simulators(1).await;
    let port = free_port();
    let text = uplink_and_lan(
        &gateway_toml(&dir.path().join("data"), sim, 1, 200, "", ""),
        &pki,
        broker,
        port,
        &format!("username = \"hmi\"\npassword = \"{PASSWORD}\"\n"),
    );
    let path = dir.path().join("plantgate.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::fs::File::create(dir.path().join("out.log")).unwrap();
    let err = std::fs::File::create(dir.path().join("err.log")).unwrap();
    let mut gw = Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_plantgate"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "trace")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no local broker");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, pass) in [("wrong", GUESS), ("hmi", PASSWORD)] {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_credentials("hmi", pass);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 16);
        client
            .subscribe("plant/a/#", QoS::AtMostOnce)
            .await
            .unwrap();
        let (got, _) = drain(
            &mut events,
            tokio::time::Instant::now() + Duration::from_secs(2),
        )
        .await;
        assert_eq!(!got.is_empty(), pass == PASSWORD, "{id}");
    }
    // and the uplink delivered (so its TLS handshakes are in the log too)
    let log = || {
        std::fs::read_to_string(dir.path().join("out.log")).unwrap()
            + &std::fs::read_to_string(dir.path().join("err.log")).unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !log().contains("uplink connected") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no uplink in the log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.terminate().success());

    let log = log();
    assert!(
        log.lines().count() > 100,
        "too little logged to judge:\n{log}"
    );
    assert!(
        log.contains("TRACE") || log.contains("trace"),
        "not at trace"
    );
    for secret in [PASSWORD, GUESS, "PRIVATE KEY"] {
        assert!(!log.contains(secret), "{secret:?} is in the log");
    }
    let key = std::fs::read_to_string(&pki.gateway.key_file).unwrap();
    for line in key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
    {
        assert!(
            !log.contains(line),
            "a line of the private key is in the log"
        );
        assert!(
            !log.contains(&line[..16]),
            "part of the private key is in the log"
        );
    }
}

/// LAN subscribers that never read, flooded with big messages, do not slow the uplink: while
/// they are backed up (their copies dropped), every record the gateway captures is
/// acknowledged by the platform's broker within `sync_ms`, so none ever waits on the disk, and
/// the platform receives every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_lan_subscribers_never_slow_the_uplink() {
    let _alone = FLOOD.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let platform = platform(&pki, broker, None).await;
    let (sim, _c) = simulators(2).await;
    let lan = free_port();
    let text = uplink_and_lan(
        &gateway_toml(&dir.path().join("data"), sim, 2, 100, "sync_ms = 1000", ""),
        &pki,
        broker,
        lan,
        "",
    );
    let cfg = config(&text);
    let first = next_seq(&cfg);
    let running = plantgate::app::start(&cfg).await.unwrap();
    let mut slow = Vec::new();
    for i in 0..4 {
        slow.push(never_reading_subscriber(lan, &format!("slow-{i}")).await);
    }
    wait_for(
        &platform,
        Duration::from_secs(20),
        "the uplink delivering",
        |p| !p.seen.is_empty(),
    )
    .await;
    let big = big_record();
    let dropped = "plantgate_local_broker_dropped_messages_total";
    let mut on_disk = 0;
    let flood_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < flood_until || metric_now(&running, dropped) == 0.0 {
        assert!(
            Instant::now() < flood_until + Duration::from_secs(30),
            "the silent subscribers never backed up"
        );
        running.tap.send(big.clone()).unwrap();
        for _ in 0..5 {
            on_disk = on_disk.max(running.status.spool().readings);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(metric_now(&running, dropped) > 0.0);
    running.shutdown().await;
    drop(slow);
    let next = next_seq(&cfg);
    assert!(next - first > 2000, "too few records: {}", next - first);
    assert_eq!(
        on_disk, 0,
        "readings waited on the disk for a PUBACK while the LAN subscribers were stuck"
    );
    wait_for(&platform, Duration::from_secs(30), "every record", |p| {
        p.missing(first..next).is_empty()
    })
    .await;
}
