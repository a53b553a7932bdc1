//! An in-memory sink for tests and benchmarks, with injectable failures, read back like a
//! one-shard stream.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use authtrail_core::Error;
use authtrail_core::put_batch::{BatchLimits, BatchWriter, EntryResult, KINESIS_LIMITS, Record};

use super::{ReadBack, ReadStats, ReadWindow};
use crate::error::ReadBackError;

/// Records a read call of the memory sink returns at most (as GetRecords).
const READ_CALL_RECORDS: usize = 10_000;

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
    /// Records of other producers in the "stream" (read back, never in `accepted`).
    pub foreign: std::sync::Mutex<Vec<Vec<u8>>>,
    /// The sink cannot be read back at all (like Firehose).
    pub unreadable: bool,
    /// Reading back is denied (like a role without `kinesis:GetRecords`).
    pub read_denied: AtomicBool,
    /// When set, calls fail (as if the process died mid-put) once this many records in all
    /// were accepted; the call that reaches it keeps only the records up to it.
    pub accept_limit: std::sync::Mutex<Option<usize>>,
    /// Read calls made by read-backs.
    pub read_calls: AtomicUsize,
}

impl MemorySink {
    /// A sink that cannot be read back (as Firehose): an interrupted put is written again.
    pub fn unreadable() -> Self {
        Self {
            unreadable: true,
            ..Self::default()
        }
    }
}

impl ReadBack for MemorySink {
    fn read_target(&self) -> Option<&str> {
        (!self.unreadable).then_some("memory")
    }

    async fn read_back(
        &self,
        window: &ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> ControlFlow<()> + Send),
    ) -> Result<ReadStats, ReadBackError> {
        use std::sync::atomic::Ordering;
        if self.unreadable {
            return Err(ReadBackError::Unsupported);
        }
        if self.read_denied.load(Ordering::SeqCst) {
            return Err(ReadBackError::AccessDenied(
                "GetRecords: not authorized (memory sink)".into(),
            ));
        }
        let lock_err = || ReadBackError::Failed("the memory sink's lock is poisoned".into());
        // Foreign records first, then ours: the read is in "arrival" order of a stream that
        // other producers wrote to before this one.
        let mut all: Vec<Vec<u8>> = self.foreign.lock().map_err(|_| lock_err())?.clone();
        all.extend(
            self.accepted
                .lock()
                .map_err(|_| lock_err())?
                .iter()
                .cloned(),
        );
        let max = self.limits().max_bytes_per_record;
        let mut stats = ReadStats {
            shards: 1,
            ..ReadStats::default()
        };
        for chunk in all.chunks(READ_CALL_RECORDS) {
            if stats.calls >= window.max_calls {
                return Ok(stats);
            }
            stats.calls += 1;
            self.read_calls.fetch_add(1, Ordering::SeqCst);
            for data in chunk {
                stats.records += 1;
                stats.bytes += data.len() as u64;
                if data.len() > max {
                    stats.oversized += 1;
                    continue;
                }
                if visit(data).is_break() {
                    stats.stopped = true;
                    return Ok(stats);
                }
            }
        }
        stats.covered = true;
        Ok(stats)
    }
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
        let limit = self.accept_limit.lock().ok().and_then(|g| *g);
        if limit.is_some_and(|l| accepted.len() >= l) {
            return Err(Error::Fatal {
                code: "SimulatedCrash".into(),
                message: "the process died mid-put".into(),
            });
        }
        for (i, r) in records.iter().enumerate() {
            if limit.is_some_and(|l| accepted.len() >= l) {
                // The rest of the call never reached the stream.
                return Err(Error::Fatal {
                    code: "SimulatedCrash".into(),
                    message: "the process died mid-put".into(),
                });
            }
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
