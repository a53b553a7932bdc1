//! The wire format between the mapping and the function: the `KinesisEvent` payload it sends
//! (records serialised exactly as AWS does, joined without re-serialising) and the partial-batch
//! response (`batchItemFailures`) it reads back.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;

/// `{"Records":[` + `]}`.
pub(super) const ENVELOPE_BYTES: usize = 14;

/// Compares two Kinesis sequence numbers (decimal strings up to 56 digits) as integers.
pub fn cmp_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    authtrail_core::seqnum::compare(a, b)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireKinesis<'a> {
    kinesis_schema_version: &'static str,
    partition_key: &'a str,
    sequence_number: &'a str,
    data: String,
    approximate_arrival_timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_type: Option<&'a str>,
}

#[derive(Serialize)]
struct WireRecord<'a> {
    kinesis: WireKinesis<'a>,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "eventVersion")]
    event_version: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "eventName")]
    event_name: &'static str,
    #[serde(rename = "invokeIdentityArn")]
    invoke_identity_arn: &'a str,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
}

/// The fields of one record that go into a `KinesisEvent`.
#[derive(Debug, Clone)]
pub struct RecordInput<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub partition_key: &'a str,
    pub data: &'a [u8],
    pub arrival: DateTime<Utc>,
    pub encryption_type: Option<&'a str>,
}

/// Where the records of an event come from (same for every record of a mapping).
#[derive(Debug, Clone)]
pub struct EventContext {
    pub region: String,
    pub stream_arn: String,
    pub invoke_identity_arn: String,
}

/// Serialises one record exactly as it appears in the `Records` array of a Lambda
/// `KinesisEvent` (AWS's field order).
pub fn record_json(ctx: &EventContext, r: &RecordInput<'_>) -> Result<String> {
    let millis = r.arrival.timestamp_millis();
    // Epoch seconds with millisecond precision, as AWS sends it (e.g. 1545084650.987).
    #[allow(clippy::cast_precision_loss)]
    let ts = millis as f64 / 1000.0;
    let wire = WireRecord {
        kinesis: WireKinesis {
            kinesis_schema_version: "1.0",
            partition_key: r.partition_key,
            sequence_number: r.sequence_number,
            data: base64::engine::general_purpose::STANDARD.encode(r.data),
            approximate_arrival_timestamp: ts,
            encryption_type: r.encryption_type,
        },
        event_source: "aws:kinesis",
        event_version: "1.0",
        event_id: format!("{}:{}", r.shard_id, r.sequence_number),
        event_name: "aws:kinesis:record",
        invoke_identity_arn: &ctx.invoke_identity_arn,
        aws_region: &ctx.region,
        event_source_arn: &ctx.stream_arn,
    };
    Ok(serde_json::to_string(&wire)?)
}

/// Joins serialised records into a `KinesisEvent` payload: `{"Records":[r1,r2,...]}`.
pub fn event_payload<'a>(records: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{\"Records\":[");
    for (i, r) in records.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push_str("]}");
    out
}

/// One record read from a shard, held until it is checkpointed: its sequence number, arrival
/// time and its serialised form ([`record_json`]).
pub(super) struct Rec {
    pub(super) seq: String,
    pub(super) arrival: DateTime<Utc>,
    pub(super) json: String,
}

/// What a function's answer means for the batch it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every record of the batch is done.
    Success,
    /// Records before index `i` are done; `i..` failed.
    Partial(usize),
    /// Nothing done.
    Failed,
}

/// A `batchItemFailures` entry that fails the whole batch, as Lambda treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BadItemFailure {
    /// `itemIdentifier` missing, null or empty.
    MissingIdentifier,
    /// `itemIdentifier` names no record of the batch.
    NotInBatch(String),
}

