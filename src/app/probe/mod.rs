//! `plantgate probe`: the installer's look into a bus before the configuration is right.
//!
//! Two modes. With `--config`, every configured point of the chosen devices is read once, now,
//! and shown decoded, with its quality, the raw registers and each request's time ([`read`]).
//! With `--port`/`--tcp` and `--scan`, unit ids (and with `--baud auto` baud and parity) are
//! searched by reading one register, and a `[[bus]]`/`[[device]]` snippet is printed for what
//! answered ([`scan`]). Output is for a technician, or JSON with `--json` ([`print`]).
//!
//! Owns the command's arguments, its exit codes and the refusal of a port the service holds.
//! Must never touch the spool or the uplink, never write a register, and never speak Modbus
//! itself: every request goes through `poll::transport::Line`, opened exactly as the service
//! opens it (exclusively), so a port the service holds is refused rather than shared.

mod print;
mod read;
mod scan;
mod snippet;

use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Parity, Table};

/// Every read answered (`--config`), or at least one unit was found (`--scan`).
pub const EXIT_OK: u8 = 0;
/// Some read failed (timeout, exception, bad frame, line down), or the scan found nothing.
pub const EXIT_FAILED: u8 = 1;
/// Bad usage or a configuration that does not load (clap's own usage errors are 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// A serial port is in use, probably by the plantgate service: nothing was read.
pub const EXIT_BUSY: u8 = 3;

/// `plantgate probe`'s command line.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every read answered (--config) or a unit was found (--scan); \
1 some read failed or nothing was found; 2 bad usage or configuration; 3 the serial port is in use \
(stop the service first: systemctl stop plantgate).

Examples:
  plantgate probe --config /etc/plantgate/plantgate.toml --device gas-tank-farm
  plantgate probe --port /dev/ttyUSB0 --scan --baud auto --units 1-32
  plantgate probe --tcp 192.168.10.50:502 --scan --read input:0 --json"
)]
pub struct ProbeArgs {
    /// Read every configured point of the devices in this configuration file once.
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["port", "tcp"])]
    pub config: Option<PathBuf>,
    /// Only this device (repeat for several; default: every device).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub device: Vec<String>,
    /// Scan this serial port (e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ path).
    #[arg(long, value_name = "PATH", conflicts_with = "tcp")]
    pub port: Option<String>,
    /// Scan this Modbus TCP device or gateway, as host:port.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Find which unit ids answer (with --port or --tcp).
    #[arg(long)]
    pub scan: bool,
    /// Baud rate of the serial port, or `auto` to try the common ones.
    #[arg(long, default_value = "9600", value_name = "BAUD|auto")]
    pub baud: String,
    /// Parity: none, even, odd, or auto (the default with --baud auto, else none).
    #[arg(long, value_name = "PARITY")]
    pub parity: Option<String>,
    /// Unit ids to ask, e.g. 1-32 or 5.
    #[arg(long, default_value = "1-247", value_name = "FROM-TO")]
    pub units: String,
    /// The register the scan reads from each unit: holding:N, input:N, coil:N or discrete:N.
    /// A Modbus exception still proves the unit is there.
    #[arg(long, default_value = "holding:0", value_name = "TABLE:ADDRESS")]
    pub read: String,
    /// Longest wait for one reply (default: the bus's timeout_ms with --config, 100 for a
    /// scan, plus the frame's time on the wire at slow baud rates).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print JSON (one document on stdout) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A failure that ends the command before or instead of a report.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The arguments or the configuration cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A serial port is held by another program (the service locks its ports).
    #[error("{port} is in use, probably by the plantgate service: stop it with `systemctl stop plantgate` first")]
    Busy { port: String },
    /// A line cannot be opened for another reason (missing, no permission, refused).
    #[error("cannot open {line}: {why}")]
    Open { line: String, why: String },
    /// The report cannot be written (a closed pipe, a full disk).
    #[error("cannot write the report: {0}")]
    Output(#[from] io::Error),
}

impl ProbeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ProbeError::Usage(_) => EXIT_USAGE,
            ProbeError::Busy { .. } => EXIT_BUSY,
            ProbeError::Open { .. } | ProbeError::Output(_) => EXIT_FAILED,
        }
    }

    /// The error of opening `line`, in the installer's words.
    fn open(line: String, e: &io::Error) -> ProbeError {
        match e.kind() {
            io::ErrorKind::ResourceBusy => ProbeError::Busy { port: line },
            io::ErrorKind::PermissionDenied => ProbeError::Open {
                line,
                why: format!("{e} (run it with sudo, or as a user in the `dialout` group)"),
            },
            _ => ProbeError::Open {
                line,
                why: e.to_string(),
            },
        }
    }
}

