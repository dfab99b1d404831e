//! The configuration loader (`Config::from_str`) on arbitrary text, on TOML token soup and on
//! mutations of the real configurations (`config/*.toml`, `tests/configs/bad/`, and the edge
//! files in `tests/fuzz-corpus/config/`): it never panics, every refusal names the file and a
//! line, and what it accepts is what `run` can use: validation gives the same result again, each
//! device's bus exists, and every point can be planned into reads and decoded.

use std::path::Path;
use std::sync::OnceLock;

use plantgate::config::{Config, ConfigError, Kind};
use plantgate::poll::decode::decode_words;
use plantgate::poll::plan::{plan, plan_alarm_points, MAX_BITS, MAX_REGISTERS};
use proptest::prelude::*;
use proptest::sample::{select, Index};

const NAME: &str = "fuzz.toml";

/// Loads `text`; fails on a panic-free result that still breaks a promise.
fn load(text: &str) -> Result<Option<Config>, TestCaseError> {
    let (result, largest) = crate::largest_allocation(|| Config::from_str(text, Path::new(NAME)));
    prop_assert!(
        largest <= 1 << 20 || largest <= 64 * text.len(),
        "{} bytes of text made an allocation of {largest}",
        text.len()
    );
    match result {
        Ok(c) => {
            check_accepted(text, &c)?;
            Ok(Some(c))
        }
        Err(e) => {
            check_located(&e)?;
            Ok(None)
        }
    }
}

/// Every refusal says where: `fuzz.toml: TOML parse error at line N, ...` or one
/// `fuzz.toml:N: path: message` line per problem.
fn check_located(e: &ConfigError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    match e {
        // The parser gives no place for its nesting limit (a key or value nested thousands
        // deep): the one refusal without a line.
        ConfigError::Parse { .. } => prop_assert!(
            msg.starts_with(NAME)
                && (has_line_number(&msg, "line ") || msg == format!("{NAME}: recursion limit")),
            "parse error without a line: {msg}"
        ),
        ConfigError::Invalid { problems, .. } => {
            prop_assert!(!problems.is_empty(), "refused without a problem");
            for line in msg.lines().skip(1) {
                prop_assert!(
                    has_line_number(line.trim_start(), "fuzz.toml:"),
                    "problem without a line: {line}"
                );
            }
            prop_assert_eq!(msg.lines().count(), problems.len() + 1, "{}", msg);
        }
        ConfigError::Read { .. } => prop_assert!(false, "from_str read a file: {msg}"),
    }
    Ok(())
}

fn has_line_number(msg: &str, before: &str) -> bool {
    msg.match_indices(before).any(|(at, _)| {
        msg[at + before.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() && c != '0')
    })
}

/// What `run` relies on in an accepted configuration.
fn check_accepted(text: &str, c: &Config) -> Result<(), TestCaseError> {
    let again = Config::from_str(text, Path::new(NAME))
        .map_err(|e| TestCaseError::fail(format!("accepted once, then: {e}")))?;
    prop_assert_eq!(
        format!("{again:?}"),
        format!("{c:?}"),
        "validation is not a function of the text"
    );
    for d in &c.devices {
        prop_assert!(d.bus < c.buses.len(), "device {} on bus {}", d.name, d.bus);
        let bus = c.bus_of(d);
        let blocks = plan(&d.points, bus.max_gap)
            .into_iter()
            .chain(plan_alarm_points(&d.points, bus.max_gap));
        let mut planned = vec![0; d.points.len()];
        for b in blocks {
            let limit = if b.table.is_bits() {
                MAX_BITS
            } else {
                MAX_REGISTERS
            };
            prop_assert!(b.count >= 1 && b.count <= limit, "{b:?}");
            prop_assert!(u32::from(b.start) + u32::from(b.count) <= 65_536, "{b:?}");
            for &(i, off) in &b.points {
                let p = &d.points[i];
                planned[i] += 1;
                prop_assert_eq!(p.table, b.table);
                prop_assert_eq!(u32::from(b.start) + u32::from(off), u32::from(p.address));
                prop_assert!(off + p.width() <= b.count, "{} outside {b:?}", p.name);
            }
        }
        for (p, n) in d.points.iter().zip(planned) {
            let want = if p.alarm.is_some() { 2 } else { 1 };
            prop_assert_eq!(n, want, "{} planned {} times", p.name, n);
            check_extremes_decode(p)?;
        }
    }
    Ok(())
}

/// check-config refuses a scale and offset that would read a register as infinity: every
/// integer register's smallest and largest raw value is a good value.
fn check_extremes_decode(p: &plantgate::config::Point) -> Result<(), TestCaseError> {
    if p.table.is_bits() || matches!(p.kind, Kind::F32 | Kind::Bool) {
        return Ok(());
    }
    let words: &[&[u16]] = match p.width() {
        1 => &[&[0], &[0x7FFF], &[0x8000], &[0xFFFF]],
        _ => &[
            &[0, 0],
            &[0x7FFF, 0xFFFF],
            &[0xFFFF, 0x7FFF],
            &[0x8000, 0],
            &[0, 0x8000],
            &[0xFFFF, 0xFFFF],
        ],
    };
    for w in words {
        prop_assert!(
            decode_words(p, w).is_some(),
            "{} (scale {}, offset {}) reads {w:x?} as no value",
            p.name,
            p.scale,
            p.offset
        );
    }
    Ok(())
}

