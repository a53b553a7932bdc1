//! The producer's sinks: Kinesis PutRecords ([`kinesis`]), Firehose PutRecordBatch (core's
//! [`FirehoseClient`]) and an in-memory sink for tests and benchmarks ([`memory`]), all
//! [`BatchWriter`]s; [`AnySink`] is the one chosen by configuration.
//!
//! Writing a page is core's [`authtrail_core::put_batch::put_all`]: records split into calls
//! within the sink's limits, only the entries that failed (per-entry `ErrorCode`, throttling
//! included) resent with exponential backoff and full jitter, until every record was accepted,
//! the attempts run out or the deadline nears.

pub mod kinesis;
pub mod memory;

use authtrail_core::Error;
pub use authtrail_core::firehose::FirehoseClient;
use authtrail_core::put_batch::{BatchLimits, BatchWriter, EntryResult, Record};

pub use kinesis::KinesisSink;
pub use memory::MemorySink;

/// Either deployed sink, chosen by configuration.
pub enum AnySink {
    /// `KINESIS_STREAM_NAME`.
    Kinesis(KinesisSink),
    /// `FIREHOSE_DELIVERY_STREAM`.
    Firehose(FirehoseClient),
}

impl BatchWriter for AnySink {
    fn limits(&self) -> BatchLimits {
        match self {
            AnySink::Kinesis(k) => k.limits(),
            AnySink::Firehose(f) => f.limits(),
        }
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        match self {
            AnySink::Kinesis(k) => k.put_batch(records).await,
            AnySink::Firehose(f) => f.put_batch(records).await,
        }
    }
}
