//! Headless Chromium (Debian's), for tests that look at the status page as a technician does.

use std::process::Command;

/// Headless Chromium without a sandbox, GPU, network chatter or a first-run dialog, logging
/// the page's console to stderr.
pub const HEADLESS: [&str; 10] = [
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
];

/// Runs headless Chromium on `url` with the browser language `lang`; returns (DOM, stderr).
pub fn chromium(url: &str, lang: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args(HEADLESS)
        .args([
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

/// Console errors and CSP violations show up in Chromium's log.
pub fn assert_clean_console(stderr: &str) {
    for bad in [
        "Uncaught",
        "Refused to",
        "Content Security Policy",
        "Failed to load resource",
    ] {
        assert!(!stderr.contains(bad), "browser console: {bad}\n{stderr}");
    }
}

/// The DOM after 2.5 s of (virtual) page time, in a window large enough that the devices are on
/// screen (the page fetches trends only for the devices it shows).
pub fn dom(url: &str, lang: &str) -> String {
    let (dom, stderr) = chromium(url, lang, &["--dump-dom", "--window-size=1280,1600"]);
    assert_clean_console(&stderr);
    dom
}

/// [`dom`] again until `ready` holds of the page, at most five loads. The page draws its trends
/// after a second fetch, per device on screen, and one load in ~40 full test runs was dumped
/// without them.
pub fn dom_when(url: &str, lang: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut page = String::new();
    for _ in 0..5 {
        page = dom(url, lang);
        if ready(&page) {
            return page;
        }
    }
    panic!("{what}: not on the page in five loads:\n{page}");
}
