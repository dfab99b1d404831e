//! The configuration file as written by a person: serde structs that mirror the TOML exactly.
//!
//! Owns key names, defaults that need no judgement, and parse errors in the file's terms.
//! Must never validate meaning: enum-like keys stay strings here so [`super::validate`] can
//! report every bad one at once, with its line.
//! Every key validation can refuse is [`Spanned`], so a problem names the key's own line, not its
//! table's header; a default has the empty span `0..0` (defaults are valid, never reported).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub gateway: Spanned<GatewayFile>,
    #[serde(default)]
    pub bus: Vec<Spanned<BusFile>>,
    #[serde(default)]
    pub profile: Vec<Spanned<ProfileFile>>,
    #[serde(default)]
    pub device: Vec<Spanned<DeviceFile>>,
    pub spool: Option<Spanned<SpoolFile>>,
    pub upstream: Option<Spanned<UpstreamFile>>,
    pub web: Option<Spanned<WebFile>>,
    pub local_broker: Option<Spanned<LocalBrokerFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub id: Spanned<String>,
    pub data_dir: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusFile {
    pub name: Spanned<String>,
    pub rtu: Option<RtuFile>,
    pub tcp: Option<TcpFile>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub turnaround_ms: Option<Spanned<u64>>,
    pub max_gap: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtuFile {
    pub port: Spanned<String>,
    #[serde(default = "default_baud")]
    pub baud: Spanned<u32>,
    #[serde(default = "default_parity")]
    pub parity: Spanned<String>,
    #[serde(default = "default_data_bits")]
    pub data_bits: Spanned<u8>,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: Spanned<u8>,
    /// Kernel RS-485 mode, for adapters that need RTS to switch direction.
    pub rs485: Option<Rs485File>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rs485File {
    #[serde(default = "default_true")]
    pub rts_on_send: bool,
    #[serde(default)]
    pub delay_before_send_ms: u32,
    #[serde(default)]
    pub delay_after_send_ms: u32,
}

fn default_true() -> bool {
    true
}

/// A default value: no key, so no span.
fn default<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}
fn default_baud() -> Spanned<u32> {
    default(9600)
}
fn default_parity() -> Spanned<String> {
    default("none".into())
}
fn default_data_bits() -> Spanned<u8> {
    default(8)
}
fn default_stop_bits() -> Spanned<u8> {
    default(1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    pub address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub point: Vec<Spanned<PointFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    pub name: Spanned<String>,
    pub bus: Spanned<String>,
    pub unit: Spanned<i64>,
    pub poll_ms: Option<Spanned<u64>>,
    /// The alarm points' own, faster cadence (defaults to `poll_ms`).
    pub alarm_poll_ms: Option<Spanned<u64>>,
    pub profile: Option<Spanned<String>>,
    #[serde(default)]
    pub point: Vec<Spanned<PointFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointFile {
    pub name: Spanned<String>,
    pub table: Spanned<String>,
    pub address: Spanned<i64>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub word_order: Option<Spanned<String>>,
    pub scale: Option<Spanned<f64>>,
    pub offset: Option<Spanned<f64>>,
    pub unit: Option<String>,
    pub alarm: Option<Spanned<AlarmFile>>,
    /// Limit alarms on the scaled value, e.g. `[ { above = 9.0, level = "hi" } ]`.
    pub limits: Option<Spanned<Vec<Spanned<LimitFile>>>>,
    pub deadband: Option<Spanned<f64>>,
    pub alarm_delay_ms: Option<Spanned<i64>>,
    pub rise_per_min: Option<Spanned<f64>>,
    pub stuck_after_s: Option<Spanned<i64>>,
    /// Expand this entry into `repeat` points (channels); `{n}` in the name is the channel number.
    pub repeat: Option<Spanned<i64>>,
    /// Registers (or bits) between two repeated points; defaults to the point's width.
    pub stride: Option<Spanned<i64>>,
}

/// One entry of `limits`: `above` or `below` a threshold, and the level it raises.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitFile {
    pub above: Option<Spanned<f64>>,
    pub below: Option<Spanned<f64>>,
    pub level: Spanned<String>,
}

/// `alarm = true` (or `false`), or status codes mapped to level names. Its own deserializer,
/// so a wrong value is explained in the file's terms rather than serde's (an untagged enum
/// would say only "data did not match any variant of untagged enum AlarmFile").
#[derive(Debug, Clone)]
pub enum AlarmFile {
    Bool(bool),
    Codes(BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for AlarmFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Alarm;
        impl<'de> Visitor<'de> for Alarm {
            type Value = AlarmFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(ALARM_EXPECTED)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AlarmFile, E> {
                Ok(AlarmFile::Bool(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AlarmFile, A::Error> {
                let mut codes = BTreeMap::new();
                while let Some((code, level)) = m.next_entry::<String, LevelName>()? {
                    codes.insert(code, level.0);
                }
                Ok(AlarmFile::Codes(codes))
            }
        }
        d.deserialize_any(Alarm)
    }
}

const ALARM_EXPECTED: &str = "true (for a bool point) or status codes mapped to levels, e.g. alarm = { 0 = \"normal\", 1 = \"low\", 2 = \"high\" }";

const LEVEL_EXPECTED: &str = "a level: \"normal\", \"low\", \"high\", \"fault\", \"inhibit\", \"hi\", \"hihi\", \"lo\" or \"lolo\"";

/// A level's name in an alarm map; which names exist is validation's business.
struct LevelName(String);

impl<'de> Deserialize<'de> for LevelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = LevelName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(LEVEL_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LevelName, E> {
                Ok(LevelName(v.to_string()))
            }
        }
        d.deserialize_str(Name)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolFile {
    pub sync_ms: Option<Spanned<u64>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub cache_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub brokers: Spanned<Vec<Spanned<String>>>,
    pub ca_file: Spanned<PathBuf>,
    pub cert_file: Spanned<PathBuf>,
    pub key_file: Spanned<PathBuf>,
    pub topic_prefix: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub keep_alive_s: Option<Spanned<u64>>,
    pub ack_stall_s: Option<Spanned<u64>>,
    pub format: Option<Spanned<String>>,
    pub batch_max: Option<Spanned<u64>>,
    pub inflight: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalBrokerFile {
    pub listen: Spanned<String>,
    pub topic_prefix: Option<Spanned<String>>,
    /// A login every local client must give (both or neither).
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
}

/// A parse error in the file's terms: serde names the Rust types it expected (`u64`,
/// `struct GatewayFile`, `a sequence`); a person wrote TOML numbers, tables and arrays.
pub(super) fn plain_words(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(at) = rest.find("struct ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "struct ".len()..];
        let name_end = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        let mut tail = &after[name_end..];
        // "struct SpoolFile with 3 elements"
        if let Some(t) = tail.strip_prefix(" with ") {
            if let Some(end) = t.find(" elements") {
                tail = &t[end + " elements".len()..];
            }
        }
        out.push_str("a table");
        rest = tail;
    }
    out.push_str(rest);
    [
        ("expected a sequence", "expected an array [...]"),
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number 0..=4294967295"),
        ("expected u16", "expected a whole number 0..=65535"),
        ("expected u8", "expected a whole number 0..=255"),
        ("expected f64", "expected a number"),
    ]
    .iter()
    .fold(out, |s, (from, to)| s.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct One {
        alarm: AlarmFile,
    }

    fn alarm(toml: &str) -> Result<AlarmFile, String> {
        toml::from_str::<One>(toml)
            .map(|o| o.alarm)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn an_alarm_is_a_bool_or_a_map_of_codes_inline_or_as_a_table() {
        assert!(matches!(alarm("alarm = true"), Ok(AlarmFile::Bool(true))));
        assert!(matches!(alarm("alarm = false"), Ok(AlarmFile::Bool(false))));
        let codes = BTreeMap::from([
            ("0".to_string(), "normal".to_string()),
            ("2".into(), "high".into()),
        ]);
        for text in [
            "alarm = { 0 = \"normal\", 2 = \"high\" }",
            "[alarm]\n0 = \"normal\"\n2 = \"high\"\n",
        ] {
            match alarm(text) {
                Ok(AlarmFile::Codes(m)) => assert_eq!(m, codes),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_alarm_value_is_explained_without_serde_internals() {
        assert_eq!(
            alarm("alarm = \"high\"").unwrap_err(),
            format!("invalid type: string \"high\", expected {ALARM_EXPECTED}")
        );
        assert_eq!(
            alarm("alarm = { 1 = 2 }").unwrap_err(),
            format!("invalid type: integer `2`, expected {LEVEL_EXPECTED}")
        );
    }

    #[test]
    fn parse_errors_name_no_rust_type() {
        for (text, said) in [
            ("gateway = 5", "invalid type: integer `5`, expected a table"),
            ("spool = []", "invalid length 0, expected a table"),
            ("bus = 5", "invalid type: integer `5`, expected an array [...]"),
            (
                "[gateway]\nid = \"g\"\ndata_dir = \"/x\"\n[[device]]\nname = \"d\"\nbus = \"b\"\nunit = \"one\"\n",
                "invalid type: string \"one\", expected an integer",
            ),
            (
                "[gateway]\nid = \"g\"\ndata_dir = \"/x\"\n[spool]\nmax_bytes = -5\n",
                "invalid value: integer `-5`, expected a whole number (0 or more)",
            ),
        ] {
            let e = crate::config::Config::from_str(text, std::path::Path::new("t.toml")).unwrap_err().to_string();
            assert!(e.ends_with(said), "{text}: {e}");
            assert!(!e.contains("File") && !e.contains("struct"), "{e}");
        }
    }
}
