//! The dead-letter trail: one S3 object per record and emitter that could not be delivered
//! (`{DLQ_PREFIX}YYYY/MM/DD/HH/{stream}-{shardId}-{sequenceNumber}-{emitter}.json`, hour of the
//! record's arrival; bytes of the parts outside `[A-Za-z0-9._-]` written `%XX` by
//! [`authtrail_core::s3key`]). The same record and emitter always map to the same key, so a
//! Lambda retry overwrites rather than duplicates. Malformed records use the emitter name
//! `malformed`.
//!
//! Each object holds the emitter, the status, the receiver's answer (truncated), the reason and
//! the record **as the emitter would have received it** (filtered and redacted: the dead-letter
//! trail never holds what redaction hides). A malformed record cannot be redacted (it has no
//! fields); its bytes are kept base64-encoded, as the archiver keeps them under `errors/`, so it
//! can be recovered.

use base64::Engine;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use crate::ForwarderError;
use crate::emit::BoxFuture;
use crate::record::Source;

/// Where dead letters go. `put` must be idempotent for the same key.
pub trait DeadLetterSink: Send + Sync {
    /// Stores `body` at `key` (overwriting).
    fn put<'a>(&'a self, key: String, body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>>;
}

/// Dead letters in S3.
pub struct S3DeadLetters {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3DeadLetters {
    /// Dead letters in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
        }
    }
}

impl DeadLetterSink for S3DeadLetters {
    fn put<'a>(&'a self, key: String, body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/json")
                .body(body.into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| ForwarderError::DeadLetterNotWritten {
                    bucket: self.bucket.clone(),
                    key: key.clone(),
                    detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                })
        })
    }
}

/// What one dead letter says.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The emitter's name (`malformed` for a malformed record).
    pub emitter: &'a str,
    /// HTTP status or a short word (`timeout`, `too-large`, `malformed`, ...).
    pub status: &'a str,
    /// The receiver's answer or the error text (truncated).
    pub response: &'a str,
    /// Why the record was dead-lettered.
    pub reason: &'a str,
    /// Where the record came from.
    pub source: &'a Source,
    /// The record's primary event type (`None` for a malformed one).
    pub event_type: Option<&'a str>,
    /// The transformed record, or `None` for a malformed one (then `raw` is kept).
    pub record: Option<&'a Value>,
    /// The bytes of a malformed record (kept base64-encoded).
    pub raw: Option<&'a [u8]>,
}

impl DeadLetter<'_> {
    /// The object key under `prefix`: the same record and emitter always give the same key.
    pub fn key(&self, prefix: &str) -> String {
        let arrival = Utc
            .timestamp_millis_opt(self.source.arrival_ms)
            .single()
            .unwrap_or_else(Utc::now);
        authtrail_core::s3key::hourly_key(
            prefix,
            arrival,
            &[
                &self.source.stream,
                &self.source.shard,
                &self.source.sequence_number,
                self.emitter,
            ],
            ".json",
        )
    }

    /// The object's body: pretty-printed JSON.
    pub fn body(&self) -> Vec<u8> {
        let mut v = json!({
            "emitter": self.emitter,
            "status": self.status,
            "response": self.response,
            "reason": self.reason,
            "stream": &*self.source.stream,
            "shardId": &*self.source.shard,
            "sequenceNumber": self.source.sequence_number,
            "approximateArrivalTimestamp": authtrail_core::envelope::format_timestamp(self.source.arrival_ms),
            "deadLetteredAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let Some(t) = self.event_type {
            v["eventType"] = json!(t);
        }
        if let Some(r) = self.record {
            v["record"] = r.clone();
        }
        if let Some(raw) = self.raw {
            v["dataBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
        }
        let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
