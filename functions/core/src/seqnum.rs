//! Kinesis sequence numbers: decimal strings of up to 56 digits. Compare them as big integers,
//! never as floats: strip leading zeros, then compare lengths, then bytes.

use std::cmp::Ordering;

/// Compares two sequence numbers numerically.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Whether `s` is a well-formed sequence number (1 to 128 ASCII digits).
pub fn is_valid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_numbers_are_greater_whatever_their_digits() {
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(
            compare(
                "49590338271490256608559692538361571095921575989136588802",
                "9959033827149025660855969253836157109592157598913658880"
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn equal_length_numbers_compare_digit_by_digit() {
        assert_eq!(compare("123", "124"), Ordering::Less);
        assert_eq!(compare("124", "124"), Ordering::Equal);
    }

    #[test]
    fn leading_zeros_do_not_change_the_value() {
        assert_eq!(compare("0007", "7"), Ordering::Equal);
        assert_eq!(compare("0", "000"), Ordering::Equal);
    }

    #[test]
    fn numbers_beyond_f64_precision_are_still_ordered() {
        // These two differ only in the last digit: as f64 they would be equal.
        let a = "49590338271490256608559692538361571095921575989136588801";
        let b = "49590338271490256608559692538361571095921575989136588802";
        assert_eq!(compare(a, b), Ordering::Less);
    }

    #[test]
    fn validity_rejects_empty_and_non_digits() {
        assert!(is_valid("1"));
        assert!(!is_valid(""));
        assert!(!is_valid("12a"));
        assert!(!is_valid("-1"));
    }
}
