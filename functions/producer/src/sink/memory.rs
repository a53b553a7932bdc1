//! An in-memory sink for tests and benchmarks, with injectable failures.

use authtrail_core::Error;
use authtrail_core::put_batch::{BatchLimits, BatchWriter, EntryResult, KINESIS_LIMITS, Record};

/// In-memory sink for tests and benchmarks: accepts everything except the failures it is told
/// to inject (`fail_entries` per-entry failures, `fail_calls` whole-call throttles).
#[derive(Default)]
pub struct MemorySink {
    /// Every accepted record's bytes, in order.
    pub accepted: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Every entry at an odd position fails with ProvisionedThroughputExceededException while
    /// this counter is above zero (decremented per failed entry).
    pub fail_entries: std::sync::atomic::AtomicUsize,
    /// Whole calls that fail with a retryable throttling error.
    pub fail_calls: std::sync::atomic::AtomicUsize,
    /// Largest call seen (records, bytes).
    pub largest_call: std::sync::Mutex<(usize, usize)>,
    /// The limits to enforce (Kinesis when unset).
    pub limits: Option<BatchLimits>,
}

impl BatchWriter for MemorySink {
    fn limits(&self) -> BatchLimits {
        self.limits.unwrap_or(KINESIS_LIMITS)
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        use std::sync::atomic::Ordering;
        let limits = self.limits();
        let bytes: usize = records.iter().map(|r| limits.size_of(r)).sum();
        if records.len() > limits.max_records_per_call || bytes > limits.max_bytes_per_call {
            return Err(Error::Fatal {
                code: "ValidationException".into(),
                message: format!(
                    "call of {} records / {bytes} bytes is over the limits",
                    records.len()
                ),
            });
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
            return Err(Error::Retryable {
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded for stream".into(),
            });
        }
        let mut out = Vec::with_capacity(records.len());
        let mut accepted = self.accepted.lock().map_err(|_| Error::Fatal {
            code: "poisoned".into(),
            message: "the memory sink's lock is poisoned".into(),
        })?;
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
