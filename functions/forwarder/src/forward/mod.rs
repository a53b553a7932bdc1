//! One invocation, in five steps, each in its own file:
//!
//! 1. [`prepare`]: parse and classify every record once, transform it (field filter, redaction)
//!    once per transform profile in use; records that are not a UTF-8 JSON object are
//!    malformed.
//! 2. [`deliver`]: deliver to every emitter concurrently (chunks cut to each emitter's
//!    `buffering`, up to `maxConcurrentRequests` requests in flight, retries with exponential
//!    backoff and jitter, `Retry-After` honoured, none past the retry deadline; a request
//!    refused as a whole is split to find the records it refuses).
//! 3. With a spool ([`spooling`]): what an emitter did not take is spooled for it. An emitter
//!    whose breaker is open has the batch spooled at once (and is probed at most once per
//!    probe interval, concurrently with the others); one this warm instance knows to have
//!    spooled records is redriven first, within its own task in step 2 (its new records are
//!    spooled behind the old ones unless the spool drains).
//!    Without a spool ([`expire`]): retryable failures of records older than
//!    `retry.maxRecordAgeInSec` become final.
//! 4. [`quorum`]: which records are done.
//! 5. [`dead_letters`]: write the dead-letter trail.
//!
//! A record is **done** when every emitter of `emitToAllOf` and at least one of
//! `emitAtLeastOneOf` took it (delivered it, spooled it, were not selected for it by
//! `include`/`exclude`, or dead-lettered it after a permanent refusal). Records that are not
//! done are returned as `batchItemFailures`, so Lambda retries them (from the lowest one:
//! records after it can be delivered again to emitters that already took them; Elasticsearch's
//! `_id` makes that idempotent, the other receivers see an at-least-once stream). With a spool
//! that happens only when a spool write (or a dead-letter write) fails.
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
#[cfg(test)]
mod isolation_tests;
mod prepare;
mod quorum;
#[cfg(test)]
mod spool_tests;
mod spooling;
#[cfg(test)]
mod tests;

pub use build::build;
pub use deliver::backoff;
pub(crate) use deliver::{Delivery, Mode};

use crate::config::SpoolConfig;
use crate::spool::redrive::RedriveReport;
use crate::spool::{Spool, SpoolStore};

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
    /// The spool (`None`: `spool.enabled` is false, records are retried within the invocation
    /// and then dead-lettered or reported to Lambda).
    pub spool: Option<Arc<Spool>>,
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
    /// Records spooled for this emitter.
    #[serde(rename = "spooled")]
    pub spooled: usize,
    /// Spooled records delivered by a redrive.
    #[serde(rename = "redriven")]
    pub redriven: usize,
    /// Spooled records past `spool.maxAgeInSec`, dead-lettered.
    pub spool_expired: usize,
    /// Failed redrive requests and spool operations.
    pub redrive_failures: usize,
    /// The breaker at the end of the invocation (`open` / `closed`).
    #[serde(rename = "breaker", serialize_with = "open_or_closed")]
    pub breaker_open: bool,
    /// Records known spooled at the end of the invocation.
    pub spool_depth: usize,
    /// Age of the oldest record known spooled, seconds.
    #[serde(rename = "spool_age_s")]
    pub spool_age_s: u64,
}

fn open_or_closed<S: serde::Serializer>(open: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *open { "open" } else { "closed" })
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
    /// Spool writes that failed (their records are reported to Lambda unless the quorum was
    /// met without the emitter).
    pub spool_write_failures: usize,
    /// Per emitter, by name.
    pub emitters: Vec<(String, EmitterStats)>,
    /// The reconciliation tally of the records finished (Kinesis batches only; see
    /// [`crate::tally`]).
    #[serde(skip)]
    pub tally: Option<authtrail_core::tally::line::ForwarderTally>,
}

/// Where one record stands with one emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not selected by the emitter's `include` / `exclude`.
    Skipped,
    /// Delivered.
    Delivered,
    /// Refused for good: dead-lettered.
    Permanent(Failure),
    /// Still failing with a retryable failure past `retry.maxRecordAgeInSec`: dead-lettered.
    Expired(Failure),
    /// Still failing with a retryable failure (or unavailable, or its spool write failed):
    /// not taken.
    Pending(Failure),
    /// Written to the emitter's spool.
    Spooled,
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

/// The dead letters' deadline: the invocation's deadline minus a margin for the response.
fn letter_deadline(deadline: Instant) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let margin = (remaining / 10).min(Duration::from_secs(1));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

