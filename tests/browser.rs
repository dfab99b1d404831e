//! The status page in a real browser (Debian's headless Chromium), as a technician sees it.
//! Screenshots are saved to target/test-artifacts/.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use plantgate::record::AlarmLevel;

const POLL_MS: u64 = 500;

/// The alarm log's rows in `page` (the text between its tbody tags).
fn log_rows(page: &str) -> &str {
    let start = page
        .find("id=\"log-rows\">")
        .expect("the page has an alarm log");
    let rest = &page[start..];
    &rest[..rest.find("</tbody>").unwrap()]
}

/// The opening tag of `device`'s card in `page`.
fn card_tag<'a>(page: &'a str, device: &str) -> &'a str {
    let at = page
        .find(&format!("data-device=\"{device}\""))
        .expect("the device has a card");
    let start = page[..at].rfind('<').unwrap();
    &page[start..at + page[at..].find('>').unwrap()]
}

/// Serialises the tests: each runs a gateway and a browser, and the machine is small.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The GD-16 gas channels with limits (low above 20 %LEL, high above 40), so the page draws them.
fn with_gas_limits(toml: &str) -> String {
    toml.replace(
        "unit = \"%LEL\"\n",
        "unit = \"%LEL\"\nlimits = [ { above = 20.0, level = \"low\" }, { above = 40.0, level = \"high\" } ]\n",
    )
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_devices_trends_limits_and_the_alarm_log_in_both_languages() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(2).await;
    let mut text = with_gas_limits(&gateway_toml(
        &dir.path().join("data"),
        sim,
        2,
        POLL_MS,
        "",
        "",
    ));
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let mut gw = Gateway::start(&text).await;
    let url = format!("http://{}/", gw.web_addr.unwrap());
    wait_all_polled(&gw).await;

    // English for an English browser; every device and point is there; no alarm, an empty log.
    let u = url.clone();
    let page = tokio::task::spawn_blocking(move || {
        dom_when(&u, "en-US", "the trends with their limits", |p| {
            p.contains("class=\"limit lim-high\"")
        })
    })
    .await
    .unwrap();
    assert!(page.contains("<html lang=\"en\""), "{page}");
    for needle in [
        "gas-1",
        "gas-2",
        "ch16.gas",
        "%LEL",
        "Command platform link",
        "class=\"alarms none\"",
        "Alarm log",
        "Last 10 min",
    ] {
        assert!(page.contains(needle), "{needle} missing from the page");
    }
    assert!(
        !log_rows(&page).contains("<tr"),
        "a quiet start logs nothing"
    );
    // A sparkline per point of the devices on screen, the gas channels' limits drawn on them.
    let lines = page.matches("<polyline class=\"line\"").count();
    assert!(
        lines >= 2 * 33,
        "{lines} trend lines for 2 × 33 points:\n{page}"
    );
    assert_eq!(page.matches("class=\"limit lim-low\"").count(), 2 * 16);
    assert_eq!(page.matches("class=\"limit lim-high\"").count(), 2 * 16);

    // A leak on gas-2 channel 3: once the gateway has read it, the page shows it at once.
    c[1].set_concentration(3, 450);
    until(
        Duration::from_secs(10),
        "gas-2 ch03 high on the status board",
        || {
            point_level(&gw, "gas-2", "ch03.status") == Some(AlarmLevel::High)
                && point_level(&gw, "gas-2", "ch03.gas") == Some(AlarmLevel::High)
        },
    )
    .await;
    let u = url.clone();
    let page = tokio::task::spawn_blocking(move || dom(&u, "en-US"))
        .await
        .unwrap();
    assert!(
        page.contains("class=\"alarms active\""),
        "the alarm box is not raised:\n{page}"
    );
    assert!(
        page.contains("HIGH — gas-2 · ch03.status"),
        "the alarm is not listed"
    );
    assert!(
        page.contains("HIGH — gas-2 · ch03.gas = 45"),
        "the limit alarm is not listed"
    );
    // The log has the transitions with time, level, previous level and value.
    let log = log_rows(&page);
    for needle in [
        "gas-2 · ch03.status",
        "gas-2 · ch03.gas",
        ">HIGH<",
        ">normal<",
        ">45<",
    ] {
        assert!(
            log.contains(needle),
            "{needle} missing from the alarm log:\n{log}"
        );
    }
    assert!(log.matches(':').count() >= 4, "no times in the log:\n{log}");
    // Alarms on top: gas-2 comes first now.
    assert!(
        page.find("data-device=\"gas-2\"").unwrap() < page.find("data-device=\"gas-1\"").unwrap()
    );

    // Filters (here from the address, as a bookmark would set them): devices in alarm only,
    // then one point name on every device.
    let u = format!("{url}?state=alarm");
    let page = tokio::task::spawn_blocking(move || dom(&u, "en-US"))
        .await
        .unwrap();
    assert!(
        card_tag(&page, "gas-1").contains("hidden"),
        "gas-1 is not in alarm"
    );
    assert!(!card_tag(&page, "gas-2").contains("hidden"));
    assert!(page.contains(">1 / 2 devices shown<"), "{page}");
    let u = format!("{url}?point=ch03.st");
    let page = tokio::task::spawn_blocking(move || dom(&u, "en-US"))
        .await
        .unwrap();
    assert_eq!(page.matches("data-point=\"ch03.status\"").count(), 2);
    assert!(
        !page.contains("data-point=\"ch03.gas\""),
        "a point the search does not match"
    );

    // A Chinese browser gets Chinese; ?lang=en switches back, whatever the browser says.
    let u = url.clone();
    let zh = tokio::task::spawn_blocking(move || {
        dom_when(&u, "zh-CN", "the trends with their limits", |p| {
            p.contains("class=\"limit lim-high\"")
        })
    })
    .await
    .unwrap();
    assert!(zh.contains("<html lang=\"zh-CN\""));
    for needle in [
        "当前报警",
        "高报",
        "指挥平台连接",
        "本地缓存",
        ">English<",
        "报警记录",
        "近10分钟",
    ] {
        assert!(
            zh.contains(needle),
            "{needle} missing from the Chinese page"
        );
    }
    let log = log_rows(&zh);
    assert!(
        log.contains(">高报<") && log.contains(">正常<"),
        "the log is not in Chinese:\n{log}"
    );
    assert!(
        zh.contains("<title>高报 &gt; 40</title>"),
        "the limits are not named in Chinese"
    );
    let u = format!("{url}?lang=en");
    let en = tokio::task::spawn_blocking(move || dom(&u, "zh-CN"))
        .await
        .unwrap();
    assert!(
        en.contains("Active alarms") && !en.contains("当前报警"),
        "the language switch did not apply"
    );

    // Screenshots for people: a laptop in English, a phone in Chinese.
    let out = artifacts();
    for (file, lang, size) in [
        ("status-page-en.png", "en-US", "1280,1500"),
        ("status-page-zh-phone.png", "zh-CN", "420,1400"),
    ] {
        let path = out.join(file);
        let _ = std::fs::remove_file(&path);
        let (u, p) = (url.clone(), path.clone());
        let arg = format!("--screenshot={}", p.display());
        let win = format!("--window-size={size}");
        tokio::task::spawn_blocking(move || chromium(&u, lang, &[&arg, &win]))
            .await
            .unwrap();
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "no screenshot at {}",
            path.display()
        );
    }
    gw.shutdown().await;
}

