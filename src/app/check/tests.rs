//! check-config's tests: the summary, refusals, warnings and TLS checks on real files.
//! Tests only; the rules are in the parent module.

use super::*;

const GATEWAY: &str = "[gateway]\nid = \"gw-1\"\ndata_dir = \"/var/lib/plantgate\"\n\
    [[bus]]\nname = \"line-1\"\nrtu = { port = \"/dev/ttyUSB0\", baud = 19200, parity = \"even\" }\n\
    [[bus]]\nname = \"lan\"\ntcp = { address = \"10.0.0.5:502\" }\ntimeout_ms = 300\n\
    [[device]]\nname = \"gas-1\"\nbus = \"line-1\"\nunit = 3\npoll_ms = 500\n\
    [[device.point]]\nname = \"ch1\"\ntable = \"input\"\naddress = 0\ntype = \"u16\"\n\
    [[device.point]]\nname = \"ch2\"\ntable = \"input\"\naddress = 1\ntype = \"u16\"\nalarm = { 0 = \"normal\", 1 = \"high\" }\n\
    [[device.point]]\nname = \"door\"\ntable = \"discrete\"\naddress = 7\ntype = \"bool\"\nalarm = true\n\
    [[device]]\nname = \"fire\"\nbus = \"lan\"\nunit = 0\n\
    [[device.point]]\nname = \"zone\"\ntable = \"holding\"\naddress = 100\ntype = \"u16\"\n\
    [web]\nlisten = \"127.0.0.1:8080\"\n";

fn upstream(dir: &Path) -> String {
    format!(
        "[upstream]\nbrokers = [\"platform.example.com:8883\", \"backup.example.com:8883\"]\n\
         ca_file = \"{0}/ca.crt\"\ncert_file = \"{0}/gw.crt\"\nkey_file = \"{0}/gw.key\"\n",
        dir.display()
    )
}

fn run(path: &Path, strict: bool) -> (Verdict, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let v = check_config(path, strict, &mut out, &mut err).unwrap();
    (
        v,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Whether the check ended with its `OK` line. Not `contains("OK")`: the temporary
/// directory's random name in the summary can hold "OK" (it did: `/tmp/.tmpOKYbRG`).
fn said_ok(out: &str) -> bool {
    out.lines().any(|l| l == "OK")
}

#[test]
fn an_overloaded_line_is_warned_about() {
    let config = |poll_ms: u64, alarm_poll: &str| {
        let mut text = String::from(
            "[gateway]\nid = \"g\"\ndata_dir = \"/tmp/x\"\n\
             [[bus]]\nname = \"slow\"\nrtu = { port = \"/dev/ttyUSB0\", baud = 9600 }\n",
        );
        for u in 1..=12 {
            text += &format!(
                "[[device]]\nname = \"d{u}\"\nbus = \"slow\"\nunit = {u}\npoll_ms = {poll_ms}\n{alarm_poll}\
                 [[device.point]]\nname = \"ch{{nn}}\"\ntable = \"input\"\naddress = 100\nrepeat = 16\n\
                 type = \"u16\"\nalarm = {{ 0 = \"normal\", 1 = \"high\" }}\n"
            );
        }
        Config::from_str(&text, Path::new("x.toml")).unwrap()
    };
    // twelve 16-channel controllers whose alarm points are read every 200 ms at 9600 baud
    let s = summary(&config(1000, "alarm_poll_ms = 200\n"));
    assert!(
        s.contains("warning: bus slow: these cadences need about"),
        "{s}"
    );
    // the same controllers polled every 5 s fit
    let s = summary(&config(5000, ""));
    assert!(!s.contains("warning"), "{s}");
}

#[test]
fn summary_names_every_bus_device_and_read_plan() {
    let c = Config::from_str(GATEWAY, Path::new("/etc/plantgate.toml")).unwrap();
    let s = summary(&c);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("/etc/plantgate.toml (sha256 "), "{s}");
    assert_eq!(
        lines[1..],
        [
            "  gateway gw-1   data in /var/lib/plantgate",
            "  bus line-1: RTU /dev/ttyUSB0 19200 8E1, timeout 1000 ms",
            // input 0..=1 is one read, discrete 7 another
            "    device gas-1 unit 3: 3 points (2 alarm points) in 2 reads every 500 ms",
            "    line load: about 5 % of the line's time",
            "  bus lan: TCP 10.0.0.5:502, timeout 300 ms",
            "    device fire unit 0: 1 points (0 alarm points) in 1 read every 1000 ms",
            "  spool: commit every 100 ms, at most 512 MiB",
            "  upstream: none (records stay in the spool)",
            "  status page: http://127.0.0.1:8080",
        ]
    );
}

#[test]
fn a_broken_file_is_refused_with_its_problems_on_err() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, GATEWAY.replace("unit = 3", "unit = 0")).unwrap();
    let (v, out, err) = run(&path, false);
    assert_eq!(v, Verdict::Refused);
    assert_eq!(out, "");
    assert!(
        err.contains("device[0].unit: 0: expected 1..=247 on an RTU bus"),
        "{err}"
    );
}

