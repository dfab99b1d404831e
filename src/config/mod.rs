//! Configuration: one TOML file → a validated [`Config`] that every component is built from.
//!
//! Owns the file format ([`file`]), the pure validation that reports every error with its place
//! ([`validate`]) and the model below. Must never bind a port, open a device or touch the spool:
//! `plantgate check-config` runs exactly this and nothing else.

mod alarm;
mod ctx;
pub mod file;
mod net;
mod points;
pub mod read;
mod topic;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::record::wire::Format;
use crate::record::AlarmLevel;

pub use alarm::{AlarmMap, Bound, Limit, Limits};
pub use validate::validate;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: Gateway,
    pub buses: Vec<Bus>,
    pub devices: Vec<Device>,
    pub spool: SpoolSettings,
    pub upstream: Option<Upstream>,
    pub web: Option<Web>,
    pub local_broker: Option<LocalBroker>,
    /// Where the configuration came from and its SHA-256, for the status page and upstream.
    pub source: Source,
    /// What works but may surprise (e.g. a client id a strict broker may refuse), each at its
    /// key's line; `check-config` prints them.
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub id: Arc<str>,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Bus {
    pub name: Arc<str>,
    pub link: Link,
    /// Longest wait for a reply to one request.
    pub timeout: Duration,
    /// Extra silence after each reply, for slow slaves.
    pub turnaround: Duration,
    /// Unused registers a merged read may span between two points.
    pub max_gap: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Rtu(Rtu),
    Tcp { address: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rtu {
    pub port: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Kernel RS-485 mode, for adapters that need the driver to switch direction.
    pub rs485: Option<Rs485>,
}

/// Kernel RS-485 mode of a serial port: the UART drives RTS as the transceiver's direction line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485 {
    /// RTS is active while sending (`false`: while receiving).
    pub rts_on_send: bool,
    /// Wait after raising RTS before the first bit.
    pub delay_before_send_ms: u32,
    /// Wait after the last bit before dropping RTS.
    pub delay_after_send_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: Arc<str>,
    /// Index into [`Config::buses`].
    pub bus: usize,
    pub unit: u8,
    pub poll: Duration,
    /// How often the alarm points are read: `poll` unless `alarm_poll_ms` makes it faster.
    pub alarm_poll: Duration,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: Arc<str>,
    pub table: Table,
    pub address: u16,
    pub kind: Kind,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub alarm: Option<AlarmMap>,
}

impl Point {
    /// Registers (or bits) the point occupies.
    pub fn width(&self) -> u16 {
        self.kind.width()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Coil,
    Discrete,
    Holding,
    Input,
}

impl Table {
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl Kind {
    pub fn width(self) -> u16 {
        match self {
            Kind::Bool | Kind::U16 | Kind::I16 => 1,
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
        }
    }
}

/// Order of the two registers of a 32-bit value: `Big` = high word first (Modbus convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    Big,
    Little,
}

#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Longest time a polled record waits before it is made durable (group commit).
    pub sync: Duration,
    /// Disk the spool may use before the oldest readings are evicted.
    pub max_bytes: u64,
    /// Page cache of the store, bounded for small boards.
    pub cache_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port`, tried in order.
    pub brokers: Vec<BrokerAddr>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub topic_prefix: String,
    pub client_id: String,
    pub keep_alive: Duration,
    /// How long a connected session with records waiting may go without a PUBACK before the
    /// watchdog is starved (systemd then restarts the service).
    pub ack_stall: Duration,
    pub format: Format,
    /// Most readings in one published message.
    pub batch_max: usize,
    /// Most messages awaiting PUBACK at once.
    pub inflight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct Web {
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LocalBroker {
    pub listen: std::net::SocketAddr,
    pub topic_prefix: String,
    /// The login every local client must give, if any. A secret: never logged or shown.
    pub login: Option<Login>,
}

/// A username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log or a panic message.
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// One problem in a configuration file, with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    /// Dotted path of the key, e.g. `device[2].point[5].address`.
    pub path: String,
    pub message: String,
}

/// A configuration that cannot be used: every problem found, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&path.display().to_string());
        if let Some(l) = p.line {
            out.push_str(&format!(":{l}"));
        }
        out.push_str(&format!(": {}: {}", p.path, p.message));
    }
    out
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = read::read_regular(path, read::CONFIG_MAX).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
        })?;
        Self::from_str(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: file::File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: file::plain_words(e.to_string().trim_end()),
        })?;
        let source = Source {
            path: path.to_owned(),
            sha256: sha256_hex(text.as_bytes()),
        };
        validate(&file, text, source).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// The bus a device is on.
    pub fn bus_of(&self, device: &Device) -> &Bus {
        &self.buses[device.bus]
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