/// 16 gas channels with limits and mains failure: the 17 points per controller of the issue's
/// plant-scale figure.
const PROFILE17: &str = "[[profile]]\nname = \"gd17\"\n\
    [[profile.point]]\nname = \"ch{nn}.gas\"\ntable = \"input\"\naddress = 0\nrepeat = 16\ntype = \"u16\"\nscale = 0.1\nunit = \"%LEL\"\n\
    limits = [ { above = 20.0, level = \"low\" }, { above = 40.0, level = \"high\" } ]\ndeadband = 1.0\n\
    [[profile.point]]\nname = \"mains_failure\"\ntable = \"discrete\"\naddress = 0\ntype = \"bool\"\nalarm = true\n";

/// `devices` controllers of [`PROFILE17`] on four Modbus TCP connections to one simulator (the
/// unit id picks the controller), polled every second, the page on a free port.
fn plant_toml(data: &Path, sim: u16, devices: usize) -> String {
    let mut s = format!(
        "[gateway]\nid = \"gw-plant\"\ndata_dir = \"{}\"\n",
        data.display()
    );
    for b in 0..4 {
        s += &format!("[[bus]]\nname = \"tcp{b}\"\ntcp = {{ address = \"127.0.0.1:{sim}\" }}\ntimeout_ms = 1000\n");
    }
    s += PROFILE17;
    for d in 1..=devices {
        s += &format!(
            "[[device]]\nname = \"gas-{d}\"\nbus = \"tcp{}\"\nunit = {d}\npoll_ms = 1000\nprofile = \"gd17\"\n",
            d % 4
        );
    }
    s + "[web]\nlisten = \"127.0.0.1:0\"\n"
}

