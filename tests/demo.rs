//! `plantgate demo` as a first-time user runs it: the real binary, nothing configured.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_shows_readings_an_alarm_and_what_the_platform_received() {
    // 20 s: the simulated tank fills past its 9.0 m limit about 12 s after the start.
    let out = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(["demo", "--for", "20"])
        .output()
        .expect("run plantgate demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // decoded readings: a line per device poll with 16 channel values in %LEL
    assert!(
        text.lines()
            .any(|l| l.contains("gas-1") && l.ends_with("%LEL")),
        "{text}"
    );
    // the simulated leak crosses the low threshold within the run
    assert!(
        text.contains("ALARM gas-1 ch") && text.contains("normal → low"),
        "{text}"
    );
    // the tank's level: the early warning of its fast rise, then the limit it crosses, with
    // the value that raised each (the gateway evaluates them; the gauge raises nothing)
    let warned = text
        .lines()
        .position(|l| l.contains("WARN  tank-1 t101.level rise: normal → warning at "))
        .unwrap_or_else(|| panic!("no rise warning:\n{text}"));
    let hi = text
        .lines()
        .position(|l| l.contains("ALARM tank-1 t101.level normal → hi at 9."))
        .unwrap_or_else(|| panic!("no hi alarm:\n{text}"));
    assert!(warned < hi, "the warning comes before the limit:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("tank-1 level ") && l.ends_with(" kPa")),
        "{text}"
    );
    // and the platform side received readings
    let summary = text
        .lines()
        .find(|l| l.starts_with("the platform received"))
        .unwrap_or_else(|| panic!("{text}"));
    let n: u64 = summary
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 200, "{summary}");
    // none twice, and every number from the first to the last received: nothing to chase
    assert!(summary.contains(": 0 duplicates, 0 missing,"), "{summary}");
}
