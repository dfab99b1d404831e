//! libFuzzer target: arbitrary text as the configuration file. The loader must not panic and
//! an accepted file must be accepted again the same.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plantgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(c) = Config::from_str(text, path) {
        let again = Config::from_str(text, path).expect("accepted once");
        assert_eq!(format!("{again:?}"), format!("{c:?}"));
    }
});
