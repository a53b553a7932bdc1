//! The Kinesis event as the forwarder reads it: [`KinesisBatch`] keeps only the fields the
//! function uses and decodes the data straight from the event text (SIMD base64), with the
//! stream and shard names shared by a batch's records.

use std::sync::Arc;

use crate::forward::InputRecord;
use crate::record::Source;

/// The Kinesis event as the forwarder reads it: only the fields it uses, the data decoded
/// straight from the event text. `aws_lambda_events::KinesisEvent` keeps every field (with a
/// flattened catch-all map per record), which costs more than the rest of the transform.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct KinesisBatch {
    /// The records.
    #[serde(rename = "Records", default)]
    pub records: Vec<BatchRecord>,
}

/// One record of a [`KinesisBatch`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BatchRecord {
    /// The shard id (the part of `eventID` before its `:`), shared by the batch's records.
    #[serde(rename = "eventID", default, deserialize_with = "shard_of_event_id")]
    pub shard: Option<Arc<str>>,
    /// The stream name (from `eventSourceARN`), shared by the batch's records.
    #[serde(
        rename = "eventSourceARN",
        default,
        deserialize_with = "stream_of_source_arn"
    )]
    pub stream: Option<Arc<str>>,
    /// The `kinesis` part.
    pub kinesis: BatchKinesis,
}

/// The `kinesis` part of a [`BatchRecord`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchKinesis {
    /// `approximateArrivalTimestamp` in epoch milliseconds.
    #[serde(
        rename = "approximateArrivalTimestamp",
        deserialize_with = "authtrail_core::kinesis::arrival_millis"
    )]
    pub arrival_ms: i64,
    /// `data`, decoded.
    #[serde(deserialize_with = "base64_data")]
    pub data: Vec<u8>,
    /// `sequenceNumber`.
    pub sequence_number: String,
}

fn base64_data<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("base64 data")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            // SIMD decoding (SSE4.1/AVX2 found at run time, NEON on arm64): the data is about
            // 60% of the event's bytes.
            base64_simd::STANDARD
                .decode_to_vec(s)
                .map_err(|_| E::custom("data is not valid base64"))
        }
    }
    d.deserialize_str(V)
}

/// The stream name in an event source ARN (`arn:...:stream/NAME`, also with a
/// `/consumer/...` suffix for enhanced fan-out).
fn stream_name(arn: &str) -> Option<&str> {
    arn.split_once(":stream/")
        .map(|(_, s)| s.split('/').next().unwrap_or(s))
}

/// The shard id at the front of an event id (`shardId-000000000006:4959...`).
fn shard_id(event_id: &str) -> Option<&str> {
    event_id.split(':').next().filter(|s| !s.is_empty())
}

