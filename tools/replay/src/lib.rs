//! `authtrail-replay`: replay and backfill for one emitter of a forwarder configuration.
//!
//! - [`cli`]: the arguments, checked into a plan; the run and its exit status.
//! - [`source`]: the archive, a stream shard, dead letters, and which records a replay takes.
//! - [`run`]: the replay: units, batches, the summary.
//! - [`state`]: the resume state (`--state FILE`).
//! - [`progress`]: the progress bar on stderr.
//! - [`time`]: time ranges, key hours and record timestamps.
//! - [`error`]: the error type, [`ReplayError`].
//!
//! The records go through the forwarder library
//! ([`authtrail_forwarder::replay::Replayer`]), so filters, redaction and formats are the
//! forwarder's own.

pub mod cli;
pub mod error;
pub mod progress;
pub mod run;
pub mod source;
pub mod state;
pub mod time;

pub use error::ReplayError;
