//! The producer's sinks: Kinesis PutRecords ([`kinesis`]), Firehose PutRecordBatch (core's
//! [`FirehoseClient`]) and an in-memory sink for tests and benchmarks ([`memory`]), all
//! [`BatchWriter`]s; [`AnySink`] is the one chosen by configuration.
//!
//! Writing a page is core's [`authtrail_core::put_batch::put_all`]: records split into calls
//! within the sink's limits, only the entries that failed (per-entry `ErrorCode`, throttling
//! included) resent with exponential backoff and full jitter, until every record was accepted,
//! the attempts run out or the deadline nears.
//!
//! [`ReadBack`] is the other half of a sink: reading back what arrived in a window of time, so
//! that a run can settle the put that a dead run left pending (see [`crate::pending`]). Kinesis
//! can be read back; Firehose cannot (it delivers and keeps nothing readable).

pub mod kinesis;
pub mod memory;

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Instant;

use authtrail_core::Error;
pub use authtrail_core::firehose::FirehoseClient;
use authtrail_core::put_batch::{BatchLimits, BatchWriter, EntryResult, Record};

use crate::error::ReadBackError;

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

/// A stretch of the stream to read back, and the bounds of the reading.
#[derive(Debug, Clone)]
pub struct ReadWindow {
    /// Read records that arrived from this time (epoch ms, the stream's arrival clock) ...
    pub from_ms: i64,
    /// ... up to this time (later records end a shard's reading).
    pub until_ms: i64,
    /// A shard's tip reached by a call sent before this time is read again until a call sent
    /// after it reaches the tip (calls of a dead run may still be taken until then; `i64::MIN`:
    /// the run's calls were all answered, the first tip is final).
    pub tip_until_ms: i64,
    /// Read calls (GetRecords) allowed in all.
    pub max_calls: u32,
    /// Stop reading at this instant.
    pub deadline: Instant,
}

/// What one read-back read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Shards listed (closed ones included).
    pub shards: u32,
    /// Read calls made.
    pub calls: u32,
    /// Records read.
    pub records: u64,
    /// Bytes of the records read.
    pub bytes: u64,
    /// Records larger than a record of this sink can be (not ours: not looked at).
    pub oversized: u64,
    /// Every shard was read to the window's end or to its tip.
    pub covered: bool,
    /// The visitor asked to stop (it found what it looked for).
    pub stopped: bool,
}

/// Reading back what arrived in the stream.
pub trait ReadBack: Send + Sync {
    /// The stream that records are written to and can be read back from (`None`: this sink
    /// cannot be read back).
    fn read_target(&self) -> Option<&str>;

    /// Hands the data of every record that arrived in `window` to `visit` (in shard order, any
    /// order between shards) until the window was read, its bounds were reached or `visit`
    /// breaks. Records of other producers pass through `visit` too; none is kept.
    fn read_back(
        &self,
        window: &ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> ControlFlow<()> + Send),
    ) -> impl Future<Output = Result<ReadStats, ReadBackError>> + Send;
}

/// A sink the producer writes to: batched writes and reading back.
pub trait Sink: BatchWriter + ReadBack {}

impl<T: BatchWriter + ReadBack> Sink for T {}

impl ReadBack for AnySink {
    fn read_target(&self) -> Option<&str> {
        match self {
            AnySink::Kinesis(k) => k.read_target(),
            AnySink::Firehose(_) => None,
        }
    }

    async fn read_back(
        &self,
        window: &ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> ControlFlow<()> + Send),
    ) -> Result<ReadStats, ReadBackError> {
        match self {
            AnySink::Kinesis(k) => k.read_back(window, visit).await,
            AnySink::Firehose(_) => Err(ReadBackError::Unsupported),
        }
    }
}
