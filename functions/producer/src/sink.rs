//! Record sinks: Kinesis PutRecords and Firehose PutRecordBatch, behind [`RecordSink`].
//!
//! [`put_all`] splits records into calls within the API limits and resends only the entries
//! that failed (per-entry `ErrorCode`, throttling included) with exponential backoff and full
//! jitter until every record was accepted, the attempts run out or the deadline nears.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use rand::Rng;

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    pub data: Vec<u8>,
    /// Kinesis partition key (ignored by Firehose).
    pub partition_key: String,
}

/// The per-entry outcome of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Accepted,
    Failed { code: String, message: String },
}

/// The limits of one sink's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    pub max_records_per_call: usize,
    pub max_bytes_per_call: usize,
    pub max_bytes_per_record: usize,
    /// Whether the partition key counts towards the record and call sizes (Kinesis).
    pub counts_partition_key: bool,
}

/// Kinesis PutRecords: 500 records, 5 MiB per call, 1 MiB per record including the key.
pub const KINESIS_LIMITS: SinkLimits = SinkLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 5 * 1024 * 1024,
    max_bytes_per_record: 1024 * 1024,
    counts_partition_key: true,
};

/// Firehose PutRecordBatch: 500 records, 4 MiB per call, 1,000 KiB per record.
pub const FIREHOSE_LIMITS: SinkLimits = SinkLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 4 * 1024 * 1024,
    max_bytes_per_record: 1000 * 1024,
    counts_partition_key: false,
};

impl SinkLimits {
    fn size_of(&self, r: &SinkRecord) -> usize {
        r.data.len()
            + if self.counts_partition_key {
                r.partition_key.len()
            } else {
                0
            }
    }
}

/// A call that failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (throttling, 5xx, transport).
    #[error("sink call failed (retryable): {0}")]
    Retryable(String),
    /// Not worth retrying (missing stream, access denied, validation).
    #[error("sink call failed: {0}")]
    Fatal(String),
    #[error(
        "{failed} of {total} records were still not accepted after {attempts} attempts (last error: {last})"
    )]
    Exhausted {
        failed: usize,
        total: usize,
        attempts: u32,
        last: String,
    },
    #[error("a record of {size} bytes exceeds the sink's limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
}

/// Writes a batch that is within the limits; returns one result per record, in order.
pub trait RecordSink: Send + Sync {
    fn limits(&self) -> SinkLimits;
    fn put_batch(
        &self,
        records: &[SinkRecord],
    ) -> impl Future<Output = Result<Vec<EntryResult>, SinkError>> + Send;
}

/// Retry policy of [`put_all`].
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up (with an error) rather than sleep past this instant.
    pub deadline: Option<Instant>,
    /// Calls sent at the same time (at least 1).
    pub max_in_flight: usize,
}

/// What [`put_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutStats {
    pub records: usize,
    pub calls: usize,
    /// Entries resent after a per-entry or whole-call failure.
    pub retried_entries: usize,
}

/// Writes every record, resending only failed entries, until all are accepted.
pub async fn put_all<K: RecordSink>(
    sink: &K,
    records: &[SinkRecord],
    policy: RetryPolicy,
) -> Result<PutStats, SinkError> {
    let limits = sink.limits();
    for r in records {
        let size = limits.size_of(r);
        if size > limits.max_bytes_per_record {
            return Err(SinkError::RecordTooLarge {
                size,
                limit: limits.max_bytes_per_record,
            });
        }
    }
    let mut stats = PutStats {
        records: records.len(),
        ..PutStats::default()
    };
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let mut failed: Vec<usize> = Vec::new();
        let mut last_error = String::new();
        let chunks = split(&pending, records, &limits);
        for group in chunks.chunks(policy.max_in_flight.max(1)) {
            let calls = group.iter().map(|chunk| {
                let batch: Vec<SinkRecord> = chunk.iter().map(|&i| records[i].clone()).collect();
                async move {
                    let result = sink.put_batch(&batch).await;
                    (batch.len(), result)
                }
            });
            stats.calls += group.len();
            for (chunk, (sent, outcome)) in group.iter().zip(join_all(calls.collect()).await) {
                match outcome {
                    Ok(results) if results.len() == sent => {
                        for (idx, result) in chunk.iter().zip(results) {
                            if let EntryResult::Failed { code, message } = result {
                                last_error = format!("{code}: {message}");
                                failed.push(*idx);
                            }
                        }
                    }
                    Ok(results) => {
                        return Err(SinkError::Fatal(format!(
                            "sink answered {} results for {sent} records",
                            results.len(),
                        )));
                    }
                    Err(SinkError::Retryable(e)) => {
                        last_error = e;
                        failed.extend(chunk.iter().copied());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        stats.retried_entries += failed.len();
        let wait = jittered(policy.base_backoff, policy.max_backoff, attempt);
        let out_of_time = policy.deadline.is_some_and(|d| Instant::now() + wait >= d);
        if attempt >= policy.max_attempts || out_of_time {
            return Err(SinkError::Exhausted {
                failed: failed.len(),
                total: records.len(),
                attempts: attempt,
                last: last_error,
            });
        }
        tracing::warn!(
            failed = failed.len(),
            attempt,
            wait_ms = wait.as_millis() as u64,
            last_error = %last_error,
            "sink rejected entries; resending only those"
        );
        tokio::time::sleep(wait).await;
        pending = failed;
    }
    Ok(stats)
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

/// Kinesis PutRecords to a stream named by name or ARN.
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream_name_or_arn: &str) -> Self {
        Self {
            client,
            stream: stream_name_or_arn.to_string(),
        }
    }
}

impl RecordSink for KinesisSink {
    fn limits(&self) -> SinkLimits {
        KINESIS_LIMITS
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        let mut req = self.client.put_records();
        req = if self.stream.starts_with("arn:") {
            req.stream_arn(&self.stream)
        } else {
            req.stream_name(&self.stream)
        };
        for r in records {
            let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.clone()))
                .partition_key(&r.partition_key)
                .build()
                .map_err(|e| SinkError::Fatal(e.to_string()))?;
            req = req.records(entry);
        }
        match req.send().await {
            Ok(out) => Ok(out
                .records()
                .iter()
                .map(|e| match e.error_code() {
                    None => EntryResult::Accepted,
                    Some(code) => EntryResult::Failed {
                        code: code.to_string(),
                        message: e.error_message().unwrap_or_default().to_string(),
                    },
                })
                .collect()),
            Err(err) => {
                let code = err.code().map(str::to_string);
                let text = aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string();
                if is_fatal_code(code.as_deref()) {
                    Err(SinkError::Fatal(text))
                } else {
                    Err(SinkError::Retryable(text))
                }
            }
        }
    }
}

