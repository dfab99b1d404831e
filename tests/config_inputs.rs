//! The real binary given what a configuration should not be: a FIFO, a device, a directory or
//! an oversized file as `--config` or as a certificate; certificates out of date; and
//! configurations that only fail when `run` meets the machine (a `data_dir` that is a file, a
//! port already taken). Each must end promptly with exit 78 (EX_CONFIG) and say why; none may
//! hang (every run is bounded by a deadline and killed after it).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXIT_CONFIG: i32 = 78;

/// Runs plantgate with `args`; panics if it has not exited within 20 s.
fn plantgate(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("plantgate {args:?} still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn check(config: &Path, strict: bool) -> (i32, String) {
    let c = config.to_str().unwrap();
    match strict {
        true => plantgate(&["check-config", "--strict", "--config", c]),
        false => plantgate(&["check-config", "--config", c]),
    }
}

fn run(config: &Path) -> (i32, String) {
    plantgate(&["run", "--config", config.to_str().unwrap()])
}

fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
    p
}

fn gateway(data_dir: &Path, more: &str) -> String {
    format!(
        "[gateway]\nid = \"gw-1\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"b\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n\
         [[device]]\nname = \"d\"\nbus = \"b\"\nunit = 1\n\
         [[device.point]]\nname = \"p\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\n{more}",
        data_dir.display()
    )
}

#[test]
fn a_config_that_is_not_a_regular_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(5 << 20)).unwrap();
    let cases = [
        (
            fifo(dir.path()),
            "it is a named pipe (FIFO), not a regular file",
        ),
        (
            PathBuf::from("/dev/zero"),
            "it is a character device, not a regular file",
        ),
        (
            dir.path().to_owned(),
            "it is a directory, not a regular file",
        ),
        (big, "it is over 4096 KiB"),
    ];
    for (path, why) in &cases {
        for (code, out) in [check(path, false), run(path)] {
            assert_eq!(code, EXIT_CONFIG, "{}: {out}", path.display());
            assert!(
                out.contains(&format!("cannot read {}: {why}", path.display())),
                "{out}"
            );
        }
    }
}

#[test]
fn a_certificate_that_is_a_fifo_or_a_device_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let ca = plantgate::app::pki::Ca::new(dir.path(), "ca").unwrap();
    let gw = ca.issue(dir.path(), "gw", &["gw-1"], false).unwrap();
    let fifo = fifo(dir.path());
    for (ca_file, why) in [
        (fifo.as_path(), "a named pipe (FIFO)"),
        (Path::new("/dev/zero"), "a character device"),
    ] {
        let config = dir.path().join("p.toml");
        let upstream = format!(
            "[upstream]\nbrokers = [\"127.0.0.1:8883\"]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            ca_file.display(),
            gw.cert_file.display(),
            gw.key_file.display()
        );
        std::fs::write(&config, gateway(dir.path(), &upstream)).unwrap();
        let (code, out) = check(&config, false);
        assert_eq!(code, EXIT_CONFIG, "{out}");
        assert!(
            out.contains(&format!(
                "cannot read CA certificate {}: it is {why}, not a regular file",
                ca_file.display()
            )),
            "{out}"
        );
        let (code, out) = run(&config);
        assert_eq!(code, EXIT_CONFIG, "{out}");
    }
}

#[test]
fn an_expired_certificate_warns_with_its_date_and_strict_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = plantgate::app::pki::Ca::new(dir.path(), "ca").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let gone = now - time::Duration::days(2);
    let gw = ca
        .issue_valid(
            dir.path(),
            "gw",
            &["gw-1"],
            false,
            (gone - time::Duration::days(30), gone),
        )
        .unwrap();
    let config = dir.path().join("p.toml");
    let upstream = format!(
        "[upstream]\nbrokers = [\"mqtts://127.0.0.1:8883\"]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        ca.cert_file.display(),
        gw.cert_file.display(),
        gw.key_file.display()
    );
    std::fs::write(&config, gateway(dir.path(), &upstream)).unwrap();
    let said = format!(
        "upstream.cert_file: the certificate in {} expired on {} {:02}:{:02} UTC",
        gw.cert_file.display(),
        gone.date(),
        gone.hour(),
        gone.minute()
    );
    let (code, out) = check(&config, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("warning: {said}")), "{out}");
    assert!(out.contains("upstream: 127.0.0.1:8883 as gw-1"), "{out}");
    let (code, out) = check(&config, true);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(out.contains(&said) && !out.contains("warning"), "{out}");
}

#[test]
fn run_exits_78_when_the_data_dir_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "").unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, gateway(&file, "")).unwrap();
    let (code, out) = run(&config);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(
        out.contains("error: gateway.data_dir: cannot use data directory"),
        "{out}"
    );
    // check-config says so first
    let (code, out) = check(&config, false);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(out.contains("exists and is not a directory"), "{out}");
}

#[test]
fn run_exits_78_when_the_status_page_port_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = dir.path().join("p.toml");
    let web = format!("[web]\nlisten = \"{addr}\"\n");
    std::fs::write(&config, gateway(&dir.path().join("data"), &web)).unwrap();
    let (code, out) = run(&config);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(out.contains("error: web.listen: "), "{out}");
    drop(taken);
}

#[test]
fn run_exits_78_when_the_page_and_the_local_broker_share_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    let more =
        "[web]\nlisten = \"127.0.0.1:18080\"\n[local_broker]\nlisten = \"127.0.0.1:18080\"\n";
    std::fs::write(&config, gateway(&dir.path().join("data"), more)).unwrap();
    let (code, out) = run(&config);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(
        out.contains("local_broker.listen: 127.0.0.1:18080 overlaps web.listen 127.0.0.1:18080"),
        "{out}"
    );
}

#[test]
fn run_exits_78_when_the_local_broker_port_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = dir.path().join("p.toml");
    let more = format!("[local_broker]\nlisten = \"{addr}\"\n");
    std::fs::write(&config, gateway(&dir.path().join("data"), &more)).unwrap();
    let (code, out) = run(&config);
    assert_eq!(code, EXIT_CONFIG, "{out}");
    assert!(
        out.contains(&format!(
            "error: local_broker.listen: cannot listen for the local MQTT broker on {addr}: "
        )),
        "{out}"
    );
    drop(taken);
}
