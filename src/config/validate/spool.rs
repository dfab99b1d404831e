//! The `[spool]` section: how long a record may wait before it is durable, and how much disk
//! and memory the spool may use. Every key has a default; the section may be left out.
//!
//! Owns those limits. Pure: must never look at the disk.

use std::time::Duration;

use toml::Spanned;

use crate::config::ctx::{value_or, Ctx};
use crate::config::file::SpoolFile;
use crate::config::SpoolSettings;

pub(super) fn validate_spool(cx: &mut Ctx, spool: Option<&Spanned<SpoolFile>>) -> SpoolSettings {
    let (span, s) = match spool {
        Some(s) => (s.span(), s.get_ref()),
        None => (0..0, &SpoolFile::default()),
    };
    let (sync_ms, at) = value_or(s.sync_ms.as_ref(), 100, span.clone());
    if sync_ms > 1000 {
        cx.err(at, "spool.sync_ms", format!("{sync_ms}: expected 0..=1000 (records polled within this window can be lost on power failure)"));
    }
    let (max_bytes, at) = value_or(s.max_bytes.as_ref(), 512 << 20, span.clone());
    if max_bytes < (1 << 20) {
        cx.err(
            at,
            "spool.max_bytes",
            format!("{max_bytes}: expected at least 1048576 (1 MiB)"),
        );
    }
    let (cache_bytes, at) = value_or(s.cache_bytes.as_ref(), 16 << 20, span);
    if !((1 << 20)..=(1 << 30)).contains(&cache_bytes) {
        cx.err(
            at,
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

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    fn with(spool: &str) -> String {
        format!("[spool]\n{spool}{GATEWAY}{BUS}{DEVICE}")
    }

    #[test]
    fn accepted_and_defaults() {
        let s = check(&format!("{GATEWAY}{BUS}{DEVICE}")).unwrap().spool;
        assert_eq!(
            (s.sync, s.max_bytes, s.cache_bytes),
            (Duration::from_millis(100), 512 << 20, 16 << 20)
        );
        let text = with("sync_ms = 0\nmax_bytes = 1048576\ncache_bytes = 1073741824\n");
        let s = check(&text).unwrap().spool;
        assert_eq!(
            (s.sync, s.max_bytes, s.cache_bytes),
            (Duration::ZERO, 1 << 20, 1 << 30)
        );
    }

    #[test]
    fn sync_within_a_second() {
        assert_eq!(
            refused(&with("sync_ms = 1001\n")),
            ["2: spool.sync_ms: 1001: expected 0..=1000 (records polled within this window can be lost on power failure)"]
        );
    }

    #[test]
    fn at_least_a_mebibyte_of_disk() {
        assert_eq!(
            refused(&with("max_bytes = 1048575\n")),
            ["2: spool.max_bytes: 1048575: expected at least 1048576 (1 MiB)"]
        );
    }

    #[test]
    fn a_bounded_cache() {
        for bytes in [1_048_575u64, 1_073_741_825] {
            assert_eq!(
                refused(&with(&format!("cache_bytes = {bytes}\n"))),
                [format!(
                    "2: spool.cache_bytes: {bytes}: expected 1 MiB..=1 GiB"
                )]
            );
        }
    }
}
