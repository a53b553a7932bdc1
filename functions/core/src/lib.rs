//! Shared library of the authtrail functions: every mechanism that more than one function
//! needs, written once.
//!
//! - [`envelope`]: the stream record envelope of Contract 1 (written by the producer).
//! - [`kinesis`]: the one reader of Lambda `KinesisEvent` payloads (archiver, forwarder).
//! - [`retry`]: backoff with jitter, `Retry-After`, retryable HTTP statuses.
//! - [`chunk`]: size-bounded chunking.
//! - [`put_batch`]: batched writes that resend only failed entries (Kinesis, Firehose);
//!   `firehose` (cargo feature `firehose`): the Firehose PutRecordBatch client.
//! - [`s3key`]: hour-partitioned S3 keys with escaped parts.
//! - [`json_pointer`]: RFC 6901 pointers; [`redact`]: redaction by pointer.
//! - [`error`]: the error type of these mechanisms and error-chain formatting.
//! - [`seqnum`], [`config`], [`secret`], [`metrics`] (CloudWatch EMF), [`aws`] (SDK set-up).
//! - [`preflight`]: the preflight report and the S3 conditional-write probe every function runs
//!   when invoked with `{"authtrail": "preflight"}`.
//! - [`tally`]: reconciliation tallies (record identity and minute, count-and-sum digests, the
//!   producer's and the forwarder's tallies, the per-window reconciliation object).

pub mod aws;
pub mod chunk;
pub mod config;
pub mod envelope;
pub mod error;
#[cfg(feature = "firehose")]
pub mod firehose;
pub mod json_pointer;
pub mod kinesis;
pub mod metrics;
pub mod preflight;
pub mod put_batch;
pub mod redact;
pub mod retry;
pub mod s3key;
pub mod secret;
pub mod seqnum;
pub mod tally;

pub use error::{Error, error_chain};
