//! `authtrail-preflight`: Foxpass's "Test & Add" for an authtrail deployment. Every check is
//! reported as ok, failed (with what to fix) or skipped, and no secret is ever printed.
//!
//! - [`cli`]: the arguments, the run and the exit status (0 all ok, 1 a check failed, 2 the
//!   preflight could not run).
//! - [`targets`]: what to check, from the arguments and a deployed stack (its outputs and its
//!   functions' environment).
//! - [`writer`]: the writer role assumed with its External ID, the stream described with it.
//! - [`invoke`]: the deployed functions invoked with `{"authtrail": "preflight"}`, so that
//!   what sits in their VPC is checked from where they run.
//! - [`error`]: why a preflight could not run.
//!
//! The checks themselves live with the code they check: MPAS and the stream in
//! `authtrail_producer::preflight`, the emitters in `authtrail_forwarder::preflight`, the S3
//! conditional writes in `authtrail_core::preflight`.

pub mod cli;
pub mod error;
pub mod invoke;
pub mod targets;
pub mod writer;

pub use error::PreflightError;
