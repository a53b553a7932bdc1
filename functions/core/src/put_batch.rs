//! Batched writes with partial failures (Kinesis PutRecords, Firehose PutRecordBatch): records
//! split into calls within the API's limits, and only the entries a call reports as failed
//! (per-entry `ErrorCode`, throttling included) sent again, with backoff, until every record is
//! accepted, the attempts run out or the deadline nears. The SDK's own retry covers whole
//! calls, never the entries of a call that succeeded.
//!
//! A service is a [`BatchWriter`] (one call, one result per record), so [`put_all`] is tested
//! with in-memory writers; `crate::firehose::FirehoseClient` (feature `firehose`) is the
//! Firehose one.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::chunk::{ChunkLimits, chunks};
use crate::error::Error;
use crate::retry::{Backoff, Jitter};

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The record's bytes.
    pub data: Vec<u8>,
    /// Kinesis partition key (ignored by Firehose).
    pub partition_key: String,
}

/// The per-entry outcome of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// The service took the record.
    Accepted,
    /// The service refused this record (and may take it when sent again).
    Failed { code: String, message: String },
}

/// The limits of one service's batch API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records per call.
    pub max_records_per_call: usize,
    /// Bytes per call (the sum of the record sizes).
    pub max_bytes_per_call: usize,
    /// Bytes per record.
    pub max_bytes_per_record: usize,
    /// Whether the partition key counts towards the record and call sizes (Kinesis).
    pub counts_partition_key: bool,
}

/// Kinesis PutRecords: 500 records, 5 MiB per call, 1 MiB per record including the key.
pub const KINESIS_LIMITS: BatchLimits = BatchLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 5 * 1024 * 1024,
    max_bytes_per_record: 1024 * 1024,
    counts_partition_key: true,
};

/// Firehose PutRecordBatch: 500 records, 4 MiB per call, 1,000 KiB per record.
pub const FIREHOSE_LIMITS: BatchLimits = BatchLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 4 * 1024 * 1024,
    max_bytes_per_record: 1000 * 1024,
    counts_partition_key: false,
};

impl BatchLimits {
    /// The size `r` counts for, against these limits.
    pub fn size_of(&self, r: &Record) -> usize {
        r.data.len()
            + if self.counts_partition_key {
                r.partition_key.len()
            } else {
                0
            }
    }

    /// Splits `pending` (indices into `records`) into calls within the limits, in order.
    pub fn split(&self, pending: &[usize], records: &[Record]) -> Vec<Vec<usize>> {
        let limits = ChunkLimits {
            max_items: self.max_records_per_call,
            max_bytes: self.max_bytes_per_call,
        };
        chunks(pending.iter().copied(), limits, |&i| {
            records.get(i).map_or(0, |r| self.size_of(r))
        })
    }
}

/// The error codes of Kinesis PutRecords and Firehose PutRecordBatch that no retry will fix:
/// the union of what the producer's sinks and the forwarder's Firehose emitter decided, plus
/// Firehose's `InvalidSourceException` (a delivery stream that takes no direct writes). Any
/// other code (throttling, `ServiceUnavailableException`, `InternalFailure`, transport errors)
/// is worth another attempt.
pub const FATAL_ERROR_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ValidationException",
    "InvalidArgumentException",
    "InvalidSourceException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSAccessDeniedException",
    "InvalidKMSResourceException",
    "UnrecognizedClientException",
];

/// Whether a call that failed with error code `code` is not worth retrying.
pub fn is_fatal_error_code(code: &str) -> bool {
    FATAL_ERROR_CODES.contains(&code)
}

/// The error for a whole call that failed with `code` (`None`: no service code, e.g. a
/// transport error, named `sdk`): [`Error::Fatal`] for [`FATAL_ERROR_CODES`], else
/// [`Error::Retryable`].
pub fn call_error(code: Option<&str>, message: impl Into<String>) -> Error {
    let message = message.into();
    match code {
        Some(c) if is_fatal_error_code(c) => Error::Fatal {
            code: c.to_string(),
            message,
        },
        c => Error::Retryable {
            code: c.unwrap_or("sdk").to_string(),
            message,
        },
    }
}

/// Writes one batch that is within the limits; returns one result per record, in order.
pub trait BatchWriter: Send + Sync {
    /// The limits of the service's batch call.
    fn limits(&self) -> BatchLimits;
    /// One call. A whole-call failure is [`Error::Retryable`] or [`Error::Fatal`].
    fn put_batch(
        &self,
        records: &[Record],
    ) -> impl Future<Output = Result<Vec<EntryResult>, Error>> + Send;
}

