//! The `[web]` and `[local_broker]` sections: where the status page and the optional local
//! MQTT broker listen.
//!
//! Owns those rules: an `IP:port` each (no names: nothing is resolved at start-up), and the
//! local broker's default topic prefix. Pure: must never bind the address.

use toml::Spanned;

use crate::config::ctx::{parse_socket, Ctx};
use crate::config::file::{LocalBrokerFile, WebFile};
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
    parse_socket(
        cx,
        lb.listen.span(),
        "local_broker.listen",
        lb.listen.get_ref(),
    )
    .map(|listen| LocalBroker {
        listen,
        topic_prefix: lb
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("plantgate/{gw}")),
    })
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
