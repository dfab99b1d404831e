//! libFuzzer target: arbitrary register words, type, word order, scale and offset. The decoder
//! must not panic and must never call a non-finite number a good value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plantgate::config::{Kind, Point, Table, WordOrder};
use plantgate::poll::decode::decode_words;
use plantgate::record::Value;

const KINDS: [Kind; 6] = [
    Kind::Bool,
    Kind::U16,
    Kind::I16,
    Kind::U32,
    Kind::I32,
    Kind::F32,
];

fuzz_target!(|data: &[u8]| {
    let Some((&[head], rest)) = data.split_first_chunk::<1>() else {
        return;
    };
    let Some((scale, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((offset, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let point = Point {
        name: "p".into(),
        table: Table::Holding,
        address: 0,
        kind: KINDS[usize::from(head & 7) % KINDS.len()],
        word_order: if head & 8 == 0 {
            WordOrder::Big
        } else {
            WordOrder::Little
        },
        scale: f64::from_le_bytes(*scale),
        offset: f64::from_le_bytes(*offset),
        unit: None,
        alarm: None,
    };
    let words: Vec<u16> = rest
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    if let Some(Value::Float(f)) = decode_words(&point, &words) {
        assert!(f.is_finite());
    }
});
