//! `authtrail-verify`: proves that the S3 archive is as the archiver wrote it.
//!
//! For a time range (key hours) it checks every digest's signature (with a key the operator
//! names, never one a digest names) and its link to the previous digest of its shard, every
//! listed object's presence and SHA-256, and reports objects that no digest lists and gaps in a
//! shard's chain of objects. The digest format is the archiver's
//! ([`authtrail_archiver::digest`]; its README documents it field by field).
//!
//! - [`cli`]: the arguments, the run and its exit status (0 intact, 1 findings, 2 could not
//!   run).
//! - [`verify`]: the checks, on any [`authtrail_archiver::ObjectStore`].
//! - [`scan`]: listing and reading the bucket, several requests at a time.
//! - [`layout`]: what a key says (hour, stream, shard).
//! - [`keyring`]: the public keys (PEM files or KMS `GetPublicKey`).
//! - [`report`]: findings, the report, and how it is printed.
//! - [`progress`]: the progress bar on stderr.
//! - [`error`]: the error type, [`VerifyError`].

pub mod cli;
pub mod error;
pub mod keyring;
pub mod layout;
pub mod progress;
pub mod report;
pub mod scan;
pub mod verify;

pub use error::VerifyError;
pub use report::{Finding, FindingKind, Report};
