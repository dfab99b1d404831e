//! The `[upstream]` section: the platform's MQTT brokers, the gateway's TLS files, topics and
//! session limits. Without it, records stay in the spool.
//!
//! Owns those rules. Pure: must never read the PEM files or resolve a broker's name (that is
//! `check-config`'s and the uplink's work).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::ctx::{value_or, Ctx, GATEWAY_ID_MAX};
use crate::config::file::UpstreamFile;
use crate::config::net;
use crate::config::topic::{check_client_id, check_prefix};
use crate::config::{BrokerAddr, Upstream};
use crate::record::wire::Format;

pub(super) fn validate_upstream(
    cx: &mut Ctx,
    upstream: Option<&Spanned<UpstreamFile>>,
    gw: &str,
) -> Option<Upstream> {
    let up = upstream?;
    let span = up.span();
    let u = up.get_ref();
    let brokers = brokers(cx, &u.brokers);
    for (key, p) in [
        ("ca_file", &u.ca_file),
        ("cert_file", &u.cert_file),
        ("key_file", &u.key_file),
    ] {
        if p.get_ref().as_os_str().is_empty() {
            cx.err(p.span(), format!("upstream.{key}"), "must name a PEM file");
        }
    }
    let (topic_prefix, at) = value_or(
        u.topic_prefix.as_ref(),
        format!("plantgate/{gw}"),
        span.clone(),
    );
    // The default is built from the gateway id, whose own rules are reported at its line.
    if u.topic_prefix.is_some() {
        check_prefix(cx, at, "upstream.topic_prefix", &topic_prefix);
    }
    let (client_id, at) = value_or(u.client_id.as_ref(), gw.to_string(), span.clone());
    if u.client_id.is_some() || (1..=GATEWAY_ID_MAX).contains(&gw.chars().count()) {
        check_client_id(cx, at, "upstream.client_id", &client_id);
    }
    let (format, at) = value_or(u.format.as_ref(), "cbor".to_string(), span.clone());
    let format = match format.as_str() {
        "cbor" => Format::Cbor,
        "json" => Format::Json,
        other => {
            cx.err(
                at,
                "upstream.format",
                format!("\"{other}\": expected \"cbor\" or \"json\""),
            );
            Format::Cbor
        }
    };
    let Session {
        keep_alive,
        ack_stall,
        batch_max,
        inflight,
    } = session(cx, span, u);
    Some(Upstream {
        brokers,
        ca_file: u.ca_file.get_ref().clone(),
        cert_file: u.cert_file.get_ref().clone(),
        key_file: u.key_file.get_ref().clone(),
        topic_prefix,
        client_id,
        keep_alive,
        ack_stall,
        format,
        batch_max,
        inflight,
    })
}

/// At least one broker, each `host:port` (or `mqtts://host:port`, normalised).
fn brokers(cx: &mut Ctx, brokers: &Spanned<Vec<Spanned<String>>>) -> Vec<BrokerAddr> {
    if brokers.get_ref().is_empty() {
        cx.err(
            brokers.span(),
            "upstream.brokers",
            "needs at least one \"host:port\"",
        );
    }
    let mut out = Vec::new();
    for (i, b) in brokers.get_ref().iter().enumerate() {
        match net::broker(b.get_ref()) {
            Ok((host, port)) => out.push(BrokerAddr { host, port }),
            Err(why) => cx.err(b.span(), format!("upstream.brokers[{i}]"), why),
        }
    }
    out
}

struct Session {
    keep_alive: Duration,
    ack_stall: Duration,
    batch_max: usize,
    inflight: u16,
}