/// Reads a `ReportBatchItemFailures` response for the batch whose sequence numbers are `batch`
/// (in order): done up to the lowest reported sequence number. A body that is not JSON, or has
/// no, a null or an empty `batchItemFailures`, is success; a `batchItemFailures` that is not an
/// array fails the batch; an entry without a usable identifier is a [`BadItemFailure`].
pub(super) fn judge_response(body: &[u8], batch: &[&str]) -> Result<Verdict, BadItemFailure> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(Verdict::Success);
    };
    let failures = match value.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => return Ok(Verdict::Success),
        Some(serde_json::Value::Array(a)) if a.is_empty() => return Ok(Verdict::Success),
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return Ok(Verdict::Failed),
    };
    // (index in the batch, sequence number) of the lowest reported record.
    let mut lowest: Option<(usize, &str)> = None;
    for f in failures {
        let id = f.get("itemIdentifier").and_then(serde_json::Value::as_str);
        let Some(id) = id.filter(|s| !s.is_empty()) else {
            return Err(BadItemFailure::MissingIdentifier);
        };
        let Some(idx) = batch.iter().position(|seq| *seq == id) else {
            return Err(BadItemFailure::NotInBatch(id.to_owned()));
        };
        lowest = match lowest {
            Some((l, cur)) if !cmp_sequence_numbers(id, cur).is_lt() => Some((l, cur)),
            _ => Some((idx, id)),
        };
    }
    Ok(match lowest {
        Some((0, _)) => Verdict::Failed,
        Some((i, _)) => Verdict::Partial(i),
        None => Verdict::Success,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;

    fn ctx() -> EventContext {
        EventContext {
            region: "us-east-1".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
            invoke_identity_arn: "arn:aws:iam::123456789012:role/f-role".into(),
        }
    }

    #[test]
    fn built_payload_deserializes_into_kinesis_event_with_aws_fields() {
        let arrival = DateTime::<Utc>::from_timestamp_millis(1_545_084_650_987).unwrap();
        let data = br#"{"a":1}"#;
        let r = record_json(
            &ctx(),
            &RecordInput {
                shard_id: "shardId-000000000000",
                sequence_number: "49590338271490256608559692538361571095921575989136588898",
                partition_key: "pk",
                data,
                arrival,
                encryption_type: None,
            },
        )
        .unwrap();
        let payload = event_payload([r.as_str(), r.as_str()]);
        assert_eq!(payload.len(), ENVELOPE_BYTES + 2 * r.len() + 1);
        let ev: KinesisEvent = serde_json::from_str(&payload).unwrap();
        assert_eq!(ev.records.len(), 2);
        let rec = &ev.records[0];
        assert_eq!(rec.event_source.as_deref(), Some("aws:kinesis"));
        assert_eq!(rec.event_name.as_deref(), Some("aws:kinesis:record"));
        assert_eq!(rec.event_version.as_deref(), Some("1.0"));
        assert_eq!(
            rec.event_id.as_deref(),
            Some("shardId-000000000000:49590338271490256608559692538361571095921575989136588898")
        );
        assert_eq!(rec.kinesis.data.0, data.to_vec());
        assert_eq!(rec.kinesis.partition_key, "pk");
        assert_eq!(rec.kinesis.kinesis_schema_version.as_deref(), Some("1.0"));
        assert_eq!(rec.kinesis.approximate_arrival_timestamp.0, arrival);
        assert!(r.contains("\"approximateArrivalTimestamp\":1545084650.987"));
        assert!(r.starts_with("{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\""));
    }

    #[test]
    fn sequence_numbers_compare_as_integers_not_strings() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_sequence_numbers("9", "10"), Less);
        assert_eq!(cmp_sequence_numbers("10", "9"), Greater);
        assert_eq!(cmp_sequence_numbers("100", "100"), Equal);
        assert_eq!(
            cmp_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Less
        );
    }

    const BATCH: &[&str] = &["8", "9", "10", "11"];

    fn judge(body: &str) -> Result<Verdict, BadItemFailure> {
        judge_response(body.as_bytes(), BATCH)
    }

    #[test]
    fn response_without_item_failures_is_success() {
        for body in [
            "",
            "not json",
            "null",
            "{}",
            r#"{"batchItemFailures":null}"#,
            r#"{"batchItemFailures":[]}"#,
        ] {
            assert_eq!(judge(body), Ok(Verdict::Success), "{body:?}");
        }
    }

    #[test]
    fn item_failures_leave_the_batch_done_up_to_the_lowest_reported_sequence_number() {
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"11"},{"itemIdentifier":"10"}]}"#;
        assert_eq!(judge(body), Ok(Verdict::Partial(2)));
        // "9" < "10" as integers although not as strings.
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"10"},{"itemIdentifier":"9"}]}"#;
        assert_eq!(judge(body), Ok(Verdict::Partial(1)));
    }

    #[test]
    fn item_failure_at_the_first_record_or_a_non_array_fails_the_whole_batch() {
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"10"},{"itemIdentifier":"8"}]}"#;
        assert_eq!(judge(body), Ok(Verdict::Failed));
        assert_eq!(judge(r#"{"batchItemFailures":"8"}"#), Ok(Verdict::Failed));
    }

    #[test]
    fn null_empty_or_unknown_item_identifiers_are_bad_item_failures() {
        for body in [
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{}]}"#,
        ] {
            assert_eq!(
                judge(body),
                Err(BadItemFailure::MissingIdentifier),
                "{body:?}"
            );
        }
        assert_eq!(
            judge(r#"{"batchItemFailures":[{"itemIdentifier":"12"}]}"#),
            Err(BadItemFailure::NotInBatch("12".into()))
        );
    }
}
