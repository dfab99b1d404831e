//! plantgate: an edge gateway that polls gas-detection and fire alarm controllers over Modbus,
//! keeps every reading and alarm on local disk, and forwards them over mutual-TLS MQTT.
//!
//! The tree follows the data: [`poll`] → [`record`] → [`spool`] → [`uplink`], with [`config`]
//! and [`metrics`] below them, [`health`], [`status`], [`web`] and [`broker`] reading what the
//! components show, [`sim`] beside them for the demo and tests, and [`app`] wiring them
//! together. See ARCHITECTURE.md for the map and the invariants.

// Test assertions may unwrap; product code may not (clippy::unwrap_used in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The static (musl) builds allocate with mimalloc: musl's malloc is slow (README, "Build for ARM").
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod broker;
pub mod config;
pub mod health;
pub mod metrics;
pub mod poll;
pub mod record;
pub mod sim;
pub mod spool;
pub mod status;
pub mod uplink;
pub mod web;
