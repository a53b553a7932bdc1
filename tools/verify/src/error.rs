//! [`VerifyError`]: why a verification could not be made (exit status 2).

use authtrail_archiver::store::StoreError;

/// A verification that could not be made: a usage error, a key that cannot be read, or a
/// bucket that cannot be read. Findings are not errors (they are the report).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `--archive` is not `s3://BUCKET`.
    #[error("--archive: {0:?} is not an S3 bucket URL s3://BUCKET")]
    ArchiveUrl(String),
    /// A time argument that cannot be read.
    #[error(
        "{arg}: {value:?} is not a time (RFC 3339 such as 2025-02-01T00:00:00Z, a date 2025-02-01, or epoch milliseconds)"
    )]
    Time {
        /// The argument.
        arg: &'static str,
        /// What was given.
        value: String,
    },
    /// `--from` not before `--to`.
    #[error("--from must be before --to")]
    EmptyRange,
    /// A prefix argument that is not a folder.
    #[error("{arg}: {value:?} is not a key prefix ending in '/' (such as digests/)")]
    Prefix {
        /// The argument.
        arg: &'static str,
        /// What was given.
        value: String,
    },
    /// No key to check signatures with.
    #[error(
        "give the signing key: --key-id KEY (its public key from KMS GetPublicKey) or --public-key FILE (PEM or DER)"
    )]
    NoKey,
    /// A public key file that cannot be read.
    #[error("cannot read the public key {path}: {detail}")]
    PublicKeyFile {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// KMS `GetPublicKey` failed.
    #[error("KMS GetPublicKey {key_id} failed: {detail}")]
    Kms {
        /// The key asked for.
        key_id: String,
        /// Why.
        detail: String,
    },
    /// The bucket cannot be listed or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A background read stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}
