//! `plantgate probe --config`: every configured point of the chosen devices, read once, now.
//!
//! Owns choosing the devices, opening every line first (so a busy port refuses the whole run
//! before anything is sent) and one pass over each device's read plan, timed request by
//! request. Must never retry, wait out a backoff, or keep anything: what the installer sees is
//! what one poll would have given.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::{ProbeArgs, ProbeError, EXIT_FAILED, EXIT_OK};
use crate::config::{Config, Device, Link, Point, Table};
use crate::poll::transport::{Line, ReadError, Reply};
use crate::poll::{plan, point_of};
use crate::record::{AlarmLevel, Quality, Value};

/// One bus and what its devices answered.
pub struct BusReport {
    pub name: String,
    /// `RTU /dev/ttyUSB0 9600 8N1` or `TCP 192.168.1.50:502`.
    pub link: String,
    pub timeout: Duration,
    /// Why the line could not be opened, if it could not (then nothing was sent on it).
    pub down: Option<String>,
    pub devices: Vec<DeviceReport>,
}

pub struct DeviceReport {
    pub name: String,
    pub unit: u8,
    pub reads: Vec<ReadReport>,
}

/// One request: what was asked, how long it took, what came back.
pub struct ReadReport {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    pub elapsed: Duration,
    pub reply: Result<Reply, ReadError>,
    /// Why the request was not sent at all, if it was not (its `reply` then says how it
    /// counts: a timeout, or the line down).
    pub not_sent: Option<&'static str>,
    pub points: Vec<PointReport>,
}

/// After a timeout a unit's late reply may still come and be taken for the answer to the next
/// read of the same length: as the poller does, the rest of that device's reads are not sent.
const AFTER_TIMEOUT: &str =
    "an earlier read of this device timed out, and its late reply could pass for this one's";
/// The line could not be opened, or broke: nothing more is sent on it (no reopen backoff).
const LINE_DOWN: &str = "the line is down";

pub struct PointReport {
    pub name: String,
    pub unit: Option<String>,
    pub value: Option<Value>,
    pub quality: Quality,
    /// The level an alarm point's value maps to by itself (no deadband or delay).
    pub level: Option<AlarmLevel>,
    /// The point's own registers (or bit), as read.
    pub raw: Vec<String>,
}

impl BusReport {
    pub fn reads(&self) -> impl Iterator<Item = &ReadReport> {
        self.devices.iter().flat_map(|d| d.reads.iter())
    }
}

/// Reads the devices of `--config` (all, or those named by `--device`) and prints the report.
pub async fn run(path: &Path, args: &ProbeArgs, out: &mut impl Write) -> Result<u8, ProbeError> {
    let config = Config::load(path).map_err(|e| ProbeError::Usage(e.to_string()))?;
    let devices = choose(&config, &args.device)?;
    let timeout = args.timeout_ms.map(Duration::from_millis);
    // Open every line before the first request: a busy port refuses the whole run.
    let mut lines: Vec<(usize, crate::config::Bus, Line, Option<String>)> = Vec::new();
    for (b, bus) in config.buses.iter().enumerate() {
        if !devices.iter().any(|d| d.bus == b) {
            continue;
        }
        let mut bus = bus.clone();
        if let Some(t) = timeout {
            bus.timeout = t;
        }
        let mut line = Line::new(&bus);
        let mut down = None;
        if let Err(e) = line.connect().await {
            // A TCP device that refuses now is a failed read, shown as such; a serial port that
            // cannot be opened (busy, missing, no permission) ends the run.
            if matches!(bus.link, Link::Rtu(_)) {
                return Err(ProbeError::open(line.describe(), &e));
            }
            down = Some(format!("cannot open {}: {e}", line.describe()));
        }
        lines.push((b, bus, line, down));
    }
    let mut reports = Vec::new();
    for (b, bus, mut line, mut down) in lines {
        let mut report = BusReport {
            name: bus.name.to_string(),
            link: crate::app::check::link(&bus.link),
            timeout: bus.timeout,
            down: down.clone(),
            devices: Vec::new(),
        };
        for d in devices.iter().filter(|d| d.bus == b) {
            report
                .devices
                .push(read_device(&mut line, &mut down, d, bus.max_gap).await);
        }
        reports.push(report);
    }
    let printed = if args.json {
        super::print::config_json(path, &reports, out)
    } else {
        super::print::config_text(path, &reports, out)
    };
    printed?;
    let failed = reports
        .iter()
        .flat_map(BusReport::reads)
        .any(|r| r.reply.is_err());
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

/// The devices `--device` names (every device when none is named).
fn choose<'c>(config: &'c Config, names: &[String]) -> Result<Vec<&'c Device>, ProbeError> {
    if names.is_empty() {
        return Ok(config.devices.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config
                .devices
                .iter()
                .find(|d| &*d.name == n)
                .ok_or_else(|| {
                    let known: Vec<&str> = config.devices.iter().map(|d| &*d.name).collect();
                    ProbeError::Usage(format!(
                        "--device {n:?}: no such device in {}; it has: {}",
                        config.source.path.display(),
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// One pass over a device's read plan: every block once, timed. `down` says why the line is
/// down, once it is.
async fn read_device(
    line: &mut Line,
    down: &mut Option<String>,
    d: &Device,
    max_gap: u16,
) -> DeviceReport {
    let mut reads = Vec::new();
    let mut timed_out = false;
    for block in plan::plan(&d.points, max_gap) {
        let started = Instant::now();
        let (reply, not_sent) = match (&down, timed_out) {
            (Some(why), _) => (Err(ReadError::Disconnected(why.clone())), Some(LINE_DOWN)),
            (None, true) => (Err(ReadError::Timeout(line.timeout())), Some(AFTER_TIMEOUT)),
            (None, false) => {
                let r = line
                    .read(d.unit, block.table, block.start, block.count)
                    .await;
                (r, None)
            }
        };
        let elapsed = started.elapsed();
        match &reply {
            Err(ReadError::Timeout(_)) => timed_out = true,
            Err(ReadError::Disconnected(why)) => *down = Some(why.clone()),
            _ => {}
        }
        let points = block
            .points
            .iter()
            .map(|&(i, off)| point_report(&d.points[i], off, &reply))
            .collect();
        reads.push(ReadReport {
            table: block.table,
            start: block.start,
            count: block.count,
            elapsed,
            reply,
            not_sent,
            points,
        });
    }
    DeviceReport {
        name: d.name.to_string(),
        unit: d.unit,
        reads,
    }
}

/// A point of a block's reply, decoded as polling decodes it.
fn point_report(p: &Point, off: u16, reply: &Result<Reply, ReadError>) -> PointReport {
    let (value, quality) = point_of(p, off, reply);
    PointReport {
        name: p.name.to_string(),
        unit: p.unit.clone(),
        value,
        quality,
        level: p.alarm.as_ref().zip(value).map(|(a, v)| a.level(v)),
        raw: raw_of(reply, usize::from(off), usize::from(p.width())),
    }
}

/// `width` registers (hex) or `width` bits (`0`/`1`) at `off` of a reply; empty if it failed.
pub fn raw_of(reply: &Result<Reply, ReadError>, off: usize, width: usize) -> Vec<String> {
    match reply {
        Ok(Reply::Words(w)) => w
            .iter()
            .skip(off)
            .take(width)
            .map(|w| format!("{w:04X}"))
            .collect(),
        Ok(Reply::Bits(b)) => b
            .iter()
            .skip(off)
            .take(width)
            .map(|&b| u8::from(b).to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}
