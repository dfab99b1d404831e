//! Register decoding: raw Modbus words and bits → typed, scaled values and alarm levels.
//!
//! Owns types, word order, scale and offset. Pure functions only: must never see a transport,
//! so every byte of every fixture below can be checked by hand.

use crate::config::{Kind, Point, WordOrder};
use crate::record::decimal::decimals;
use crate::record::Value;

/// Decodes a register point from exactly `point.width()` words; `None` when the result is not a
/// number (an f32 NaN or infinity, or scale and offset that overflow): never a good value. Any
/// other number of words is `None` too, never a panic (the transport refuses such replies).
pub fn decode_words(point: &Point, words: &[u16]) -> Option<Value> {
    if words.len() != usize::from(point.width()) {
        return None;
    }
    let v = decode_raw(point, words);
    match v {
        Value::Float(f) if !f.is_finite() => None,
        v => Some(v),
    }
}

fn decode_raw(point: &Point, words: &[u16]) -> Value {
    let raw32 = |w: &[u16]| -> u32 {
        let (hi, lo) = match point.word_order {
            WordOrder::Big => (w[0], w[1]),
            WordOrder::Little => (w[1], w[0]),
        };
        (u32::from(hi) << 16) | u32::from(lo)
    };
    let integer = match point.kind {
        Kind::Bool => return Value::Bool(words[0] != 0),
        Kind::U16 => i64::from(words[0]),
        Kind::I16 => i64::from(words[0] as i16),
        Kind::U32 => i64::from(raw32(words)),
        Kind::I32 => i64::from(raw32(words) as i32),
        Kind::F32 => {
            let f = f64::from(f32::from_bits(raw32(words)));
            return Value::Float(f * point.scale + point.offset);
        }
    };
    scaled(point, integer)
}

/// Decodes a coil or discrete input.
pub fn decode_bit(bit: bool) -> Value {
    Value::Bool(bit)
}

