//! Addresses to connect to, as people write them: `host:port` for a Modbus TCP device, and the
//! forms MQTT tools print for a broker (`host:port`, `mqtts://host:port`, `ssl://host:port`).
//!
//! Owns the rules that a host is a DNS name or an IP address, that a URL scheme is either one
//! we can honour (TLS) or refused with the reason, and the normal form `host:port`. Pure: must
//! never resolve a name (that would make `check-config` depend on the network).

use std::net::IpAddr;

use super::ctx::{shown, split_host_port};

/// A host is an IP address or a DNS name: labels of 1–63 letters, digits and '-' (not at
/// either end), 253 characters in all, one trailing '.' allowed.
pub(super) fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "\"{}\" is not a host name or an IP address",
            shown(host)
        ));
    }
    if name
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("\"{}\" is not an IPv4 address", shown(host)));
    }
    Ok(())
}

/// `host:port`, no scheme, no space, a valid host and a non-zero port.
pub(super) fn host_port(s: &str, example: &str) -> Result<(String, u16), String> {
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!(
            "\"{}\": write host:port such as {example}, without \"{}://\"",
            shown(s),
            shown(scheme)
        ));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "\"{}\" contains a space: expected host:port such as {example}",
            shown(s)
        ));
    }
    let (host, port) = split_host_port(s).ok_or_else(|| {
        format!(
            "\"{}\" is not host:port such as {example} (port 1..=65535)",
            shown(s)
        )
    })?;
    check_host(&host)?;
    Ok((host, port))
}

const BROKER_EXAMPLE: &str = "platform.example.com:8883";

/// A broker: `host:port`, or `mqtts://host:port` / `ssl://host:port` (what EMQX, HiveMQ and
/// Neuron users write), normalised to host and port. Schemes without TLS are refused: the
/// uplink speaks mutual TLS only.
pub(super) fn broker(s: &str) -> Result<(String, u16), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return host_port(s, BROKER_EXAMPLE);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "mqtts" | "ssl" | "tls" => host_port(rest, BROKER_EXAMPLE)
            .map_err(|why| format!("\"{}\": {why}", shown(s))),
        "mqtt" | "tcp" => Err(format!(
            "\"{}\" is MQTT without TLS; the uplink only speaks mutual TLS: give the broker's TLS listener, e.g. mqtts://{BROKER_EXAMPLE}",
            shown(s)
        )),
        "ws" | "wss" => Err(format!(
            "\"{}\": MQTT over WebSocket is not supported; give the broker's TLS listener, e.g. mqtts://{BROKER_EXAMPLE}",
            shown(s)
        )),
        other => Err(format!(
            "\"{}\": unknown scheme \"{}://\"; expected host:port or mqtts://host:port such as mqtts://{BROKER_EXAMPLE}",
            shown(s),
            shown(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_ips() {
        for ok in [
            "plc-1",
            "platform.example.com",
            "platform.example.com.",
            "10.0.0.5",
            "fe80::1",
            "a1.b2",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "local host",
            "a..b",
            "-plc",
            "plc-",
            "plc_1",
            "host/path",
            "999.1.1.1",
            "10.0.0",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_host(&format!("{}.example", "a".repeat(64))).is_err());
        assert!(check_host(&["abc"; 64].join(".")).is_err(), "over 253");
    }

    #[test]
    fn a_modbus_address_is_plain_host_port() {
        assert_eq!(host_port("10.0.0.5:502", "x"), Ok(("10.0.0.5".into(), 502)));
        assert_eq!(
            host_port("modbus://10.0.0.5:502", "192.168.1.50:502"),
            Err("\"modbus://10.0.0.5:502\": write host:port such as 192.168.1.50:502, without \"modbus://\"".into())
        );
        assert_eq!(
            host_port("local host:502", "h:502"),
            Err("\"local host:502\" contains a space: expected host:port such as h:502".into())
        );
        assert_eq!(
            host_port("plc_1:502", "h:502"),
            Err("\"plc_1\" is not a host name or an IP address".into())
        );
    }

    #[test]
    fn tls_broker_urls_are_accepted_as_host_port() {
        for s in [
            "broker.example:8883",
            "mqtts://broker.example:8883",
            "ssl://broker.example:8883",
            "MQTTS://broker.example:8883",
        ] {
            assert_eq!(broker(s), Ok(("broker.example".into(), 8883)), "{s}");
        }
        assert_eq!(broker("mqtts://[::1]:8883"), Ok(("::1".into(), 8883)));
    }

    #[test]
    fn brokers_without_tls_or_with_other_schemes_are_refused_with_the_reason() {
        for s in ["mqtt://broker.example:1883", "tcp://broker.example:1883"] {
            let e = broker(s).unwrap_err();
            assert!(e.contains("without TLS"), "{e}");
        }
        assert!(broker("wss://b.example:443")
            .unwrap_err()
            .contains("WebSocket"));
        assert_eq!(
            broker("http://b.example:80"),
            Err("\"http://b.example:80\": unknown scheme \"http://\"; expected host:port or mqtts://host:port such as mqtts://platform.example.com:8883".into())
        );
        assert_eq!(
            broker("mqtts://b.example"),
            Err("\"mqtts://b.example\": \"b.example\" is not host:port such as platform.example.com:8883 (port 1..=65535)".into())
        );
        assert!(broker("local host:8883")
            .unwrap_err()
            .contains("contains a space"));
    }
}