thread_local! {
    /// The last stream and shard names read, so that a batch's records share one copy of each
    /// instead of allocating two strings per record.
    static LAST_NAMES: std::cell::RefCell<[Option<Arc<str>>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

/// `part` as a shared string, reusing the last one kept in `slot` when equal.
fn interned(slot: usize, part: Option<&str>) -> Option<Arc<str>> {
    let part = part?;
    LAST_NAMES
        .with(|cell| {
            let mut last = cell.borrow_mut();
            let kept = last.get_mut(slot)?;
            match kept {
                Some(k) if **k == *part => Some(k.clone()),
                _ => {
                    let fresh: Arc<str> = Arc::from(part);
                    *kept = Some(fresh.clone());
                    Some(fresh)
                }
            }
        })
        .or_else(|| Some(Arc::from(part)))
}

/// Deserializes an optional string into `interned(slot, extract(text))`.
fn interned_part<'de, D: serde::Deserializer<'de>>(
    d: D,
    slot: usize,
    extract: fn(&str) -> Option<&str>,
) -> Result<Option<Arc<str>>, D::Error> {
    struct V {
        slot: usize,
        extract: fn(&str) -> Option<&str>,
    }
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Arc<str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(interned(self.slot, (self.extract)(s)))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(V { slot, extract })
}

fn stream_of_source_arn<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Arc<str>>, D::Error> {
    interned_part(d, 0, stream_name)
}

fn shard_of_event_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    interned_part(d, 1, shard_id)
}

const UNKNOWN_STREAM: &str = "unknown-stream";
const UNKNOWN_SHARD: &str = "unknown-shard";

impl KinesisBatch {
    /// The batch's input records.
    pub fn into_inputs(self) -> Vec<InputRecord> {
        let unknown_stream: Arc<str> = Arc::from(UNKNOWN_STREAM);
        let unknown_shard: Arc<str> = Arc::from(UNKNOWN_SHARD);
        self.records
            .into_iter()
            .map(|r| InputRecord {
                source: Source {
                    stream: r.stream.unwrap_or_else(|| unknown_stream.clone()),
                    shard: r.shard.unwrap_or_else(|| unknown_shard.clone()),
                    sequence_number: r.kinesis.sequence_number,
                    arrival_ms: r.kinesis.arrival_ms,
                },
                data: r.kinesis.data,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;

    /// The records as `aws_lambda_events` reads them (its arrival time, which takes the digits
    /// after the point as milliseconds whatever their number: `.5` is read as 5 ms).
    fn input_records(event: KinesisEvent) -> Vec<InputRecord> {
        event
            .records
            .into_iter()
            .map(|r| InputRecord {
                source: Source {
                    stream: Arc::from(
                        r.event_source_arn
                            .as_deref()
                            .and_then(stream_name)
                            .unwrap_or(UNKNOWN_STREAM),
                    ),
                    shard: Arc::from(
                        r.event_id
                            .as_deref()
                            .and_then(shard_id)
                            .unwrap_or(UNKNOWN_SHARD),
                    ),
                    sequence_number: r.kinesis.sequence_number,
                    arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                },
                data: r.kinesis.data.0,
            })
            .collect()
    }

    #[test]
    fn kinesis_records_carry_stream_shard_sequence_and_arrival_time() {
        let event: KinesisBatch = serde_json::from_str(
            r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},
            "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
            "eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/x","awsRegion":"us-east-2",
            "eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}]}"#,
        )
        .unwrap();
        let r = event.into_inputs();
        assert_eq!(&*r[0].source.stream, "lambda-stream");
        assert_eq!(&*r[0].source.shard, "shardId-000000000006");
        assert_eq!(
            r[0].source.sequence_number,
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(r[0].source.arrival_ms, 1545084650987);
        assert_eq!(r[0].data, br#"{"a":1}"#);
    }

    #[test]
    fn the_lean_batch_reads_the_same_records_as_aws_lambda_events() {
        let text = r#"{"Records":[
            {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"1","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},
             "eventSource":"aws:kinesis","eventID":"shardId-000000000006:1","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s1","extra":{"x":[1]}},
            {"kinesis":{"sequenceNumber":"2","data":"","approximateArrivalTimestamp":1545084650}},
            {"kinesis":{"sequenceNumber":"3","data":"bm90IGpzb24=","approximateArrivalTimestamp":1545084650.5},"eventID":"","eventSourceARN":"arn:aws:kinesis:us-east-2:1:stream/s2/consumer/c:1"}]}"#;
        let lean: KinesisBatch = serde_json::from_str(text).unwrap();
        let full: KinesisEvent = serde_json::from_str(text).unwrap();
        let (a, mut b) = (lean.into_inputs(), input_records(full));
        assert_eq!(a.len(), 3);
        // `.5` is half a second; aws_lambda_events reads it as 5 ms.
        assert_eq!(a[2].source.arrival_ms, 1545084650500);
        assert_eq!(b[2].source.arrival_ms, 1545084650005);
        b[2].source.arrival_ms = 1545084650500;
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.source, &x.data), (&y.source, &y.data));
        }
        assert_eq!(&*a[2].source.stream, "s2");
        assert!(serde_json::from_str::<KinesisBatch>(r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"%%%","approximateArrivalTimestamp":1}}]}"#).is_err());
    }

    #[test]
    fn record_data_is_decoded_as_strict_padded_base64_like_aws_lambda_events() {
        use base64::Engine;
        let decode = |data: &str| {
            let text = format!(
                r#"{{"Records":[{{"kinesis":{{"sequenceNumber":"1","data":"{data}","approximateArrivalTimestamp":1}}}}]}}"#
            );
            serde_json::from_str::<KinesisBatch>(&text)
                .ok()
                .map(|b| b.into_inputs().remove(0).data)
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&b64.encode(&bytes)), Some(bytes), "length {len}");
        }
        // What the strict decoder of aws_lambda_events refuses is refused here too.
        for bad in [
            "eyJhIjoxfQ",
            "eyJhIjoxfQ=",
            "eyJhIjoxfQ===",
            "eyJh Ijox",
            "eyJhIjoxfR==",
            "@@@@",
            "e===",
        ] {
            assert!(
                b64.decode(bad).is_err(),
                "{bad} is accepted by the base64 crate"
            );
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
