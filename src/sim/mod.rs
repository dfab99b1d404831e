//! Simulated alarm controllers: what `plantgate demo` and the tests poll instead of real hardware.
//!
//! Owns a register-level model of a 16-channel gas-detection controller ([`Controller`]), its
//! drifting concentrations and leak events ([`drift`]), a storage tank whose level rises and
//! falls ([`tank`]), and serving them over Modbus TCP or RTU ([`server`]). Must never be reachable from `plantgate run`: it exists for the demo and tests.
//!
//! Register map of the simulated "GD-16" controller (also [`GD16_PROFILE`]):
//! - input registers 0..=15: gas concentration of channel 1..=16, in 0.1 %LEL (u16)
//! - input registers 100..=115: channel status: 0 normal, 1 low alarm, 2 high alarm, 3 fault
//! - discrete input 0: mains power failure (true = running on battery)
//! - holding registers 200, 201: low and high alarm thresholds, in 0.1 %LEL (default 200, 400)
//! - holding register 60000: requests answered so far (wrapping), counted before each answer
//!
//! Any other address answers with exception 0x02 (illegal data address), as real controllers do.

pub mod server;
pub mod tank;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;

/// The GD-16 register map as a configuration `[[profile]]` named `gd16`: 16 gas channels, 16
/// channel statuses and mains failure (33 points). The one copy: the demo, the tests and the
/// shipped example `config/gd16-rs485.toml` (checked by a test) all use this text.
pub const GD16_PROFILE: &str = include_str!("../../config/gd16-profile.toml");
/// Points a device with the [`GD16_PROFILE`] reports per poll.
pub const GD16_POINTS: usize = 33;

pub const CHANNELS: u16 = 16;
pub const CONC_BASE: u16 = 0;
pub const STATUS_BASE: u16 = 100;
pub const THRESHOLD_LOW: u16 = 200;
pub const THRESHOLD_HIGH: u16 = 201;
/// Holding register counting the requests this unit answered (wrapping u16): a test that reads
/// it finds every poll that was read from the device but never delivered.
pub const REQUEST_COUNTER: u16 = 60_000;

/// How a simulated unit behaves on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answers every request.
    #[default]
    Normal,
    /// Never answers (a dead or disconnected detector).
    Silent,
    /// Answers every request with this exception code.
    Exception(u8),
    /// Answers, but only after this delay (a slow or overloaded controller).
    Late(Duration),
}

#[derive(Debug, Default)]
pub struct Registers {
    pub input: BTreeMap<u16, u16>,
    pub holding: BTreeMap<u16, u16>,
    pub coils: BTreeMap<u16, bool>,
    pub discrete: BTreeMap<u16, bool>,
}

/// One simulated unit: registers plus behaviour, shared between the server and whoever drives it.
#[derive(Debug, Default)]
pub struct Controller {
    regs: Mutex<Registers>,
    behaviour: Mutex<Behaviour>,
}

impl Controller {
    /// A GD-16 gas controller at rest: clean air, all channels normal.
    pub fn gas16() -> Arc<Controller> {
        let c = Controller::default();
        {
            let mut r = c.registers();
            for ch in 0..CHANNELS {
                r.input.insert(CONC_BASE + ch, 0);
                r.input.insert(STATUS_BASE + ch, 0);
            }
            r.discrete.insert(0, false);
            r.holding.insert(THRESHOLD_LOW, 200);
            r.holding.insert(THRESHOLD_HIGH, 400);
            r.holding.insert(REQUEST_COUNTER, 0);
        }
        Arc::new(c)
    }

    pub fn registers(&self) -> MutexGuard<'_, Registers> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn behaviour(&self) -> Behaviour {
        *self.behaviour.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = b;
    }

    /// Sets channel `ch` (1-based) to a concentration in 0.1 %LEL and derives its status from
    /// the thresholds, as the controller's firmware would.
    pub fn set_concentration(&self, ch: u16, tenths: u16) {
        let mut r = self.registers();
        let low = r.holding.get(&THRESHOLD_LOW).copied().unwrap_or(200);
        let high = r.holding.get(&THRESHOLD_HIGH).copied().unwrap_or(400);
        let status = if tenths >= high {
            2
        } else if tenths >= low {
            1
        } else {
            0
        };
        r.input.insert(CONC_BASE + ch - 1, tenths);
        r.input.insert(STATUS_BASE + ch - 1, status);
    }

    /// Marks channel `ch` (1-based) as faulty (sensor broken).
    pub fn set_fault(&self, ch: u16) {
        self.registers().input.insert(STATUS_BASE + ch - 1, 3);
    }
}

/// Drives a controller like a real plant: concentrations wander near zero, and every
/// `leak_every` a leak on a random channel ramps up through the low and high alarm thresholds,
/// holds, and clears. The first leak starts after `first_leak`. Runs until dropped.
pub async fn drift(c: Arc<Controller>, first_leak: Duration, leak_every: Duration) {
    let tick = Duration::from_millis(200);
    let mut baseline = [20u16; CHANNELS as usize];
    let mut leak: Option<(u16, f64, Duration)> = None; // channel, level, time in leak
    let mut until_leak = first_leak;
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        {
            let mut rng = rand::rng();
            for b in baseline.iter_mut() {
                *b = (i32::from(*b) + rng.random_range(-3..=3)).clamp(0, 60) as u16;
            }
            if leak.is_none() {
                until_leak = until_leak.saturating_sub(tick);
                if until_leak.is_zero() {
                    leak = Some((rng.random_range(1..=CHANNELS), 0.0, Duration::ZERO));
                    until_leak = leak_every;
                }
            }
        }
        if let Some((ch, level, t)) = leak.as_mut() {
            *t += tick;
            // ramp up ~12 %LEL/s for 4 s, hold 3 s, then decay ~8 %LEL/s
            let secs = t.as_secs_f64();
            *level = if secs < 4.0 {
                secs * 120.0
            } else if secs < 7.0 {
                480.0
            } else {
                (480.0 - (secs - 7.0) * 80.0).max(0.0)
            };
            let ch = *ch;
            let done = secs >= 7.0 && *level == 0.0;
            for i in 1..=CHANNELS {
                let extra = if i == ch { *level as u16 } else { 0 };
                c.set_concentration(i, baseline[usize::from(i - 1)] + extra);
            }
            if done {
                leak = None;
            }
        } else {
            for i in 1..=CHANNELS {
                c.set_concentration(i, baseline[usize::from(i - 1)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example carries the profile verbatim, and only it, so it cannot drift from
    /// what the simulator answers.
    #[test]
    fn the_shipped_example_holds_exactly_the_gd16_profile() {
        let example = include_str!("../../config/gd16-rs485.toml");
        assert!(example.contains(GD16_PROFILE), "config/gd16-rs485.toml");
        assert_eq!(example.matches("[[profile]]").count(), 1);
        assert_eq!(example.matches("[[profile.point]]").count(), 3);
        let cfg = crate::config::Config::from_str(example, std::path::Path::new("gd16.toml"))
            .expect("the example parses");
        for d in &cfg.devices {
            assert_eq!(d.points.len(), GD16_POINTS, "{}", d.name);
        }
    }
}
