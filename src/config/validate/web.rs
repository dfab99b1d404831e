//! The `[web]` and `[local_broker]` sections: where the status page and the optional local
//! MQTT broker listen.
//!
//! Owns those rules: an `IP:port` each (no names: nothing is resolved at start-up), not the
//! same port on overlapping addresses, the local broker's topic prefix (default and checks) and
//! its optional login. Pure: must never bind the address.

use std::ops::Range;

use toml::Spanned;

use crate::config::ctx::{parse_socket, value_or, Ctx};
use crate::config::file::{File, LocalBrokerFile, WebFile};
use crate::config::topic::check_prefix;
use crate::config::{LocalBroker, Login, Web};

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
        login: login(cx, b.span(), lb),
    })
}

/// `username` and `password` come together; a password shorter than 8 characters is no lock.
fn login(cx: &mut Ctx, span: Range<usize>, lb: &LocalBrokerFile) -> Option<Login> {
    match (&lb.username, &lb.password) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            let (u, p) = (u.get_ref().trim(), p.get_ref());
            if u.is_empty() {
                let at = lb.username.as_ref().map_or(span.clone(), |u| u.span());
                cx.err(at, "local_broker.username", "must not be empty");
            }
            if p.chars().count() < 8 {
                let at = lb.password.as_ref().map_or(span, |p| p.span());
                cx.err(at, "local_broker.password", "must be at least 8 characters");
            }
            Some(Login {
                username: u.to_string(),
                password: p.clone(),
            })
        }
        (Some(u), None) => {
            cx.err(
                u.span(),
                "local_broker.password",
                "a username needs a password",
            );
            None
        }
        (None, Some(p)) => {
            cx.err(
                p.span(),
                "local_broker.username",
                "a password needs a username",
            );
            None
        }
    }
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

    #[test]
    fn the_local_broker_login_comes_whole_and_is_not_trivial() {
        let ok = check(&format!(
            "{GATEWAY}{BUS}{DEVICE}[local_broker]\nlisten = \"127.0.0.1:1883\"\nusername = \"hmi\"\npassword = \"s3cret-enough\"\n"
        ))
        .unwrap();
        let login = ok.local_broker.unwrap().login.unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("hmi", "s3cret-enough")
        );
        assert!(
            !format!("{login:?}").contains("s3cret"),
            "the password is not in Debug"
        );
        let text = |more: &str| {
            format!("{GATEWAY}{BUS}{DEVICE}[local_broker]\nlisten = \"127.0.0.1:1883\"\n{more}")
        };
        let short = refused(&text("username = \"hmi\"\npassword = \"short\"\n"));
        assert!(
            short[0].ends_with("local_broker.password: must be at least 8 characters"),
            "{short:?}"
        );
        let alone = refused(&text("username = \"hmi\"\n"));
        assert!(
            alone[0].ends_with("local_broker.password: a username needs a password"),
            "{alone:?}"
        );
        let alone = refused(&text("password = \"long enough\"\n"));
        assert!(
            alone[0].ends_with("local_broker.username: a password needs a username"),
            "{alone:?}"
        );
    }
}
