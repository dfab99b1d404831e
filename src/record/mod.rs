//! The record model: what a poll produces and what the platform receives.
//!
//! Owns [`Reading`], [`AlarmEvent`], [`Value`], [`Quality`] and [`AlarmLevel`], the compact storage
//! codec the spool keeps on disk ([`codec`]) and the platform's wire format ([`wire`]).
//! Must never do I/O: pure data and pure encoding, so every byte format is unit-tested here.
//!
//! Sequence numbers are assigned by the spool at capture, from blocks it reserved durably in
//! advance, so a number is never handed out twice, even across a crash; a record keeps its
//! number forever. What a crash may lose is announced as a [`Gap`].

pub mod codec;
pub mod decimal;
pub mod wire;

use std::fmt;
use std::sync::Arc;

/// Gateway-unique, monotonic record number, assigned by the spool at capture.
pub type Seq = u64;

/// A decoded point value after type conversion, scale and offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Value {
    /// The value as a number (bools as 0/1), for alarm maps and display.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Why a value is, or is not, trustworthy. Every failed read becomes a quality, never a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Read and decoded.
    Good,
    /// The device did not answer within the bus's `timeout_ms`.
    Timeout,
    /// The device answered with a Modbus exception (the code, e.g. 2 = illegal data address).
    Exception(u8),
    /// A reply arrived but was unusable: CRC or framing error, wrong unit or function.
    BadFrame,
    /// The line itself is down: serial port missing, TCP connection refused or broken.
    Disconnected,
    /// The device is marked offline after repeated failures and is only probed now and then.
    Offline,
    /// The registers were read but hold no number: an f32 NaN or infinity (what many
    /// transmitters send on a sensor fault), or scale and offset that overflow. Value `null`.
    BadValue,
}

impl Quality {
    /// Stable short name used on the wire, in logs and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Timeout => "timeout",
            Quality::Exception(_) => "exception",
            Quality::BadFrame => "bad_frame",
            Quality::Disconnected => "disconnected",
            Quality::Offline => "offline",
            Quality::BadValue => "bad_value",
        }
    }

    /// The Modbus exception code, for [`Quality::Exception`].
    pub fn exception_code(self) -> Option<u8> {
        match self {
            Quality::Exception(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Exception(c) => write!(f, "exception {c:#04x}"),
            q => f.write_str(q.as_str()),
        }
    }
}

/// Alarm level of an alarm point. `Unknown` is only ever a `prev`: the first good read after
/// start-up reports every alarm point's level with `prev = unknown`, so the platform learns the
/// state of alarms that changed while the gateway was down.
///
/// `Low` and `High` are a gas controller's first and second alarm levels (GB 16808, GB/T 50493);
/// `Lo`/`LoLo` and `Hi`/`HiHi` are process limits on a value; `Inhibit` is a channel disabled by
/// the operator (never an active alarm); `Warning` is an early warning, always sent with the
/// [`Warn`] that says which. The discriminants are the storage codec's codes: new levels are
/// appended, never renumbered, so old spools still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmLevel {
    Unknown = 0,
    Normal = 1,
    Low = 2,
    High = 3,
    Fault = 4,
    Hi = 5,
    HiHi = 6,
    Lo = 7,
    LoLo = 8,
    Inhibit = 9,
    Warning = 10,
}

impl AlarmLevel {
    /// Every level, in code order (the index is the code).
    pub const ALL: [AlarmLevel; 11] = [
        AlarmLevel::Unknown,
        AlarmLevel::Normal,
        AlarmLevel::Low,
        AlarmLevel::High,
        AlarmLevel::Fault,
        AlarmLevel::Hi,
        AlarmLevel::HiHi,
        AlarmLevel::Lo,
        AlarmLevel::LoLo,
        AlarmLevel::Inhibit,
        AlarmLevel::Warning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmLevel::Unknown => "unknown",
            AlarmLevel::Normal => "normal",
            AlarmLevel::Low => "low",
            AlarmLevel::High => "high",
            AlarmLevel::Fault => "fault",
            AlarmLevel::Hi => "hi",
            AlarmLevel::HiHi => "hihi",
            AlarmLevel::Lo => "lo",
            AlarmLevel::LoLo => "lolo",
            AlarmLevel::Inhibit => "inhibit",
            AlarmLevel::Warning => "warning",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Stable number used by the storage codec.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }

    /// True for the alarm levels a person must act on. An early warning asks for a look, not
    /// for action, and is not counted; an inhibited channel never is.
    pub fn is_active(self) -> bool {
        self.severity() >= 2
    }

