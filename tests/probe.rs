//! `plantgate probe` as the installer runs it: the real binary against the simulator over
//! Modbus TCP and over a pty pair whose simulated units answer only at their own baud rate and
//! parity, and against a port another program holds.
//!
//! The pty simulator models line settings for real: on Linux `tcgetattr` on a pty's master
//! returns the settings its slave was opened with, so each unit answers a request only when
//! the probe's baud and parity are the unit's (a socat pair carries no baud at all).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{crc16, gd16_bus, gd16_devices, simulators};
use plantgate::sim::Controller;

/// What one run of the binary gave.
struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs the binary with `args` and waits for it.
fn plantgate(args: &[String]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `plantgate probe ARGS` (off the runtime: the simulators must keep answering).
async fn probe(args: &[&str]) -> Run {
    let args: Vec<String> = std::iter::once("probe")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    tokio::task::spawn_blocking(move || plantgate(&args))
        .await
        .unwrap()
}

fn check_config(path: &Path) -> Run {
    plantgate(&[
        "check-config".into(),
        "--config".into(),
        path.display().to_string(),
    ])
}

/// The snippet a scan printed, pasted under a `[gateway]` section as an installer would.
fn paste(dir: &Path, snippet: &str) -> PathBuf {
    let path = dir.join("pasted.toml");
    let text = format!(
        "[gateway]\nid = \"gw-probe\"\ndata_dir = \"{}\"\n\n{snippet}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn found_units(doc: &serde_json::Value) -> Vec<u64> {
    doc["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["unit"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_device_is_read_once_with_values_raw_registers_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let (port, units) = simulators(1).await;
    units[0].set_concentration(1, 123); // 12.3 %LEL
    units[0].set_concentration(2, 250); // 25.0 %LEL: low alarm (status 1)
    let data = dir.path().join("data");
    let line = format!("tcp = {{ address = \"127.0.0.1:{port}\" }}");
    // gas-1 answers, gas-5 is not on the bus
    let text = gd16_bus(&data, "tcp", &line, 200) + &gd16_devices("tcp", [1, 5], 1000);
    let config = dir.path().join("plantgate.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let all = probe(&["--config", config]).await;
    assert_eq!(all.code, 1, "a device did not answer: exit 1\n{}", all.out);
    let gas1 = &all.out[..all.out.find("device gas-5").unwrap()];
    let ch01 = gas1.lines().find(|l| l.contains("ch01.gas")).unwrap();
    assert!(
        ch01.contains("12.3 %LEL") && ch01.contains("good") && ch01.contains("007B"),
        "{ch01}"
    );
    let ch02 = gas1.lines().find(|l| l.contains("ch02.status")).unwrap();
    assert!(
        ch02.contains("alarm low") && ch02.contains("0001"),
        "{ch02}"
    );
    assert!(
        gas1.contains("input 0+16") && gas1.contains("answered in "),
        "{gas1}"
    );
    assert!(gas1.contains("raw 007B 00FA 0000"), "{gas1}");
    let gas5 = &all.out[all.out.find("device gas-5").unwrap()..];
    assert!(gas5.contains("no reply within 200ms"), "{gas5}");
    assert!(
        gas5.lines()
            .any(|l| l.contains("ch01.gas") && l.contains("timeout")),
        "{gas5}"
    );
    // as the poller does, a unit that timed out is not asked again at once
    assert!(
        gas5.contains("not sent: an earlier read of this device timed out"),
        "{gas5}"
    );
    assert!(
        all.out.contains("6 reads, 3 answered, 3 failed"),
        "{}",
        all.out
    );
    // nothing spooled: the spool's directory was never even created
    assert!(!data.exists(), "probe touched the spool");

    let one = probe(&["--config", config, "--device", "gas-1", "--json"]).await;
    assert_eq!(one.code, 0, "{}{}", one.out, one.err);
    let doc = json(&one.out);
    assert_eq!(
        (doc["reads"].as_u64(), doc["failed"].as_u64()),
        (Some(3), Some(0))
    );
    let reads = &doc["buses"][0]["devices"][0]["reads"];
    assert_eq!(doc["buses"][0]["devices"].as_array().unwrap().len(), 1);
    let first = reads
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "input" && r["start"] == 0)
        .unwrap();
    assert_eq!(
        (
            first["table"].as_str(),
            first["start"].as_u64(),
            first["count"].as_u64()
        ),
        (Some("input"), Some(0), Some(16))
    );
    assert_eq!(
        (first["raw"][0].as_str(), first["raw"][1].as_str()),
        (Some("007B"), Some("00FA"))
    );
    let p = &first["points"][0];
    assert_eq!(
        (
            p["point"].as_str(),
            p["value"].as_f64(),
            p["quality"].as_str()
        ),
        (Some("ch01.gas"), Some(12.3), Some("good"))
    );
    assert!(first["ms"].as_f64().unwrap() > 0.0);

    // A device that refuses connections: every read says so, none waits out a reconnect backoff.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = dir.path().join("refused.toml");
    let line = format!("tcp = {{ address = \"127.0.0.1:{closed_port}\" }}");
    std::fs::write(
        &refused,
        gd16_bus(&data, "tcp", &line, 200) + &gd16_devices("tcp", [1, 2], 1000),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let down = probe(&["--config", refused.to_str().unwrap()]).await;
    assert_eq!(down.code, 1, "{}{}", down.out, down.err);
    assert!(
        down.out
            .contains(&format!("  cannot open 127.0.0.1:{closed_port}: ")),
        "{}",
        down.out
    );
    assert_eq!(
        down.out.matches("not sent: the line is down").count(),
        6,
        "{}",
        down.out
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[gateway]\nid = \"gw\"\n").unwrap();
    let refused = probe(&["--config", broken.to_str().unwrap()]).await;
    assert_eq!(refused.code, 2, "{}", refused.err);
    assert!(refused.err.contains("data_dir"), "{}", refused.err);

    let unknown = probe(&["--config", config, "--device", "nope"]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.err);
    assert!(
        unknown.err.contains("it has: gas-1, gas-5"),
        "{}",
        unknown.err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_scan_finds_the_units_and_its_snippet_is_a_working_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (port, units) = simulators(3).await;
    units[1].set_concentration(1, 42);
    let target = format!("127.0.0.1:{port}");

    // The default register, holding 0, is not in the GD-16's map: each unit answers with
    // exception 0x02, which still proves it is there.
    let scan = probe(&["--tcp", &target, "--scan", "--units", "1-6"]).await;
    assert_eq!(scan.code, 0, "{}{}", scan.out, scan.err);
    assert!(scan.out.contains("Found 3 units"), "{}", scan.out);
    for u in 1..=3 {
        let line = scan
            .out
            .lines()
            .find(|l| l.starts_with(&format!("  unit   {u} ")))
            .unwrap();
        assert!(
            line.contains("exception 0x02 (illegal data address)"),
            "{line}"
        );
    }
    assert!(!scan.out.contains("unit   4"), "{}", scan.out);
    assert!(
        scan.err.contains("TCP: asked 6 units"),
        "no progress line: {}",
        scan.err
    );

    // With a register the units have, the snippet polls real values.
    let scan = probe(&[
        "--tcp", &target, "--scan", "--units", "1-6", "--read", "input:0", "--json",
    ])
    .await;
    assert_eq!(scan.code, 0, "{}{}", scan.out, scan.err);
    let doc = json(&scan.out);
    assert_eq!(found_units(&doc), [1, 2, 3]);
    assert_eq!(doc["found"][1]["raw"][0].as_str(), Some("002A"));
    let pasted = paste(dir.path(), doc["snippet"].as_str().unwrap());
    let checked = check_config(&pasted);
    assert_eq!(
        checked.code, 0,
        "the snippet does not pass check-config:\n{}{}",
        checked.out, checked.err
    );
    assert!(
        checked.out.contains("device unit-2 unit 2: 1 points"),
        "{}",
        checked.out
    );
    let read = probe(&["--config", pasted.to_str().unwrap()]).await;
    assert_eq!(read.code, 0, "{}{}", read.out, read.err);
    let line = read
        .out
        .lines()
        .find(|l| l.contains("input-0") && l.contains("002A"))
        .unwrap();
    assert!(line.contains(" 42 ") && line.contains("good"), "{line}");

    let none = probe(&["--tcp", &target, "--scan", "--units", "10-12"]).await;
    assert_eq!(none.code, 1, "{}", none.out);
    assert!(none.out.starts_with("No unit answered"), "{}", none.out);
}

/// A simulated RS-485 line on a pty pair: the probe opens `slave`; each unit answers only at
/// its own baud rate and parity, read from the line's settings when a request arrives (at its
/// own baud rate with the opposite parity, it answers garbage).
struct PtyLine {
    slave: PathBuf,
    /// Held open, so the master never reads EIO while the probe has the port closed.
    _slave_fd: OwnedFd,
    /// Well-formed requests that reached the line, answered or not.
    requests: Arc<AtomicUsize>,
    /// Replies sent garbled (a unit's own baud rate, the opposite parity).
    garbage: Arc<AtomicUsize>,
}

type Unit = (u32, char, Arc<Controller>); // baud, parity ('N', 'E' or 'O'), registers

fn pty_line(units: BTreeMap<u8, Unit>) -> PtyLine {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = nix::unistd::ttyname(&pty.slave).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let garbage = Arc::new(AtomicUsize::new(0));
    let garbled = garbage.clone();
    let master = pty.master;
    std::thread::spawn(move || {
        let mut port = File::from(master.try_clone().unwrap());
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            match port.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            // Requests of functions 1-4 are 8 bytes; resynchronise byte by byte on a bad CRC.
            while buf.len() >= 8 {
                if crc16(&buf[..6]) != [buf[6], buf[7]] {
                    buf.remove(0);
                    continue;
                }
                let req: Vec<u8> = buf.drain(..8).collect();
                seen.fetch_add(1, Ordering::SeqCst);
                let line = settings_of(&master);
                let Some((baud, parity, c)) = units.get(&req[0]) else {
                    continue; // absent
                };
                let reply = match (line.0 == *baud, line.1 == *parity) {
                    (true, true) => answer(c, &req),
                    // Even against odd: the unit (not checking parity) reads the request and
                    // answers, and every byte of its reply fails the probe's parity check,
                    // which Linux passes on as a NUL (INPCK without PARMRK or IGNPAR).
                    (true, false) if line.1 != 'N' && *parity != 'N' => {
                        garbled.fetch_add(1, Ordering::SeqCst);
                        vec![0; answer(c, &req).len()]
                    }
                    _ => continue, // deaf at this baud rate, or framing errors on every byte
                };
                port.write_all(&reply).unwrap();
            }
        }
    });
    PtyLine {
        slave,
        _slave_fd: pty.slave,
        requests,
        garbage,
    }
}

/// The baud rate and parity (`N`, `E` or `O`) the slave was opened with. serialport sets the
/// speed through termios2 (`BOTHER`, any rate), which only `TCGETS2` reads back; on a pty's
/// master it reads the slave's settings. A pty clears `PARENB` (the kernel's pty_set_termios
/// forces 8 bits, no parity), so the parity asked for is read from what survives of it:
/// `PARODD`, and `INPCK` (check input parity), which serialport sets for even and odd alike.
#[allow(unsafe_code)]
fn settings_of(master: &OwnedFd) -> (u32, char) {
    use std::os::fd::AsRawFd;
    // SAFETY: termios2 is plain integers, valid when zeroed; TCGETS2 writes exactly one
    // termios2 into `t`, which outlives the call, and `master` is an open descriptor.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TCGETS2, &mut t) };
    assert_eq!(r, 0, "TCGETS2: {}", std::io::Error::last_os_error());
    let parity = match (t.c_iflag & libc::INPCK != 0, t.c_cflag & libc::PARODD != 0) {
        (_, true) => 'O',
        (true, false) => 'E',
        (false, false) => 'N',
    };
    (t.c_ospeed, parity)
}

/// A unit's RTU reply to a read request (functions 2, 3 and 4; exception 0x02 for a register
/// it does not have, 0x01 for another function).
fn answer(c: &Controller, req: &[u8]) -> Vec<u8> {
    let (start, count) = (
        u16::from_be_bytes([req[2], req[3]]),
        u16::from_be_bytes([req[4], req[5]]),
    );
    let regs = c.registers();
    if let 2 = req[1] {
        // discrete inputs: one bit each, least significant first
        let bits: Option<Vec<bool>> = (start..start + count)
            .map(|a| regs.discrete.get(&a).copied())
            .collect();
        let mut f = match bits {
            Some(b) => {
                let mut f = vec![req[0], 2, b.len().div_ceil(8) as u8];
                f.extend(b.chunks(8).map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |acc, (i, &on)| acc | (u8::from(on) << i))
                }));
                f
            }
            None => vec![req[0], 0x82, 2],
        };
        let crc = crc16(&f);
        f.extend(crc);
        return f;
    }
    let table = match req[1] {
        3 => Some(&regs.holding),
        4 => Some(&regs.input),
        _ => None,
    };
    let words: Option<Vec<u16>> =
        table.and_then(|t| (start..start + count).map(|a| t.get(&a).copied()).collect());
    let mut frame = match (table, words) {
        (Some(_), Some(w)) => {
            let mut f = vec![req[0], req[1], (w.len() * 2) as u8];
            f.extend(w.iter().flat_map(|w| w.to_be_bytes()));
            f
        }
        (Some(_), None) => vec![req[0], req[1] | 0x80, 2],
        (None, _) => vec![req[0], req[1] | 0x80, 1],
    };
    let crc = crc16(&frame);
    frame.extend(crc);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baud_auto_finds_a_unit_that_answers_only_at_another_baud_rate_and_parity() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, odd) = (
        Controller::gas16(),
        Controller::gas16(),
        Controller::gas16(),
    );
    a.set_concentration(1, 77);
    odd.set_concentration(1, 99);
    let line = pty_line(BTreeMap::from([
        (1, (9600, 'N', a)),
        (2, (9600, 'N', b)),
        (7, (19_200, 'O', odd)), // the one left at another setting
    ]));
    let port = line.slave.to_str().unwrap();

    // At the default 9600 8N1 only units 1 and 2 answer.
    let scan = [
        "--port",
        port,
        "--scan",
        "--units",
        "1-8",
        "--read",
        "input:0",
        "--timeout-ms",
        // short, as about 180 reads go unanswered, but not so short that a loaded test
        // machine's scheduler can make an answer late
        "80",
    ];
    let plain = probe(&[&scan[..], &["--json"]].concat()).await;
    assert_eq!(plain.code, 0, "{}{}", plain.out, plain.err);
    assert_eq!(found_units(&json(&plain.out)), [1, 2]);

    let auto = probe(&[&scan[..], &["--baud", "auto"]].concat()).await;
    assert_eq!(auto.code, 0, "{}{}", auto.out, auto.err);
    let unit = |u: u8| {
        auto.out
            .lines()
            .find(|l| l.starts_with(&format!("  unit   {u} ")))
            .unwrap_or_else(|| panic!("unit {u} not found:\n{}{}", auto.out, auto.err))
    };
    assert!(
        unit(1).contains("9600 8N1") && unit(1).contains("0x004D (77)"),
        "{}",
        unit(1)
    );
    assert!(unit(2).contains("9600 8N1"), "{}", unit(2));
    assert!(
        unit(7).contains("19200 8O1") && unit(7).contains("0x0063 (99)"),
        "{}",
        unit(7)
    );
    assert!(auto.out.contains("Found 3 units"), "{}", auto.out);
    // every setting was tried, each with a progress line
    assert_eq!(
        auto.err.lines().filter(|l| l.contains(": asked ")).count(),
        24,
        "{}",
        auto.err
    );
    // At its baud rate with the wrong parity, unit 7 answered garbage: never taken for it.
    assert!(
        line.garbage.load(Ordering::SeqCst) >= 1,
        "no garbage was sent"
    );
    let even = auto
        .err
        .lines()
        .find(|l| l.starts_with("19200 8E1: "))
        .unwrap();
    assert!(
        even.contains("asked 6 units") && even.contains("none answered"),
        "{even}"
    );

    // The snippet: a bus at 9600 8N1 with units 1 and 2, unit 7 named in a comment.
    let snippet = &auto.out[auto.out.find("[[bus]]").unwrap()..];
    assert!(
        snippet.contains("baud = 9600, parity = \"none\""),
        "{snippet}"
    );
    assert!(
        snippet.contains("# unit 7 answers only at 19200 8O1"),
        "{snippet}"
    );
    let pasted = paste(dir.path(), snippet);
    let checked = check_config(&pasted);
    assert_eq!(checked.code, 0, "{}{}", checked.out, checked.err);
    assert!(
        checked.out.contains("RTU ") && checked.out.contains(" 9600 8N1"),
        "{}",
        checked.out
    );
    let read = probe(&["--config", pasted.to_str().unwrap(), "--json"]).await;
    assert_eq!(read.code, 0, "{}{}", read.out, read.err);
    let doc = json(&read.out);
    assert_eq!(
        doc["buses"][0]["devices"][0]["reads"][0]["points"][0]["value"].as_i64(),
        Some(77)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_the_service_holds_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let line = pty_line(BTreeMap::from([(1, (9600, 'N', Controller::gas16()))]));
    let port = line.slave.to_str().unwrap();
    // Opened as the service opens its ports (exclusive, locked).
    let held = tokio_serial::new(port, 9600).open().unwrap();

    let scan = probe(&["--port", port, "--scan", "--units", "1-2"]).await;
    assert_eq!(scan.code, 3, "{}{}", scan.out, scan.err);
    let busy = format!("{port} is in use, probably by the plantgate service: stop it with `systemctl stop plantgate` first");
    assert!(scan.err.contains(&busy), "{}", scan.err);
    assert!(
        !scan.err.contains("scanning"),
        "refused only after starting: {}",
        scan.err
    );

    let text = gd16_bus(
        &dir.path().join("data"),
        "rs485",
        &format!("rtu = {{ port = \"{port}\", baud = 9600 }}"),
        100,
    ) + &gd16_devices("rs485", [1], 1000);
    let config = dir.path().join("plantgate.toml");
    std::fs::write(&config, text).unwrap();
    let read = probe(&["--config", config.to_str().unwrap()]).await;
    assert_eq!(read.code, 3, "{}{}", read.out, read.err);
    assert!(read.err.contains(&busy), "{}", read.err);
    assert_eq!(
        line.requests.load(Ordering::SeqCst),
        0,
        "a request reached the held line"
    );

    // Once the service lets go, the same probe reads.
    drop(held);
    let read = probe(&["--config", config.to_str().unwrap()]).await;
    assert_eq!(read.code, 0, "{}{}", read.out, read.err);
    assert!(line.requests.load(Ordering::SeqCst) >= 3);
}
