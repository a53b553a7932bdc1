//! Kinesis event fields that every function reads the same way.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// `approximateArrivalTimestamp` of a Lambda Kinesis record: seconds since the epoch with a
/// fraction (`1480641523.477`), as a JSON number or a numeric string. Non-finite values are
/// refused.
pub fn arrival_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds since the epoch as a number or a string")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            finite(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse::<f64>()
                .map_err(|_| E::custom("approximateArrivalTimestamp is not a number"))
                .and_then(finite)
        }
    }
    fn finite<E: de::Error>(v: f64) -> Result<f64, E> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(E::custom(
                "approximateArrivalTimestamp is not a finite number",
            ))
        }
    }
    deserializer.deserialize_any(V)
}

/// [`arrival_seconds`] as whole milliseconds since the epoch (rounded: `1545084650.5` is
/// `1545084650500`).
pub fn arrival_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let seconds = arrival_seconds(deserializer)?;
    let ms = (seconds * 1000.0).round();
    if ms.abs() < 9.0e15 {
        Ok(ms as i64)
    } else {
        Err(de::Error::custom(
            "approximateArrivalTimestamp is out of range",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[derive(serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "arrival_millis")]
        t: i64,
    }

    fn ms(json: &str) -> Option<i64> {
        serde_json::from_str::<T>(&format!(r#"{{"t":{json}}}"#))
            .ok()
            .map(|t| t.t)
    }

    #[test]
    fn arrival_times_keep_their_fraction_as_milliseconds() {
        assert_eq!(ms("1545084650.987"), Some(1545084650987));
        assert_eq!(ms("1545084650.5"), Some(1545084650500));
        assert_eq!(ms("1545084650.05"), Some(1545084650050));
        assert_eq!(ms("1739388470.156"), Some(1739388470156));
        assert_eq!(ms("1545084650"), Some(1545084650000));
        assert_eq!(ms(r#""1545084650.25""#), Some(1545084650250));
    }

    #[test]
    fn arrival_times_that_are_not_finite_numbers_are_refused() {
        assert_eq!(ms(r#""soon""#), None);
        assert_eq!(ms(r#""NaN""#), None);
        assert_eq!(ms(r#""inf""#), None);
        assert_eq!(ms("1e300"), None);
        assert_eq!(ms("null"), None);
        assert_eq!(ms("[1]"), None);
    }
}
