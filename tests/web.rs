//! The local interfaces: `/metrics`, `/api/status`, probes, headers, and the local broker.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use plantgate::record::{AlarmLevel, DevicePoll, Quality, Sample, Value};
use plantgate::sim::GD16_POINTS;

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, head, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// Scrapes until `done` holds for the text (every 100 ms, up to 30 s); returns that text.
async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(addr).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_and_move_with_polls_errors_outages_and_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let proxy = Proxy::start(broker).await;
    let (sim, _c) = simulators(1).await;
    // gas-1 answers; gas-9 does not exist on the bus: every read times out.
    let mut text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        100,
        "max_bytes = 1048576\nsync_ms = 10",
        &pki.upstream(proxy.port, ""),
    );
    text = text.replace("[spool]", "[[device]]\nname = \"gas-9\"\nbus = \"tcp\"\nunit = 9\npoll_ms = 300\nprofile = \"gd16\"\n[spool]");
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let cfg = config(&text);
    // A spool at its limit: what the next polls add must evict.
    {
        let spool = open_spool(&cfg.gateway.data_dir, &cfg.spool).spool;
        let ts = plantgate::record::now_ms();
        let poll = DevicePoll {
            device: "old".into(),
            samples: (0..32)
                .map(|i| Sample {
                    point: format!("p{i}").into(),
                    ts_ms: ts,
                    value: Some(Value::Float(1.5)),
                    quality: Quality::Good,
                })
                .collect(),
            alarms: vec![],
        };
        while spool
            .append(std::slice::from_ref(&poll))
            .unwrap()
            .readings
            .is_empty()
        {}
        drop(spool);
        let s = open_spool(&cfg.gateway.data_dir, &cfg.spool);
        while s.evicted() == 0 {
            s.spool.append(&vec![poll.clone(); 20]).unwrap();
        }
    }
    proxy.cut(); // the platform is unreachable from the start
    let mut gw = Gateway::start(&cfg).await;
    let addr = gw.web_addr.unwrap();
    let timeouts = r#"plantgate_poll_errors_total{device="gas-9",kind="timeout"}"#;
    let evicted = "plantgate_spool_evicted_readings_total";
    // gas-9 times out twice; the third failure trips the breaker (that poll is reported offline)
    let offline = r#"plantgate_poll_errors_total{device="gas-9",kind="offline"}"#;
    let before = scrape_until(addr, "gas-9's two timeouts per point, then offline", |t| {
        metric(t, timeouts).unwrap_or(0.0) >= 2.0 * GD16_POINTS as f64
            && metric(t, offline).is_some()
    })
    .await;
    promtool_check(&before);
    // Still cut off: what the polls add must evict before the platform is back.
    let at_before = metric(&before, evicted).unwrap_or(0.0);
    scrape_until(addr, "an eviction during the outage", |t| {
        metric(t, evicted).unwrap_or(0.0) > at_before
    })
    .await;
    proxy.restore();
    until(Duration::from_secs(30), "the uplink to deliver", || {
        uplink_acked(&gw) > 0
    })
    .await;
    proxy.cut(); // and an outage: the connection drops and is made again
    until(Duration::from_secs(30), "the uplink to see the cut", || {
        uplink_connected(&gw).is_none()
    })
    .await;
    proxy.restore();
    until(
        Duration::from_secs(30),
        "a reconnect after the outage",
        || uplink_reconnects(&gw) >= 2,
    )
    .await;
    let after = scrape(addr).await;
    promtool_check(&after);
    gw.shutdown().await;

    let m = |t: &str, k: &str| metric(t, k).unwrap_or_else(|| panic!("no {k} in:\n{t}"));
    let moved = |k: &str| {
        let (a, b) = (m(&before, k), m(&after, k));
        assert!(b > a, "{k} did not move: {a} → {b}");
    };
    moved(r#"plantgate_poll_device_polls_total{bus="tcp",device="gas-1"}"#);
    moved(r#"plantgate_poll_values_total{device="gas-1"}"#);
    moved(offline);
    moved("plantgate_spool_evicted_readings_total");
    moved("plantgate_spool_captured_records_total");
    moved("plantgate_spool_durable_commits_total");
    moved("plantgate_spool_written_bytes_total");
    moved("plantgate_uplink_connections_total");
    moved("plantgate_uplink_acked_records_total");
    moved("plantgate_spool_commit_duration_seconds_count");
    moved("plantgate_uplink_puback_duration_seconds_count");
    assert_eq!(
        m(
            &after,
            r#"plantgate_poll_errors_total{device="gas-1",kind="timeout"}"#
        ),
        0.0
    );
    assert_eq!(m(&before, "plantgate_uplink_connected"), 0.0);
    assert_eq!(
        m(&after, r#"plantgate_poll_device_up{device="gas-9"}"#),
        0.0
    );
    assert_eq!(
        m(&after, r#"plantgate_poll_device_up{device="gas-1"}"#),
        1.0
    );
    assert!(
        m(
            &after,
            r#"plantgate_poll_alarm_events_total{level="normal"}"#
        ) >= 17.0
    );
    assert!(m(&after, "plantgate_uplink_certificate_expiry_seconds") > 86_400.0);
    assert!(m(&after, r#"plantgate_poll_bus_utilisation_ratio{bus="tcp"}"#) > 0.0);
    assert!(
        m(
            &after,
            r#"plantgate_poll_device_latency_seconds{device="gas-1"}"#
        ) > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_probes_and_headers_show_state_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let (sim, c) = simulators(1).await;
    c[0].set_concentration(4, 450);
    let mut text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(broker, ""),
    );
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let mut gw = Gateway::start(&text).await;
    let addr = gw.web_addr.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, _, body) = http_get(addr, "/api/status").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["uplink"]["connected"] == true
            && v["active_alarms"].as_array().is_some_and(|a| !a.is_empty())
        {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connected uplink and alarm: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["gateway"]["id"], "gw-test");
    assert_eq!(status["active_alarms"][0]["point"], "ch04.status");
    assert_eq!(
        status["active_alarms"][0]["level"],
        AlarmLevel::High.as_str()
    );
    let dev = &status["buses"][0]["devices"][0];
    assert_eq!(dev["health"], "ok");
    let gas = dev["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ch04.gas")
        .unwrap();
    assert_eq!(
        (
            gas["value"].as_f64(),
            gas["unit"].as_str(),
            gas["quality"].as_str()
        ),
        (Some(45.0), Some("%LEL"), Some("good"))
    );
    assert!(status["uplink"]["cert_days_left"].as_i64().unwrap() > 30);

    for (path, code) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/", 200),
        ("/app.js", 200),
        ("/i18n.js", 200),
        ("/spark.js", 200),
        ("/style.css", 200),
        ("/nothing", 404),
    ] {
        let (c, head, _) = http_get(addr, path).await;
        assert_eq!(c, code, "{path}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
    }
    // The page has no inline script or style for the policy to forbid.
    let (_, _, page) = http_get(addr, "/").await;
    assert!(page.contains("<script src=\"/app.js\""));
    assert!(!page.contains("<script>") && !page.contains("style=") && !page.contains("onclick"));

    // Nothing of the private key appears anywhere.
    let key = std::fs::read_to_string(&pki.gateway.key_file).unwrap();
    let secret = key.lines().nth(1).unwrap();
    for path in ["/api/status", "/metrics", "/"] {
        let (_, _, body) = http_get(addr, path).await;
        assert!(
            !body.contains(secret) && !body.contains("PRIVATE KEY"),
            "{path} leaks key material"
        );
    }
    gw.shutdown().await;
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The `etag` header of a response head (lower-cased by `http_get`).
fn etag(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no etag in {head}"))
        .trim()
        .to_string()
}

/// GETs `path` with `If-None-Match` until the server answers 304 (a change may land between
/// two requests, then the new tag is tried); panics after 15 s.
async fn until_not_modified(addr: std::net::SocketAddr, path: &str, mut tag: String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, head, _) = http_get_with(addr, path, &format!("If-None-Match: {tag}\r\n")).await;
        if code == 304 {
            assert_eq!(etag(&head), tag);
            return;
        }
        assert_eq!(code, 200, "{path}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered 304"
        );
        tag = etag(&head);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_routes_send_only_what_changed_and_answer_304_when_nothing_did() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(1).await;
    let mut text = gateway_toml(&dir.path().join("data"), sim, 1, 200, "", "").replace(
        "unit = \"%LEL\"\n",
        "unit = \"%LEL\"\nlimits = [ { above = 20.0, level = \"low\" }, { above = 40.0, level = \"high\" } ]\n",
    );
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let mut gw = Gateway::start(&text).await;
    let addr = gw.web_addr.unwrap();
    wait_all_polled(&gw).await;
    c[0].set_concentration(5, 250);
    until(Duration::from_secs(10), "ch05.gas low", || {
        point_level(&gw, "gas-1", "ch05.gas") == Some(AlarmLevel::Low)
    })
    .await;

    // A first load gets everything, the layout once; a page that is current gets no device.
    let (code, _, body) = http_get(addr, "/api/status?since=0").await;
    assert_eq!(code, 200);
    let full = json(&body);
    assert_eq!(full["full"], true);
    assert_eq!(
        full["layouts"][0][4],
        json(
            r#"["ch05.gas", "%LEL", true, [{"above": 20.0, "level": "low"}, {"above": 40.0, "level": "high"}]]"#
        )
    );
    assert_eq!(full["devices"][0]["p"][4], json(r#"[25.0, "good", "low"]"#));
    let v = full["version"].as_str().unwrap().to_string();
    let (_, _, body) = http_get(addr, &format!("/api/status?since={v}")).await;
    let same = json(&body);
    assert_eq!(
        (
            same["full"].as_bool(),
            same["devices"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    // A value that moves sends its device again, and only that.
    c[0].set_concentration(6, 100);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http_get(addr, &format!("/api/status?since={v}")).await;
        let d = json(&body);
        if let Some(dev) = d["devices"].as_array().and_then(|a| a.first()) {
            if dev["p"][5][0] == 10.0 {
                assert_eq!(dev["layout"], serde_json::Value::Null);
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never came: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Trends: the 25 %LEL in the newest bucket; 304 while nothing changed.
    let (code, head, body) = http_get(addr, "/api/trends?device=gas-1").await;
    assert_eq!(code, 200);
    let t = json(&body);
    assert_eq!(t["bucket_ms"], 5000);
    let ch05 = t["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ch05.gas")
        .unwrap();
    assert_eq!(ch05["hi"].as_array().unwrap().last().unwrap(), 25.0);
    assert_eq!(
        ch05["lo"].as_array().unwrap().len(),
        120,
        "the whole 10 minutes"
    );
    until_not_modified(addr, "/api/trends?device=gas-1", etag(&head)).await;
    let newest = ch05["from"].as_i64().unwrap() + 119;
    let (_, _, body) = http_get(addr, &format!("/api/trends?device=gas-1&since={newest}")).await;
    let part = json(&body);
    assert!(
        part["points"][0]["lo"].as_array().unwrap().len() <= 3,
        "only the newest buckets: {part}"
    );
    assert_eq!(http_get(addr, "/api/trends?device=nope").await.0, 404);

    // The alarm log: both transitions with their previous level and value, then 304.
    let (code, head, body) = http_get(addr, "/api/alarms").await;
    assert_eq!(code, 200);
    let log = json(&body);
    assert_eq!(
        (log["full"].as_bool(), log["lagged"].as_u64()),
        (Some(true), Some(0))
    );
    let ev = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["point"] == "ch05.gas")
        .unwrap();
    assert_eq!(
        (
            ev["level"].as_str(),
            ev["prev"].as_str(),
            ev["value"].as_f64()
        ),
        (Some("low"), Some("normal"), Some(25.0))
    );
    assert!(ev["ts_ms"].as_i64().unwrap() > 0 && ev["seq"].as_u64().unwrap() > 0);
    let newest = log["newest"].as_u64().unwrap();
    let (_, _, body) = http_get(addr, &format!("/api/alarms?since={newest}")).await;
    assert_eq!(json(&body)["events"].as_array().map(Vec::len), Some(0));
    until_not_modified(addr, "/api/alarms", etag(&head)).await;

    // What was served is counted by route; nothing was missed from the tap.
    let text = scrape(addr).await;
    for route in ["status", "trends", "alarms"] {
        let b = metric(
            &text,
            &format!("plantgate_web_response_bytes_total{{route=\"{route}\"}}"),
        );
        assert!(b.is_some_and(|b| b > 500.0), "{route}: {b:?}");
    }
    assert_eq!(
        metric(&text, "plantgate_web_tap_lagged_batches_total"),
        Some(0.0)
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_broker_mirrors_live_readings_and_alarms() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(1).await;
    let port = free_port();
    let mut text = gateway_toml(&dir.path().join("data"), sim, 1, 200, "", "");
    text.push_str(&format!(
        "[local_broker]\nlisten = \"127.0.0.1:{port}\"\ntopic_prefix = \"plant/a\"\n"
    ));
    let mut gw = Gateway::start(&text).await;

    let mut opts = MqttOptions::new("hmi", "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 16);
    client
        .subscribe("plant/a/#", QoS::AtMostOnce)
        .await
        .unwrap();
    let (mut readings, mut alarms) = (0, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut raised = false;
    while readings < 3
        || !alarms
            .iter()
            .any(|a: &serde_json::Value| a["level"] == "low")
    {
        let ev = tokio::time::timeout_at(deadline, events.poll())
            .await
            .expect("local broker: nothing arrived")
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = ev {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            if p.topic == "plant/a/readings" {
                readings += 1;
                assert_eq!(v["hist"], false);
                assert_eq!(v["readings"].as_array().unwrap().len(), GD16_POINTS);
                if !raised {
                    c[0].set_concentration(7, 250);
                    raised = true;
                }
            } else if p.topic == "plant/a/alarms" {
                alarms.push(v);
            }
        }
    }
    let low = alarms.iter().find(|a| a["level"] == "low").unwrap();
    assert_eq!(
        (low["pt"].as_str(), low["prev"].as_str()),
        (Some("ch07.status"), Some("normal"))
    );
    gw.shutdown().await;
}

/// The metric families README.md lists (its "Metrics are named" paragraph), with the label
/// each names in braces: (family, labels).
fn readme_families() -> Vec<(String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme.find("Metrics are named").unwrap();
    let para = &readme[from..from + readme[from..].find("\n\n").unwrap()];
    let para = &para[para.find("only:").unwrap()..];
    para.split('`')
        .skip(1)
        .step_by(2)
        .map(|f| match f.split_once('{') {
            Some((name, labels)) => (
                name.to_string(),
                labels
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            ),
            None => (f.to_string(), Vec::new()),
        })
        .collect()
}

/// Families in metrics text: `# TYPE` name → type, and each family's samples' label names.
fn families(
    text: &str,
) -> std::collections::BTreeMap<String, (String, std::collections::BTreeSet<String>)> {
    let mut out: std::collections::BTreeMap<String, (String, std::collections::BTreeSet<String>)> =
        std::collections::BTreeMap::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            out.insert(name.to_string(), (kind.to_string(), Default::default()));
        }
    }
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        // the family whose name this sample extends (longest match: _total, _bucket, ...)
        let family = out
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .cloned()
            .unwrap_or_else(|| panic!("a sample of no family: {l}"));
        if let Some((_, mut rest)) = l.split_once('{') {
            // key="value" pairs; a value may hold commas, braces and escaped quotes
            while let Some((key, after)) = rest.split_once("=\"") {
                out.get_mut(&family)
                    .unwrap()
                    .1
                    .insert(key.trim_start_matches(',').to_string());
                let mut end = 0;
                let b = after.as_bytes();
                while b[end] != b'"' {
                    end += if b[end] == b'\\' { 2 } else { 1 };
                }
                rest = &after[end + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// GET `/metrics` with `Accept: accept`: (status, head, body).
async fn scrape_accepting(addr: std::net::SocketAddr, accept: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_lowercase(), body.to_string())
}

/// Every family README.md lists is exported, with the labels it names and no label outside
/// the documented set; nothing is exported that README does not list; and OpenMetrics, when
/// asked for as Prometheus does, carries the same families in its own format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_family_is_exported_with_its_labels_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = rumqttd(&pki);
    let (sim, _c) = simulators(1).await;
    let mut text = gateway_toml(
        &dir.path().join("data"),
        sim,
        1,
        200,
        "",
        &pki.upstream(broker, ""),
    );
    let lan = free_port();
    text.push_str(&format!(
        "[web]\nlisten = \"127.0.0.1:0\"\n[local_broker]\nlisten = \"127.0.0.1:{lan}\"\ntopic_prefix = \"plant/a\"\n"
    ));
    let mut gw = Gateway::start(&text).await;
    let addr = gw.web_addr.unwrap();
    until(Duration::from_secs(30), "acknowledged records", || {
        uplink_acked(&gw) > 0
    })
    .await;
    {
        // one refused LAN client, so the family keyed by `reason` has a series
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", lan))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    }
    scrape_until(addr, "a refused LAN client counted", |t| {
        t.contains("plantgate_local_broker_refused_connections_total{")
    })
    .await;
    let classic = scrape(addr).await;
    let (code, head, om) = scrape_accepting(
        addr,
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    gw.shutdown().await;

    let documented = readme_families();
    assert!(
        documented.len() > 30,
        "README lists too few: {documented:?}"
    );
    let classic_f = families(&classic);
    let om_f = families(&om);
    // classic text names a counter's family with `_total`, OpenMetrics without
    let base = |n: &str| {
        n.trim_start_matches("plantgate_")
            .trim_end_matches("_total")
            .to_string()
    };
    let exported: std::collections::BTreeSet<String> = classic_f.keys().map(|n| base(n)).collect();
    let listed: std::collections::BTreeSet<String> =
        documented.iter().map(|(n, _)| base(n)).collect();
    assert_eq!(
        listed.difference(&exported).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not exported"
    );
    assert_eq!(
        exported.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "exported but not in README"
    );
    // the label set README allows: "with labels `bus`, ... only:"
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme.find("Metrics are named").unwrap();
    let said = &readme[from..from + readme[from..].find("only:").unwrap()];
    let said = &said[said.find("with labels").unwrap()..];
    let allowed: Vec<&str> = said.split('`').skip(1).step_by(2).collect();
    assert!(allowed.contains(&"device"), "{allowed:?}");
    for (name, (kind, labels)) in &classic_f {
        let own: Vec<&String> = labels
            .iter()
            .filter(|l| !allowed.contains(&l.as_str()))
            .filter(|l| !(kind == "histogram" && *l == "le"))
            .filter(|l| !(name == "plantgate_build_info" && *l == "version"))
            .collect();
        assert!(own.is_empty(), "{name} has undocumented labels {own:?}");
    }
    for (name, want) in documented.iter().filter(|(_, l)| !l.is_empty()) {
        let (_, labels) = classic_f
            .iter()
            .find(|(n, _)| base(n) == base(name))
            .map(|(_, v)| v)
            .unwrap();
        for l in want {
            assert!(labels.contains(l), "{name} has no label {l}: {labels:?}");
        }
    }
    // per-device and per-bus families carry their device and bus
    for (name, (_, labels)) in classic_f.iter().filter(|(n, _)| n.contains("_poll_")) {
        assert!(
            labels.contains("device") || labels.contains("bus") || labels.contains("level"),
            "{name}: {labels:?}"
        );
    }

    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    let om_names: std::collections::BTreeSet<String> = om_f.keys().map(|n| base(n)).collect();
    assert_eq!(om_names, exported, "the two formats differ in families");
    for (name, (kind, _)) in om_f.iter().filter(|(_, (k, _))| k == "counter") {
        assert!(
            !name.ends_with("_total"),
            "OpenMetrics family {name} ({kind})"
        );
        assert!(
            om.contains(&format!("\n{name}_total")),
            "{name} has no _total sample"
        );
    }
}