/// Keep-alive, the acknowledgement stall, readings per message and messages in flight.
fn session(cx: &mut Ctx, span: Range<usize>, u: &UpstreamFile) -> Session {
    let (keep_alive_s, at) = value_or(u.keep_alive_s.as_ref(), 30, span.clone());
    if !(5..=600).contains(&keep_alive_s) {
        cx.err(
            at,
            "upstream.keep_alive_s",
            format!(
                "{keep_alive_s}: expected 5..=600 (a dead link is noticed after about twice this)"
            ),
        );
    }
    let (ack_stall_s, at) = value_or(u.ack_stall_s.as_ref(), 120, span.clone());
    if !(10..=3600).contains(&ack_stall_s) {
        cx.err(
            at,
            "upstream.ack_stall_s",
            format!("{ack_stall_s}: expected 10..=3600 s without a PUBACK before a restart"),
        );
    }
    let (batch_max, at) = value_or(u.batch_max.as_ref(), 500, span.clone());
    if !(1..=5000).contains(&batch_max) {
        cx.err(
            at,
            "upstream.batch_max",
            format!("{batch_max}: expected 1..=5000 readings per message"),
        );
    }
    let (inflight, at) = value_or(u.inflight.as_ref(), 32, span);
    if !(1..=1000).contains(&inflight) {
        cx.err(
            at,
            "upstream.inflight",
            format!("{inflight}: expected 1..=1000"),
        );
    }
    Session {
        keep_alive: Duration::from_secs(keep_alive_s),
        ack_stall: Duration::from_secs(ack_stall_s),
        batch_max: batch_max as usize,
        inflight: inflight as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    const UPSTREAM: &str = "[upstream]\nbrokers = [\"platform.example.com:8883\"]\n\
        ca_file = \"/etc/plantgate/ca.crt\"\ncert_file = \"/etc/plantgate/gw.crt\"\n\
        key_file = \"/etc/plantgate/gw.key\"\n";

    fn with(more: &str) -> String {
        format!("{UPSTREAM}{more}{GATEWAY}{BUS}{DEVICE}")
    }

    #[test]
    fn accepted_with_defaults() {
        let u = check(&with("")).unwrap().upstream.unwrap();
        assert_eq!(
            u.brokers,
            [BrokerAddr {
                host: "platform.example.com".into(),
                port: 8883
            }]
        );
        assert_eq!(u.ca_file.to_str(), Some("/etc/plantgate/ca.crt"));
        assert_eq!(
            (
                u.topic_prefix.as_str(),
                u.client_id.as_str(),
                u.keep_alive,
                u.ack_stall,
                u.format,
                u.batch_max,
                u.inflight
            ),
            (
                "plantgate/gw-1",
                "gw-1",
                Duration::from_secs(30),
                Duration::from_secs(120),
                Format::Cbor,
                500,
                32
            )
        );
    }

    #[test]
    fn accepted_as_written() {
        let text = with(
            "topic_prefix = \"site/a\"\nclient_id = \"gw-a\"\nkeep_alive_s = 5\nformat = \"json\"\n\
             batch_max = 5000\ninflight = 1000\nack_stall_s = 10\n",
        );
        let u = check(&text).unwrap().upstream.unwrap();
        assert_eq!(
            (
                u.topic_prefix.as_str(),
                u.client_id.as_str(),
                u.keep_alive,
                u.ack_stall,
                u.format,
                u.batch_max,
                u.inflight
            ),
            (
                "site/a",
                "gw-a",
                Duration::from_secs(5),
                Duration::from_secs(10),
                Format::Json,
                5000,
                1000
            )
        );
    }

    #[test]
    fn at_least_one_broker() {
        let text = with("").replace("[\"platform.example.com:8883\"]", "[]");
        assert_eq!(
            refused(&text),
            ["2: upstream.brokers: needs at least one \"host:port\""]
        );
    }

    #[test]
    fn brokers_are_host_and_port() {
        let text = with("").replace(
            "[\"platform.example.com:8883\"]",
            "[\"a.example:8883\", \"b.example\"]",
        );
        assert_eq!(
            refused(&text),
            ["2: upstream.brokers[1]: \"b.example\" is not host:port such as platform.example.com:8883 (port 1..=65535)"]
        );
    }

    #[test]
    fn tls_files_are_named() {
        for (line, key) in [(3, "ca_file"), (4, "cert_file"), (5, "key_file")] {
            let text: String = with("")
                .lines()
                .map(|l| match l.starts_with(&format!("{key} =")) {
                    true => format!("{key} = \"\"\n"),
                    false => format!("{l}\n"),
                })
                .collect();
            assert_eq!(
                refused(&text),
                [format!("{line}: upstream.{key}: must name a PEM file")]
            );
        }
    }

    #[test]
    fn the_topic_prefix_is_one_brokers_deliver() {
        // every rule is tested in config::topic; here: it applies, at the key's line
        for (prefix, why) in [
            ("", "must not be empty"),
            ("site/+", "contains a wildcard ('+' or '#'), which a published topic may not have"),
            ("$SYS/plant", "starts with '$': brokers reserve such topics ($SYS) and drop what clients publish there"),
            ("site/", "has an empty level (a leading, trailing or doubled '/')"),
        ] {
            let text = with(&format!("topic_prefix = \"{prefix}\"\n"));
            assert_eq!(
                refused(&text),
                [format!("6: upstream.topic_prefix: \"{prefix}\" {why}")]
            );
        }
    }

    #[test]
    fn tls_broker_urls_are_normalised_and_plain_mqtt_is_refused() {
        let text = with("").replace(
            "[\"platform.example.com:8883\"]",
            "[\"mqtts://a.example:8883\", \"ssl://b.example:8884\"]",
        );
        let u = check(&text).unwrap().upstream.unwrap();
        let got: Vec<String> = u.brokers.iter().map(|b| b.to_string()).collect();
        assert_eq!(got, ["a.example:8883", "b.example:8884"]);
        let text = with("").replace(
            "[\"platform.example.com:8883\"]",
            "[\"a.example:8883\",\n \"mqtt://b.example:1883\"]",
        );
        assert_eq!(
            refused(&text),
            ["3: upstream.brokers[1]: \"mqtt://b.example:1883\" is MQTT without TLS; the uplink only speaks mutual TLS: give the broker's TLS listener, e.g. mqtts://platform.example.com:8883"]
        );
    }

    #[test]
    fn a_long_client_id_warns_at_its_line() {
        let text = with("client_id = \"a-very-long-client-id-for-gw-1\"\n");
        let c = check(&text).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(
            (c.warnings[0].line, c.warnings[0].path.as_str()),
            (Some(6), "upstream.client_id")
        );
        assert!(c.warnings[0].message.contains("is 30 characters"));
        assert_eq!(
            refused(&with("client_id = \"\"\n")),
            ["6: upstream.client_id: must not be empty (leave it out to use the gateway id)"]
        );
    }

    #[test]
    fn the_keep_alive_is_in_range() {
        for s in [4, 601] {
            let text = with(&format!("keep_alive_s = {s}\n"));
            assert_eq!(
                refused(&text),
                [format!("6: upstream.keep_alive_s: {s}: expected 5..=600 (a dead link is noticed after about twice this)")]
            );
        }
    }

    #[test]
    fn the_ack_stall_is_in_range() {
        for s in [9, 3601] {
            let text = with(&format!("ack_stall_s = {s}\n"));
            assert_eq!(
                refused(&text),
                [format!(
                    "6: upstream.ack_stall_s: {s}: expected 10..=3600 s without a PUBACK before a restart"
                )]
            );
        }
    }

    #[test]
    fn the_format_is_cbor_or_json() {
        let text = with("format = \"xml\"\n");
        assert_eq!(
            refused(&text),
            ["6: upstream.format: \"xml\": expected \"cbor\" or \"json\""]
        );
    }

    #[test]
    fn the_batch_is_in_range() {
        for n in [0, 5001] {
            let text = with(&format!("batch_max = {n}\n"));
            assert_eq!(
                refused(&text),
                [format!(
                    "6: upstream.batch_max: {n}: expected 1..=5000 readings per message"
                )]
            );
        }
    }

    #[test]
    fn inflight_is_in_range() {
        for n in [0, 1001] {
            let text = with(&format!("inflight = {n}\n"));
            assert_eq!(
                refused(&text),
                [format!("6: upstream.inflight: {n}: expected 1..=1000")]
            );
        }
    }
}
