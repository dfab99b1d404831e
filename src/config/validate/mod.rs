//! Pure validation: the parsed file → a [`Config`], or every [`Problem`] at once.
//!
//! Owns the order of the sections and the rule that a file with any problem yields no
//! [`Config`]; each section's rules live in its own file ([`gateway`], [`bus`], [`device`] with
//! the point rules in `config::points`, [`spool`], [`upstream`], [`web`]). Must never stop at
//! the first error or touch the file system.

mod bus;
mod device;
mod gateway;
mod spool;
mod upstream;
mod web;

use super::ctx::Ctx;
use super::file::File;
use super::{Config, Problem, Source};

/// Validates a parsed file; `text` is the file's text, to place each problem on its line.
pub fn validate(file: &File, text: &str, source: Source) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx::new(text);
    let gateway = gateway::validate_gateway(&mut cx, &file.gateway);
    let buses = bus::validate_buses(&mut cx, &file.bus);
    let devices = device::validate_devices(&mut cx, file, &buses);
    let spool = spool::validate_spool(&mut cx, file.spool.as_ref());
    let upstream = upstream::validate_upstream(&mut cx, file.upstream.as_ref(), &gateway.id);
    let web = web::validate_web(&mut cx, file.web.as_ref());
    let local_broker = web::validate_local_broker(&mut cx, file.local_broker.as_ref(), &gateway.id);
    web::check_ports(&mut cx, file, web.as_ref(), local_broker.as_ref());

    if cx.problems.is_empty() {
        Ok(Config {
            gateway,
            buses,
            devices,
            spool,
            upstream,
            web,
            local_broker,
            source,
            warnings: cx.warnings,
        })
    } else {
        Err(cx.problems)
    }
}

/// Small valid sections for the rule tests, and a way to see a file's problems at a glance.
#[cfg(test)]
pub(super) mod fixture {
    use std::path::PathBuf;

    use super::*;

    pub const GATEWAY: &str = "[gateway]\nid = \"gw-1\"\ndata_dir = \"/var/lib/plantgate\"\n";
    pub const BUS: &str = "[[bus]]\nname = \"line-1\"\nrtu = { port = \"/dev/ttyUSB0\" }\n";
    pub const DEVICE: &str = "[[device]]\nname = \"gas-1\"\nbus = \"line-1\"\nunit = 1\n\
        [[device.point]]\nname = \"ch1\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n";

    /// Validates `text`, which must parse.
    pub fn check(text: &str) -> Result<Config, Vec<Problem>> {
        let file: File = toml::from_str(text).unwrap();
        let source = Source {
            path: PathBuf::from("t.toml"),
            sha256: String::new(),
        };
        validate(&file, text, source)
    }

    /// Every problem of `text` as `line: path: message`.
    pub fn refused(text: &str) -> Vec<String> {
        match check(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(problems) => problems
                .iter()
                .map(|p| match p.line {
                    Some(l) => format!("{l}: {}: {}", p.path, p.message),
                    None => format!("-: {}: {}", p.path, p.message),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;

    #[test]
    fn a_minimal_file_is_a_config_with_the_defaults() {
        let c = check(&format!("{GATEWAY}{BUS}{DEVICE}")).unwrap();
        assert_eq!(
            (c.buses.len(), c.devices.len(), c.devices[0].points.len()),
            (1, 1, 1)
        );
        assert!(c.upstream.is_none() && c.web.is_none() && c.local_broker.is_none());
    }

    #[test]
    fn every_problem_of_every_section_is_reported_in_file_order() {
        let text = format!(
            "{}{}{}[spool]\nsync_ms = 2000\n",
            GATEWAY.replace("gw-1", "gw 1"),
            BUS.replace("}", ", baud = 1 }"),
            DEVICE.replace("unit = 1", "unit = 0"),
        );
        assert_eq!(
            refused(&text),
            [
                "2: gateway.id: \"gw 1\" may only use letters, digits, '-', '_' and '.'",
                "6: bus[0].rtu.baud: 1 is not a usable baud rate (300..=921600)",
                "10: device[0].unit: 0: expected 1..=247 on an RTU bus",
                "17: spool.sync_ms: 2000: expected 0..=1000 (records polled within this window can be lost on power failure)",
            ]
        );
    }
}
