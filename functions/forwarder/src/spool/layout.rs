//! The spool's layout in S3, per emitter:
//! `{SPOOL_PREFIX}{emitter}/{yyyy}/{MM}/{dd}/{HH}/{arrivalMs:013}-{shard}-{firstSequenceNumber}-{requestId8}.jsonl`
//! (emitter and shard escaped by [`authtrail_core::s3key`]; hour and `arrivalMs` of the oldest
//! record in the object, so that the lexicographic order of keys is oldest first), and the
//! lease `{SPOOL_PREFIX}{emitter}/.lease` and the breaker marker
//! `{SPOOL_PREFIX}{emitter}/.breaker` (present while the breaker is open). Each object holds JSON lines, one [`SpoolLine`] per
//! record.

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ForwarderError;

/// One spooled record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoolLine {
    /// The record's sequence number.
    pub sequence_number: String,
    /// Its shard.
    pub shard: String,
    /// Its stream.
    pub stream: String,
    /// Its arrival in the stream, epoch milliseconds.
    pub arrival_ms: i64,
    /// Its primary event type (`null` when it has none).
    pub event_type: Option<String>,
    /// Why it was spooled: the HTTP status or a short word (`timeout`, `connect`, ...).
    pub status: String,
    /// The receiver's answer or the error text (truncated).
    pub reason: String,
    /// The document id the emitter used (the event id, else a SHA-256 of the record's bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// The record exactly as the emitter would have received it (filtered, redacted).
    pub record: Box<RawValue>,
}

/// `{prefix}{emitter}/`: the keys of one emitter's spool.
pub fn emitter_prefix(prefix: &str, emitter: &str) -> String {
    format!("{prefix}{}/", authtrail_core::s3key::escape_part(emitter))
}

/// The lease of one emitter's redrive.
pub fn lease_key(prefix: &str, emitter: &str) -> String {
    format!("{}.lease", emitter_prefix(prefix, emitter))
}

/// The breaker marker of one emitter: present while its breaker is open (see
/// [`crate::spool::Spool::persist_breaker`]).
pub fn breaker_key(prefix: &str, emitter: &str) -> String {
    format!("{}.breaker", emitter_prefix(prefix, emitter))
}

/// The key of a spool object whose oldest record arrived at `oldest_ms`; `first` is the first
/// record's shard and sequence number, `tag` the writer's request id (8 characters used).
pub fn object_key(
    prefix: &str,
    emitter: &str,
    oldest_ms: i64,
    first: (&str, &str),
    tag: &str,
) -> String {
    let hour = Utc
        .timestamp_millis_opt(oldest_ms)
        .single()
        .unwrap_or_default();
    let arrival = format!("{:013}", oldest_ms.max(0));
    let tag: String = tag.chars().take(8).collect();
    authtrail_core::s3key::hourly_key(
        &emitter_prefix(prefix, emitter),
        hour,
        &[&arrival, first.0, first.1, &tag],
        ".jsonl",
    )
}

/// Whether `key` is a spool object (not the lease nor the breaker marker).
pub fn is_object(key: &str) -> bool {
    key.ends_with(".jsonl")
}

/// The arrival time of the oldest record of a spool object, read from its key.
pub fn oldest_ms_of_key(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    name.get(..13)?.parse().ok()
}

/// The JSON lines of `lines`.
pub fn encode(lines: &[SpoolLine]) -> Result<Vec<u8>, ForwarderError> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, l).map_err(ForwarderError::RecordNotSerializable)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The lines of a spool object: each readable one, or the bytes of a line that is not.
pub fn decode(body: &[u8]) -> Vec<Result<SpoolLine, Vec<u8>>> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| serde_json::from_slice(l).map_err(|_| l.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn spool_keys_sort_oldest_first_and_escape_the_emitter_and_shard() {
        let a = object_key("spool/", "my siem", 999, ("shardId-1", "5"), "abcdefghij");
        let b = object_key("spool/", "my siem", 1_000, ("shardId-1", "4"), "zzzzzzzz");
        let c = object_key("spool/", "my siem", 3_600_000, ("shardId-0", "1"), "a");
        assert_eq!(
            a,
            "spool/my%20siem/1970/01/01/00/0000000000999-shardId-1-5-abcdefgh.jsonl"
        );
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(oldest_ms_of_key(&b), Some(1_000));
        assert!(is_object(&a) && !is_object(&lease_key("spool/", "my siem")));
        assert_eq!(lease_key("spool/", "my siem"), "spool/my%20siem/.lease");
    }

    #[test]
    fn spool_lines_keep_the_record_text_as_the_emitter_received_it() {
        let line = SpoolLine {
            sequence_number: "7".into(),
            shard: "shardId-0".into(),
            stream: "s".into(),
            arrival_ms: 5,
            event_type: None,
            status: "503".into(),
            reason: "busy".into(),
            doc_id: None,
            record: RawValue::from_string(r#"{"b":1,"a":"x"}"#.into()).unwrap(),
        };
        let body = encode(&[line.clone(), line]).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with(r#"{"sequenceNumber":"7","shard":"shardId-0","stream":"s","arrivalMs":5,"eventType":null,"status":"503","reason":"busy","record":{"b":1,"a":"x"}}"#), "{text}");
        let back = decode(&[body.as_slice(), b"not json\n"].concat());
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].as_ref().unwrap().record.get(), r#"{"b":1,"a":"x"}"#);
        assert_eq!(back[2].as_ref().unwrap_err(), b"not json");
    }
}