/// Runs `plantgate probe`; the report goes to `out`, progress and problems to `err`. Returns
/// the exit code.
pub async fn run(args: ProbeArgs, out: &mut impl Write, err: &mut impl Write) -> u8 {
    if let Some(ms) = args.timeout_ms.filter(|ms| !(10..=60_000).contains(ms)) {
        let _ = writeln!(err, "plantgate probe: --timeout-ms {ms}: expected 10-60000");
        return EXIT_USAGE;
    }
    let result = match (&args.config, args.scan) {
        (Some(path), false) => read::run(path, &args, out).await,
        (None, false) if args.port.is_some() || args.tcp.is_some() => Err(ProbeError::Usage(
            "--port and --tcp search a line for units: add --scan (to read configured points, use --config FILE)".into(),
        )),
        (Some(_), true) => Err(ProbeError::Usage(
            "--scan searches a port (--port or --tcp), not a configuration".into(),
        )),
        (None, true) => scan::run(&args, out, err).await,
        (None, false) => Err(ProbeError::Usage(
            "say what to probe: --config FILE, or --port PATH --scan, or --tcp HOST:PORT --scan"
                .into(),
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "plantgate probe: {e}");
            e.exit_code()
        }
    }
}

/// `--units`: `5` or `1-32`.
fn parse_units(s: &str, max: u8) -> Result<RangeInclusive<u8>, ProbeError> {
    let bad = || {
        ProbeError::Usage(format!(
            "--units {s:?}: expected a unit id or a range such as 1-32, within 0-{max}"
        ))
    };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u8 = a.trim().parse().map_err(|_| bad())?;
    let b: u8 = b.trim().parse().map_err(|_| bad())?;
    if a > b || b > max {
        return Err(bad());
    }
    Ok(a..=b)
}

/// `--read`: `holding:0`, `input:100`, `coil:3`, `discrete:0`.
fn parse_register(s: &str) -> Result<(Table, u16), ProbeError> {
    let bad = || {
        ProbeError::Usage(format!(
            "--read {s:?}: expected holding:N, input:N, coil:N or discrete:N (N 0-65535)"
        ))
    };
    let (table, address) = s.split_once(':').ok_or_else(bad)?;
    let table = match table.trim() {
        "holding" => Table::Holding,
        "input" => Table::Input,
        "coil" => Table::Coil,
        "discrete" => Table::Discrete,
        _ => return Err(bad()),
    };
    Ok((table, address.trim().parse().map_err(|_| bad())?))
}

/// The baud rates `--baud auto` tries, most common first.
pub const AUTO_BAUDS: [u32; 8] = [9600, 19_200, 38_400, 115_200, 57_600, 4800, 2400, 1200];
/// The parities `--parity auto` tries (8 data bits, 1 stop bit each).
pub const AUTO_PARITIES: [Parity; 3] = [Parity::None, Parity::Even, Parity::Odd];

/// `--baud` and `--parity` → the serial settings to try, in order.
fn parse_settings(baud: &str, parity: Option<&str>) -> Result<Vec<(u32, Parity)>, ProbeError> {
    let bauds: Vec<u32> = match baud.trim() {
        "auto" => AUTO_BAUDS.to_vec(),
        b => match b.parse::<u32>() {
            Ok(b) if (300..=921_600).contains(&b) => vec![b],
            _ => {
                return Err(ProbeError::Usage(format!(
                    "--baud {baud:?}: expected a baud rate (300-921600) or auto"
                )))
            }
        },
    };
    let parity = parity.unwrap_or(if baud.trim() == "auto" {
        "auto"
    } else {
        "none"
    });
    let parities: Vec<Parity> = match parity.trim() {
        "auto" => AUTO_PARITIES.to_vec(),
        "none" => vec![Parity::None],
        "even" => vec![Parity::Even],
        "odd" => vec![Parity::Odd],
        _ => {
            return Err(ProbeError::Usage(format!(
                "--parity {parity:?}: expected none, even, odd or auto"
            )))
        }
    };
    Ok(bauds
        .iter()
        .flat_map(|&b| parities.iter().map(move |&p| (b, p)))
        .collect())
}

/// `8N1`, `8E1`, `8O1`.
pub fn frame_format(parity: Parity) -> &'static str {
    match parity {
        Parity::None => "8N1",
        Parity::Even => "8E1",
        Parity::Odd => "8O1",
    }
}

/// The file's word for a parity.
pub fn parity_name(parity: Parity) -> &'static str {
    match parity {
        Parity::None => "none",
        Parity::Even => "even",
        Parity::Odd => "odd",
    }
}

/// What a Modbus exception code means, for a technician.
pub fn exception_meaning(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "device failure",
        5 => "acknowledge",
        6 => "device busy",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target failed to respond",
        _ => "unknown exception",
    }
}

/// `timeout` plus the time a request and a reply of `reply_bytes` take on the wire at `baud`
/// (11 bits a character), so a slow line is not mistaken for a silent one.
fn with_wire_time(timeout: Duration, baud: Option<u32>, reply_bytes: u32) -> Duration {
    match baud {
        Some(b) => {
            let bits = u64::from(8 + reply_bytes) * 11;
            timeout + Duration::from_micros(bits * 1_000_000 / u64::from(b.max(1)))
        }
        None => timeout,
    }
}

#[cfg(test)]
mod tests;
