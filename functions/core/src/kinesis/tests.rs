#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine;

use super::*;
use crate::error::Error;

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

/// A real payload (AWS's documented sample) and a second record with escapes and a string
/// arrival time.
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
fn borrowed_reader_agrees_with_aws_lambda_events_on_a_real_payload() {
    let ours = parse(FIXTURE.as_bytes()).unwrap();
    let theirs: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(ours.records.len(), theirs.records.len());
    for (o, t) in ours.records.iter().zip(&theirs.records) {
        assert_eq!(o.decode_data().unwrap(), t.kinesis.data.0);
        assert_eq!(o.sequence_number(), t.kinesis.sequence_number);
        assert_eq!(o.partition_key(), t.kinesis.partition_key);
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
    assert_eq!(ev.records[0].arrival_millis().unwrap(), 1480641523477);
    // An escaped '/' in the ARN still yields the stream name.
    assert_eq!(ev.records[1].stream_name(), "simple-stream");
}

#[test]
fn an_enhanced_fan_out_consumer_arn_gives_the_stream_name() {
    assert_eq!(
        stream_name_of_arn(
            "arn:aws:kinesis:us-east-1:123456789012:stream/audit/consumer/archiver:1739388470"
        ),
        Some("audit")
    );
    assert_eq!(
        stream_name_of_arn("arn:aws:kinesis:us-east-2:1:stream/s2/consumer/c:1"),
        Some("s2")
    );
    assert_eq!(
        stream_name_of_arn("arn:aws:kinesis:us-east-1:123456789012:stream/audit"),
        Some("audit")
    );
    let payload = br#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"","approximateArrivalTimestamp":1},
        "eventSourceARN":"arn:aws:kinesis:eu-west-1:123456789012:stream/authtrail-events/consumer/forwarder:1739388470"}]}"#;
    let ev = parse(payload).unwrap();
    assert_eq!(ev.records[0].stream_name(), "authtrail-events");
}

#[test]
fn missing_or_unusable_names_fall_back_to_unknown() {
    for arn in ["", "arn:aws:kinesis:us-east-1:1:stream/", "not an arn"] {
        assert_eq!(stream_name_of_arn(arn), None, "{arn}");
    }
    assert_eq!(shard_id_of_event_id(""), None);
    assert_eq!(shard_id_of_event_id(":123"), None);
    assert_eq!(
        shard_id_of_event_id("shardId-000000000006"),
        Some("shardId-000000000006")
    );
    let payload = br#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"","approximateArrivalTimestamp":1},
        "eventID":null,"eventSourceARN":null},
        {"kinesis":{"sequenceNumber":"2","data":"","approximateArrivalTimestamp":1},"eventID":""}]}"#;
    let ev = parse(payload).unwrap();
    for r in &ev.records {
        assert_eq!(r.stream_name(), UNKNOWN_STREAM);
        assert_eq!(r.shard_id(), UNKNOWN_SHARD);
    }
}

#[test]
fn unescaped_strings_are_borrowed_from_the_payload() {
    let ev = parse(FIXTURE.as_bytes()).unwrap();
    assert!(ev.records[0].kinesis.data.is_borrowed());
    assert!(!ev.records[1].kinesis.partition_key.is_borrowed());
    assert_eq!(ev.records[1].partition_key(), "s1");
}

#[test]
fn a_record_without_its_kinesis_member_or_required_fields_is_an_invalid_event() {
    for bad in [
        r#"{"Records":[{"eventID":"x"}]}"#,
        r#"{"Records":[{"kinesis":{"data":"","approximateArrivalTimestamp":1}}]}"#,
        r#"{"Records":[{"kinesis":{"sequenceNumber":"1","approximateArrivalTimestamp":1}}]}"#,
        r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":""}}]}"#,
        r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"","approximateArrivalTimestamp":"soon"}}]}"#,
        r#"{"Records":null}"#,
        "not json",
    ] {
        assert!(
            matches!(parse(bad.as_bytes()), Err(Error::InvalidKinesisEvent(_))),
            "{bad}"
        );
    }
    assert!(parse(b"{}").unwrap().records.is_empty());
}

fn data_event(data: &str) -> String {
    format!(
        r#"{{"Records":[{{"kinesis":{{"sequenceNumber":"7","data":"{data}","approximateArrivalTimestamp":1}}}}]}}"#
    )
}

#[test]
fn record_data_is_decoded_as_strict_padded_base64_like_aws_lambda_events() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |data: &str| {
        let text = data_event(data);
        parse(text.as_bytes()).unwrap().records[0]
            .decode_data()
            .ok()
    };
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

