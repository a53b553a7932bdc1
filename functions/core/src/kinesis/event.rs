//! The borrowed reader of a Lambda `KinesisEvent` payload.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::error::Error;

/// The stream name used when a record has no usable `eventSourceARN`.
pub const UNKNOWN_STREAM: &str = "unknown-stream";
/// The shard id used when a record has no usable `eventID`.
pub const UNKNOWN_SHARD: &str = "unknown-shard";

/// A string borrowed from the payload when it has no JSON escapes, copied otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is borrowed from the payload (it had no escapes).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    /// The text as an owned `String` (no copy when it was already copied).
    pub fn into_owned(self) -> String {
        self.0.into_owned()
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

/// The `KinesisEvent` payload, borrowing from its text.
#[derive(Debug, Deserialize)]
pub struct KinesisEvent<'a> {
    /// The records, in the order of the payload (Lambda sends one shard's records in sequence
    /// order).
    #[serde(rename = "Records", borrow, default)]
    pub records: Vec<EventRecord<'a>>,
}

/// One record of the event. Unknown members are ignored.
#[derive(Debug, Deserialize)]
pub struct EventRecord<'a> {
    /// `shardId-000000000000:49568167373333333333333333333333333333333333333333333333`.
    #[serde(rename = "eventID", borrow, default)]
    pub event_id: Option<Str<'a>>,
    /// `arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream`, with a
    /// `/consumer/NAME:CREATED` suffix when read by an enhanced fan-out consumer.
    #[serde(rename = "eventSourceARN", borrow, default)]
    pub event_source_arn: Option<Str<'a>>,
    /// The `kinesis` member.
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
    /// The sequence number, a decimal string of up to 56 digits.
    #[serde(borrow)]
    pub sequence_number: Str<'a>,
    /// The partition key (empty when absent).
    #[serde(borrow, default)]
    pub partition_key: Str<'a>,
    /// Seconds since the epoch, with a fraction (a number, or a string holding one; finite).
    #[serde(deserialize_with = "super::arrival_seconds")]
    pub approximate_arrival_timestamp: f64,
}

impl EventRecord<'_> {
    /// The stream name from `eventSourceARN` (also for an enhanced fan-out consumer's ARN),
    /// or [`UNKNOWN_STREAM`].
    pub fn stream_name(&self) -> &str {
        self.event_source_arn
            .as_ref()
            .and_then(|arn| stream_name_of_arn(arn.as_str()))
            .unwrap_or(UNKNOWN_STREAM)
    }

    /// The shard id from `eventID`, or [`UNKNOWN_SHARD`].
    pub fn shard_id(&self) -> &str {
        self.event_id
            .as_ref()
            .and_then(|id| shard_id_of_event_id(id.as_str()))
            .unwrap_or(UNKNOWN_SHARD)
    }

    /// The sequence number.
    pub fn sequence_number(&self) -> &str {
        self.kinesis.sequence_number.as_str()
    }

    /// The partition key (empty when the event has none).
    pub fn partition_key(&self) -> &str {
        self.kinesis.partition_key.as_str()
    }

    /// The record data as it is in the event: base64.
    pub fn data_base64(&self) -> &str {
        self.kinesis.data.as_str()
    }

    /// The approximate arrival time in seconds since the epoch, with its fraction.
    pub fn arrival_seconds(&self) -> f64 {
        self.kinesis.approximate_arrival_timestamp
    }

    /// The approximate arrival time as whole seconds since the epoch (floor; saturating).
    pub fn arrival_epoch_seconds(&self) -> i64 {
        self.kinesis.approximate_arrival_timestamp.floor() as i64
    }

    /// The approximate arrival time in whole milliseconds since the epoch (rounded:
    /// `1545084650.5` is `1545084650500`); [`Error::ArrivalOutOfRange`] beyond ±9e15 ms.
    pub fn arrival_millis(&self) -> Result<i64, Error> {
        super::seconds_to_millis(self.kinesis.approximate_arrival_timestamp).ok_or_else(|| {
            Error::ArrivalOutOfRange {
                sequence_number: self.sequence_number().to_string(),
            }
        })
    }

    /// Decodes the data (SIMD base64: SSE4.1/AVX2 found at run time, NEON on arm64) and
    /// appends it to `out`. On [`Error::InvalidRecordData`] (not strict padded base64) `out`
    /// is left as it was.
    pub fn decode_data_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        base64_simd::STANDARD
            .decode_append(self.data_base64(), out)
            .map_err(|_| {
                out.truncate(start);
                Error::InvalidRecordData {
                    sequence_number: self.sequence_number().to_string(),
                }
            })
    }

    /// The decoded data; see [`EventRecord::decode_data_into`].
    pub fn decode_data(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(self.data_base64().len() / 4 * 3);
        self.decode_data_into(&mut out)?;
        Ok(out)
    }
}

/// Parses a `KinesisEvent` payload, borrowing from it; [`Error::InvalidKinesisEvent`] when it
/// is not one.
pub fn parse(payload: &[u8]) -> Result<KinesisEvent<'_>, Error> {
    serde_json::from_slice(payload).map_err(Error::InvalidKinesisEvent)
}

/// The stream name in an event source ARN: `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`, or
/// `.../stream/NAME/consumer/CONSUMER:CREATED` for an enhanced fan-out consumer. `None` when
/// there is no non-empty name.
pub fn stream_name_of_arn(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":stream/")?;
    let name = rest.split('/').next().unwrap_or(rest);
    (!name.is_empty()).then_some(name)
}

/// The shard id at the front of an event id (`shardId-000000000006:4959...`): the text before
/// the first `:` (all of it when there is none). `None` when that is empty.
pub fn shard_id_of_event_id(event_id: &str) -> Option<&str> {
    let shard = event_id.split(':').next().unwrap_or(event_id);
    (!shard.is_empty()).then_some(shard)
}
