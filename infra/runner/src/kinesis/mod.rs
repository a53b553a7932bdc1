//! A Kinesis event-source mapping (ESM): reads a stream's shards and invokes a
//! [`LambdaFunction`](crate::LambdaFunction) with `KinesisEvent` batches, with AWS's batching,
//! partial-batch response, retry, bisect, record-age and on-failure-destination semantics.
//!
//! By concern:
//! - `config`: the mapping's settings ([`KinesisSourceConfig`]) and their validation;
//! - `stats`: what a run reports ([`SourceStats`], [`Counters`], [`BatchRecord`]);
//! - `wire`: the wire format, the `KinesisEvent` payload the function gets ([`record_json`],
//!   [`event_payload`]) and the partial-batch response it returns;
//! - `on_failure`: the invocation record written to the on-failure destination;
//! - `source`: [`KinesisEventSource`], one worker per shard and the run that joins them;
//! - `worker`: the shard worker, which reads, batches, invokes and checkpoints one shard.

mod config;
mod on_failure;
mod source;
mod stats;
mod wire;
mod worker;

pub use config::{KinesisSourceConfig, OnFailure, StartingPosition};
pub use source::KinesisEventSource;
pub use stats::{BatchRecord, Counters, ShardStats, SourceStats};
pub use wire::{EventContext, RecordInput, cmp_sequence_numbers, event_payload, record_json};