#[test]
fn missing_tls_files_warn_and_refuse_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, format!("{GATEWAY}{}", upstream(dir.path()))).unwrap();
    let (v, out, err) = run(&path, false);
    assert_eq!(v, Verdict::Usable);
    assert!(out.contains("  upstream: platform.example.com:8883, backup.example.com:8883 as gw-1, topics plantgate/gw-1/#, CBOR\n"), "{out}");
    assert!(out.ends_with("OK\n"), "{out}");
    assert_eq!(err.matches("does not exist (yet)").count(), 3, "{err}");
    assert!(err.contains("upstream.key_file"), "{err}");
    let (v, out, _) = run(&path, true);
    assert_eq!(v, Verdict::Refused);
    assert!(!said_ok(&out), "{out}");
}

#[test]
fn an_out_of_date_certificate_warns_with_its_date_and_refuses_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::app::pki::Ca::new(dir.path(), "ca").unwrap();
    let day = time::Duration::days(1);
    let now = time::OffsetDateTime::now_utc();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, format!("{GATEWAY}{}", upstream(dir.path()))).unwrap();
    for (valid, words, when) in [
        ((now - 10 * day, now - day), "expired on", now - day),
        (
            (now + day, now + 10 * day),
            "is not valid before",
            now + day,
        ),
    ] {
        ca.issue_valid(dir.path(), "gw", &["gw-1"], false, valid)
            .unwrap();
        let cert = dir.path().join("gw.crt");
        let said = format!(
            "upstream.cert_file: the certificate in {} {words} {} {:02}:{:02} UTC",
            cert.display(),
            when.date(),
            when.hour(),
            when.minute()
        );
        let (v, out, err) = run(&path, false);
        assert_eq!(v, Verdict::Usable, "{err}");
        assert!(out.ends_with("OK\n"), "{out}");
        assert!(err.contains(&format!("warning: {said}")), "{err}");
        let (v, out, err) = run(&path, true);
        assert_eq!(v, Verdict::Refused, "{err}");
        assert!(!said_ok(&out), "{out}");
        assert!(err.contains(&said) && !err.contains("warning"), "{err}");
    }
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "").unwrap();
    let path = dir.path().join("p.toml");
    let text = GATEWAY.replace("/var/lib/plantgate", file.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    let (v, _, err) = run(&path, false);
    assert_eq!(v, Verdict::Refused);
    assert!(
        err.contains(&format!(
            "gateway.data_dir: {} exists and is not a directory",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn warnings_are_printed_at_their_line_and_do_not_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = format!(
        "{GATEWAY}{}client_id = \"plant-north-gateway-0001\"\n",
        upstream(dir.path())
    );
    std::fs::write(&path, &text).unwrap();
    let (v, _, err) = run(&path, false);
    assert_eq!(v, Verdict::Usable);
    let line = text.lines().count();
    assert!(
        err.contains(&format!(
            "p.toml:{line}: warning: upstream.client_id: \"plant-north-gateway-0001\" is 24 characters"
        )),
        "{err}"
    );
}

#[test]
fn tls_files_that_load_and_match_pass_and_a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::app::pki::Ca::new(dir.path(), "ca").unwrap();
    let gw = ca.issue(dir.path(), "gw", &["gw-1"], false).unwrap();
    let other = ca.issue(dir.path(), "other", &["other"], false).unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, format!("{GATEWAY}{}", upstream(dir.path()))).unwrap();
    let (v, out, err) = run(&path, true);
    assert_eq!((v, err.as_str()), (Verdict::Usable, ""));
    assert!(
        out.contains("  TLS: CA, certificate and key load and match\nOK\n"),
        "{out}"
    );

    std::fs::copy(&other.key_file, &gw.key_file).unwrap();
    let (v, out, err) = run(&path, false);
    assert_eq!(v, Verdict::Refused);
    assert!(!said_ok(&out), "{out}");
    assert!(err.contains(": upstream: "), "{err}");
}
