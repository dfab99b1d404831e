//! The `[gateway]` section: the gateway's id (in every topic and metric) and its data directory.
//!
//! Owns those two rules. Pure: must never look at the directory itself.

use std::sync::Arc;

use toml::Spanned;

use crate::config::ctx::{check_name, shown, Ctx, GATEWAY_ID_MAX};
use crate::config::file::GatewayFile;
use crate::config::Gateway;

pub(super) fn validate_gateway(cx: &mut Ctx, gateway: &Spanned<GatewayFile>) -> Gateway {
    let gw = gateway.get_ref();
    let id = gw.id.get_ref();
    let chars = id.chars().count();
    if chars > GATEWAY_ID_MAX {
        cx.err(
            gw.id.span(),
            "gateway.id",
            format!(
                "\"{}\" is {chars} characters: at most {GATEWAY_ID_MAX}",
                shown(id)
            ),
        );
    } else {
        check_name(cx, gw.id.span(), "gateway.id", id);
    }
    if gw.data_dir.get_ref().as_os_str().is_empty() {
        cx.err(
            gw.data_dir.span(),
            "gateway.data_dir",
            "must name a directory",
        );
    }
    Gateway {
        id: Arc::from(gw.id.get_ref().as_str()),
        data_dir: gw.data_dir.get_ref().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;

    fn with(gateway: &str) -> String {
        format!("{gateway}{BUS}{DEVICE}")
    }

    #[test]
    fn accepted() {
        let c = check(&with(GATEWAY)).unwrap();
        assert_eq!(&*c.gateway.id, "gw-1");
        assert_eq!(c.gateway.data_dir.to_str(), Some("/var/lib/plantgate"));
    }

    #[test]
    fn the_id_must_not_be_empty() {
        let text = with(&GATEWAY.replace("\"gw-1\"", "\"\""));
        assert_eq!(refused(&text), ["2: gateway.id: must not be empty"]);
    }

    #[test]
    fn the_id_is_plain() {
        let text = with(&GATEWAY.replace("gw-1", "gw/1"));
        assert_eq!(
            refused(&text),
            ["2: gateway.id: \"gw/1\" may only use letters, digits, '-', '_' and '.'"]
        );
    }

    #[test]
    fn the_id_is_at_most_64_characters() {
        assert!(check(&with(&GATEWAY.replace("gw-1", &"g".repeat(64)))).is_ok());
        let text = with(&GATEWAY.replace("gw-1", &"g".repeat(70_000)));
        assert_eq!(
            refused(&text),
            [format!(
                "2: gateway.id: \"{}...\" is 70000 characters: at most 64",
                "g".repeat(40)
            )]
        );
    }

    #[test]
    fn the_data_dir_is_named() {
        let text = with(&GATEWAY.replace("/var/lib/plantgate", ""));
        assert_eq!(
            refused(&text),
            ["3: gateway.data_dir: must name a directory"]
        );
    }
}
