//! The Kinesis event as the forwarder reads it: core's lean reader
//! ([`authtrail_core::kinesis`], the one the archiver uses too) builds each record straight
//! into an [`InputRecord`], with the data decoded (SIMD base64) and the stream and shard names
//! shared by a batch's records.

use std::fmt;

use authtrail_core::kinesis::{EventRecord, FromEventRecord, KinesisRecords, SharedNames};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::forward::InputRecord;
use crate::record::Source;

/// The Kinesis event: its records, read into [`InputRecord`]s. A record without a sequence
/// number, data or arrival time, with data that is not strict padded base64, or with an arrival
/// time out of range fails the whole event.
pub type KinesisBatch = KinesisRecords<InputRecord>;

impl FromEventRecord for InputRecord {
    fn from_event_record(
        r: EventRecord<'_>,
        names: &mut SharedNames,
    ) -> Result<Self, authtrail_core::Error> {
        let stream = names.stream(&r);
        let shard = names.shard(&r);
        let arrival_ms = r.arrival_millis()?;
        let data = r.decode_data()?;
        Ok(InputRecord {
            source: Source {
                stream,
                shard,
                sequence_number: r.kinesis.sequence_number.into_owned(),
                arrival_ms,
            },
            data,
        })
    }
}

/// What the forwarder is invoked with: a Kinesis batch, an EventBridge scheduled event
/// (`{"source":"aws.events","detail-type":"Scheduled Event",...}`) that asks for a redrive of
/// every emitter's spool, or the preflight test payload `{"authtrail": "preflight"}`. The batch
/// is read by the same lean reader as [`KinesisBatch`].
#[derive(Debug)]
pub enum ForwarderEvent {
    /// A Kinesis event.
    Kinesis(KinesisBatch),
    /// A scheduled event.
    Scheduled,
    /// The preflight test payload ([`crate::preflight`]).
    Preflight,
}

impl<'de> Deserialize<'de> for ForwarderEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = ForwarderEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kinesis event or an EventBridge scheduled event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut records, mut source, mut detail_type) = (None, None, None);
        let mut preflight = false;
        while let Some(key) = map.next_key::<authtrail_core::kinesis::Str<'de>>()? {
            match key.as_str() {
                "Records" => records = Some(map.next_value::<Records>()?.0),
                "source" => source = Some(map.next_value::<String>()?),
                "detail-type" => detail_type = Some(map.next_value::<String>()?),
                authtrail_core::preflight::PAYLOAD_KEY => {
                    preflight = map.next_value::<serde_json::Value>()?
                        == authtrail_core::preflight::PAYLOAD_VALUE;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (records, source.as_deref(), detail_type.as_deref()) {
            (Some(records), _, _) => Ok(ForwarderEvent::Kinesis(KinesisBatch { records })),
            (None, _, _) if preflight => Ok(ForwarderEvent::Preflight),
            (None, Some("aws.events"), Some("Scheduled Event")) => Ok(ForwarderEvent::Scheduled),
            _ => Err(de::Error::custom(
                "neither a Kinesis event (Records), an EventBridge scheduled event nor the preflight payload",
            )),
        }
    }
}

/// The `Records` array, each element read into an [`InputRecord`] as it is read.
struct Records(Vec<InputRecord>);

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Records;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of Kinesis event records")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut names = SharedNames::default();
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(10_000));
                while let Some(r) = seq.next_element::<EventRecord<'de>>()? {
                    out.push(
                        InputRecord::from_event_record(r, &mut names).map_err(de::Error::custom)?,
                    );
                }
                Ok(Records(out))
            }
        }
        deserializer.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::kinesis::{
        UNKNOWN_SHARD, UNKNOWN_STREAM, shard_id_of_event_id, stream_name_of_arn,
    };
    use aws_lambda_events::event::kinesis::KinesisEvent;
    use std::sync::Arc;

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
                            .and_then(stream_name_of_arn)
                            .unwrap_or(UNKNOWN_STREAM),
                    ),
                    shard: Arc::from(
                        r.event_id
                            .as_deref()
                            .and_then(shard_id_of_event_id)
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
    fn the_handler_reads_a_kinesis_batch_or_a_scheduled_event_and_nothing_else() {
        let scheduled = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2015-10-08T16:53:06Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],"detail":{}}"#;
        assert!(matches!(
            serde_json::from_str::<ForwarderEvent>(scheduled).unwrap(),
            ForwarderEvent::Scheduled
        ));
        let batch = r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},"eventID":"shardId-000000000006:1","eventSourceARN":"arn:aws:kinesis:us-east-2:1:stream/s1"}]}"#;
        let ForwarderEvent::Kinesis(b) = serde_json::from_str::<ForwarderEvent>(batch).unwrap()
        else {
            panic!("not a batch");
        };
        let lean: KinesisBatch = serde_json::from_str(batch).unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(
            (&b.records[0].source, &b.records[0].data),
            (&lean.records[0].source, &lean.records[0].data)
        );
        assert!(serde_json::from_str::<ForwarderEvent>(r#"{"source":"aws.s3"}"#).is_err());
        assert!(serde_json::from_str::<ForwarderEvent>("[]").is_err());
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
        let r = event.records;
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
        let (a, mut b) = (lean.records, input_records(full));
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
                .map(|mut b| b.records.remove(0).data)
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
