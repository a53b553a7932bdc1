//! The dead-letter trail. Dead letters are written in few objects per invocation: JSON lines,
//! one letter object per line (the same objects as the single-letter objects of earlier
//! versions, which tools still read: one pretty-printed letter per `.json` object), under
//! `{DLQ_PREFIX}YYYY/MM/DD/HH/{stream}-{shardId}-{firstSequenceNumber}-{requestId}-{part}.jsonl`
//! (hour of the first letter's record arrival; parts outside `[A-Za-z0-9._-]` written `%XX` by
//! [`authtrail_core::s3key`]). The request id makes keys of different invocations distinct,
//! and objects are created with `If-None-Match: *`, so one letter never overwrites another.
//! A Lambda retry of a batch writes its letters again under its own request id: a record can
//! have more than one letter (same sequence number), never none.
//!
//! Each letter holds the emitter, the status, the receiver's answer (truncated), the reason and
//! the record **as the emitter would have received it** (filtered and redacted: the dead-letter
//! trail never holds what redaction hides). A malformed record cannot be redacted (it has no
//! fields); its bytes are kept base64-encoded, as the archiver keeps them under `errors/`, so it
//! can be recovered. Malformed records use the emitter name `malformed`.

use base64::Engine;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ForwarderError;
use crate::emit::BoxFuture;
use crate::record::Source;

/// Letters per dead-letter object at most.
pub const LETTERS_PER_OBJECT: usize = 1000;
/// Bytes per dead-letter object at most (a letter larger than this is written alone).
pub const BYTES_PER_OBJECT: usize = 4 << 20;
/// Dead-letter objects written at once.
const CONCURRENT_WRITES: usize = 8;

/// Where dead letters go.
pub trait DeadLetterSink: Send + Sync {
    /// Creates `key` with `body`; an existing object with the key is an error (never
    /// overwritten).
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
                .if_none_match("*")
                .content_type("application/x-ndjson")
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
    /// The key the single-letter objects of earlier versions had under `prefix` (the same
    /// record and emitter always gave the same key).
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

    /// The letter as one line of compact JSON (no newline).
    pub fn line(&self) -> Vec<u8> {
        serde_json::to_vec(&self.value()).unwrap_or_default()
    }

    /// The letter as a single-letter object of earlier versions: pretty-printed JSON.
    pub fn body(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.value()).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn value(&self) -> Value {
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
        v
    }
}

/// One letter to write: its line, the record it is about, and who asked for it (`owner`,
/// reported back when the letter could not be written).
#[derive(Debug, Clone)]
pub struct LetterLine {
    /// The caller's identifier of the letter (a record's position in the batch, ...).
    pub owner: usize,
    /// The record's source.
    pub source: Source,
    /// [`DeadLetter::line`].
    pub line: Vec<u8>,
}

/// Writes `letters` in objects of at most [`LETTERS_PER_OBJECT`] letters and
/// [`BYTES_PER_OBJECT`] bytes, [`CONCURRENT_WRITES`] at a time, none started or awaited past
/// `deadline`. `tag` (the request id) makes the keys of different invocations distinct.
/// Returns the owners of the letters that were not written.
pub async fn write_batched(
    sink: &Arc<dyn DeadLetterSink>,
    prefix: &str,
    tag: &str,
    letters: Vec<LetterLine>,
    deadline: Instant,
) -> Vec<usize> {
    let mut failed = Vec::new();
    let mut groups = group(letters).into_iter().enumerate();
    let mut writes = JoinSet::new();
    loop {
        while writes.len() < CONCURRENT_WRITES {
            let Some((part, group)) = groups.next() else {
                break;
            };
            let owners: Vec<usize> = group.iter().map(|l| l.owner).collect();
            if Instant::now() >= deadline {
                tracing::error!(letters = owners.len(), "no time left to write dead letters");
                failed.extend(owners);
                continue;
            }
            let key = group_key(prefix, tag, part, &group);
            let body: Vec<u8> = group
                .iter()
                .flat_map(|l| l.line.iter().copied().chain([b'\n']))
                .collect();
            let sink = sink.clone();
            writes.spawn(async move {
                let put = tokio::time::timeout_at(deadline, sink.put(key.clone(), body)).await;
                (owners, key, put)
            });
        }
        let Some(joined) = writes.join_next().await else {
            break;
        };
        match joined {
            Ok((owners, key, Ok(Ok(())))) => {
                tracing::info!(key, letters = owners.len(), "dead letters written")
            }
            Ok((owners, key, Ok(Err(e)))) => {
                tracing::error!(key, error = %e, letters = owners.len(), "dead letters could not be written");
                failed.extend(owners);
            }
            Ok((owners, key, Err(_))) => {
                tracing::error!(
                    key,
                    letters = owners.len(),
                    "dead letters not written before the deadline"
                );
                failed.extend(owners);
            }
            Err(e) => {
                // The owners are unknown: report every letter failed (fail safe).
                tracing::error!(error = %e, "dead-letter task failed");
                failed.push(usize::MAX);
            }
        }
    }
    failed
}

/// Cuts `letters` into objects.
fn group(letters: Vec<LetterLine>) -> Vec<Vec<LetterLine>> {
    let mut out: Vec<Vec<LetterLine>> = Vec::new();
    let mut bytes = 0;
    for l in letters {
        let full = out.last().is_none_or(|g| {
            g.len() >= LETTERS_PER_OBJECT || bytes + l.line.len() + 1 > BYTES_PER_OBJECT
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += l.line.len() + 1;
        if let Some(g) = out.last_mut() {
            g.push(l);
        }
    }
    out
}

/// The key of one dead-letter object.
fn group_key(prefix: &str, tag: &str, part: usize, group: &[LetterLine]) -> String {
    let Some(first) = group.first() else {
        return format!("{prefix}empty-{tag}-{part}.jsonl");
    };
    let arrival = Utc
        .timestamp_millis_opt(first.source.arrival_ms)
        .single()
        .unwrap_or_else(Utc::now);
    authtrail_core::s3key::hourly_key(
        prefix,
        arrival,
        &[
            &first.source.stream,
            &first.source.shard,
            &first.source.sequence_number,
            tag,
            &part.to_string(),
        ],
        ".jsonl",
    )
}
