//! Record sinks behind [`RecordSink`]: Kinesis PutRecords ([`kinesis`]), Firehose
//! PutRecordBatch ([`firehose`]) and an in-memory sink for tests and benchmarks ([`memory`]);
//! [`AnySink`] is the one chosen by configuration.
//!
//! [`put_all`] splits records into calls within the API limits and resends only the entries
//! that failed (per-entry `ErrorCode`, throttling included) with exponential backoff and full
//! jitter until every record was accepted, the attempts run out or the deadline nears.

pub mod firehose;
pub mod kinesis;
pub mod memory;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::SinkError;
pub use firehose::{FIREHOSE_LIMITS, FirehoseSink};
pub use kinesis::{KINESIS_LIMITS, KinesisSink};
pub use memory::MemorySink;

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    /// The record's bytes (one envelope line).
    pub data: Vec<u8>,
    /// Kinesis partition key (ignored by Firehose).
    pub partition_key: String,
}

/// The per-entry outcome of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// The entry was written.
    Accepted,
    /// The entry was refused (throttling, internal failure) and can be resent.
    Failed {
        /// The entry's `ErrorCode`.
        code: String,
        /// The entry's `ErrorMessage`.
        message: String,
    },
}

/// The limits of one sink's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// Records per call.
    pub max_records_per_call: usize,
    /// Bytes per call.
    pub max_bytes_per_call: usize,
    /// Bytes per record.
    pub max_bytes_per_record: usize,
    /// Whether the partition key counts towards the record and call sizes (Kinesis).
    pub counts_partition_key: bool,
}

impl SinkLimits {
    /// The size a record counts for against these limits.
    pub fn size_of(&self, r: &SinkRecord) -> usize {
        r.data.len()
            + if self.counts_partition_key {
                r.partition_key.len()
            } else {
                0
            }
    }
}

/// Writes a batch that is within the limits; returns one result per record, in order.
pub trait RecordSink: Send + Sync {
    /// The limits of the sink's API.
    fn limits(&self) -> SinkLimits;
    /// One call with `records` (within [`RecordSink::limits`]).
    fn put_batch(
        &self,
        records: &[SinkRecord],
    ) -> impl Future<Output = Result<Vec<EntryResult>, SinkError>> + Send;
}

/// Either deployed sink, chosen by configuration.
pub enum AnySink {
    /// `KINESIS_STREAM_NAME`.
    Kinesis(KinesisSink),
    /// `FIREHOSE_DELIVERY_STREAM`.
    Firehose(FirehoseSink),
}

impl RecordSink for AnySink {
    fn limits(&self) -> SinkLimits {
        match self {
            AnySink::Kinesis(k) => k.limits(),
            AnySink::Firehose(f) => f.limits(),
        }
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        match self {
            AnySink::Kinesis(k) => k.put_batch(records).await,
            AnySink::Firehose(f) => f.put_batch(records).await,
        }
    }
}

/// How [`put_all`] writes: retries, their backoff, the deadline and concurrency.
#[derive(Debug, Clone, Copy)]
pub struct PutPolicy {
    /// Attempts per record (the first included).
    pub max_attempts: u32,
    /// Base of the exponential backoff between attempts.
    pub base_backoff: Duration,
    /// Cap of the backoff.
    pub max_backoff: Duration,
    /// Give up (with an error) rather than sleep past this instant.
    pub deadline: Option<Instant>,
    /// Calls sent at the same time (at least 1).
    pub max_in_flight: usize,
}

/// What [`put_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Records written.
    pub records: usize,
    /// Calls made.
    pub calls: usize,
    /// Entries resent after a per-entry or whole-call failure.
    pub retried_entries: usize,
}

/// Writes every record, resending only failed entries, until all are accepted.
pub async fn put_all<K: RecordSink>(
    sink: &K,
    records: &[SinkRecord],
    policy: PutPolicy,
) -> Result<PutStats, SinkError> {
    let limits = sink.limits();
    check_record_sizes(records, &limits)?;
    let mut stats = PutStats {
        records: records.len(),
        ..PutStats::default()
    };
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let round = send_round(
            sink,
            records,
            &pending,
            &limits,
            policy.max_in_flight,
            &mut stats,
        )
        .await?;
        if round.failed.is_empty() {
            break;
        }
        stats.retried_entries += round.failed.len();
        let wait = jittered(policy.base_backoff, policy.max_backoff, attempt);
        let out_of_time = policy.deadline.is_some_and(|d| Instant::now() + wait >= d);
        if attempt >= policy.max_attempts || out_of_time {
            return Err(SinkError::Exhausted {
                failed: round.failed.len(),
                total: records.len(),
                attempts: attempt,
                last: round.last_error,
            });
        }
        tracing::warn!(
            failed = round.failed.len(),
            attempt,
            wait_ms = wait.as_millis() as u64,
            last_error = %round.last_error,
            "sink rejected entries; resending only those"
        );
        tokio::time::sleep(wait).await;
        pending = round.failed;
    }
    Ok(stats)
}

