//! Decimal places of a number as a person wrote it: shared by register decoding (rounding a
//! scaled value to its scale's decimals) and the storage codec (a decimal fraction stored as
//! mantissa and exponent).
//!
//! Owns that one pure function. Must never depend on any other module of plantgate.

/// How many decimals `x` has when written out, if at most 9 (0.1 → 1, 0.025 → 3, 2.0 → 0).
pub fn decimals(x: f64) -> Option<u8> {
    (0..=9u8).find(|&d| {
        let p = 10f64.powi(i32::from(d));
        let m = (x * p).round();
        m.abs() < 1e15 && m / p == x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_decimals_a_person_wrote() {
        assert_eq!(decimals(0.1), Some(1));
        assert_eq!(decimals(0.025), Some(3));
        assert_eq!(decimals(2.0), Some(0));
        assert_eq!(decimals(-40.0), Some(0));
        assert_eq!(decimals(1e-9), Some(9));
        // a third has no end; 1e-10 has more than 9
        assert_eq!(decimals(1.0 / 3.0), None);
        assert_eq!(decimals(1e-10), None);
    }
}
