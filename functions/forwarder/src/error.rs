//! The forwarder's one error type, [`ForwarderError`], and what Lambda reports for it.
//!
//! Failure kinds are variants, never strings to match on. None of them carries a secret value.
//! A failed invocation or cold start is reported to Lambda as a [`Diagnostic`] whose
//! `errorType` is a stable name from [`ForwarderError::error_type`] (documented in the
//! forwarder README), never a Rust type path: it is what users filter on in CloudWatch.

use lambda_runtime::Diagnostic;

/// Errors of the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    /// A configuration value is wrong; `path` names the key (`emitters[2] ("syslog").port`).
    #[error("invalid configuration: {path}: {message}")]
    Config {
        /// The key path of the offending value.
        path: String,
        /// What is wrong with it (never the value of a secret).
        message: String,
    },
    /// An environment variable is missing or malformed.
    #[error(transparent)]
    Env(#[from] authtrail_core::config::ConfigError),
    /// A secret could not be read from Secrets Manager.
    #[error(transparent)]
    Secret(#[from] authtrail_core::secret::SecretError),
    /// A Secrets Manager secret holds a JSON object without the expected string field; `has`
    /// lists the fields it does have (names only, never their values).
    #[error("secret {arn} has no string field {field:?} (its fields: {has:?})")]
    SecretFieldMissing {
        /// The secret's ARN.
        arn: String,
        /// The field that was expected (`token`, `password`, `hmacKey`, a header name).
        field: String,
        /// The names of the fields the secret has.
        has: Vec<String>,
    },
    /// A secret's value cannot be sent in an HTTP header (it holds a line break or another
    /// byte that headers do not allow).
    #[error("emitter {emitter:?}: a secret is not a valid HTTP header value")]
    SecretNotAHeaderValue {
        /// The emitter whose secret it is.
        emitter: String,
    },
    /// The TLS or HTTP client of an emitter could not be set up.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// A failure of a core mechanism: an invalid JSON pointer, an invalid Kinesis event, a
    /// failed batch write.
    #[error(transparent)]
    Core(#[from] authtrail_core::Error),
    /// A record's data is not UTF-8.
    #[error("record is not UTF-8: {0}")]
    RecordNotUtf8(#[source] std::str::Utf8Error),
    /// A record's data is not JSON.
    #[error("record is not JSON: {0}")]
    RecordNotJson(#[source] serde_json::Error),
    /// A record's data is JSON but not an object.
    #[error("record is JSON but not an object")]
    RecordNotAnObject,
    /// A transformed record could not be written back as JSON.
    #[error("record could not be serialized: {0}")]
    RecordNotSerializable(#[source] serde_json::Error),
    /// A dead letter could not be stored.
    #[error("PutObject s3://{bucket}/{key}: {detail}")]
    DeadLetterNotWritten {
        /// The dead-letter bucket.
        bucket: String,
        /// The dead letter's key.
        key: String,
        /// The store's answer.
        detail: String,
    },
    /// A spool object could not be written, read, listed or deleted.
    #[error("{operation} s3://{bucket}/{key}: {detail}")]
    Spool {
        /// The S3 operation (`PutObject`, `GetObject`, `ListObjectsV2`, `DeleteObject`).
        operation: &'static str,
        /// The spool bucket.
        bucket: String,
        /// The object key or prefix.
        key: String,
        /// The store's answer.
        detail: String,
    },
    /// The `postgres` emitter could not prepare its database at cold start (`createSchema`,
    /// reading the mapped tables' columns).
    #[error("emitter {emitter:?}: PostgreSQL: {detail}")]
    Postgres {
        /// The emitter.
        emitter: String,
        /// The server's or the driver's answer (never the password).
        detail: String,
    },
    /// A record without a sequence number failed: Lambda cannot be told which one.
    #[error("record without a sequence number cannot be reported as a batch item failure")]
    NoSequenceNumber,
}

impl ForwarderError {
    /// The stable `errorType` Lambda reports for this error (see the README).
    pub fn error_type(&self) -> &'static str {
        match self {
            ForwarderError::Config { .. } | ForwarderError::Env(_) => "InvalidConfiguration",
            ForwarderError::Core(e) => core_error_type(e),
            ForwarderError::Secret(_) | ForwarderError::SecretFieldMissing { .. } => {
                "SecretUnavailable"
            }
            ForwarderError::SecretNotAHeaderValue { .. } => "InvalidSecretValue",
            ForwarderError::Tls(_) => "TlsSetupFailed",
            ForwarderError::RecordNotUtf8(_)
            | ForwarderError::RecordNotJson(_)
            | ForwarderError::RecordNotAnObject
            | ForwarderError::RecordNotSerializable(_) => "MalformedRecord",
            ForwarderError::DeadLetterNotWritten { .. } => "DeadLetterWriteFailed",
            ForwarderError::Spool { .. } => "SpoolFailed",
            ForwarderError::Postgres { .. } => "DatabaseUnavailable",
            ForwarderError::NoSequenceNumber => "InvalidEvent",
        }
    }
}

/// The `errorType` of a core failure.
fn core_error_type(e: &authtrail_core::Error) -> &'static str {
    use authtrail_core::Error;
    match e {
        Error::NotAPointer(_) | Error::BadPointerEscape(_) => "InvalidConfiguration",
        Error::InvalidKinesisEvent(_)
        | Error::InvalidRecordData { .. }
        | Error::ArrivalOutOfRange { .. } => "InvalidEvent",
        Error::Retryable { .. }
        | Error::Fatal { .. }
        | Error::Exhausted { .. }
        | Error::RecordTooLarge { .. }
        | Error::ResultCountMismatch { .. } => "DeliveryFailed",
    }
}

impl From<ForwarderError> for Diagnostic {
    fn from(e: ForwarderError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn diagnostic(e: ForwarderError) -> Diagnostic {
        Diagnostic::from(e)
    }

    #[test]
    fn every_error_reaches_lambda_with_its_stable_error_type_and_its_message() {
        let json_error = || serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let bytes = vec![0xff_u8];
        let utf8_error = std::str::from_utf8(&bytes).unwrap_err();
        let cases = [
            (
                ForwarderError::Config {
                    path: "emitters[0] (\"s\").port".into(),
                    message: "must be 1..=65535 (got 0)".into(),
                },
                "InvalidConfiguration",
            ),
            (
                ForwarderError::Env(authtrail_core::config::ConfigError::missing(
                    "DLQ_BUCKET",
                    "a bucket name",
                )),
                "InvalidConfiguration",
            ),
            (
                ForwarderError::Core(authtrail_core::Error::NotAPointer("a".into())),
                "InvalidConfiguration",
            ),
            (
                ForwarderError::Core(authtrail_core::Error::BadPointerEscape("/a~2".into())),
                "InvalidConfiguration",
            ),
            (
                ForwarderError::Core(authtrail_core::Error::InvalidRecordData {
                    sequence_number: "1".into(),
                }),
                "InvalidEvent",
            ),
            (
                ForwarderError::Core(authtrail_core::Error::Fatal {
                    code: "ResourceNotFoundException".into(),
                    message: "no such stream".into(),
                }),
                "DeliveryFailed",
            ),
            (
                ForwarderError::SecretNotAHeaderValue {
                    emitter: "w".into(),
                },
                "InvalidSecretValue",
            ),
            (ForwarderError::Tls("no provider".into()), "TlsSetupFailed"),
            (ForwarderError::RecordNotUtf8(utf8_error), "MalformedRecord"),
            (
                ForwarderError::RecordNotJson(json_error()),
                "MalformedRecord",
            ),
            (ForwarderError::RecordNotAnObject, "MalformedRecord"),
            (
                ForwarderError::RecordNotSerializable(json_error()),
                "MalformedRecord",
            ),
            (
                ForwarderError::DeadLetterNotWritten {
                    bucket: "b".into(),
                    key: "k".into(),
                    detail: "AccessDenied".into(),
                },
                "DeadLetterWriteFailed",
            ),
            (
                ForwarderError::Postgres {
                    emitter: "pg".into(),
                    detail: "connection refused".into(),
                },
                "DatabaseUnavailable",
            ),
            (ForwarderError::NoSequenceNumber, "InvalidEvent"),
        ];
        for (e, error_type) in cases {
            let message = e.to_string();
            let d = diagnostic(e);
            assert_eq!(d.error_type, error_type, "{message}");
            assert_eq!(d.error_message, message);
            assert!(!d.error_type.contains("::"), "{}", d.error_type);
        }
    }

    #[test]
    fn a_secret_error_is_reported_as_secret_unavailable() {
        let e = authtrail_core::secret::secret_field(
            "arn:aws:secretsmanager:eu-west-1:1:secret:s",
            &authtrail_core::secret::Secret::new("{\"other\":\"hunter2\"}"),
            "token",
        )
        .unwrap_err();
        let d = diagnostic(ForwarderError::Secret(e));
        assert_eq!(d.error_type, "SecretUnavailable");
        assert!(!d.error_message.contains("hunter2"), "{}", d.error_message);
    }
}
