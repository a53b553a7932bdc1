//! The Kinesis event as the forwarder reads it: core's lean reader
//! ([`authtrail_core::kinesis`], the one the archiver uses too) builds each record straight
//! into an [`InputRecord`], with the data decoded (SIMD base64) and the stream and shard names
//! shared by a batch's records.

use authtrail_core::kinesis::{EventRecord, FromEventRecord, KinesisRecords, SharedNames};

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