#[test]
fn decoding_appends_and_leaves_the_buffer_untouched_on_bad_data() {
    let good = data_event("eyJhIjoxfQ==");
    let bad = data_event("%%%");
    let good = parse(good.as_bytes()).unwrap();
    let bad = parse(bad.as_bytes()).unwrap();
    let mut out = b"head:".to_vec();
    good.records[0].decode_data_into(&mut out).unwrap();
    assert_eq!(out, br#"head:{"a":1}"#);
    let e = bad.records[0].decode_data_into(&mut out).unwrap_err();
    assert!(matches!(&e, Error::InvalidRecordData { sequence_number } if sequence_number == "7"));
    assert_eq!(out, br#"head:{"a":1}"#);
    assert!(!e.to_string().contains("%%%"), "no record data in errors");
}

#[test]
fn arrival_times_beyond_the_millisecond_range_are_refused_only_as_milliseconds() {
    let text = r#"{"Records":[{"kinesis":{"sequenceNumber":"9","data":"","approximateArrivalTimestamp":1e300}}]}"#;
    let ev = parse(text.as_bytes()).unwrap();
    assert!(matches!(
        ev.records[0].arrival_millis(),
        Err(Error::ArrivalOutOfRange { .. })
    ));
    assert_eq!(ev.records[0].arrival_epoch_seconds(), i64::MAX);
}

/// What a caller that owns its records builds: the forwarder's input record, in short.
#[derive(Debug, PartialEq)]
struct Owned {
    stream: Arc<str>,
    shard: Arc<str>,
    seq: String,
    arrival_ms: i64,
    data: Vec<u8>,
}

impl FromEventRecord for Owned {
    fn from_event_record(r: EventRecord<'_>, names: &mut SharedNames) -> Result<Self, Error> {
        Ok(Owned {
            stream: names.stream(&r),
            shard: names.shard(&r),
            arrival_ms: r.arrival_millis()?,
            data: r.decode_data()?,
            seq: r.kinesis.sequence_number.into_owned(),
        })
    }
}

#[test]
fn records_are_built_into_the_callers_type_as_they_are_read() {
    let text = r#"{"Records":[
        {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"1","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},
         "eventSource":"aws:kinesis","eventID":"shardId-000000000006:1","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s1","extra":{"x":[1]}},
        {"kinesis":{"sequenceNumber":"2","data":"","approximateArrivalTimestamp":1545084650},"eventID":"shardId-000000000006:2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s1"},
        {"kinesis":{"sequenceNumber":"3","data":"bm90IGpzb24=","approximateArrivalTimestamp":1545084650.5},"eventID":"","eventSourceARN":"arn:aws:kinesis:us-east-2:1:stream/s2/consumer/c:1"}],
        "other":{"ignored":true}}"#;
    // Owned: the event text may be dropped before the records are used.
    let batch: KinesisRecords<Owned> =
        serde_json::from_slice(text.as_bytes().to_vec().as_slice()).unwrap();
    let r = &batch.records;
    assert_eq!(r.len(), 3);
    assert_eq!(
        (
            &*r[0].stream,
            &*r[0].shard,
            r[0].seq.as_str(),
            r[0].arrival_ms
        ),
        ("s1", "shardId-000000000006", "1", 1545084650987)
    );
    assert_eq!(r[0].data, br#"{"a":1}"#);
    assert!(
        Arc::ptr_eq(&r[0].stream, &r[1].stream),
        "one copy per batch"
    );
    assert!(Arc::ptr_eq(&r[0].shard, &r[1].shard));
    assert_eq!(r[1].data, b"");
    assert_eq!(r[2].arrival_ms, 1545084650500, ".5 is half a second");
    assert_eq!((&*r[2].stream, &*r[2].shard), ("s2", UNKNOWN_SHARD));
    assert_eq!(r[2].data, b"not json");
    // The same through the helper, and the same records as the borrowed reader.
    let again = KinesisRecords::<Owned>::parse(text.as_bytes()).unwrap();
    assert_eq!(again, batch);
    let borrowed = parse(text.as_bytes()).unwrap();
    for (b, o) in borrowed.records.iter().zip(&batch.records) {
        assert_eq!((b.stream_name(), b.shard_id()), (&*o.stream, &*o.shard));
    }
}

#[test]
fn a_record_the_caller_cannot_build_fails_the_whole_event() {
    let bad_data = data_event("%%%");
    assert!(matches!(
        KinesisRecords::<Owned>::parse(bad_data.as_bytes()),
        Err(Error::InvalidKinesisEvent(_))
    ));
    for bad in [
        r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"","approximateArrivalTimestamp":1e300}}]}"#,
        r#"{"Records":[{"eventID":"x"}]}"#,
        r#"{"Records":null}"#,
        r#"{"Records":[],"Records":[]}"#,
        r#"[]"#,
    ] {
        assert!(
            KinesisRecords::<Owned>::parse(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
    assert!(
        KinesisRecords::<Owned>::parse(b"{}")
            .unwrap()
            .records
            .is_empty()
    );
}
