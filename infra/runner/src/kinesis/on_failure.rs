//! What the mapping writes to its on-failure destination when it gives up on records: an AWS
//! invocation record (`requestContext`, `responseContext`, `KinesisBatchInfo`, and the original
//! batch as `payload`) at an AWS-shaped S3 key.

use chrono::{DateTime, SecondsFormat, Utc};

use super::wire::{Rec, event_payload};
use crate::error::Result;
use crate::function::Outcome;

/// Who gave up on which records, and why.
pub(super) struct Discard<'a> {
    /// ARN of the function the batch was for.
    pub(super) function_arn: &'a str,
    /// ARN of the stream.
    pub(super) stream_arn: &'a str,
    /// Shard of the records.
    pub(super) shard_id: &'a str,
    /// `RetryAttemptsExhausted` or `RecordAgeExceeded`.
    pub(super) condition: &'a str,
    /// Invocations of the head record so far.
    pub(super) invoke_count: u64,
}

/// The S3 key of an on-failure record:
/// `{prefix}aws/lambda/{esm-uuid}/{shardId}/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-{object_id}`, with a
/// `/` put after a prefix that does not end in one.
pub(super) fn object_key(
    prefix: &str,
    mapping_uuid: &str,
    shard_id: &str,
    now: DateTime<Utc>,
    object_id: &str,
) -> String {
    format!(
        "{prefix}{sep}aws/lambda/{mapping_uuid}/{shard_id}/{date}/{stamp}-{object_id}",
        sep = if prefix.is_empty() || prefix.ends_with('/') {
            ""
        } else {
            "/"
        },
        date = now.format("%Y/%m/%d"),
        stamp = now.format("%Y-%m-%dT%H.%M.%S"),
    )
}

/// The invocation record for discarded `records` (empty text for no records), stamped `now`,
/// with `request_id`; `responseContext` only when the last invocation's `outcome` is known.
pub(super) fn invocation_record(
    d: &Discard<'_>,
    records: &[&Rec],
    outcome: Option<&Outcome>,
    now: DateTime<Utc>,
    request_id: &str,
) -> Result<String> {
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let (first, last) = match (records.first(), records.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Ok(String::new()),
    };
    let mut record = serde_json::json!({
        "requestContext": {
            "requestId": request_id,
            "functionArn": d.function_arn,
            "condition": d.condition,
            "approximateInvokeCount": d.invoke_count,
        },
        "version": "1.0",
        "timestamp": iso(now),
        "KinesisBatchInfo": {
            "shardId": d.shard_id,
            "startSequenceNumber": first.seq,
            "endSequenceNumber": last.seq,
            "approximateArrivalOfFirstRecord": iso(first.arrival),
            "approximateArrivalOfLastRecord": iso(last.arrival),
            "batchSize": records.len(),
            "streamArn": d.stream_arn,
        },
    });
    if let Some(outcome) = outcome {
        let error_type = outcome.error_type();
        record["responseContext"] = serde_json::json!({
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": if error_type.is_some() { "Unhandled" } else { "" },
            "errorType": error_type,
        });
    }
    let payload = event_payload(records.iter().map(|r| r.json.as_str()));
    let mut text = serde_json::to_string(&record)?;
    // Append the original event batch as `payload` (a JSON string, as in S3 destination
    // records), without re-parsing it.
    if text.ends_with('}') {
        text.pop();
        text.push_str(",\"payload\":");
        text.push_str(&serde_json::to_string(&payload)?);
        text.push('}');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::Value;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(millis).unwrap()
    }

    fn rec(seq: &str, millis: i64) -> Rec {
        Rec {
            seq: seq.into(),
            arrival: at(millis),
            json: format!(r#"{{"seq":"{seq}"}}"#),
        }
    }

    fn discard() -> Discard<'static> {
        Discard {
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f",
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s",
            shard_id: "shardId-000000000001",
            condition: "RetryAttemptsExhausted",
            invoke_count: 3,
        }
    }

    #[test]
    fn object_key_follows_the_aws_layout_with_one_slash_after_the_prefix() {
        let now = at(1_700_000_000_123);
        let key = |prefix| object_key(prefix, "esm", "shardId-0", now, "id");
        let tail = "aws/lambda/esm/shardId-0/2023/11/14/2023-11-14T22.13.20-id";
        assert_eq!(key(""), tail);
        assert_eq!(key("failed"), format!("failed/{tail}"));
        assert_eq!(key("failed/"), format!("failed/{tail}"));
    }

    #[test]
    fn invocation_record_describes_the_batch_and_carries_it_as_payload() {
        let (a, b) = (rec("10", 1_000), rec("11", 2_500));
        let outcome = Outcome::Crashed {
            detail: "exit status 1".into(),
        };
        let text =
            invocation_record(&discard(), &[&a, &b], Some(&outcome), at(5_000), "req").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["requestContext"]["requestId"], "req");
        assert_eq!(v["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:05.000Z");
        let info = &v["KinesisBatchInfo"];
        assert_eq!(info["startSequenceNumber"], "10");
        assert_eq!(info["endSequenceNumber"], "11");
        assert_eq!(
            info["approximateArrivalOfLastRecord"],
            "1970-01-01T00:00:02.500Z"
        );
        assert_eq!(info["batchSize"], 2);
        assert_eq!(v["responseContext"]["functionError"], "Unhandled");
        assert_eq!(v["responseContext"]["errorType"], "Runtime.ExitError");
        assert_eq!(v["payload"], r#"{"Records":[{"seq":"10"},{"seq":"11"}]}"#);
    }

    #[test]
    fn invocation_record_without_an_outcome_has_no_response_context() {
        let a = rec("10", 1_000);
        let text = invocation_record(&discard(), &[&a], None, at(5_000), "req").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("responseContext").is_none());
        assert!(
            invocation_record(&discard(), &[], None, at(5_000), "req")
                .unwrap()
                .is_empty()
        );
    }
}
