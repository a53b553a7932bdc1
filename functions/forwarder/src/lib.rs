//! authtrail forwarder: Kinesis records (Contract 1 envelopes, Foxpass-style records, any JSON
//! object) into SIEMs, filtered, redacted, delivered or dead-lettered.
//!
//! - [`config`]: the JSON configuration, validated at cold start (the top level and the parts
//!   every emitter shares).
//! - [`kinesis`]: the Kinesis event, read lean by core's reader.
//! - [`record`]: parse once, classify (event type names), transform (filter + redaction).
//! - [`emit`]: the emitters, one folder per type (HTTP, Splunk HEC, Elasticsearch, syslog,
//!   Firehose, stdout), each with its configuration, encoder and delivery.
//! - [`forward`]: one invocation: prepare, deliver (retries), age-out, quorum, the dead-letter
//!   trail ([`dlq`]).
//! - [`spool`]: the per-emitter spool in S3, its redrive and breaker.
//! - [`handler`]: the Lambda handler (Kinesis batches, scheduled redrives and the preflight
//!   test payload); [`error`]: the error type and the `errorType` names Lambda reports.
//! - [`preflight`]: the preflight checks (each emitter probed without delivering an event, the
//!   dead-letter and spool prefixes).
//! - [`tally`]: the reconciliation tally line of each Kinesis invocation.
//!
//! `main.rs` only wires: [`Handler::from_env`] then [`Handler::handle`] per invocation.

pub mod config;
pub mod dlq;
pub mod emit;
pub mod error;
pub mod filter;
pub mod forward;
pub mod handler;
pub mod kinesis;
pub mod preflight;
pub mod record;
pub mod replay;
pub mod spool;
pub mod tally;

pub use error::ForwarderError;
pub use forward::build;
pub use handler::{Handler, log_summary};
pub use kinesis::{ForwarderEvent, KinesisBatch};
