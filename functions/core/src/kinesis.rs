//! The one reader of Lambda `KinesisEvent` payloads, used by the archiver and the forwarder.
//!
//! Parsing the event is the largest cost of a Kinesis-triggered handler: `aws_lambda_events`'
//! owned types allocate every string, decode every record into its own `Vec` and keep a
//! catch-all map per record. This reader borrows the strings from the payload (only strings
//! with JSON escapes are copied), ignores the members nobody reads, and leaves the base64 data
//! encoded until the caller decodes it (SIMD) where it wants the bytes. A test holds its
//! semantics to `aws_lambda_events::event::kinesis::KinesisEvent` (except the arrival time,
//! whose fraction that crate misreads: `.5` as 5 ms).
//!
//! - [`parse`]: the whole event, borrowed ([`KinesisEvent`], [`EventRecord`]).
//! - [`KinesisRecords`]: the event read straight into the caller's own record type
//!   ([`FromEventRecord`]), for event types that must own their data (`LambdaEvent<T>`).
//! - [`EventRecord::stream_name`] gives the stream's name also for an enhanced fan-out
//!   consumer's `eventSourceARN` (`.../stream/NAME/consumer/CONSUMER:CREATED`).
//! - [`arrival_seconds`] / [`arrival_millis`]: the `approximateArrivalTimestamp` field.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

mod event;
mod records;
#[cfg(test)]
mod tests;

pub use event::{
    EventRecord, KinesisEvent, KinesisRecord, Str, UNKNOWN_SHARD, UNKNOWN_STREAM, parse,
    shard_id_of_event_id, stream_name_of_arn,
};
pub use records::{FromEventRecord, KinesisRecords, SharedNames};

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
    seconds_to_millis(seconds)
        .ok_or_else(|| de::Error::custom("approximateArrivalTimestamp is out of range"))
}

/// Seconds as whole milliseconds (rounded), `None` beyond ±9e15 ms (about 285,000 years).
fn seconds_to_millis(seconds: f64) -> Option<i64> {
    let ms = (seconds * 1000.0).round();
    (ms.abs() < 9.0e15).then_some(ms as i64)
}
