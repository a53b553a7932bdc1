//! One invocation, in five steps, each in its own file:
//!
//! 1. [`prepare`]: parse and classify every record once, transform it (field filter, redaction)
//!    once per transform profile in use; records that are not a UTF-8 JSON object are
//!    malformed.
//! 2. [`deliver`]: deliver to every emitter concurrently (chunks cut to each emitter's
//!    `buffering`, up to `maxConcurrentRequests` requests in flight, retries with exponential
//!    backoff and jitter, `Retry-After` honoured, none past the retry deadline; a request
//!    refused as a whole is split to find the records it refuses).
//! 3. [`expire`]: retryable failures of records older than `retry.maxRecordAgeInSec` become
//!    final.
//! 4. [`quorum`]: which records are done.
//! 5. [`dead_letters`]: write the dead-letter trail.
//!
//! A record is **done** when every emitter of `emitToAllOf` and at least one of
//! `emitAtLeastOneOf` took it (delivered it, were not selected for it by `include`/`exclude`, or
//! dead-lettered it after a permanent refusal). Records that are not done are returned as
//! `batchItemFailures`, so Lambda retries them (from the lowest one: records after it can be
//! delivered again to emitters that already took them; Elasticsearch's `_id` makes that
//! idempotent, the other receivers see an at-least-once stream).
//!
//! Nothing is silently dropped: a malformed record, a permanent refusal, a retryable failure that
//! outlived `retry.maxRecordAgeInSec`, and an emitter that still failed on a record the quorum
//! completed without it all leave a dead letter. If a dead letter cannot be written, the record
//! is not done.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Buffering, RetryPolicy};
use crate::dlq::DeadLetterSink;
use crate::emit::{Emitter, Failure};
use crate::filter::Selector;
use crate::record::{Source, Transform};

mod build;
mod dead_letters;
mod deliver;
mod expire;
mod prepare;
mod quorum;
#[cfg(test)]
mod tests;

pub use build::build;
pub use deliver::backoff;

/// One emitter with its per-emitter settings.
pub struct Slot {
    /// The emitter.
    pub emitter: Arc<dyn Emitter>,
    /// Its `include` / `exclude`.
    pub selector: Selector,
    /// Its `buffering`.
    pub buffering: Buffering,
    /// Its `emitTimeoutInSec`.
    pub timeout: Duration,
    /// Index into [`Forwarder::profiles`] (0 = the top-level transform).
    pub profile: usize,
}

/// The forwarder, built once at cold start.
pub struct Forwarder {
    /// The emitters.
    pub slots: Vec<Slot>,
    /// The transforms in use: the top-level one first, then the emitters' overrides.
    pub profiles: Vec<Transform>,
    /// Slot indices that must all take a record.
    pub all_of: Vec<usize>,
    /// Slot indices of which one must take a record (empty: no such condition).
    pub at_least_one_of: Vec<usize>,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Where dead letters go.
    pub dlq: Arc<dyn DeadLetterSink>,
    /// The key prefix of dead letters.
    pub dlq_prefix: String,
}

/// A record of the batch.
#[derive(Debug, Clone)]
pub struct InputRecord {
    /// Where it came from.
    pub source: Source,
    /// Its data, decoded.
    pub data: Vec<u8>,
}

/// What one emitter did in one invocation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmitterStats {
    /// Records delivered.
    pub delivered: usize,
    /// Record deliveries attempted again after a retryable failure.
    pub retried: usize,
    /// Records dead-lettered for this emitter.
    pub dead_lettered: usize,
    /// Records still failing at the end (reported for Lambda to retry, or dead-lettered when
    /// the quorum completed the record without this emitter).
    pub pending: usize,
    /// Records not selected by `include` / `exclude`.
    pub skipped: usize,
    /// Requests sent.
    pub requests: usize,
    /// Time spent delivering, milliseconds.
    pub latency_ms: u64,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// Sequence numbers of the records that are not done, in batch order.
    pub failures: Vec<String>,
    /// Records in the batch.
    pub records: usize,
    /// Records that are not a UTF-8 JSON object.
    pub malformed: usize,
    /// Dead letters written or attempted.
    pub dead_letters: usize,
    /// Dead letters that could not be written.
    pub dead_letter_errors: usize,
    /// Per emitter, by name.
    pub emitters: Vec<(String, EmitterStats)>,
}

/// Where one record stands with one emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Not selected by the emitter's `include` / `exclude`.
    Skipped,
    /// Delivered.
    Delivered,
    /// Refused for good: dead-lettered.
    Permanent(Failure),
    /// Still failing with a retryable failure past `retry.maxRecordAgeInSec`: dead-lettered.
    Expired(Failure),
    /// Still failing with a retryable failure: not taken.
    Pending(Failure),
}

impl Status {
    /// Whether the emitter took the record (quorum-wise).
    fn took(&self) -> bool {
        !matches!(self, Status::Pending(_))
    }
}

/// Leaves this much of the invocation for the dead-letter writes and the response.
fn retry_deadline(deadline: Instant) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let margin = (remaining / 5).clamp(Duration::from_millis(500), Duration::from_secs(5));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

impl Forwarder {
    /// Processes one batch; `deadline` is the invocation's deadline.
    pub async fn process(&self, records: &[InputRecord], deadline: Instant) -> BatchResult {
        let retry_deadline = retry_deadline(deadline);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let batch = prepare::prepare(&self.profiles, &self.slots, records);
        let (mut statuses, mut stats) = deliver::deliver_all(self, &batch, retry_deadline).await;
        expire::expire(&mut statuses, records, self.retry.max_record_age, now_ms);
        let mut done = quorum::done(
            &self.all_of,
            &self.at_least_one_of,
            &statuses,
            &batch.classes,
        );
        let letters = dead_letters::collect(self, &batch, &statuses, &done, &mut stats);
        let dead_letters = letters.len();
        let dead_letter_errors =
            dead_letters::write(self, records, &batch, letters, &mut done).await;
        BatchResult {
            failures: records
                .iter()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|(r, _)| r.source.sequence_number.clone())
                .collect(),
            records: records.len(),
            malformed: batch.malformed.len(),
            dead_letters,
            dead_letter_errors,
            emitters: self
                .slots
                .iter()
                .zip(stats)
                .map(|(s, st)| (s.emitter.name().to_string(), st))
                .collect(),
        }
    }
}
