//! The writer's error type, and the stable `errorType` name Lambda reports for each kind (the
//! names are documented in the README; users filter on them in CloudWatch).

use authtrail_core::config::ConfigError;
use lambda_runtime::Diagnostic;

use crate::store::StoreError;

/// Everything that can go wrong in the Security Lake writer. No variant carries record data.
#[derive(Debug, thiserror::Error)]
pub enum SecurityLakeError {
    /// A configuration variable is missing or invalid (cold start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The payload is not a Kinesis event Lambda would send (the whole batch is retried).
    #[error(transparent)]
    InvalidEvent(#[from] authtrail_core::Error),
    /// A record's sequence number is not 1 to 128 decimal digits.
    #[error("invalid Kinesis event: record has an invalid sequence number {0:?}")]
    InvalidSequenceNumber(String),
    /// The handler asked for an object of no records (a bug; never stored).
    #[error("internal error: an object without records was requested")]
    EmptyObject,
    /// Decoding rows into Arrow failed (a row that does not fit its class's schema).
    #[error("building the Arrow batch failed: {0}")]
    Arrow(arrow_schema::ArrowError),
    /// Writing the Parquet object failed.
    #[error("writing the Parquet object failed: {0}")]
    Parquet(parquet::errors::ParquetError),
    /// Encoding an error or state object as JSON failed.
    #[error("encoding a JSON object failed: {0}")]
    Encode(serde_json::Error),
    /// An S3 call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object under one of the writer's keys lacks the metadata the writer puts on it.
    #[error("object s3://{bucket}/{key} exists but {problem}")]
    ForeignObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl SecurityLakeError {
    /// The stable `errorType` name of this error (see the README's "Errors" section).
    pub fn error_type(&self) -> &'static str {
        match self {
            SecurityLakeError::Config(_) => "InvalidConfiguration",
            SecurityLakeError::InvalidEvent(_) | SecurityLakeError::InvalidSequenceNumber(_) => {
                "InvalidEvent"
            }
            SecurityLakeError::EmptyObject => "InternalError",
            SecurityLakeError::Arrow(_)
            | SecurityLakeError::Parquet(_)
            | SecurityLakeError::Encode(_) => "EncodingFailed",
            SecurityLakeError::Store(e) if e.operation == "PutObject" => "ObjectWriteFailed",
            SecurityLakeError::Store(_) => "ObjectReadFailed",
            SecurityLakeError::ForeignObject { .. } => "ForeignObject",
        }
    }
}

impl From<SecurityLakeError> for Diagnostic {
    fn from(e: SecurityLakeError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: authtrail_core::error_chain(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn store(operation: &'static str) -> SecurityLakeError {
        SecurityLakeError::Store(StoreError {
            operation,
            bucket: "b".into(),
            key: "ext/k".into(),
            message: "SlowDown: reduce your request rate".into(),
        })
    }

    #[test]
    fn every_error_kind_maps_to_its_documented_error_type() {
        let bad_json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let cases: Vec<(SecurityLakeError, &str)> = vec![
            (
                ConfigError::missing("SECURITY_LAKE_BUCKET", "set").into(),
                "InvalidConfiguration",
            ),
            (
                authtrail_core::kinesis::parse(b"not json")
                    .unwrap_err()
                    .into(),
                "InvalidEvent",
            ),
            (
                SecurityLakeError::InvalidSequenceNumber("12a".into()),
                "InvalidEvent",
            ),
            (SecurityLakeError::EmptyObject, "InternalError"),
            (
                SecurityLakeError::Arrow(arrow_schema::ArrowError::JsonError("x".into())),
                "EncodingFailed",
            ),
            (
                SecurityLakeError::Parquet(parquet::errors::ParquetError::General("x".into())),
                "EncodingFailed",
            ),
            (SecurityLakeError::Encode(bad_json), "EncodingFailed"),
            (store("PutObject"), "ObjectWriteFailed"),
            (store("GetObject"), "ObjectReadFailed"),
            (store("HeadObject"), "ObjectReadFailed"),
            (
                SecurityLakeError::ForeignObject {
                    bucket: "b".into(),
                    key: "ext/k".into(),
                    problem: "has no valid metadata".into(),
                },
                "ForeignObject",
            ),
        ];
        for (e, name) in cases {
            let message = e.to_string();
            let d = Diagnostic::from(e);
            assert_eq!(d.error_type, name, "{message}");
            assert!(d.error_message.starts_with(&message), "{}", d.error_message);
            assert!(!d.error_type.contains("::"), "no Rust type paths");
        }
    }
}
