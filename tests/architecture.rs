//! The import rules of ARCHITECTURE.md's invariants, checked on the source: which modules may
//! name which crate or component. Comments and string literals are left out, so a doc that
//! mentions redb is fine and code that uses it is not.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as (path relative to the crate, code without comments and
/// string literals).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p: PathBuf = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, code_only(&std::fs::read_to_string(&p).unwrap())));
            }
        }
    }
    assert!(out.len() > 50, "too few sources found: {}", out.len());
    out
}

/// `text` without `//` comments, `/* */` comments and the contents of string literals
/// (plain and raw), good enough for this crate's style.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let end = format!("\"{}", "#".repeat(hashes));
                let from = i + 2 + hashes;
                i = text[from..]
                    .find(&end)
                    .map_or(b.len(), |n| from + n + end.len());
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // a char literal such as '"' must not open a string
            b'\'' if b.get(i + 2) == Some(&b'\'') => {
                out.push_str("' '");
                i += 3;
            }
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => {
                out.push_str("' '");
                i += 4;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Files (outside `allowed`, path prefixes) whose code contains `needle`.
fn users(sources: &[(String, String)], needle: &str, allowed: &[&str]) -> Vec<String> {
    sources
        .iter()
        .filter(|(path, code)| {
            code.contains(needle) && !allowed.iter().any(|a| path.starts_with(a))
        })
        .map(|(path, _)| path.clone())
        .collect()
}

fn src() -> Vec<(String, String)> {
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn the_scanner_sees_code_and_skips_comments_and_strings() {
    let code = code_only(
        "use redb::Database; // redb::x\n/* rumqttd */ let s = \"crate::poll\"; let r = r#\"unsafe\"#; let c = '\"'; f(redb::A);",
    );
    assert!(code.contains("use redb::Database;"));
    assert!(code.contains("f(redb::A)"));
    for gone in ["redb::x", "rumqttd", "crate::poll", "unsafe"] {
        assert!(!code.contains(gone), "{gone} left in {code:?}");
    }
}

#[test]
fn only_the_spool_store_uses_redb() {
    // scan.rs: the integrity check run in a child process before the store opens the file
    // (src/spool/mod.rs), the one documented exception
    let s = src();
    assert!(
        !users(&s, "redb::", &[]).is_empty(),
        "the rule checks nothing"
    );
    assert_eq!(
        users(&s, "redb::", &["src/spool/store/", "src/spool/scan.rs"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_uplink_the_local_broker_and_the_demo_platform_use_rumqttc() {
    // uplink: the upstream session; broker/local.rs: rumqttc's packet codec for the read-only
    // LAN broker; app/demo: the platform's subscriber
    assert_eq!(
        users(
            &src(),
            "rumqttc",
            &["src/uplink/", "src/broker/local.rs", "src/app/demo/"]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_broker_uses_rumqttd() {
    let s = src();
    assert!(
        !users(&s, "rumqttd::", &[]).is_empty(),
        "the rule checks nothing"
    );
    assert_eq!(users(&s, "rumqttd", &["src/broker/"]), Vec::<String>::new());
}

#[test]
fn config_and_record_import_no_component() {
    let s: Vec<_> = src()
        .into_iter()
        .filter(|(p, _)| p.starts_with("src/config/") || p.starts_with("src/record/"))
        .collect();
    assert!(s.len() > 10);
    for component in [
        "poll", "spool", "uplink", "web", "app", "broker", "health", "status", "sim",
    ] {
        assert_eq!(
            users(&s, &format!("crate::{component}"), &[]),
            Vec::<String>::new(),
            "{component}"
        );
    }
}

#[test]
fn unsafe_is_allowed_only_for_the_rs485_ioctl() {
    let s = src();
    assert_eq!(
        users(&s, "unsafe", &["src/poll/rs485.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(
        users(&s, "allow(unsafe_code)", &["src/poll/rs485.rs"]),
        Vec::<String>::new()
    );
}
