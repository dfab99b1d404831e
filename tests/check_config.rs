//! `plantgate check-config` as a technician meets it: the real binary on real files.
//! Every file in tests/configs/bad/ must be refused with exit 78 and each message its
//! `# expect:` lines name; the shipped examples in config/ must be accepted.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const EXIT_CONFIG: i32 = 78;

fn check(path: &Path, strict: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plantgate"));
    cmd.arg("check-config").arg("--config").arg(path);
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd.output().expect("run plantgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_broken_config_is_refused_with_its_place_named() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/configs/bad") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect: line",
            path.display()
        );
        let (code, output) = check(&path, false);
        assert_eq!(
            code,
            EXIT_CONFIG,
            "{} was not refused:\n{output}",
            path.display()
        );
        for e in expected {
            assert!(
                output.contains(e),
                "{}: expected {e:?} in:\n{output}",
                path.display()
            );
        }
        // No message may name an internal type (serde's "struct BusFile", "untagged enum ...").
        for internal in ["struct ", "enum ", "File`", " u64", " i64"] {
            assert!(
                !output.contains(internal),
                "{}: {internal:?} in:\n{output}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} broken configs were checked");
}

#[test]
fn shipped_examples_are_accepted() {
    for name in [
        "plantgate.example.toml",
        "gd16-rs485.toml",
        "modbus-tcp.toml",
        "tank-farm.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name);
        let (code, output) = check(&path, false);
        assert_eq!(code, 0, "{name}:\n{output}");
        assert!(output.lines().any(|l| l == "OK"), "{name}:\n{output}");
        // The examples name certificates that only exist on an installed gateway.
        let (strict, output) = check(&path, true);
        assert_eq!(
            strict, EXIT_CONFIG,
            "--strict must refuse missing certificates:\n{output}"
        );
        assert!(output.contains("upstream.ca_file"), "{output}");
    }
}

#[test]
fn the_tank_farm_has_its_limits_as_alarm_points() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tank-farm.toml");
    let (code, output) = check(&path, false);
    assert_eq!(code, 0, "{output}");
    // level, temperature and pressure of each tank, and every gas channel, carry limits
    assert!(
        output.contains("device t101 unit 1: 3 points (3 alarm points) in 1 read every 1000 ms"),
        "{output}"
    );
    assert!(
        output.contains("device dike-gas unit 10: 4 points (4 alarm points)"),
        "{output}"
    );
}

#[test]
fn example_summary_shows_the_read_plan() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/plantgate.example.toml");
    let (_, output) = check(&path, false);
    // 16 gas + 16 status registers + 1 discrete input = 33 points in 3 reads
    assert!(
        output.contains(
            "device gas-north unit 1: 33 points (17 alarm points) in 3 reads every 1000 ms"
        ),
        "{output}"
    );
}
