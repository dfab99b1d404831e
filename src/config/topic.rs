//! MQTT names the gateway publishes under: topic prefixes (upstream and local broker) and the
//! upstream client id.
//!
//! Owns what a broker would refuse or silently drop: a prefix starting with `$` (brokers keep
//! `$SYS/...` for themselves; mosquitto acknowledges and discards such publishes, so records
//! would be deleted as delivered), wildcards, NUL, empty levels, and lengths. Pure.
//!
//! Client ids: MQTT 3.1.1 (§3.1.3.1) requires a broker to accept 1–23 characters and lets it
//! refuse longer ids; mosquitto, EMQX and HiveMQ accept them, and the default id is the gateway
//! id (up to 64). So over 23 is a warning, over [`CLIENT_ID_MAX`] a refusal.

use std::ops::Range;

use super::ctx::{shown, Ctx};

/// Longest topic prefix. MQTT allows 65,535 bytes for a whole topic; a prefix is followed by
/// device and point names, and a long one costs bytes in every message.
pub(super) const PREFIX_MAX: usize = 1024;
/// Longest client id accepted (bytes).
pub(super) const CLIENT_ID_MAX: usize = 256;
/// Longest client id every MQTT 3.1.1 broker must accept.
pub(super) const CLIENT_ID_PORTABLE: usize = 23;

/// Refuses a topic prefix that no broker would deliver.
pub(super) fn check_prefix(cx: &mut Ctx, span: Range<usize>, path: &str, p: &str) {
    let why = if p.is_empty() {
        "must not be empty".to_string()
    } else if p.len() > PREFIX_MAX {
        format!(
            "is {} bytes: at most {PREFIX_MAX} (MQTT allows 65,535 for a whole topic)",
            p.len()
        )
    } else if p.starts_with('$') {
        "starts with '$': brokers reserve such topics ($SYS) and drop what clients publish there"
            .to_string()
    } else if p.contains(['+', '#']) {
        "contains a wildcard ('+' or '#'), which a published topic may not have".to_string()
    } else if p.contains('\0') {
        "contains a NUL character".to_string()
    } else if p.split('/').any(str::is_empty) {
        "has an empty level (a leading, trailing or doubled '/')".to_string()
    } else {
        return;
    };
    cx.err(span, path, format!("\"{}\" {why}", shown(p)));
}

/// Refuses a client id no broker accepts; warns when a strict 3.1.1 broker may refuse it.
pub(super) fn check_client_id(cx: &mut Ctx, span: Range<usize>, path: &str, id: &str) {
    if id.is_empty() {
        cx.err(
            span,
            path,
            "must not be empty (leave it out to use the gateway id)",
        );
    } else if id.contains('\0') {
        cx.err(
            span,
            path,
            format!("\"{}\" contains a NUL character", shown(id)),
        );
    } else if id.len() > CLIENT_ID_MAX {
        cx.err(
            span,
            path,
            format!(
                "\"{}\" is {} bytes: at most {CLIENT_ID_MAX}",
                shown(id),
                id.len()
            ),
        );
    } else if id.chars().count() > CLIENT_ID_PORTABLE {
        cx.warn(span, path, format!(
            "\"{}\" is {} characters; MQTT 3.1.1 lets a broker refuse client ids over {CLIENT_ID_PORTABLE} (mosquitto, EMQX and HiveMQ accept them): set a shorter client_id if the broker refuses the connection",
            shown(id),
            id.chars().count()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: impl Fn(&mut Ctx)) -> (Vec<String>, Vec<String>) {
        let mut cx = Ctx::new("x");
        f(&mut cx);
        let show = |v: &[crate::config::Problem]| v.iter().map(|p| p.message.clone()).collect();
        (show(&cx.problems), show(&cx.warnings))
    }

    #[test]
    fn a_plain_prefix_passes() {
        for p in ["plantgate/gw-1", "site", "a/b/c", &"x".repeat(PREFIX_MAX)] {
            assert_eq!(
                problems(|cx| check_prefix(cx, 0..1, "t", p)),
                (vec![], vec![])
            );
        }
    }

    #[test]
    fn prefixes_brokers_drop_or_refuse_are_refused() {
        for (p, why) in [
            ("", "must not be empty"),
            ("$SYS/plant", "starts with '$'"),
            ("site/+", "contains a wildcard"),
            ("site/#", "contains a wildcard"),
            ("site\0x", "contains a NUL character"),
            ("site//a", "has an empty level"),
            ("/site", "has an empty level"),
            ("site/", "has an empty level"),
        ] {
            let (errs, _) = problems(|cx| check_prefix(cx, 0..1, "t", p));
            assert_eq!(errs.len(), 1, "{p:?}");
            assert!(errs[0].contains(why), "{p:?}: {}", errs[0]);
        }
        let long = "x".repeat(70_000);
        let (errs, _) = problems(|cx| check_prefix(cx, 0..1, "t", &long));
        assert_eq!(
            errs,
            [format!(
                "\"{}...\" is 70000 bytes: at most 1024 (MQTT allows 65,535 for a whole topic)",
                "x".repeat(40)
            )]
        );
    }

    #[test]
    fn client_ids_over_23_warn_and_over_256_are_refused() {
        assert_eq!(
            problems(|cx| check_client_id(cx, 0..1, "c", &"g".repeat(23))),
            (vec![], vec![])
        );
        let (errs, warns) = problems(|cx| check_client_id(cx, 0..1, "c", &"g".repeat(24)));
        assert!(errs.is_empty());
        assert!(
            warns[0]
                .contains("is 24 characters; MQTT 3.1.1 lets a broker refuse client ids over 23"),
            "{warns:?}"
        );
        let (errs, _) = problems(|cx| check_client_id(cx, 0..1, "c", &"g".repeat(257)));
        assert!(errs[0].ends_with("is 257 bytes: at most 256"), "{errs:?}");
        let (errs, _) = problems(|cx| check_client_id(cx, 0..1, "c", ""));
        assert!(errs[0].starts_with("must not be empty"));
        let (errs, _) = problems(|cx| check_client_id(cx, 0..1, "c", "a\0"));
        assert!(errs[0].contains("NUL"));
    }
}
