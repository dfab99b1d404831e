//! The status page in a real browser (Debian's headless Chromium), as a technician sees it.
//! Screenshots are saved to target/test-artifacts/.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const POLL_MS: u64 = 500;

/// Runs headless Chromium on `url` with the browser language `lang`; returns (DOM, stderr).
fn chromium(url: &str, lang: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=2500",
            &format!("--lang={lang}"),
            &format!("--accept-lang={lang}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(extra)
        .arg(url)
        .env("LANGUAGE", lang)
        .output()
        .expect("chromium is needed (apt-get install chromium)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dom(url: &str, lang: &str) -> String {
    let (dom, stderr) = chromium(url, lang, &["--dump-dom"]);
    // Console errors and CSP violations show up in Chromium's log.
    for bad in [
        "Uncaught",
        "Refused to",
        "Content Security Policy",
        "Failed to load resource",
    ] {
        assert!(!stderr.contains(bad), "browser console: {bad}\n{stderr}");
    }
    dom
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_devices_and_a_new_alarm_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, c) = simulators(2).await;
    let mut text = gateway_toml(&dir.path().join("data"), sim, 2, POLL_MS, "", "");
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    let mut gw = Gateway::start(&text).await;
    let url = format!("http://{}/", gw.web_addr.unwrap());
    wait_all_polled(&gw).await;

    // English for an English browser; every device and point is there; no alarm.
    let u = url.clone();
    let page = tokio::task::spawn_blocking(move || dom(&u, "en-US"))
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
    ] {
        assert!(page.contains(needle), "{needle} missing from the page");
    }

    // A leak on gas-2 channel 3: on the page within two poll intervals.
    c[1].set_concentration(3, 450);
    let raised = Instant::now();
    tokio::time::sleep(Duration::from_millis(2 * POLL_MS) - Duration::from_millis(100)).await;
    let u = url.clone();
    let page = tokio::task::spawn_blocking(move || dom(&u, "en-US"))
        .await
        .unwrap();
    assert!(
        raised.elapsed() < Duration::from_millis(2 * POLL_MS) + Duration::from_secs(4),
        "the browser took too long to be a fair check"
    );
    assert!(
        page.contains("class=\"alarms active\""),
        "the alarm box is not raised:\n{page}"
    );
    assert!(
        page.contains("HIGH — gas-2 · ch03.status"),
        "the alarm is not listed"
    );

    // A Chinese browser gets Chinese; ?lang=en switches back, whatever the browser says.
    let u = url.clone();
    let zh = tokio::task::spawn_blocking(move || dom(&u, "zh-CN"))
        .await
        .unwrap();
    assert!(zh.contains("<html lang=\"zh-CN\""));
    for needle in ["当前报警", "高报", "指挥平台连接", "本地缓存", ">English<"] {
        assert!(
            zh.contains(needle),
            "{needle} missing from the Chinese page"
        );
    }
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
