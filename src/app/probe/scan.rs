//! `plantgate probe --port|--tcp --scan`: which unit ids answer, and at which baud and parity.
//!
//! Owns the search: for each serial setting to try (one, or every common one with `auto`), a
//! fresh line opened as the service opens it, then one read of the named register per unit not
//! found yet, with a progress line on stderr. Any reply counts, a Modbus exception included
//! (the unit is there; the register is not), except a TCP gateway's own "target failed to
//! respond" exceptions. Must never write, and never ask a unit twice at one setting.

use std::io::{IsTerminal, Write};
use std::ops::RangeInclusive;
use std::time::Duration;

use tokio::time::Instant;

use super::{ProbeArgs, ProbeError, EXIT_FAILED, EXIT_OK};
use crate::config::{Bus, Link, Parity, Rtu, Table};
use crate::poll::transport::{Line, ReadError, Reply};

/// The default wait for a reply while scanning (plus the frame's wire time).
const SCAN_TIMEOUT: Duration = Duration::from_millis(100);

/// What the scan asked and found.
pub struct ScanReport {
    /// The port path or `host:port`.
    pub target: String,
    /// A serial port (else Modbus TCP).
    pub serial: bool,
    pub table: Table,
    pub address: u16,
    pub units: (u8, u8),
    pub timeout: Duration,
    pub tried: Vec<Tried>,
    pub found: Vec<Found>,
}

/// One setting tried, and how it went.
pub struct Tried {
    /// `None` on TCP.
    pub setting: Option<(u32, Parity)>,
    pub asked: usize,
    /// Replies that came but did not fit the request (another unit's frame, a bad frame the
    /// client reports): a late reply, or a wrong parity. (Noise alone the RTU client skips.)
    pub garbled: usize,
    pub elapsed: Duration,
}

/// A unit that answered.
pub struct Found {
    pub unit: u8,
    pub setting: Option<(u32, Parity)>,
    pub elapsed: Duration,
    /// The register's value, or the exception the unit answered with.
    pub answer: Result<Reply, u8>,
}

