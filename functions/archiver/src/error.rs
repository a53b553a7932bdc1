//! The archiver's error type.

use authtrail_core::config::ConfigError;

use crate::store::StoreError;

/// Everything that can go wrong in the archiver. No variant carries record data.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The payload is not a Kinesis event Lambda would send (the whole batch is retried).
    #[error("invalid Kinesis event: {0}")]
    BadEvent(String),
    #[error("compressing the archive object failed: {0}")]
    Compress(std::io::Error),
    #[error("encoding an error object failed: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object under one of our keys lacks the metadata the archiver writes.
    #[error("object s3://{bucket}/{key} exists but {problem}")]
    ForeignObject {
        bucket: String,
        key: String,
        problem: String,
    },
}
