//! The validation context: the file's text (to turn a span into a line), the problems found so
//! far, and the checks that more than one section shares (names, sockets, `host:port`).
//!
//! Owns how a problem is recorded and those shared rules. Used by every validation file; must
//! never import one of them back, so the sections depend on this and nothing depends on them.

use std::ops::Range;

use toml::Spanned;

use super::Problem;

/// Collects every problem of one file, each with its path and line.
pub(super) struct Ctx<'a> {
    text: &'a str,
    pub(super) problems: Vec<Problem>,
    /// What works but may surprise: reported by `check-config`, never a refusal.
    pub(super) warnings: Vec<Problem>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Ctx {
            text,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The 1-based line where `span` starts.
    fn line(&self, span: Range<usize>) -> Option<usize> {
        let start = span.start.min(self.text.len());
        Some(self.text[..start].bytes().filter(|b| *b == b'\n').count() + 1)
    }

    /// Records a problem at the line where `span` starts.
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
            message: one_line(message.into()),
        });
    }

    /// Records a warning at the line where `span` starts.
    pub(super) fn warn(
        &mut self,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line(span);
        self.warnings.push(Problem {
            line,
            path: path.into(),
            message: one_line(message.into()),
        });
    }
}

/// A message that quotes the file's value stays on its own line of the report: a newline or
/// a terminal escape in the value is shown escaped (`\n`, `\u{1b}`), never printed.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = match c.is_control() {
                true => c.escape_default().collect(),
                false => vec![c],
            };
            escaped
        })
        .collect()
}

/// `s` as a message shows it: control characters escaped, cut after 40 characters.
pub(super) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_default).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

/// Longest gateway id: it is in every topic, metric and (by default) the MQTT client id.
pub(super) const GATEWAY_ID_MAX: usize = 64;

/// Longest device, bus, profile or point name: it is a topic level and a metric label.
pub(super) const NAME_MAX: usize = 128;

/// An optional key's value and span, or `default` placed at `table` when the key is absent.
pub(super) fn value_or<T: Clone>(
    key: Option<&Spanned<T>>,
    default: T,
    table: Range<usize>,
) -> (T, Range<usize>) {
    match key {
        Some(k) => (k.get_ref().clone(), k.span()),
        None => (default, table),
    }
}

/// Names end up in MQTT topics and metric labels: keep them plain.
pub(super) fn check_name(cx: &mut Ctx, span: Range<usize>, path: &str, name: &str) {
    if name.is_empty() {
        cx.err(span, path, "must not be empty");
    } else if name.chars().count() > NAME_MAX {
        cx.err(
            span,
            path,
            format!(
                "\"{}\" is {} characters: at most {NAME_MAX}",
                shown(name),
                name.chars().count()
            ),
        );
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        cx.err(
            span,
            path,
            format!(
                "\"{}\" may only use letters, digits, '-', '_' and '.'",
                shown(name)
            ),
        );
    }
}

/// An `IP:port` to listen on.
pub(super) fn parse_socket(
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

/// `host:port` (or `[v6]:port`) with a non-empty host and a non-zero port.
pub(super) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_placed_on_the_line_its_span_starts() {
        let mut cx = Ctx::new("a = 1\nb = 2\n\nc = 3");
        cx.err(0..5, "a", "first");
        cx.err(8..9, "b", "second");
        cx.err(13..18, "c", "fourth");
        cx.err(99..100, "z", "past the end counts as the last line");
        let lines: Vec<_> = cx.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(4), Some(4)]);
        assert_eq!(cx.problems[1].path, "b");
        assert_eq!(cx.problems[1].message, "second");
    }

    #[test]
    fn a_value_with_a_newline_or_an_escape_stays_on_its_problems_line() {
        // found by fuzzing: table = '''\nx\n''' printed its newlines into the report
        let mut cx = Ctx::new("x");
        cx.err(0..1, "t", "\"\nx\n\": expected \"holding\"");
        cx.warn(0..1, "w", "\u{1b}[31mred");
        assert_eq!(cx.problems[0].message, "\"\\nx\\n\": expected \"holding\"");
        assert_eq!(cx.warnings[0].message, "\\u{1b}[31mred");
    }

    #[test]
    fn names_are_plain() {
        let mut cx = Ctx::new("x");
        check_name(&mut cx, 0..1, "ok", "gas-1_a.b");
        check_name(&mut cx, 0..1, "empty", "");
        check_name(&mut cx, 0..1, "slash", "gas/1");
        check_name(&mut cx, 0..1, "longest", &"a".repeat(NAME_MAX));
        check_name(&mut cx, 0..1, "long", &"a".repeat(NAME_MAX + 1));
        let got: Vec<_> = cx
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            got,
            [
                "empty: must not be empty",
                "slash: \"gas/1\" may only use letters, digits, '-', '_' and '.'",
                "long: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is 129 characters: at most 128",
            ]
        );
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown("a\0b\n"), "a\\u{0}b\\n");
        assert_eq!(shown(&"x".repeat(70_000)), format!("{}...", "x".repeat(40)));
    }

    #[test]
    fn sockets_need_an_ip_and_a_port() {
        let mut cx = Ctx::new("x");
        assert_eq!(
            parse_socket(&mut cx, 0..1, "w", "[::1]:80"),
            Some("[::1]:80".parse().unwrap())
        );
        assert!(cx.problems.is_empty());
        assert_eq!(parse_socket(&mut cx, 0..1, "w", "localhost:80"), None);
        assert_eq!(
            cx.problems[0].message,
            "\"localhost:80\" is not an IP:port such as 127.0.0.1:8080"
        );
    }

    #[test]
    fn host_port_splits_at_the_last_colon() {
        assert_eq!(
            split_host_port("plc.example:502"),
            Some(("plc.example".into(), 502))
        );
        assert_eq!(
            split_host_port("[fe80::1]:8883"),
            Some(("fe80::1".into(), 8883))
        );
        for bad in ["plc", ":502", "plc:0", "plc:65536", "plc:x"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }
}
