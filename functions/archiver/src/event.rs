//! A borrowing parser for the Lambda `KinesisEvent` payload.
//!
//! Parsing the event is the largest cost of the handler: `aws_lambda_events`' owned types
//! allocate every string and decode every record into its own `Vec`. These structs borrow the
//! strings from the payload (only strings with JSON escapes are copied) and leave base64
//! decoding to the caller, which decodes straight into the output buffer. Unknown fields are
//! ignored. The semantics match `aws_lambda_events::event::kinesis::KinesisEvent` (a test holds
//! them together).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A string borrowed from the payload when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The `KinesisEvent` payload.
#[derive(Debug, Deserialize)]
pub struct KinesisEvent<'a> {
    #[serde(rename = "Records", borrow, default)]
    pub records: Vec<EventRecord<'a>>,
}

/// One record of the event.
#[derive(Debug, Deserialize)]
pub struct EventRecord<'a> {
    /// `shardId-000000000000:49568167373333333333333333333333333333333333333333333333`.
    #[serde(rename = "eventID", borrow, default)]
    pub event_id: Option<Str<'a>>,
    /// `arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream`.
    #[serde(rename = "eventSourceARN", borrow, default)]
    pub event_source_arn: Option<Str<'a>>,
    #[serde(borrow)]
    pub kinesis: KinesisRecord<'a>,
}

/// The `kinesis` member of a record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisRecord<'a> {
    /// The record data, base64 (standard alphabet, padded), still encoded.
    #[serde(borrow)]
    pub data: Str<'a>,
    #[serde(borrow, default)]
    pub sequence_number: Str<'a>,
    #[serde(borrow, default)]
    pub partition_key: Str<'a>,
    /// Seconds since the epoch, with a fraction (a number, or a string holding one).
    #[serde(deserialize_with = "authtrail_core::kinesis::arrival_seconds")]
    pub approximate_arrival_timestamp: f64,
}

impl EventRecord<'_> {
    /// The stream name from `eventSourceARN` (`...:stream/NAME`), or `unknown-stream`.
    pub fn stream_name(&self) -> &str {
        self.event_source_arn
            .as_ref()
            .and_then(|arn| arn.as_str().rsplit_once(":stream/").map(|(_, s)| s))
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown-stream")
    }

    /// The shard id from `eventID` (`shardId-...:sequence`), or `unknown-shard`.
    pub fn shard_id(&self) -> &str {
        self.event_id
            .as_ref()
            .and_then(|id| id.as_str().split_once(':').map(|(s, _)| s))
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown-shard")
    }

    /// The approximate arrival time as whole seconds since the epoch (floor).
    pub fn arrival_epoch_seconds(&self) -> i64 {
        let t = self.kinesis.approximate_arrival_timestamp;
        if t.is_finite() { t.floor() as i64 } else { 0 }
    }
}

/// Parses a `KinesisEvent` payload, borrowing from it.
pub fn parse(payload: &[u8]) -> Result<KinesisEvent<'_>, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use base64::Engine;

    const FIXTURE: &str = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"s1",
        "sequenceNumber":"49568167373333333333333333333333333333333333333333333333",
        "data":"SGVsbG8gV29ybGQ=","approximateArrivalTimestamp":1480641523.477},
        "eventSource":"aws:kinesis","eventVersion":"1.0",
        "eventID":"shardId-000000000000:49568167373333333333333333333333333333333333333333333333",
        "eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/LambdaRole",
        "awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream"},
        {"kinesis":{"partitionKey":"s\u0031","sequenceNumber":"49568167373333333334444444444444444444444444444444444444",
        "data":"eyJhIjoxfQo=","approximateArrivalTimestamp":"1480841523"},
        "eventID":"shardId-000000000000:49568167373333333334444444444444444444444444444444444444",
        "eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream\/simple-stream"}]}"#;

    #[test]
    fn borrowed_parser_agrees_with_aws_lambda_events_on_a_real_payload() {
        let ours = parse(FIXTURE.as_bytes()).unwrap();
        let theirs: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_str(FIXTURE).unwrap();
        assert_eq!(ours.records.len(), theirs.records.len());
        for (o, t) in ours.records.iter().zip(&theirs.records) {
            let data = base64::engine::general_purpose::STANDARD
                .decode(o.kinesis.data.as_str())
                .unwrap();
            assert_eq!(data, t.kinesis.data.0);
            assert_eq!(
                o.kinesis.sequence_number.as_str(),
                t.kinesis.sequence_number
            );
            assert_eq!(o.kinesis.partition_key.as_str(), t.kinesis.partition_key);
            assert_eq!(
                o.event_id.as_ref().map(|s| s.as_str()),
                t.event_id.as_deref()
            );
            assert_eq!(
                o.event_source_arn.as_ref().map(|s| s.as_str()),
                t.event_source_arn.as_deref()
            );
            assert_eq!(
                o.arrival_epoch_seconds(),
                t.kinesis.approximate_arrival_timestamp.timestamp()
            );
        }
    }

    #[test]
    fn stream_and_shard_come_from_the_arn_and_event_id() {
        let ev = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(ev.records[0].stream_name(), "simple-stream");
        assert_eq!(ev.records[0].shard_id(), "shardId-000000000000");
        // An escaped '/' in the ARN still yields the stream name.
        assert_eq!(ev.records[1].stream_name(), "simple-stream");
    }

    #[test]
    fn unescaped_strings_are_borrowed_from_the_payload() {
        let ev = parse(FIXTURE.as_bytes()).unwrap();
        assert!(matches!(ev.records[0].kinesis.data.0, Cow::Borrowed(_)));
        assert!(matches!(
            ev.records[1].kinesis.partition_key.0,
            Cow::Owned(_)
        ));
    }

    #[test]
    fn a_record_without_kinesis_member_is_a_parse_error() {
        assert!(parse(br#"{"Records":[{"eventID":"x"}]}"#).is_err());
    }
}