/// Refuses the whole batch, before any call, if one record is over the per-record limit.
fn check_record_sizes(records: &[SinkRecord], limits: &SinkLimits) -> Result<(), SinkError> {
    for r in records {
        let size = limits.size_of(r);
        if size > limits.max_bytes_per_record {
            return Err(SinkError::RecordTooLarge {
                size,
                limit: limits.max_bytes_per_record,
            });
        }
    }
    Ok(())
}

/// The entries of one round that were not accepted, and the last reason given.
#[derive(Default)]
struct Round {
    failed: Vec<usize>,
    last_error: String,
}

impl Round {
    /// Takes in the outcome of the call that sent `chunk` (indices of `sent` records).
    fn absorb(
        &mut self,
        chunk: &[usize],
        sent: usize,
        outcome: Result<Vec<EntryResult>, SinkError>,
    ) -> Result<(), SinkError> {
        match outcome {
            Ok(results) if results.len() == sent => {
                for (idx, result) in chunk.iter().zip(results) {
                    if let EntryResult::Failed { code, message } = result {
                        self.last_error = format!("{code}: {message}");
                        self.failed.push(*idx);
                    }
                }
                Ok(())
            }
            Ok(results) => Err(SinkError::ResultCount {
                answered: results.len(),
                sent,
            }),
            Err(SinkError::Retryable(e)) => {
                self.last_error = e;
                self.failed.extend(chunk.iter().copied());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Sends every `pending` record once, in calls within the limits, `max_in_flight` at a time.
async fn send_round<K: RecordSink>(
    sink: &K,
    records: &[SinkRecord],
    pending: &[usize],
    limits: &SinkLimits,
    max_in_flight: usize,
    stats: &mut PutStats,
) -> Result<Round, SinkError> {
    let mut round = Round::default();
    let chunks = split(pending, records, limits);
    for group in chunks.chunks(max_in_flight.max(1)) {
        let calls = group.iter().map(|chunk| {
            let batch: Vec<SinkRecord> = chunk.iter().map(|&i| records[i].clone()).collect();
            async move {
                let result = sink.put_batch(&batch).await;
                (batch.len(), result)
            }
        });
        stats.calls += group.len();
        for (chunk, (sent, outcome)) in group.iter().zip(join_all(calls.collect()).await) {
            round.absorb(chunk, sent, outcome)?;
        }
    }
    Ok(round)
}

/// Runs the futures concurrently (on this task) and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Full jitter: uniform in [0, min(max, base * 2^attempt)].
fn jittered(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(max)
        .as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ceiling.max(1)))
}

/// Splits `pending` (indices into `records`) into calls within the limits, in order.
fn split(pending: &[usize], records: &[SinkRecord], limits: &SinkLimits) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for &i in pending {
        let size = limits.size_of(&records[i]);
        if !current.is_empty()
            && (current.len() >= limits.max_records_per_call
                || bytes + size > limits.max_bytes_per_call)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A whole call that failed: fatal for error codes that no retry fixes, retryable otherwise.
fn call_error(code: Option<&str>, text: String) -> SinkError {
    if is_fatal_code(code) {
        SinkError::Fatal(text)
    } else {
        SinkError::Retryable(text)
    }
}

/// Error codes that no retry will fix.
fn is_fatal_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ResourceNotFoundException"
                | "AccessDeniedException"
                | "ValidationException"
                | "InvalidArgumentException"
                | "KMSDisabledException"
                | "KMSNotFoundException"
                | "KMSAccessDeniedException"
                | "InvalidKMSResourceException"
                | "UnrecognizedClientException"
        )
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rec(i: usize, size: usize) -> SinkRecord {
        let mut data = format!("{i:08}").into_bytes();
        data.resize(size.max(8), b'x');
        SinkRecord {
            data,
            partition_key: "k".repeat(32),
        }
    }

    fn policy() -> PutPolicy {
        PutPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            deadline: None,
            max_in_flight: 4,
        }
    }

