//! The archiver's error type, and the stable `errorType` name Lambda reports for each kind
//! (the names are documented in the README; users filter on them in CloudWatch).

use authtrail_core::config::ConfigError;
use lambda_runtime::Diagnostic;

use crate::store::StoreError;

/// Everything that can go wrong in the archiver. No variant carries record data.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
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
    /// KMS (or the local key) did not sign a digest.
    #[error("signing a digest with {key_id} failed: {message}")]
    Sign { key_id: String, message: String },
    /// Kinesis `ListShards` failed (the scheduled close then treats no shard as ended).
    #[error("listing the shards of stream {stream} failed: {message}")]
    ListShards { stream: String, message: String },
    /// A shard state object kept changing under conditional writes (several writers at once).
    #[error(
        "the shard state s3://{bucket}/{key} kept changing: gave up after {attempts} conditional writes"
    )]
    StateConflict {
        bucket: String,
        key: String,
        attempts: usize,
    },
}

impl ArchiveError {
    /// The stable `errorType` name of this error (see the README's "Errors" section).
    pub fn error_type(&self) -> &'static str {
        match self {
            ArchiveError::Config(_) => "InvalidConfiguration",
            ArchiveError::InvalidEvent(_) | ArchiveError::InvalidSequenceNumber(_) => {
                "InvalidEvent"
            }
            ArchiveError::EmptyObject => "InternalError",
            ArchiveError::Compress(_) => "CompressionFailed",
            ArchiveError::Encode(_) => "EncodingFailed",
            ArchiveError::Store(e) if e.operation == "PutObject" => "ArchiveWriteFailed",
            ArchiveError::Store(_) => "ArchiveReadFailed",
            ArchiveError::ForeignObject { .. } => "ForeignObject",
            ArchiveError::Sign { .. } => "DigestSigningFailed",
            ArchiveError::StateConflict { .. } => "StateConflict",
            ArchiveError::ListShards { .. } => "ShardListFailed",
        }
    }
}

impl From<ArchiveError> for Diagnostic {
    fn from(e: ArchiveError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: authtrail_core::error_chain(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(operation: &'static str) -> ArchiveError {
        ArchiveError::Store(StoreError {
            operation,
            bucket: "b".into(),
            key: "raw/k".into(),
            message: "SlowDown: reduce your request rate".into(),
        })
    }

    #[test]
    fn every_error_kind_maps_to_its_documented_error_type() {
        let bad_json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let cases: Vec<(ArchiveError, &str)> = vec![
            (
                ConfigError::missing("ARCHIVE_BUCKET", "set").into(),
                "InvalidConfiguration",
            ),
            (
                authtrail_core::kinesis::parse(b"not json")
                    .unwrap_err()
                    .into(),
                "InvalidEvent",
            ),
            (
                ArchiveError::InvalidSequenceNumber("12a".into()),
                "InvalidEvent",
            ),
            (ArchiveError::EmptyObject, "InternalError"),
            (
                ArchiveError::Compress(std::io::Error::other("disk")),
                "CompressionFailed",
            ),
            (ArchiveError::Encode(bad_json), "EncodingFailed"),
            (store("PutObject"), "ArchiveWriteFailed"),
            (store("GetObject"), "ArchiveReadFailed"),
            (store("HeadObject"), "ArchiveReadFailed"),
            (
                ArchiveError::ForeignObject {
                    bucket: "b".into(),
                    key: "raw/k".into(),
                    problem: "has no valid metadata".into(),
                },
                "ForeignObject",
            ),
            (
                ArchiveError::Sign {
                    key_id: "alias/authtrail-digests".into(),
                    message: "AccessDeniedException".into(),
                },
                "DigestSigningFailed",
            ),
            (
                ArchiveError::ListShards {
                    stream: "audit".into(),
                    message: "AccessDeniedException".into(),
                },
                "ShardListFailed",
            ),
            (
                ArchiveError::StateConflict {
                    bucket: "b".into(),
                    key: "archiver-state/s.json".into(),
                    attempts: 5,
                },
                "StateConflict",
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

    #[test]
    fn an_invalid_event_says_so_in_the_message() {
        let e: ArchiveError = authtrail_core::kinesis::parse(br#"{"Records":[{"foo":1}]}"#)
            .unwrap_err()
            .into();
        let d = Diagnostic::from(e);
        assert_eq!(d.error_type, "InvalidEvent");
        assert!(d.error_message.starts_with("invalid Kinesis event: "));
    }
}
