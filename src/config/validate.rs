//! Pure validation: the parsed file → a [`Config`], or every [`Problem`] at once.
//!
//! Owns the rules a configuration must follow and the place (path and line) of each violation.
//! Must never stop at the first error or touch the file system.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::file::{BusFile, File, PointFile};
use super::points::{check_point_set, expand_point};
use super::*;

pub(super) struct Ctx<'a> {
    text: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> Option<usize> {
        let start = span.start.min(self.text.len());
        Some(self.text[..start].bytes().filter(|b| *b == b'\n').count() + 1)
    }
    pub(super) fn err(
        &mut self,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line(span);
        self.problems.push(Problem {
            line,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Names end up in MQTT topics and metric labels: keep them plain.
pub(super) fn check_name(cx: &mut Ctx, span: Range<usize>, path: &str, name: &str) {
    if name.is_empty() {
        cx.err(span, path, "must not be empty");
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        cx.err(
            span,
            path,
            format!("\"{name}\" may only use letters, digits, '-', '_' and '.'"),
        );
    }
}

pub fn validate(file: &File, text: &str, source: Source) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx {
        text,
        problems: Vec::new(),
    };

    let gw = file.gateway.get_ref();
    let gspan = file.gateway.span();
    check_name(&mut cx, gspan.clone(), "gateway.id", &gw.id);
    if gw.data_dir.as_os_str().is_empty() {
        cx.err(gspan, "gateway.data_dir", "must name a directory");
    }
    let gateway = Gateway {
        id: Arc::from(gw.id.as_str()),
        data_dir: gw.data_dir.clone(),
    };

    let buses = validate_buses(&mut cx, &file.bus);
    let devices = validate_devices(&mut cx, file, &buses);
    let spool = validate_spool(&mut cx, file);
    let upstream = validate_upstream(&mut cx, file, &gateway.id);

    let web = file.web.as_ref().and_then(|w| {
        parse_socket(&mut cx, w.span(), "web.listen", &w.get_ref().listen)
            .map(|listen| Web { listen })
    });
    let local_broker = file.local_broker.as_ref().and_then(|b| {
        let lb = b.get_ref();
        parse_socket(&mut cx, b.span(), "local_broker.listen", &lb.listen).map(|listen| {
            LocalBroker {
                listen,
                topic_prefix: lb
                    .topic_prefix
                    .clone()
                    .unwrap_or_else(|| format!("plantgate/{}", gateway.id)),
            }
        })
    });

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
        })
    } else {
        Err(cx.problems)
    }
}

fn parse_socket(
    cx: &mut Ctx,
    span: Range<usize>,
    path: &str,
    s: &str,
) -> Option<std::net::SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(
                span,
                path,
                format!("\"{s}\" is not an IP:port such as 127.0.0.1:8080"),
            );
            None
        }
    }
}

fn validate_buses(cx: &mut Ctx, buses: &[Spanned<BusFile>]) -> Vec<Bus> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut ports: HashMap<String, usize> = HashMap::new();
    for (i, b) in buses.iter().enumerate() {
        let span = b.span();
        let b = b.get_ref();
        let p = format!("bus[{i}]");
        check_name(cx, span.clone(), &format!("{p}.name"), &b.name);
        if !names.insert(b.name.clone()) {
            cx.err(
                span.clone(),
                format!("{p}.name"),
                format!("\"{}\" is used by another bus", b.name),
            );
        }
        let link = match (&b.rtu, &b.tcp) {
            (Some(r), None) => {
                if let Some(j) = ports.insert(r.port.clone(), i) {
                    cx.err(
                        span.clone(),
                        format!("{p}.rtu.port"),
                        format!(
                            "serial port {} is already used by bus[{j}]; one bus per port",
                            r.port
                        ),
                    );
                }
                if r.port.is_empty() {
                    cx.err(
                        span.clone(),
                        format!("{p}.rtu.port"),
                        "must name a serial device such as /dev/ttyUSB0",
                    );
                }
                if !(300..=921_600).contains(&r.baud) {
                    cx.err(
                        span.clone(),
                        format!("{p}.rtu.baud"),
                        format!("{} is not a usable baud rate (300..=921600)", r.baud),
                    );
                }
                let parity = match r.parity.as_str() {
                    "none" => Parity::None,
                    "even" => Parity::Even,
                    "odd" => Parity::Odd,
                    other => {
                        cx.err(
                            span.clone(),
                            format!("{p}.rtu.parity"),
                            format!("\"{other}\": expected \"none\", \"even\" or \"odd\""),
                        );
                        Parity::None
                    }
                };
                if !(7..=8).contains(&r.data_bits) {
                    cx.err(
                        span.clone(),
                        format!("{p}.rtu.data_bits"),
                        format!("{}: expected 7 or 8", r.data_bits),
                    );
                }
                if !(1..=2).contains(&r.stop_bits) {
                    cx.err(
                        span.clone(),
                        format!("{p}.rtu.stop_bits"),
                        format!("{}: expected 1 or 2", r.stop_bits),
                    );
                }
                Link::Rtu(Rtu {
                    port: r.port.clone(),
                    baud: r.baud,
                    parity,
                    data_bits: r.data_bits,
                    stop_bits: r.stop_bits,
                    rs485: r.rs485.as_ref().map(|x| Rs485 {
                        rts_on_send: x.rts_on_send,
                        delay_before_send_ms: x.delay_before_send_ms,
                        delay_after_send_ms: x.delay_after_send_ms,
                    }),
                })
            }
            (None, Some(t)) => {
                if split_host_port(&t.address).is_none() {
                    cx.err(
                        span.clone(),
                        format!("{p}.tcp.address"),
                        format!(
                            "\"{}\" is not host:port such as 192.168.1.50:502",
                            t.address
                        ),
                    );
                }
                Link::Tcp {
                    address: t.address.clone(),
                }
            }
            _ => {
                cx.err(
                    span.clone(),
                    &p,
                    "needs exactly one of rtu = { port = ... } or tcp = { address = ... }",
                );
                Link::Tcp {
                    address: String::new(),
                }
            }
        };
        let timeout_ms = b.timeout_ms.unwrap_or(1000);
        if !(10..=60_000).contains(&timeout_ms) {
            cx.err(
                span.clone(),
                format!("{p}.timeout_ms"),
                format!("{timeout_ms}: expected 10..=60000"),
            );
        }
        let turnaround_ms = b.turnaround_ms.unwrap_or(0);
        if turnaround_ms > 10_000 {
            cx.err(
                span.clone(),
                format!("{p}.turnaround_ms"),
                format!("{turnaround_ms}: expected 0..=10000"),
            );
        }
        let max_gap = b.max_gap.unwrap_or(0);
        if max_gap > 100 {
            cx.err(
                span,
                format!("{p}.max_gap"),
                format!("{max_gap}: expected 0..=100 registers"),
            );
        }
        out.push(Bus {
            name: Arc::from(b.name.as_str()),
            link,
            timeout: Duration::from_millis(timeout_ms),
            turnaround: Duration::from_millis(turnaround_ms),
            max_gap,
        });
    }
    out
}

pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn validate_devices(cx: &mut Ctx, file: &File, buses: &[Bus]) -> Vec<Device> {
    let mut profiles: HashMap<&str, usize> = HashMap::new();
    for (i, pr) in file.profile.iter().enumerate() {
        let name = pr.get_ref().name.as_str();
        check_name(cx, pr.span(), &format!("profile[{i}].name"), name);
        if profiles.insert(name, i).is_some() {
            cx.err(
                pr.span(),
                format!("profile[{i}].name"),
                format!("\"{name}\" is used by another profile"),
            );
        }
    }

    if file.device.is_empty() {
        cx.err(
            0..0,
            "device",
            "no [[device]] is configured: there is nothing to poll",
        );
    }
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, d) in file.device.iter().enumerate() {
        let span = d.span();
        let d = d.get_ref();
        let p = format!("device[{i}]");
        check_name(cx, span.clone(), &format!("{p}.name"), &d.name);
        if !names.insert(d.name.as_str()) {
            cx.err(
                span.clone(),
                format!("{p}.name"),
                format!("\"{}\" is used by another device", d.name),
            );
        }
        let bus = buses.iter().position(|b| *b.name == *d.bus);
        if bus.is_none() {
            let known: Vec<&str> = buses.iter().map(|b| &*b.name).collect();
            cx.err(
                span.clone(),
                format!("{p}.bus"),
                format!(
                    "no bus is named \"{}\" (buses: {})",
                    d.bus,
                    known.join(", ")
                ),
            );
        }
        let is_tcp = bus.is_some_and(|b| matches!(buses[b].link, Link::Tcp { .. }));
        let units = if is_tcp { 0..=255 } else { 1..=247 };
        if !units.contains(&d.unit) {
            cx.err(
                span.clone(),
                format!("{p}.unit"),
                format!(
                    "{}: expected {}..={} on {} bus",
                    d.unit,
                    units.start(),
                    units.end(),
                    if is_tcp { "a TCP" } else { "an RTU" }
                ),
            );
        }
        let poll_ms = d.poll_ms.unwrap_or(1000);
        if !(50..=3_600_000).contains(&poll_ms) {
            cx.err(
                span.clone(),
                format!("{p}.poll_ms"),
                format!("{poll_ms}: expected 50..=3600000"),
            );
        }

        // Points: the profile's first, then the device's own.
        let mut sources: Vec<(String, &Spanned<PointFile>)> = Vec::new();
        if let Some(prof) = &d.profile {
            match profiles.get(prof.as_str()) {
                Some(&pi) => sources.extend(
                    file.profile[pi]
                        .get_ref()
                        .point
                        .iter()
                        .enumerate()
                        .map(|(j, pt)| (format!("profile[{pi}].point[{j}]"), pt)),
                ),
                None => cx.err(
                    span.clone(),
                    format!("{p}.profile"),
                    format!("no profile is named \"{prof}\""),
                ),
            }
        }
        sources.extend(
            d.point
                .iter()
                .enumerate()
                .map(|(j, pt)| (format!("{p}.point[{j}]"), pt)),
        );
        if sources.is_empty() {
            cx.err(
                span.clone(),
                &p,
                "has no points: add [[device.point]] entries or a profile",
            );
        }
        let mut points: Vec<(Point, String, Range<usize>)> = Vec::new();
        for (path, pt) in sources {
            expand_point(cx, &path, pt, &mut points);
        }
        check_point_set(cx, &points);
        out.push(Device {
            name: Arc::from(d.name.as_str()),
            bus: bus.unwrap_or(0),
            unit: u8::try_from(d.unit).unwrap_or(0),
            poll: Duration::from_millis(poll_ms),
            points: points.into_iter().map(|(pt, _, _)| pt).collect(),
        });
    }
    out
}