    #[tokio::test]
    async fn partial_failures_resend_only_the_failed_entries_until_all_are_accepted() {
        let sink = MemorySink::default();
        sink.fail_entries.store(300, Ordering::SeqCst);
        let records: Vec<_> = (0..1000).map(|i| rec(i, 100)).collect();
        let stats = put_all(&sink, &records, policy()).await.unwrap();
        let accepted = sink.accepted.lock().unwrap();
        assert_eq!(accepted.len(), 1000, "each record accepted exactly once");
        let mut sorted = accepted.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_eq!(stats.retried_entries, 300);
    }

    #[tokio::test]
    async fn whole_call_throttling_is_retried() {
        let sink = MemorySink::default();
        sink.fail_calls.store(3, Ordering::SeqCst);
        let records: Vec<_> = (0..10).map(|i| rec(i, 10)).collect();
        put_all(&sink, &records, policy()).await.unwrap();
        assert_eq!(sink.accepted.lock().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn persistent_failures_end_in_an_error_naming_the_count() {
        let sink = MemorySink::default();
        sink.fail_calls.store(usize::MAX, Ordering::SeqCst);
        let records: Vec<_> = (0..10).map(|i| rec(i, 10)).collect();
        let mut p = policy();
        p.max_attempts = 3;
        let e = put_all(&sink, &records, p).await.unwrap_err();
        assert!(
            matches!(
                e,
                SinkError::Exhausted {
                    failed: 10,
                    attempts: 3,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn calls_respect_the_record_count_and_byte_limits() {
        let sink = MemorySink::default();
        // 12 records of ~900 KiB: at most 5 per 5 MiB call.
        let records: Vec<_> = (0..12).map(|i| rec(i, 900 * 1024)).collect();
        let stats = put_all(&sink, &records, policy()).await.unwrap();
        let (count, bytes) = *sink.largest_call.lock().unwrap();
        assert!(count <= 500 && bytes <= 5 * 1024 * 1024);
        assert_eq!(stats.calls, 3);
        let many: Vec<_> = (0..1201).map(|i| rec(i, 10)).collect();
        let stats = put_all(&sink, &many, policy()).await.unwrap();
        assert_eq!(stats.calls, 3);
    }

    #[tokio::test]
    async fn a_record_over_the_per_record_limit_is_refused_before_any_call() {
        let sink = MemorySink::default();
        let records = vec![rec(0, 1024 * 1024)];
        let e = put_all(&sink, &records, policy()).await.unwrap_err();
        assert!(matches!(e, SinkError::RecordTooLarge { .. }), "{e}");
        assert!(sink.accepted.lock().unwrap().is_empty());
    }

    /// Accepts everything after a short pause, recording how many calls overlapped.
    #[derive(Default)]
    struct SlowSink {
        current: AtomicUsize,
        max: AtomicUsize,
        accepted: AtomicUsize,
    }

    impl RecordSink for SlowSink {
        fn limits(&self) -> SinkLimits {
            KINESIS_LIMITS
        }

        async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
            let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.current.fetch_sub(1, Ordering::SeqCst);
            self.accepted.fetch_add(records.len(), Ordering::SeqCst);
            Ok(vec![EntryResult::Accepted; records.len()])
        }
    }

    #[tokio::test]
    async fn calls_are_sent_concurrently_but_never_more_than_max_in_flight() {
        let sink = SlowSink::default();
        let records: Vec<_> = (0..5000).map(|i| rec(i, 10)).collect();
        let mut p = policy();
        p.max_in_flight = 3;
        let stats = put_all(&sink, &records, p).await.unwrap();
        assert_eq!(stats.calls, 10);
        assert_eq!(sink.accepted.load(Ordering::SeqCst), 5000);
        assert_eq!(sink.max.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn firehose_limits_are_stricter_than_kinesis() {
        let big = vec![0usize; 600];
        let records: Vec<_> = (0..600).map(|i| rec(i, 10)).collect();
        let idx: Vec<usize> = (0..big.len()).collect();
        let parts = split(&idx, &records, &FIREHOSE_LIMITS);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 100]
        );
    }
}