    /// How urgently a person must act, for ordering alarms: the second level of a gas
    /// controller and the outer process limits (`high`, `hihi`, `lolo`: a danger now) above
    /// `fault` (a blind sensor) above the first levels (`low`, `hi`, `lo`) above an early
    /// `warning` (1); 0 for the levels that need nothing (`unknown`, `normal`, `inhibit`).
    pub fn severity(self) -> u8 {
        match self {
            AlarmLevel::Unknown | AlarmLevel::Normal | AlarmLevel::Inhibit => 0,
            AlarmLevel::Warning => 1,
            AlarmLevel::Low | AlarmLevel::Hi | AlarmLevel::Lo => 2,
            AlarmLevel::Fault => 3,
            AlarmLevel::High | AlarmLevel::HiHi | AlarmLevel::LoLo => 4,
        }
    }
}

/// Which early warning an event of level [`AlarmLevel::Warning`] (or its end) is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Warn {
    /// The value climbs faster than the point's `rise_per_min`.
    Rise = 0,
    /// A live channel has not changed by one count for the point's `stuck_after_s`.
    Stuck = 1,
}

impl Warn {
    pub const ALL: [Warn; 2] = [Warn::Rise, Warn::Stuck];

    /// Stable short name used on the wire (`warn`), in logs and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Warn::Rise => "rise",
            Warn::Stuck => "stuck",
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }
}

impl fmt::Display for AlarmLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One point's result from one poll, before it is stored (no sequence number yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub point: Arc<str>,
    /// Capture time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// `None` exactly when `quality` is not [`Quality::Good`].
    pub value: Option<Value>,
    pub quality: Quality,
}

/// An alarm point that changed level, before it is stored. With `warn`, the event is about
/// that early warning of the point, apart from its alarm level: `level` is `warning` when it
/// starts and `normal` when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmChange {
    pub sample: Sample,
    pub level: AlarmLevel,
    pub prev: AlarmLevel,
    pub warn: Option<Warn>,
}

/// Everything one poll of one device produced: the unit the poller hands to the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePoll {
    pub device: Arc<str>,
    pub samples: Vec<Sample>,
    pub alarms: Vec<AlarmChange>,
}

/// A stored reading: a sample with its sequence number and device.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub seq: Seq,
    pub device: Arc<str>,
    pub sample: Sample,
}

/// A stored alarm transition (or early warning, with `warn`; see [`AlarmChange`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub seq: Seq,
    pub device: Arc<str>,
    pub sample: Sample,
    pub level: AlarmLevel,
    pub prev: AlarmLevel,
    pub warn: Option<Warn>,
}

/// Why the gateway announces a range of sequence numbers as a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The process stopped without a clean shutdown (killed, crashed, power cut): readings it
    /// captured in its last `sync_ms` and that the broker had not acknowledged may be lost.
    UncleanStop,
    /// The spool was full: the oldest readings were evicted (alarms never are).
    Evicted,
    /// The spool's file was damaged: what could not be read from it is lost.
    Damaged,
}

impl GapReason {
    pub const ALL: [GapReason; 3] = [
        GapReason::UncleanStop,
        GapReason::Evicted,
        GapReason::Damaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::UncleanStop => "unclean_stop",
            GapReason::Evicted => "evicted",
            GapReason::Damaged => "damaged",
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }
}

/// A range of sequence numbers announced to the platform: no record numbered `from..=to` that
/// has not reached it yet will ever be sent. Stored and sent like an alarm, until acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: Seq,
    pub to: Seq,
    pub reason: GapReason,
    /// When the gateway found it, ms since the Unix epoch.
    pub ts_ms: i64,
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_codes_of_old_spools_are_unchanged_and_names_round_trip() {
        // Codes 0..=4 are what spools written before the limit levels hold.
        let old: Vec<u8> = ["unknown", "normal", "low", "high", "fault"]
            .iter()
            .map(|n| AlarmLevel::parse(n).unwrap().code())
            .collect();
        assert_eq!(old, [0, 1, 2, 3, 4]);
        for (i, l) in AlarmLevel::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(l.code()), i);
            assert_eq!(AlarmLevel::from_code(l.code()), Some(l));
            assert_eq!(AlarmLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(AlarmLevel::from_code(11), None);
        for w in Warn::ALL {
            assert_eq!(Warn::from_code(w.code()), Some(w));
        }
    }

    #[test]
    fn inhibit_and_warnings_are_never_active_and_outer_limits_outrank_fault() {
        use AlarmLevel::*;
        let active: Vec<AlarmLevel> = AlarmLevel::ALL
            .into_iter()
            .filter(|l| l.is_active())
            .collect();
        assert_eq!(active, [Low, High, Fault, Hi, HiHi, Lo, LoLo]);
        assert!(HiHi.severity() > Fault.severity() && Fault.severity() > Hi.severity());
        assert_eq!(High.severity(), LoLo.severity());
        assert!(Warning.severity() > Inhibit.severity() && Warning.severity() < Low.severity());
    }
}