/// An integer stays an integer unless the point scales or offsets it. A scaled value is rounded
/// to the decimals its scale and offset have, so raw 123 × 0.1 is 12.3, not 12.300000000000001.
fn scaled(point: &Point, raw: i64) -> Value {
    if point.scale == 1.0 && point.offset == 0.0 {
        return Value::Int(raw);
    }
    let v = raw as f64 * point.scale + point.offset;
    match decimals(point.scale).zip(decimals(point.offset)) {
        Some((a, b)) => {
            let p = 10f64.powi(i32::from(a.max(b)));
            Value::Float((v * p).round() / p)
        }
        None => Value::Float(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Table;

    fn point(kind: Kind, word_order: WordOrder, scale: f64, offset: f64) -> Point {
        Point {
            name: "p".into(),
            table: Table::Holding,
            address: 0,
            kind,
            word_order,
            scale,
            offset,
            unit: None,
            alarm: None,
        }
    }

    #[test]
    fn sixteen_bit_types() {
        let u = point(Kind::U16, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&u, &[0xFFFF]), Some(Value::Int(65535))); // all ones, unsigned
        let i = point(Kind::I16, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&i, &[0xFFFF]), Some(Value::Int(-1))); // two's complement -1
        assert_eq!(decode_words(&i, &[0x8000]), Some(Value::Int(-32768))); // most negative
        let b = point(Kind::Bool, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&b, &[0x0004]), Some(Value::Bool(true))); // any non-zero register
        assert_eq!(decode_words(&b, &[0x0000]), Some(Value::Bool(false)));
    }

    #[test]
    fn scale_and_offset_make_a_float_with_the_scales_decimals() {
        // 0x00EA = 234 raw tenths of %LEL → exactly the f64 nearest 23.4 (234 × 0.1 is not)
        let p = point(Kind::U16, WordOrder::Big, 0.1, 0.0);
        assert_eq!(decode_words(&p, &[0x00EA]), Some(Value::Float(23.4)));
        assert_eq!(decode_words(&p, &[123]), Some(Value::Float(12.3)));
        assert_eq!(
            (
                decimals(0.1),
                decimals(0.025),
                decimals(2.0),
                decimals(1.0 / 3.0)
            ),
            (Some(1), Some(3), Some(0), None)
        );
        // 4–20 mA loop as 0..=4000 raw, shown as -40..=+60 °C: 2000 → 10.0
        let t = point(Kind::U16, WordOrder::Big, 0.025, -40.0);
        assert_eq!(decode_words(&t, &[2000]), Some(Value::Float(10.0)));
    }

    #[test]
    fn thirty_two_bit_word_orders() {
        // 0x0001_0002 = 65538: big = high word (0x0001) first, little = low word (0x0002) first
        let big = point(Kind::U32, WordOrder::Big, 1.0, 0.0);
        assert_eq!(
            decode_words(&big, &[0x0001, 0x0002]),
            Some(Value::Int(65538))
        );
        let little = point(Kind::U32, WordOrder::Little, 1.0, 0.0);
        assert_eq!(
            decode_words(&little, &[0x0002, 0x0001]),
            Some(Value::Int(65538))
        );
        // 0xFFFF_FFFE = -2 as i32
        let i = point(Kind::I32, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&i, &[0xFFFF, 0xFFFE]), Some(Value::Int(-2)));
    }

    #[test]
    fn f32_both_orders() {
        // 12.5f32 = 0x4148_0000: sign 0, exponent 0x82 (2^3), mantissa 0x480000 (1.5625)
        let big = point(Kind::F32, WordOrder::Big, 1.0, 0.0);
        assert_eq!(
            decode_words(&big, &[0x4148, 0x0000]),
            Some(Value::Float(12.5))
        );
        let little = point(Kind::F32, WordOrder::Little, 1.0, 0.0);
        assert_eq!(
            decode_words(&little, &[0x0000, 0x4148]),
            Some(Value::Float(12.5))
        );
        // scale applies to floats too: 12.5 * 2 + 1
        let scaled = point(Kind::F32, WordOrder::Big, 2.0, 1.0);
        assert_eq!(
            decode_words(&scaled, &[0x4148, 0x0000]),
            Some(Value::Float(26.0))
        );
    }

    #[test]
    fn the_wrong_number_of_words_is_no_value() {
        let f = point(Kind::F32, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&f, &[0x4148]), None);
        assert_eq!(decode_words(&f, &[]), None);
        let u = point(Kind::U16, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&u, &[1, 2]), None);
        assert_eq!(decode_words(&u, &[1]), Some(Value::Int(1)));
    }

    #[test]
    fn not_a_number_is_no_value() {
        // 0xFFFF 0xFFFF: exponent all ones, mantissa non-zero → NaN (a transmitter's sensor fault)
        let f = point(Kind::F32, WordOrder::Big, 1.0, 0.0);
        assert_eq!(decode_words(&f, &[0xFFFF, 0xFFFF]), None);
        // 0x7F80_0000 = +inf, 0xFF80_0000 = -inf
        assert_eq!(decode_words(&f, &[0x7F80, 0x0000]), None);
        assert_eq!(decode_words(&f, &[0xFF80, 0x0000]), None);
        // f32::MAX (0x7F7F_FFFF ≈ 3.4e38) is finite, but × 1e300 overflows f64
        assert!(decode_words(&f, &[0x7F7F, 0xFFFF]).is_some());
        let huge = point(Kind::F32, WordOrder::Big, 1e300, 0.0);
        assert_eq!(decode_words(&huge, &[0x7F7F, 0xFFFF]), None);
        // an integer register scaled past f64's range: 65535 × 1e308 = +inf
        let int = point(Kind::U16, WordOrder::Big, 1e308, 1e308);
        assert_eq!(decode_words(&int, &[0xFFFF]), None);
        assert_eq!(decode_words(&int, &[0x0000]), Some(Value::Float(1e308)));
    }
}
