//! libFuzzer target: arbitrary bytes as a stored spool entry. No decoder may panic, a batch's
//! count must fit its bytes, and what decodes must encode back to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plantgate::record::codec::{
    batch_len, decode_alarm, decode_batch, decode_gap, encode_alarm, encode_gap, encode_readings,
};

fuzz_target!(|data: &[u8]| {
    let len = batch_len(data);
    if let Ok(n) = &len {
        assert!(*n <= data.len() as u64 / 5);
    }
    if let Ok(r) = decode_batch(7, data) {
        assert_eq!(len.ok(), Some(r.len() as u64));
        let again = decode_batch(7, &encode_readings(&r)).expect("re-encoded batch");
        assert_eq!(format!("{again:?}"), format!("{r:?}"));
    }
    if let Ok(a) = decode_alarm(7, data) {
        let again = decode_alarm(7, &encode_alarm(&a)).expect("re-encoded alarm");
        assert_eq!(format!("{again:?}"), format!("{a:?}"));
    }
    if let Ok(g) = decode_gap(7, data) {
        assert_eq!(decode_gap(7, &encode_gap(&g)).expect("re-encoded gap"), g);
    }
});