fn validate_spool(cx: &mut Ctx, file: &File) -> SpoolSettings {
    let (span, s) = match &file.spool {
        Some(s) => (s.span(), s.get_ref()),
        None => (0..0, &super::file::SpoolFile::default()),
    };
    let sync_ms = s.sync_ms.unwrap_or(100);
    if sync_ms > 1000 {
        cx.err(span.clone(), "spool.sync_ms", format!("{sync_ms}: expected 0..=1000 (records polled within this window can be lost on power failure)"));
    }
    let max_bytes = s.max_bytes.unwrap_or(512 << 20);
    if max_bytes < (1 << 20) {
        cx.err(
            span.clone(),
            "spool.max_bytes",
            format!("{max_bytes}: expected at least 1048576 (1 MiB)"),
        );
    }
    let cache_bytes = s.cache_bytes.unwrap_or(16 << 20);
    if !((1 << 20)..=(1 << 30)).contains(&cache_bytes) {
        cx.err(
            span,
            "spool.cache_bytes",
            format!("{cache_bytes}: expected 1 MiB..=1 GiB"),
        );
    }
    SpoolSettings {
        sync: Duration::from_millis(sync_ms),
        max_bytes,
        cache_bytes: cache_bytes as usize,
    }
}

fn validate_upstream(cx: &mut Ctx, file: &File, gw: &str) -> Option<Upstream> {
    let up = file.upstream.as_ref()?;
    let span = up.span();
    let u = up.get_ref();
    if u.brokers.is_empty() {
        cx.err(
            span.clone(),
            "upstream.brokers",
            "needs at least one \"host:port\"",
        );
    }
    let mut brokers = Vec::new();
    for (i, b) in u.brokers.iter().enumerate() {
        match split_host_port(b) {
            Some((host, port)) => brokers.push(BrokerAddr { host, port }),
            None => cx.err(
                span.clone(),
                format!("upstream.brokers[{i}]"),
                format!("\"{b}\" is not host:port such as platform.example.com:8883"),
            ),
        }
    }
    for (key, p) in [
        ("ca_file", &u.ca_file),
        ("cert_file", &u.cert_file),
        ("key_file", &u.key_file),
    ] {
        if p.as_os_str().is_empty() {
            cx.err(
                span.clone(),
                format!("upstream.{key}"),
                "must name a PEM file",
            );
        }
    }
    let topic_prefix = u
        .topic_prefix
        .clone()
        .unwrap_or_else(|| format!("plantgate/{gw}"));
    if topic_prefix.is_empty() || topic_prefix.contains(['+', '#']) || topic_prefix.ends_with('/') {
        cx.err(
            span.clone(),
            "upstream.topic_prefix",
            format!("\"{topic_prefix}\" must be a topic without wildcards or a trailing '/'"),
        );
    }
    let keep_alive_s = u.keep_alive_s.unwrap_or(30);
    if !(5..=600).contains(&keep_alive_s) {
        cx.err(
            span.clone(),
            "upstream.keep_alive_s",
            format!(
                "{keep_alive_s}: expected 5..=600 (a dead link is noticed after about twice this)"
            ),
        );
    }
    let format = match u.format.as_deref().unwrap_or("cbor") {
        "cbor" => Format::Cbor,
        "json" => Format::Json,
        other => {
            cx.err(
                span.clone(),
                "upstream.format",
                format!("\"{other}\": expected \"cbor\" or \"json\""),
            );
            Format::Cbor
        }
    };
    let batch_max = u.batch_max.unwrap_or(500);
    if !(1..=5000).contains(&batch_max) {
        cx.err(
            span.clone(),
            "upstream.batch_max",
            format!("{batch_max}: expected 1..=5000 readings per message"),
        );
    }
    let inflight = u.inflight.unwrap_or(32);
    if !(1..=1000).contains(&inflight) {
        cx.err(
            span,
            "upstream.inflight",
            format!("{inflight}: expected 1..=1000"),
        );
    }
    Some(Upstream {
        brokers,
        ca_file: u.ca_file.clone(),
        cert_file: u.cert_file.clone(),
        key_file: u.key_file.clone(),
        topic_prefix,
        client_id: u.client_id.clone().unwrap_or_else(|| gw.to_string()),
        keep_alive: Duration::from_secs(keep_alive_s),
        format,
        batch_max: batch_max as usize,
        inflight: inflight as u16,
    })
}
