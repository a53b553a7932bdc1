//! The reconciler's error type: each failure kind is a variant with a stable `errorType`
//! name ([`ReconcileError::error_type`]) that Lambda reports.

use authtrail_core::config::ConfigError;

/// What can stop a reconciliation run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A configuration variable is missing or malformed (cold start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An S3 object or listing could not be read.
    #[error("reading s3://{bucket}/{key}: {detail}")]
    Read {
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// A reconciliation object could not be written.
    #[error("writing s3://{bucket}/{key}: {detail}")]
    Write {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// An archive object could not be decompressed.
    #[error("decompressing s3://{bucket}/{key}: {detail}")]
    Decompress {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// The forwarder's log group could not be read.
    #[error("reading the forwarder's tallies from log group {group}: {detail}")]
    Logs {
        /// The log group.
        group: String,
        /// What went wrong.
        detail: String,
    },
    /// A manual invocation's payload is not understood.
    #[error("invalid payload: {0}")]
    Payload(String),
}

impl ReconcileError {
    /// The stable `errorType` name of the failure.
    pub fn error_type(&self) -> &'static str {
        match self {
            ReconcileError::Config(_) => "ConfigurationInvalid",
            ReconcileError::Read { .. } => "ReadFailed",
            ReconcileError::Write { .. } => "WriteFailed",
            ReconcileError::Decompress { .. } => "ArchiveObjectUnreadable",
            ReconcileError::Logs { .. } => "LogsUnreadable",
            ReconcileError::Payload(_) => "PayloadInvalid",
        }
    }
}

impl From<ReconcileError> for lambda_runtime::Diagnostic {
    fn from(e: ReconcileError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}