/// Bytes the status server sent for the page (its assets, status, trends and alarm log), and
/// per route, from `web_response_bytes_total`.
async fn page_bytes(addr: std::net::SocketAddr) -> (f64, Vec<(&'static str, f64)>) {
    let (_, _, text) = http_get(addr, "/metrics").await;
    let routes: Vec<_> = ["page", "status", "trends", "alarms"]
        .into_iter()
        .map(|r| {
            let key = format!("plantgate_web_response_bytes_total{{route=\"{r}\"}}");
            (r, metric(&text, &key).unwrap_or(0.0))
        })
        .collect();
    (routes.iter().map(|(_, b)| b).sum(), routes)
}

/// Headless Chromium showing `url` in real time (no virtual time) until terminated; its log,
/// with the page's console, goes to `log`.
fn live_browser(url: &str, profile: &Path, log: &Path) -> Proc {
    let child = Command::new("chromium")
        .args(HEADLESS)
        .args([
            "--remote-debugging-port=0",
            "--window-size=1280,1000",
            "--lang=en-US",
            &format!("--user-data-dir={}", profile.display()),
            url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("chromium is needed (apt-get install chromium)");
    Proc(child)
}

/// At plant scale (200 controllers × 17 points) the open page costs under 20 KB/s and shows
/// its first view (the time it took is printed); the old design fetched the full status
/// (hundreds of KB) every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_stays_light_with_200_controllers() {
    const DEVICES: usize = 200;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(DEVICES as u8).await;
    let mut gw = Gateway::start(&plant_toml(&dir.path().join("data"), sim, DEVICES)).await;
    let addr = gw.web_addr.unwrap();
    until(
        Duration::from_secs(30),
        "a poll of each of the 200 devices",
        || all_devices_polled(&gw),
    )
    .await;
    let (_, _, full) = http_get(addr, "/api/status").await;
    let full_kb = full.len() as f64 / 1000.0;
    let (_, _, first) = http_get(addr, "/api/status?since=0").await;
    let first_kb = first.len() as f64 / 1000.0;

    let log = dir.path().join("chromium.log");
    let mut browser = live_browser(
        &format!("http://{addr}/"),
        &dir.path().join("profile"),
        &log,
    );
    let started = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("plantgate page: first render"))
        {
            break l.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the page never rendered:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first_render_ms: f64 = line
        .split("first render ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line}"));

    // Values move on a few controllers every second, some across a limit, as in a plant.
    let changer = tokio::spawn(async move {
        for k in 1u16.. {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for d in [k, k * 7, k * 13] {
                c[usize::from(d) % DEVICES].set_concentration(1 + k % 16, k * 37 % 300);
            }
        }
    });
    // Past the first load and the first trends of the devices on screen, a steady window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b1, r1) = page_bytes(addr).await;
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (b2, r2) = page_bytes(addr).await;
    let secs = t1.elapsed().as_secs_f64();
    changer.abort();
    browser.terminate();
    assert_clean_console(&std::fs::read_to_string(&log).unwrap());

    // A screenshot for people: what a technician sees of 200 controllers.
    let shot = artifacts().join("status-page-200.png");
    let _ = std::fs::remove_file(&shot);
    let (u, arg) = (
        format!("http://{addr}/"),
        format!("--screenshot={}", shot.display()),
    );
    tokio::task::spawn_blocking(move || chromium(&u, "en-US", &[&arg, "--window-size=1400,1000"]))
        .await
        .unwrap();
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot"
    );

    let rate = (b2 - b1) / secs;
    let per_route: Vec<String> = r1
        .iter()
        .zip(&r2)
        .map(|((r, a), (_, b))| format!("{r} {:.0} B/s", (b - a) / secs))
        .collect();
    println!(
        "200 controllers × 17 points: full /api/status {full_kb:.0} kB, the page's first load {first_kb:.0} kB; page {:.1} kB/s ({}); first render {first_render_ms:.0} ms ({line})",
        rate / 1000.0,
        per_route.join(", ")
    );
    let status_bytes = r2[1].1 - r1[1].1;
    assert!(
        status_bytes > 8.0 * 1000.0,
        "the page stopped following the status ({status_bytes} bytes in {secs:.1} s)"
    );
    assert!(
        full_kb > 20.0,
        "the full status is {full_kb} kB: the old design would pass too"
    );
    assert!(
        rate < 20_000.0,
        "the page costs {rate:.0} B/s ({})",
        per_route.join(", ")
    );
    // The first render is a figure, printed above (README quotes it), not a pass mark: a timed
    // check failed a sound page once at 5.5 s in a full test run. This test asks that the page
    // renders at all (within 60 s, above) and what it costs once open.
    gw.shutdown().await;
}
