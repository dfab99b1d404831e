//! The configuration file as written by a person: serde structs that mirror the TOML exactly.
//!
//! Owns key names and defaults that need no judgement. Must never validate meaning: enum-like
//! keys stay strings here so [`super::validate`] can report every bad one at once, with its line.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    pub id: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusFile {
    pub name: String,
    pub rtu: Option<RtuFile>,
    pub tcp: Option<TcpFile>,
    pub timeout_ms: Option<u64>,
    pub turnaround_ms: Option<u64>,
    pub max_gap: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtuFile {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_parity")]
    pub parity: String,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
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

fn default_baud() -> u32 {
    9600
}
fn default_parity() -> String {
    "none".into()
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: String,
    #[serde(default)]
    pub point: Vec<Spanned<PointFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    pub name: String,
    pub bus: String,
    pub unit: i64,
    pub poll_ms: Option<u64>,
    pub profile: Option<String>,
    #[serde(default)]
    pub point: Vec<Spanned<PointFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointFile {
    pub name: String,
    pub table: String,
    pub address: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub word_order: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub unit: Option<String>,
    pub alarm: Option<AlarmFile>,
    /// Expand this entry into `repeat` points (channels); `{n}` in the name is the channel number.
    pub repeat: Option<i64>,
    /// Registers (or bits) between two repeated points; defaults to the point's width.
    pub stride: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AlarmFile {
    Bool(bool),
    Codes(BTreeMap<String, String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolFile {
    pub sync_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    pub cache_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub brokers: Vec<String>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub topic_prefix: Option<String>,
    pub client_id: Option<String>,
    pub keep_alive_s: Option<u64>,
    pub format: Option<String>,
    pub batch_max: Option<u64>,
    pub inflight: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalBrokerFile {
    pub listen: String,
    pub topic_prefix: Option<String>,
}