impl Forwarder {
    /// Adds a spool in `store` under `prefix` (`spool.enabled` must be checked by the caller).
    pub fn with_spool(
        mut self,
        store: Arc<dyn SpoolStore>,
        prefix: &str,
        config: SpoolConfig,
    ) -> Self {
        self.spool = Some(Arc::new(Spool::new(
            store,
            prefix,
            config,
            self.slots.len(),
        )));
        self
    }

    /// Cold start: reads each emitter's breaker from the spool (one GET per emitter; nothing
    /// without a spool), so that an emitter known to be down is not sent a retry budget.
    pub async fn load_breakers(&self) {
        if let Some(spool) = &self.spool {
            let names: Vec<&str> = self.slots.iter().map(|s| s.emitter.name()).collect();
            spool.load_breakers(&names).await;
        }
    }

    /// Processes one batch; `deadline` is the invocation's deadline.
    pub async fn process(&self, records: &[InputRecord], deadline: Instant) -> BatchResult {
        self.process_request(records, deadline, &spooling::local_tag())
            .await
    }

    /// Processes one batch of invocation `request_id` (which keeps its spool and dead-letter
    /// keys apart from every other invocation's).
    pub async fn process_request(
        &self,
        records: &[InputRecord],
        deadline: Instant,
        request_id: &str,
    ) -> BatchResult {
        let retry_deadline = retry_deadline(deadline);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (plans, delivering) = spooling::plans(self, retry_deadline, request_id);
        let batch = prepare::prepare(&self.profiles, &self.slots, records);
        let deliver::Delivered {
            mut statuses,
            mut stats,
            modes,
            redrives,
        } = deliver::deliver_all(self, &batch, retry_deadline, plans, delivering).await;
        let spool_write_failures = if self.spool.is_some() {
            spooling::spool_pending(
                self,
                records,
                &batch,
                &mut statuses,
                &mut stats,
                &modes,
                request_id,
            )
            .await
        } else {
            expire::expire(&mut statuses, records, self.retry.max_record_age, now_ms);
            0
        };
        let mut done = quorum::done(
            &self.all_of,
            &self.at_least_one_of,
            &statuses,
            &batch.classes,
        );
        let letters = dead_letters::collect(self, &batch, &statuses, &done, &mut stats);
        let dead_letters = letters.len();
        let dead_letter_errors = dead_letters::write(
            self,
            records,
            &batch,
            letters,
            &mut done,
            letter_deadline(deadline),
            request_id,
        )
        .await;
        self.add_spool_stats(&mut stats, &redrives);
        let tally = crate::tally::of_batch(&self.slots, records, &statuses, &done);
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
            spool_write_failures,
            emitters: self.named(stats),
            tally,
        }
    }

    /// A scheduled invocation: redrives every emitter's spool, oldest first, within
    /// `spool.redriveBudgetInSec` and the deadline (a quiet stream still drains).
    pub async fn redrive_all(&self, deadline: Instant, request_id: &str) -> BatchResult {
        let mut stats = vec![EmitterStats::default(); self.slots.len()];
        if let Some(spool) = &self.spool {
            let end = retry_deadline(deadline).min(Instant::now() + spool.config.redrive_budget);
            let reports =
                spooling::redrive_slots(self, end, retry_deadline(deadline), request_id, |_, _| {
                    true
                })
                .await;
            self.add_spool_stats(&mut stats, &reports);
        }
        BatchResult {
            emitters: self.named(stats),
            ..BatchResult::default()
        }
    }

    /// Adds the redrives' counts and what the instance knows of each spool.
    fn add_spool_stats(&self, stats: &mut [EmitterStats], redrives: &[RedriveReport]) {
        let Some(spool) = &self.spool else { return };
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (k, s) in stats.iter_mut().enumerate() {
            if let Some(r) = redrives.get(k) {
                s.redriven += r.redriven;
                s.spool_expired += r.expired;
                s.dead_lettered += r.expired + r.dead_lettered;
                s.redrive_failures += r.failures;
            }
            let state = spool.state(k);
            s.breaker_open = state.breaker_open;
            s.spool_depth = state.depth;
            s.spool_age_s = state.oldest_age_s(now_ms);
        }
    }

    fn named(&self, stats: Vec<EmitterStats>) -> Vec<(String, EmitterStats)> {
        self.slots
            .iter()
            .zip(stats)
            .map(|(s, st)| (s.emitter.name().to_string(), st))
            .collect()
    }
}