/// Runs the scan and prints the report on `out` (progress on `err`).
pub async fn run(
    args: &ProbeArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u8, ProbeError> {
    let (table, address) = super::parse_register(&args.read)?;
    let timeout = args.timeout_ms.map_or(SCAN_TIMEOUT, Duration::from_millis);
    let (target, serial, settings, units) = what_to_scan(args)?;
    let mut report = ScanReport {
        target,
        serial,
        table,
        address,
        units: (*units.start(), *units.end()),
        timeout,
        tried: Vec::new(),
        found: Vec::new(),
    };
    // Refuse a port in use before saying anything else.
    let mut first = Some(open_line(&report, settings.first().copied().flatten()).await?);
    let longest: Duration = settings
        .iter()
        .map(|&s| with_wire(timeout, s, table) * units.len() as u32)
        .sum();
    let _ = writeln!(
        err,
        "scanning {} unit{} at {} setting{}, {} {}: about {:.0} s if none answers",
        units.len(),
        if units.len() == 1 { "" } else { "s" },
        settings.len(),
        if settings.len() == 1 { "" } else { "s" },
        table.as_str(),
        address,
        longest.as_secs_f64().ceil()
    );
    let mut progress = Progress::new(err);
    for setting in settings {
        let line = match first.take() {
            Some(line) => line,
            None => open_line(&report, setting).await?,
        };
        let tried = scan_setting(&mut report, line, setting, units.clone(), &mut progress).await?;
        report.tried.push(tried);
    }
    progress.done();
    let printed = if args.json {
        super::print::scan_json(&report, out)
    } else {
        super::print::scan_text(&report, out)
    };
    printed?;
    Ok(if report.found.is_empty() {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// The port or address, whether it is serial, the settings to try and the units to ask.
type Scan = (String, bool, Vec<Option<(u32, Parity)>>, RangeInclusive<u8>);

fn what_to_scan(args: &ProbeArgs) -> Result<Scan, ProbeError> {
    let scan = match (&args.port, &args.tcp) {
        (Some(port), None) => (
            port.clone(),
            true,
            super::parse_settings(&args.baud, args.parity.as_deref())?
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>(),
            super::parse_units(&args.units, 247)?,
        ),
        (None, Some(addr)) => (
            addr.clone(),
            false,
            vec![None],
            super::parse_units(&args.units, 255)?,
        ),
        _ => {
            return Err(ProbeError::Usage(
                "--scan needs --port PATH (serial) or --tcp HOST:PORT".into(),
            ))
        }
    };
    if scan.1 && *scan.3.start() == 0 {
        return Err(ProbeError::Usage(
            "--units: unit 0 is the RTU broadcast address, which never answers; start at 1".into(),
        ));
    }
    Ok(scan)
}

/// Asks every unit not found yet at one setting.
async fn scan_setting(
    report: &mut ScanReport,
    mut line: Line,
    setting: Option<(u32, Parity)>,
    units: RangeInclusive<u8>,
    progress: &mut Progress<'_, impl Write>,
) -> Result<Tried, ProbeError> {
    let started = Instant::now();
    let mut tried = Tried {
        setting,
        asked: 0,
        garbled: 0,
        elapsed: Duration::ZERO,
    };
    let total = units.len();
    for (i, unit) in units.enumerate() {
        if report.found.iter().any(|f| f.unit == unit) {
            continue;
        }
        progress.show(setting, i + 1, total, report.found.len());
        tried.asked += 1;
        let asked = Instant::now();
        let reply = line.read(unit, report.table, report.address, 1).await;
        let answer = match reply {
            Ok(r) => Ok(r),
            // A TCP gateway answering for a unit behind it that did not answer.
            Err(ReadError::Exception(0x0A | 0x0B)) if !report.serial => continue,
            Err(ReadError::Exception(c)) => Err(c),
            Err(ReadError::BadFrame(_)) => {
                tried.garbled += 1;
                continue;
            }
            Err(ReadError::Timeout(_)) => continue,
            Err(ReadError::Disconnected(why)) => {
                return Err(ProbeError::Open {
                    line: line.describe(),
                    why,
                })
            }
        };
        report.found.push(Found {
            unit,
            setting,
            elapsed: asked.elapsed(),
            answer,
        });
    }
    tried.elapsed = started.elapsed();
    progress.finished(&tried, report);
    Ok(tried)
}

/// A line at `setting`, opened as the service opens it (a port in use is refused).
async fn open_line(
    report: &ScanReport,
    setting: Option<(u32, Parity)>,
) -> Result<Line, ProbeError> {
    let link = match setting {
        Some((baud, parity)) => Link::Rtu(Rtu {
            port: report.target.clone(),
            baud,
            parity,
            data_bits: 8,
            stop_bits: 1,
            rs485: None,
        }),
        None => Link::Tcp {
            address: report.target.clone(),
        },
    };
    let bus = Bus {
        name: "probe".into(),
        link,
        timeout: with_wire(report.timeout, setting, report.table),
        turnaround: Duration::ZERO,
        max_gap: 0,
    };
    let mut line = Line::new(&bus);
    line.connect()
        .await
        .map_err(|e| ProbeError::open(line.describe(), &e))?;
    Ok(line)
}

/// The wait for one reply at a setting: the timeout plus the frames' time on the wire.
fn with_wire(timeout: Duration, setting: Option<(u32, Parity)>, table: Table) -> Duration {
    // A one-register reply is 7 bytes, a one-bit reply 6.
    let reply = if table.is_bits() { 6 } else { 7 };
    super::with_wire_time(timeout, setting.map(|(b, _)| b), reply)
}

/// The progress line on stderr: rewritten in place on a terminal, one line per setting when
/// stderr is a file or a pipe (a log, a test).
struct Progress<'w, W: Write> {
    err: &'w mut W,
    tty: bool,
    shown: bool,
}

impl<'w, W: Write> Progress<'w, W> {
    fn new(err: &'w mut W) -> Self {
        Progress {
            err,
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, setting: Option<(u32, Parity)>, i: usize, total: usize, found: usize) {
        if self.tty {
            let _ = write!(
                self.err,
                "\r\x1b[K{}: unit {i} of {total}, {found} found so far",
                setting_name(setting)
            );
            let _ = self.err.flush();
            self.shown = true;
        }
    }

    fn finished(&mut self, tried: &Tried, report: &ScanReport) {
        let here: Vec<String> = report
            .found
            .iter()
            .filter(|f| f.setting == tried.setting)
            .map(|f| f.unit.to_string())
            .collect();
        let found = match here.len() {
            0 => "none answered".to_string(),
            _ => format!("found unit {}", here.join(", ")),
        };
        let garbled = match tried.garbled {
            0 => String::new(),
            1 => ", 1 garbled reply".to_string(),
            n => format!(", {n} garbled replies"),
        };
        let _ = writeln!(
            self.err,
            "{}{}: asked {} units in {:.1} s, {found}{garbled}",
            if self.tty { "\r\x1b[K" } else { "" },
            setting_name(tried.setting),
            tried.asked,
            tried.elapsed.as_secs_f64()
        );
        self.shown = false;
    }

    fn done(&mut self) {
        if self.shown {
            let _ = writeln!(self.err);
        }
    }
}

/// `9600 8N1`, or `TCP`.
pub fn setting_name(setting: Option<(u32, Parity)>) -> String {
    match setting {
        Some((baud, parity)) => format!("{baud} {}", super::frame_format(parity)),
        None => "TCP".into(),
    }
}
