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
    let platform = platform(&pki, broker, None);
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
    let open_after = metric_now(&running, "plantgate_web_connections");
    assert_eq!(open_after, 0.0, "connections still held after the attack");
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