/// The real configurations and the edge files: name and text.
fn seeds() -> &'static [(String, String)] {
    static SEEDS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut all = crate::files(&root.join("config"));
        all.extend(crate::files(&root.join("tests/configs/bad")));
        all.extend(crate::corpus("config"));
        all.into_iter()
            .filter(|(name, _)| name.ends_with(".toml"))
            .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
            .collect()
    })
}

const KEYS: [&str; 32] = [
    "id",
    "data_dir",
    "name",
    "rtu",
    "tcp",
    "port",
    "baud",
    "parity",
    "data_bits",
    "stop_bits",
    "timeout_ms",
    "turnaround_ms",
    "max_gap",
    "bus",
    "unit",
    "poll_ms",
    "alarm_poll_ms",
    "table",
    "address",
    "type",
    "word_order",
    "scale",
    "offset",
    "alarm",
    "limits",
    "deadband",
    "alarm_delay_ms",
    "rise_per_min",
    "stuck_after_s",
    "repeat",
    "profile",
    "brokers",
];

const TABLES: [&str; 11] = [
    "[gateway]",
    "[[bus]]",
    "[[device]]",
    "[[device.point]]",
    "[[profile]]",
    "[[profile.point]]",
    "[spool]",
    "[upstream]",
    "[web]",
    "[local_broker]",
    "[bus]",
];

/// TOML values of every kind, and numbers at every edge a field has.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "-1",
            "0",
            "-0",
            "1",
            "7",
            "255",
            "256",
            "65535",
            "65536",
            "4294967296",
            "9223372036854775807",
            "-9223372036854775808",
            "1e308",
            "-1e308",
            "5e-324",
            "nan",
            "-nan",
            "inf",
            "-inf",
            "0.0",
            "1.5",
            "0x10",
            "true",
            "false",
            "\"\"",
            "\"x\"",
            "\"{nn}\"",
            "\"mqtts://h:8883\"",
            "\"127.0.0.1:0\"",
            "\"$SYS\"",
            "[]",
            "[1, 2]",
            "[[[[[]]]]]",
            "{}",
            "{ above = 9.0, level = \"hi\" }",
            "[{ below = 1, level = \"lo\" }]",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "'''\nx\n'''",
            "\"\\u0000\"",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"\\PC{0,20}\"",
    ]
}

/// A line of TOML made of the file's own words.
fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        select(TABLES.to_vec()).prop_map(str::to_owned),
        (select(KEYS.to_vec()), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        "\\PC{0,30}",
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// The value after the line's `=`, replaced.
    ReplaceValue(Index, String),
    /// The line's first number, replaced.
    ReplaceNumber(Index, String),
    InsertLine(Index, String),
    Truncate(Index),
    InsertChar(Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::DeleteLine),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        3 => (any::<Index>(), toml_value()).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
        3 => (any::<Index>(), toml_value()).prop_map(|(i, v)| Edit::ReplaceNumber(i, v)),
        1 => (any::<Index>(), toml_line()).prop_map(|(i, l)| Edit::InsertLine(i, l)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match e {
            Edit::DeleteLine(i) => {
                lines.remove(i.index(n));
            }
            Edit::DuplicateLine(i) => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            Edit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
            Edit::ReplaceValue(i, v) => {
                let l = &mut lines[i.index(n)];
                if let Some(at) = l.find('=') {
                    *l = format!("{}= {v}", &l[..at]);
                }
            }
            Edit::ReplaceNumber(i, v) => {
                let l = &mut lines[i.index(n)];
                if let Some(start) = l.find(|c: char| c.is_ascii_digit()) {
                    let len = l[start..]
                        .find(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '_')
                        .unwrap_or(l.len() - start);
                    l.replace_range(start..start + len, v);
                }
            }
            Edit::InsertLine(i, l) => lines.insert(i.index(n + 1), l.clone()),
            Edit::Truncate(i) => {
                let l = &mut lines[i.index(n)];
                let cut = (0..=i.index(l.len() + 1))
                    .rev()
                    .find(|&c| l.is_char_boundary(c));
                l.truncate(cut.unwrap_or(0));
                lines.truncate(i.index(n) + 1);
            }
            Edit::InsertChar(i, c) => {
                let l = &mut lines[i.index(n)];
                let at = (0..=i.index(l.len() + 1))
                    .rev()
                    .find(|&a| l.is_char_boundary(a));
                l.insert(at.unwrap_or(0), *c);
            }
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(crate::budget(300))]

    #[test]
    fn arbitrary_text_is_refused_at_a_line_or_accepted_whole(text in "\\PC{0,200}") {
        load(&text)?;
    }

    #[test]
    fn toml_token_soup_is_refused_at_a_line_or_accepted_whole(
        lines in prop::collection::vec(toml_line(), 0..30),
    ) {
        load(&lines.join("\n"))?;
    }

    #[test]
    fn edited_real_configurations_are_refused_at_a_line_or_usable(
        seed in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let (_, text) = seed.get(seeds());
        load(&apply(text, &edits))?;
    }
}

/// The real configurations load (the example ones) or are refused at a line (the bad ones),
/// and the edge files neither panic nor hang.
#[test]
fn seed_configurations_keep_their_promises() {
    let mut accepted = 0;
    for (name, text) in seeds() {
        let got = load(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        accepted += usize::from(got.is_some());
    }
    // plantgate.example, gd16-rs485, modbus-tcp, tank-farm, and the edge files that are valid
    assert!(
        accepted >= 4,
        "only {accepted} seed configurations accepted"
    );
}
