//! The `[web]` and `[local_broker]` sections: where the status page and the optional local
//! MQTT broker listen.
//!
//! Owns those rules: an `IP:port` each (no names: nothing is resolved at start-up), not the
//! same port on overlapping addresses, and the local broker's topic prefix (default and
//! checks). Pure: must never bind the address.

use toml::Spanned;

use crate::config::ctx::{parse_socket, value_or, Ctx};
use crate::config::file::{File, LocalBrokerFile, WebFile};
use crate::config::topic::check_prefix;
use crate::config::{LocalBroker, Web};

pub(super) fn validate_web(cx: &mut Ctx, web: Option<&Spanned<WebFile>>) -> Option<Web> {
    let w = web?;
    let listen = &w.get_ref().listen;
    parse_socket(cx, listen.span(), "web.listen", listen.get_ref()).map(|listen| Web { listen })
}

pub(super) fn validate_local_broker(
    cx: &mut Ctx,
    broker: Option<&Spanned<LocalBrokerFile>>,
    gw: &str,
) -> Option<LocalBroker> {
    let b = broker?;
    let lb = b.get_ref();
    let (topic_prefix, at) = value_or(
        lb.topic_prefix.as_ref(),
        format!("plantgate/{gw}"),
        b.span(),
    );
    if lb.topic_prefix.is_some() {
        check_prefix(cx, at, "local_broker.topic_prefix", &topic_prefix);
    }
    parse_socket(
        cx,
        lb.listen.span(),
        "local_broker.listen",
        lb.listen.get_ref(),
    )
    .map(|listen| LocalBroker {
        listen,
        topic_prefix,
    })
}

/// The status page and the local broker cannot share a port on overlapping addresses: the
/// second to bind would fail at start-up.
pub(super) fn check_ports(
    cx: &mut Ctx,
    file: &File,
    web: Option<&Web>,
    broker: Option<&LocalBroker>,
) {
    let (Some(w), Some(b), Some(lb)) = (web, broker, file.local_broker.as_ref()) else {
        return;
    };
    let overlap = w.listen.ip() == b.listen.ip()
        || w.listen.ip().is_unspecified()
        || b.listen.ip().is_unspecified();
    if w.listen.port() == b.listen.port() && overlap {
        cx.err(
            lb.get_ref().listen.span(),
            "local_broker.listen",
            format!(
                "{} overlaps web.listen {}: the status page and the local broker need different ports",
                b.listen, w.listen
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;

    fn with(first: &str) -> String {
        format!("{first}{GATEWAY}{BUS}{DEVICE}")
    }

    #[test]
    fn accepted() {
        let c = check(&with(
            "[web]\nlisten = \"0.0.0.0:8080\"\n[local_broker]\nlisten = \"127.0.0.1:1883\"\n",
        ))
        .unwrap();
        assert_eq!(c.web.unwrap().listen, "0.0.0.0:8080".parse().unwrap());
        let b = c.local_broker.unwrap();
        assert_eq!(
            (b.listen, b.topic_prefix.as_str()),
            ("127.0.0.1:1883".parse().unwrap(), "plantgate/gw-1")
        );
        let b = check(&with(
            "[local_broker]\nlisten = \"[::1]:1883\"\ntopic_prefix = \"site\"\n",
        ))
        .unwrap()
        .local_broker
        .unwrap();
        assert_eq!(b.topic_prefix, "site");
    }

    #[test]
    fn the_local_broker_prefix_is_checked_like_upstream() {
        assert_eq!(
            refused(&with(
                "[local_broker]\nlisten = \"127.0.0.1:1883\"\ntopic_prefix = \"$SYS/plant\"\n"
            )),
            ["3: local_broker.topic_prefix: \"$SYS/plant\" starts with '$': brokers reserve such topics ($SYS) and drop what clients publish there"]
        );
    }

    #[test]
    fn the_page_and_the_broker_need_different_ports() {
        for (web, broker) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "[::]:8080"),
        ] {
            assert_eq!(
                refused(&with(&format!(
                    "[web]\nlisten = \"{web}\"\n[local_broker]\nlisten = \"{broker}\"\n"
                ))),
                [format!("4: local_broker.listen: {} overlaps web.listen {web}: the status page and the local broker need different ports", broker.parse::<std::net::SocketAddr>().unwrap())]
            );
        }
        // same port on two different addresses is fine
        assert!(check(&with(
            "[web]\nlisten = \"127.0.0.1:8080\"\n[local_broker]\nlisten = \"127.0.0.2:8080\"\n"
        ))
        .is_ok());
    }

    #[test]
    fn the_status_page_listens_on_an_ip_and_port() {
        assert_eq!(
            refused(&with("[web]\nlisten = \"localhost:8080\"\n")),
            ["2: web.listen: \"localhost:8080\" is not an IP:port such as 127.0.0.1:8080"]
        );
    }

    #[test]
    fn the_local_broker_listens_on_an_ip_and_port() {
        assert_eq!(
            refused(&with("[local_broker]\nlisten = \"1883\"\n")),
            ["2: local_broker.listen: \"1883\" is not an IP:port such as 127.0.0.1:8080"]
        );
    }
}