/// Retry policy of [`put_all`].
#[derive(Debug, Clone, Copy)]
pub struct PutPolicy {
    /// Calls per record at most (the first included).
    pub max_attempts: u32,
    /// The backoff's base: retry `n` (from 1) waits up to `base_backoff * 2^n`.
    pub base_backoff: Duration,
    /// The backoff's cap.
    pub max_backoff: Duration,
    /// Give up (with an error) rather than sleep past this instant.
    pub deadline: Option<Instant>,
    /// Calls sent at the same time (at least 1).
    pub max_in_flight: usize,
}

impl PutPolicy {
    /// The backoff: full jitter, uniform in `[0, min(max_backoff, base_backoff * 2^attempt)]`
    /// after attempt `attempt` (from 1).
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.base_backoff, self.max_backoff, Jitter::Full)
    }
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

/// Writes every record, resending only failed entries, until all are accepted. Refuses a
/// record over the per-record limit before any call ([`Error::RecordTooLarge`]); ends with
/// [`Error::Exhausted`] when entries still fail after `max_attempts` or when the next wait
/// would pass the deadline, and with [`Error::Fatal`] at once on a fatal call failure.
pub async fn put_all<W: BatchWriter>(
    writer: &W,
    records: &[Record],
    policy: PutPolicy,
) -> Result<PutStats, Error> {
    let limits = writer.limits();
    for r in records {
        let size = limits.size_of(r);
        if size > limits.max_bytes_per_record {
            return Err(Error::RecordTooLarge {
                size,
                limit: limits.max_bytes_per_record,
            });
        }
    }
    let mut stats = PutStats {
        records: records.len(),
        ..PutStats::default()
    };
    let backoff = policy.backoff();
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let (failed, last_error) =
            attempt_all(writer, records, &pending, &policy, &mut stats).await?;
        if failed.is_empty() {
            break;
        }
        stats.retried_entries += failed.len();
        let wait = backoff.delay(attempt);
        let out_of_time = policy
            .deadline
            .is_some_and(|d| Instant::now().checked_add(wait).is_none_or(|t| t >= d));
        if attempt >= policy.max_attempts || out_of_time {
            return Err(Error::Exhausted {
                failed: failed.len(),
                total: records.len(),
                attempts: attempt,
                last: last_error,
                out_of_time: attempt < policy.max_attempts,
            });
        }
        tracing::warn!(
            failed = failed.len(),
            attempt,
            wait_ms = wait.as_millis() as u64,
            last_error = %last_error,
            "batch write refused entries; resending only those"
        );
        tokio::time::sleep(wait).await;
        pending = failed;
    }
    Ok(stats)
}

/// One attempt at every pending record: the indices that failed and the last error text.
async fn attempt_all<W: BatchWriter>(
    writer: &W,
    records: &[Record],
    pending: &[usize],
    policy: &PutPolicy,
    stats: &mut PutStats,
) -> Result<(Vec<usize>, String), Error> {
    let mut failed: Vec<usize> = Vec::new();
    let mut last_error = String::new();
    let calls = writer.limits().split(pending, records);
    for group in calls.chunks(policy.max_in_flight.max(1)) {
        let sends = group.iter().map(|call| {
            let batch: Vec<Record> = call
                .iter()
                .filter_map(|&i| records.get(i).cloned())
                .collect();
            async move {
                let result = writer.put_batch(&batch).await;
                (batch.len(), result)
            }
        });
        stats.calls += group.len();
        for (call, (sent, outcome)) in group.iter().zip(join_all(sends.collect()).await) {
            match outcome {
                Ok(results) if results.len() == sent => {
                    for (idx, result) in call.iter().zip(results) {
                        if let EntryResult::Failed { code, message } = result {
                            last_error = format!("{code}: {message}");
                            failed.push(*idx);
                        }
                    }
                }
                Ok(results) => {
                    return Err(Error::ResultCountMismatch {
                        sent,
                        got: results.len(),
                    });
                }
                Err(Error::Retryable { code, message }) => {
                    last_error = format!("{code}: {message}");
                    failed.extend(call.iter().copied());
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok((failed, last_error))
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

#[cfg(test)]
#[path = "put_batch_tests.rs"]
mod tests;
