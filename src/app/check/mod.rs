//! `plantgate check-config`: loads a configuration exactly as `run` would, prints a one-screen
//! summary (with each device's read plan) and checks that the uplink's TLS files load.
//!
//! Owns the summary's wording and which problems refuse a file. Must never bind a port, open a
//! serial device or touch the spool: systemd runs this in `ExecStartPre` beside a live gateway.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use crate::config::{Config, Link, Parity};

/// What `check-config` decided about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The gateway can start with it.
    Usable,
    /// It has problems; they were written to `err`.
    Refused,
}

/// Checks the configuration at `path`: the summary and `OK` go to `out`, every problem to `err`.
/// With `strict`, TLS files that do not exist (yet) refuse the file, as the service needs them.
pub fn check_config(
    path: &Path,
    strict: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Verdict> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "{e}")?;
            return Ok(Verdict::Refused);
        }
    };
    write!(out, "{}", summary(&config))?;
    for w in &config.warnings {
        let line = w.line.map(|l| format!(":{l}")).unwrap_or_default();
        writeln!(
            err,
            "{}{line}: warning: {}: {}",
            path.display(),
            w.path,
            w.message
        )?;
    }
    let dir = &config.gateway.data_dir;
    if dir.exists() && !dir.is_dir() {
        writeln!(
            err,
            "{}: gateway.data_dir: {} exists and is not a directory",
            path.display(),
            dir.display()
        )?;
        return Ok(Verdict::Refused);
    }
    if let Some(up) = &config.upstream {
        if !check_tls(path, up, strict, out, err)? {
            return Ok(Verdict::Refused);
        }
    }
    writeln!(out, "OK")?;
    Ok(Verdict::Usable)
}

/// The upstream's TLS files: present, loading and matching, and in date. Returns whether the
/// configuration may be used (missing files and out-of-date certificates refuse only when
/// `strict`, as the service's start does).
fn check_tls(
    path: &Path,
    up: &crate::config::Upstream,
    strict: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<bool> {
    let files = [
        ("ca_file", &up.ca_file),
        ("cert_file", &up.cert_file),
        ("key_file", &up.key_file),
    ];
    let missing: Vec<_> = files.iter().filter(|(_, p)| !p.exists()).collect();
    if !missing.is_empty() {
        for (key, p) in &missing {
            writeln!(err, "{}: upstream.{key}: {} does not exist (yet); `plantgate run` will not start without it", path.display(), p.display())?;
        }
        return Ok(!strict);
    }
    if let Err(e) = crate::uplink::tls::client_config(&up.ca_file, &up.cert_file, &up.key_file) {
        writeln!(err, "{}: upstream: {e}", path.display())?;
        return Ok(false);
    }
    writeln!(out, "  TLS: CA, certificate and key load and match")?;
    let mut out_of_date = false;
    for (key, p) in [("ca_file", &up.ca_file), ("cert_file", &up.cert_file)] {
        let Some(why) = crate::uplink::tls::out_of_date(p, crate::record::now_ms() / 1000) else {
            continue;
        };
        out_of_date = true;
        let (label, then) = match strict {
            true => ("", ""),
            false => ("warning: ", "; `plantgate run` will not connect with it"),
        };
        writeln!(
            err,
            "{}: {label}upstream.{key}: {why}{then}",
            path.display()
        )?;
    }
    Ok(!(out_of_date && strict))
}

/// A bus, its devices with their read plans and cadences, and its line load.
fn bus_lines(s: &mut String, c: &Config, b: usize, bus: &crate::config::Bus) {
    let _ = writeln!(
        s,
        "  bus {}: {}, timeout {} ms",
        bus.name,
        link(&bus.link),
        bus.timeout.as_millis()
    );
    for d in c.devices.iter().filter(|d| d.bus == b) {
        let alarms = d.points.iter().filter(|p| p.alarm.is_some()).count();
        let reads = crate::poll::plan::plan(&d.points, bus.max_gap).len();
        let fast = if d.alarm_poll < d.poll {
            format!(", alarm points every {} ms", d.alarm_poll.as_millis())
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "    device {} unit {}: {} points ({alarms} alarm points) in {reads} read{} every {} ms{fast}",
            d.name,
            d.unit,
            d.points.len(),
            if reads == 1 { "" } else { "s" },
            d.poll.as_millis()
        );
    }
    if let Some(load) = crate::poll::budget::line_load(bus, c.devices.iter().filter(|d| d.bus == b))
    {
        let _ = writeln!(
            s,
            "    line load: about {:.0} % of the line's time",
            load * 100.0
        );
        if load > LINE_LOAD_WARN {
            let _ = writeln!(
                s,
                "    warning: bus {}: these cadences need about {:.0} % of the line; polls will fall behind (slow poll_ms or alarm_poll_ms down, raise the baud rate, or split the line)",
                bus.name,
                load * 100.0
            );
        }
    }
}

/// Above this share of a line's time, check-config warns that polls will fall behind.
const LINE_LOAD_WARN: f64 = 0.8;

/// The one-screen summary `plantgate check-config` prints.
pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} (sha256 {})",
        c.source.path.display(),
        &c.source.sha256[..16]
    );
    let _ = writeln!(
        s,
        "  gateway {}   data in {}",
        c.gateway.id,
        c.gateway.data_dir.display()
    );
    for (b, bus) in c.buses.iter().enumerate() {
        bus_lines(&mut s, c, b, bus);
    }
    let _ = writeln!(
        s,
        "  spool: commit every {} ms, at most {} MiB",
        c.spool.sync.as_millis(),
        c.spool.max_bytes >> 20
    );
    match &c.upstream {
        Some(u) => {
            let brokers: Vec<String> = u.brokers.iter().map(|b| b.to_string()).collect();
            let _ = writeln!(
                s,
                "  upstream: {} as {}, topics {}/#, {}",
                brokers.join(", "),
                u.client_id,
                u.topic_prefix,
                match u.format {
                    crate::record::wire::Format::Cbor => "CBOR",
                    crate::record::wire::Format::Json => "JSON",
                }
            );
        }
        None => {
            let _ = writeln!(s, "  upstream: none (records stay in the spool)");
        }
    }
    if let Some(w) = &c.web {
        let _ = writeln!(s, "  status page: http://{}", w.listen);
    }
    if let Some(b) = &c.local_broker {
        let _ = writeln!(
            s,
            "  local broker: {} topics {}/#",
            b.listen, b.topic_prefix
        );
    }
    s
}

/// `RTU /dev/ttyUSB0 9600 8N1` or `TCP 192.168.1.50:502`.
pub(crate) fn link(link: &Link) -> String {
    match link {
        Link::Rtu(r) => format!(
            "RTU {} {} {}{}{}",
            r.port,
            r.baud,
            r.data_bits,
            match r.parity {
                Parity::None => 'N',
                Parity::Even => 'E',
                Parity::Odd => 'O',
            },
            r.stop_bits
        ),
        Link::Tcp { address } => format!("TCP {address}"),
    }
}

#[cfg(test)]
mod tests;