/// Firehose PutRecordBatch to a delivery stream.
pub struct FirehoseSink {
    client: aws_sdk_firehose::Client,
    stream: String,
}

impl FirehoseSink {
    pub fn new(client: aws_sdk_firehose::Client, delivery_stream: &str) -> Self {
        Self {
            client,
            stream: delivery_stream.to_string(),
        }
    }
}

impl RecordSink for FirehoseSink {
    fn limits(&self) -> SinkLimits {
        FIREHOSE_LIMITS
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        let mut req = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream);
        for r in records {
            let rec = aws_sdk_firehose::types::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(r.data.clone()))
                .build()
                .map_err(|e| SinkError::Fatal(e.to_string()))?;
            req = req.records(rec);
        }
        match req.send().await {
            Ok(out) => Ok(out
                .request_responses()
                .iter()
                .map(|e| match e.error_code() {
                    None => EntryResult::Accepted,
                    Some(code) => EntryResult::Failed {
                        code: code.to_string(),
                        message: e.error_message().unwrap_or_default().to_string(),
                    },
                })
                .collect()),
            Err(err) => {
                let code =
                    aws_sdk_firehose::error::ProvideErrorMetadata::code(&err).map(str::to_string);
                let text = aws_sdk_firehose::error::DisplayErrorContext(&err).to_string();
                if is_fatal_code(code.as_deref()) {
                    Err(SinkError::Fatal(text))
                } else {
                    Err(SinkError::Retryable(text))
                }
            }
        }
    }
}

/// In-memory sink for tests and benchmarks: accepts everything except the failures it is told
/// to inject (`fail_first_n_entries` per-entry failures, `fail_calls` whole-call throttles).
#[derive(Default)]
pub struct MemorySink {
    pub accepted: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Every entry at an odd position fails with ProvisionedThroughputExceededException while
    /// this counter is above zero (decremented per failed entry).
    pub fail_entries: std::sync::atomic::AtomicUsize,
    /// Whole calls that fail with a retryable throttling error.
    pub fail_calls: std::sync::atomic::AtomicUsize,
    /// Largest call seen (records, bytes).
    pub largest_call: std::sync::Mutex<(usize, usize)>,
    pub limits: Option<SinkLimits>,
}

impl RecordSink for MemorySink {
    fn limits(&self) -> SinkLimits {
        self.limits.unwrap_or(KINESIS_LIMITS)
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        use std::sync::atomic::Ordering;
        let limits = self.limits();
        let bytes: usize = records.iter().map(|r| limits.size_of(r)).sum();
        if records.len() > limits.max_records_per_call || bytes > limits.max_bytes_per_call {
            return Err(SinkError::Fatal(format!(
                "call of {} records / {bytes} bytes is over the limits",
                records.len()
            )));
        }
        if let Ok(mut largest) = self.largest_call.lock() {
            largest.0 = largest.0.max(records.len());
            largest.1 = largest.1.max(bytes);
        }
        if self
            .fail_calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError::Retryable(
                "ProvisionedThroughputExceededException: Rate exceeded for stream".into(),
            ));
        }
        let mut out = Vec::with_capacity(records.len());
        let mut accepted = self
            .accepted
            .lock()
            .map_err(|_| SinkError::Fatal("poisoned".into()))?;
        for (i, r) in records.iter().enumerate() {
            let fail = i % 2 == 1
                && self
                    .fail_entries
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if fail {
                out.push(EntryResult::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard".into(),
                });
            } else {
                accepted.push(r.data.clone());
                out.push(EntryResult::Accepted);
            }
        }
        Ok(out)
    }
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

    fn policy() -> RetryPolicy {
        RetryPolicy {
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
