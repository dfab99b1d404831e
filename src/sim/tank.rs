//! A simulated storage tank's level gauge and transmitters: what the tank-farm demo polls.
//!
//! Owns the tank's register map and its filling cycle ([`fill`]). Must never be reachable from
//! `plantgate run`: it exists for the demo and tests.
//!
//! Register map of the simulated tank unit (also `config/tank-farm.toml`):
//! - holding 20: liquid level, 0.01 m (u16)
//! - holding 21: product temperature, 0.1 °C (i16)
//! - holding 22: vapour-space pressure, 0.1 kPa (u16)
//!
//! Any other address answers with exception 0x02, as the gas controller does.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::Controller;

pub const LEVEL: u16 = 20;
pub const TEMPERATURE: u16 = 21;
pub const PRESSURE: u16 = 22;

/// How the filling cycle runs, in the tank's own units.
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    /// Level at rest and where draining stops, m.
    pub low_m: f64,
    /// Level where the inflow valve closes and draining starts, m.
    pub high_m: f64,
    /// Filling speed, m per second (the fast pump: a rate-of-rise warning).
    pub fill_m_per_s: f64,
    /// Draining speed, m per second.
    pub drain_m_per_s: f64,
    /// Time at rest before the first filling and between two, s.
    pub rest_s: f64,
}

impl Cycle {
    /// The demo's cycle: from 7.5 m past the 9 m (hi) and 9.5 m (hihi) limits to 9.8 m in about
    /// 17 s, warning of the fast rise on the way, then back down.
    pub fn demo() -> Self {
        Cycle {
            low_m: 7.5,
            high_m: 9.8,
            fill_m_per_s: 0.14,
            drain_m_per_s: 0.1,
            rest_s: 1.0,
        }
    }
}

impl Controller {
    /// A tank unit at rest: the level at `level_m`, 18 °C, 102 kPa.
    pub fn tank(level_m: f64) -> Arc<Controller> {
        let c = Controller::default();
        {
            let mut r = c.registers();
            r.holding.insert(LEVEL, metres(level_m));
            r.holding.insert(TEMPERATURE, 180);
            r.holding.insert(PRESSURE, 1020);
            r.holding.insert(super::REQUEST_COUNTER, 0);
        }
        Arc::new(c)
    }

    /// Sets the tank's level register (m, in steps of 0.01 m).
    pub fn set_level(&self, m: f64) {
        self.registers().holding.insert(LEVEL, metres(m));
    }
}

fn metres(m: f64) -> u16 {
    (m * 100.0).round().clamp(0.0, 65_535.0) as u16
}

/// Drives the tank through its cycle: rest, fill fast to `high_m`, drain to `low_m`, again.
/// The pressure follows the level; the temperature wanders by a tenth now and then. Runs until
/// dropped.
pub async fn fill(c: Arc<Controller>, cycle: Cycle) {
    let tick = Duration::from_millis(200);
    let dt = tick.as_secs_f64();
    let mut interval = tokio::time::interval(tick);
    let (mut level, mut filling, mut rest) = (cycle.low_m, false, cycle.rest_s);
    loop {
        interval.tick().await;
        if rest > 0.0 {
            rest -= dt;
            filling = rest <= 0.0;
        } else if filling {
            level = (level + cycle.fill_m_per_s * dt).min(cycle.high_m);
            filling = level < cycle.high_m;
        } else {
            level = (level - cycle.drain_m_per_s * dt).max(cycle.low_m);
            if level <= cycle.low_m {
                rest = cycle.rest_s;
            }
        }
        let wander: i16 = rand::rng().random_range(-1..=1);
        let mut r = c.registers();
        r.holding.insert(LEVEL, metres(level));
        let t = r.holding.get(&TEMPERATURE).copied().unwrap_or(180) as i16;
        r.holding
            .insert(TEMPERATURE, (t + wander).clamp(150, 250) as u16);
        r.holding
            .insert(PRESSURE, 1000 + (level * 10.0).round() as u16);
    }
}
