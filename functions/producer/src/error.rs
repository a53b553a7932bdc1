//! The producer's errors: [`ProducerError`], the one error of the crate, and the typed failures
//! of its capabilities that it wraps ([`SourceError`] for MPAS, [`CheckpointStoreError`] for the
//! checkpoint object; the stream's are core's batched-write errors, [`authtrail_core::Error`]).
//!
//! What Lambda reports for a failed invocation is the [`Diagnostic`] of a [`ProducerError`]:
//! `errorMessage` is the error's text, `errorType` one of the stable names of [`ErrorType`]
//! (listed in the README), never a Rust type path. No error carries a credential.

use authtrail_core::config::ConfigError;
use authtrail_core::envelope::EventKind;
use authtrail_core::secret::SecretError;
use lambda_runtime::Diagnostic;

/// Everything that can end a producer run or its initialisation.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// A configuration value is missing or malformed (names the variable and expected form).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret named by the configuration could not be read from Secrets Manager.
    #[error("initialisation failed: {0}")]
    Secret(#[from] SecretError),
    /// MPAS could not be asked, refused us, or did not answer usefully (after retries).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The stream did not accept every record of a page (core's batched-write errors:
    /// `Retryable`/`Fatal` call failures, `Exhausted`, `RecordTooLarge`,
    /// `ResultCountMismatch`).
    #[error(transparent)]
    Sink(#[from] authtrail_core::Error),
    /// The checkpoint object could not be read or written.
    #[error(transparent)]
    Store(#[from] CheckpointStoreError),
    /// MPAS sent an event without an integer `time`.
    #[error("garbage MPAS response: {} without an integer `time` in the MPAS response", kind.as_str())]
    EventWithoutTime { kind: EventKind },
    /// MPAS sent an event whose `time` is before 1970 or after 9999.
    #[error(
        "garbage MPAS response: {} with `time` {time} outside 1970 to 9999 (epoch milliseconds)",
        kind.as_str()
    )]
    EventTimeOutOfRange { kind: EventKind, time: i64 },
    /// MPAS sent an event without `id` while the producer reads it as a Keycloak 26.2+ server.
    #[error(
        "garbage MPAS response: {} without `id` from a server in modern mode (set MPAS_API_MODE=legacy for Keycloak < 26.2)",
        kind.as_str()
    )]
    EventWithoutId { kind: EventKind },
    /// A legacy server sent a page that is not newest first.
    #[error(
        "garbage MPAS response: legacy mode expects events newest first, the server sent them in another order"
    )]
    LegacyOrder,
    /// More events share one millisecond than the largest page the producer reads.
    #[error("garbage MPAS response: more than {limit} events share one millisecond ({at})")]
    CrowdedMillisecond { limit: u32, at: String },
    /// The stored checkpoint object is not a checkpoint document (it is left as it is).
    #[error(
        "checkpoint object unusable: not a checkpoint document (line {line} column {column}); refusing to overwrite it"
    )]
    CorruptCheckpoint { line: usize, column: usize },
    /// The checkpoint document could not be encoded.
    #[error("checkpoint object unusable: {0}")]
    CheckpointEncode(#[source] serde_json::Error),
    /// Another invocation changed the checkpoint object while this run held the lease.
    #[error(
        "lost the lease: another invocation changed the checkpoint mid-run; stopping without advancing the cursor"
    )]
    LeaseLost,
}

/// Which MPAS endpoint an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpasEndpoint {
    /// The OpenID Connect token endpoint.
    Token,
    /// The user or admin events endpoint.
    Events,
}

impl MpasEndpoint {
    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            MpasEndpoint::Token => "token",
            MpasEndpoint::Events => "events",
        }
    }
}

/// Why a page could not be fetched from MPAS (after the client's own retries).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// 400: the server rejected the query (a legacy server rejects epoch dates).
    #[error("MPAS rejected the query with HTTP 400: {0}")]
    BadRequest(String),
    /// The token endpoint refused the credentials (HTTP 400/401, with Keycloak's reason).
    #[error("MPAS authentication failed: token endpoint answered HTTP {status}: {reason}")]
    TokenRejected { status: u16, reason: String },
    /// The token endpoint answered another non-success status that no retry fixes.
    #[error("MPAS authentication failed: token endpoint answered HTTP {status}")]
    TokenStatus { status: u16 },
    /// The token endpoint kept failing (5xx, 429, transport, no token in the answer).
    #[error("MPAS authentication failed: no token after {attempts} attempts")]
    TokenUnavailable { attempts: u32 },
    /// The events endpoint refused a fresh token (HTTP 401/403: a missing role).
    #[error(
        "MPAS authentication failed: events endpoint answered HTTP {status} (the client needs the view-events role)"
    )]
    Forbidden { status: u16 },
    /// A non-success status, after the retries when it was retryable.
    #[error("MPAS answered HTTP {status} after {attempts} attempts")]
    Status { status: u16, attempts: u32 },
    /// A body that is not a JSON array of events (truncated, garbage), after the retries.
    #[error(
        "MPAS returned a body that is not a JSON array of events after {attempts} attempts: {detail}"
    )]
    Garbage { detail: String, attempts: u32 },
    /// No answer (connect, timeout, broken body), after the retries.
    #[error("MPAS request failed after {attempts} attempts: {detail}")]
    Transport { detail: String, attempts: u32 },
    /// A 3xx answer: redirects are never followed (the token form holds credentials).
    #[error(
        "MPAS {} endpoint answered HTTP {status} redirecting to {location}; redirects are not followed (check MPAS_BASE_URL)",
        endpoint.as_str()
    )]
    Redirected {
        endpoint: MpasEndpoint,
        status: u16,
        /// The `Location`, without userinfo or query.
        location: String,
    },
    /// An answer larger than its cap (counted after decompression); reading stopped there.
    #[error(
        "MPAS {} endpoint answered with a body over the {limit}-byte cap (after decompression); see MPAS_MAX_PAGE_BYTES",
        endpoint.as_str()
    )]
    TooLarge {
        endpoint: MpasEndpoint,
        limit: usize,
    },
    /// `MPAS_CA_BUNDLE` holds no usable PEM certificates.
    #[error("MPAS client set-up failed: MPAS_CA_BUNDLE is not PEM: {0}")]
    CaBundle(String),
    /// The HTTP client could not be built.
    #[error("MPAS client set-up failed: {0}")]
    Client(String),
    /// The client was given credentials still naming a secret (they are resolved at init).
    #[error(
        "MPAS client set-up failed: credentials from a secret must be resolved before building the client"
    )]
    UnresolvedCredentials,
}

/// Why the checkpoint object could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointStoreError {
    /// The condition failed: someone else wrote the object (412 PreconditionFailed, or 409).
    #[error("the checkpoint object changed under us (conditional write failed)")]
    Conflict,
    /// Reading the object failed.
    #[error("checkpoint store error: reading {location}: {detail}")]
    Read { location: String, detail: String },
    /// Writing the object failed (nothing was written).
    #[error("checkpoint store error: writing {location}: {detail}")]
    Write { location: String, detail: String },
}

/// Why the records of an interrupted put could not be read back from the stream (the run then
/// writes them again: at-least-once). Never fails a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadBackError {
    /// The sink cannot be read back (Firehose delivers, it keeps no readable stream).
    #[error("the sink cannot be read back (Firehose)")]
    Unsupported,
    /// The pending put went to another stream than the one configured now.
    #[error("the interrupted put went to another stream ({0})")]
    TargetChanged(String),
    /// The role may not read the stream (ListShards, GetShardIterator or GetRecords denied).
    #[error("reading the stream was denied: {0}")]
    AccessDenied(String),
    /// The put is older than the stream keeps records (or the retention could not be read).
    #[error("the interrupted put is outside the stream's retention: {0}")]
    BeyondRetention(String),
    /// Reading the stream failed otherwise.
    #[error("reading the stream failed: {0}")]
    Failed(String),
}

impl ReadBackError {
    /// A short stable reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadBackError::Unsupported => "unreadable-sink",
            ReadBackError::TargetChanged(_) => "target-changed",
            ReadBackError::AccessDenied(_) => "access-denied",
            ReadBackError::BeyondRetention(_) => "beyond-retention",
            ReadBackError::Failed(_) => "read-failed",
        }
    }
}

/// The stable `errorType` names Lambda reports for a failed producer invocation (what users
/// filter on in CloudWatch). Documented in the README; renaming one is a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// A configuration value is missing or malformed, or the MPAS client could not be set up.
    InvalidConfiguration,
    /// A secret named by the configuration could not be read from Secrets Manager.
    SecretUnavailable,
    /// MPAS refused the credentials or the role (token endpoint 400/401, events 401/403).
    MpasAuthFailed,
    /// MPAS could not be reached or kept failing (5xx, 429, timeouts) after the retries.
    MpasUnavailable,
    /// MPAS rejected the events query (HTTP 400) of a server read in modern mode.
    MpasQueryRejected,
    /// MPAS answered with something that is not usable events (garbage body, events without
    /// `time`, without `id` in modern mode, out of order, too many in one millisecond).
    MpasBadResponse,
    /// The stream (Kinesis or Firehose) did not accept every record of a page.
    StreamWriteFailed,
    /// The checkpoint object could not be read, written or encoded.
    CheckpointFailed,
    /// The checkpoint object is not a checkpoint document (left as it is).
    CheckpointCorrupt,
    /// Another invocation changed the checkpoint object while this run held the lease.
    LeaseLost,
    /// MPAS answered with a redirect (3xx); redirects are never followed.
    MpasRedirected,
    /// An MPAS answer was larger than its cap (after decompression).
    MpasResponseTooLarge,
}

impl ErrorType {
    /// Every name, in documentation order.
    pub const ALL: [ErrorType; 12] = [
        ErrorType::InvalidConfiguration,
        ErrorType::SecretUnavailable,
        ErrorType::MpasAuthFailed,
        ErrorType::MpasUnavailable,
        ErrorType::MpasQueryRejected,
        ErrorType::MpasBadResponse,
        ErrorType::StreamWriteFailed,
        ErrorType::CheckpointFailed,
        ErrorType::CheckpointCorrupt,
        ErrorType::LeaseLost,
        ErrorType::MpasRedirected,
        ErrorType::MpasResponseTooLarge,
    ];

    /// The name as Lambda reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidConfiguration => "InvalidConfiguration",
            ErrorType::SecretUnavailable => "SecretUnavailable",
            ErrorType::MpasAuthFailed => "MpasAuthFailed",
            ErrorType::MpasUnavailable => "MpasUnavailable",
            ErrorType::MpasQueryRejected => "MpasQueryRejected",
            ErrorType::MpasBadResponse => "MpasBadResponse",
            ErrorType::StreamWriteFailed => "StreamWriteFailed",
            ErrorType::CheckpointFailed => "CheckpointFailed",
            ErrorType::CheckpointCorrupt => "CheckpointCorrupt",
            ErrorType::LeaseLost => "LeaseLost",
            ErrorType::MpasRedirected => "MpasRedirected",
            ErrorType::MpasResponseTooLarge => "MpasResponseTooLarge",
        }
    }
}

impl SourceError {
    /// The `errorType` of this MPAS failure.
    pub fn error_type(&self) -> ErrorType {
        match self {
            SourceError::BadRequest(_) => ErrorType::MpasQueryRejected,
            SourceError::TokenRejected { .. }
            | SourceError::TokenStatus { .. }
            | SourceError::Forbidden { .. } => ErrorType::MpasAuthFailed,
            SourceError::TokenUnavailable { .. }
            | SourceError::Status { .. }
            | SourceError::Transport { .. } => ErrorType::MpasUnavailable,
            SourceError::Garbage { .. } => ErrorType::MpasBadResponse,
            SourceError::Redirected { .. } => ErrorType::MpasRedirected,
            SourceError::TooLarge { .. } => ErrorType::MpasResponseTooLarge,
            SourceError::CaBundle(_)
            | SourceError::Client(_)
            | SourceError::UnresolvedCredentials => ErrorType::InvalidConfiguration,
        }
    }
}

impl ProducerError {
    /// The stable `errorType` name of this failure.
    pub fn error_type(&self) -> ErrorType {
        match self {
            ProducerError::Config(_) => ErrorType::InvalidConfiguration,
            ProducerError::Secret(_) => ErrorType::SecretUnavailable,
            ProducerError::Source(e) => e.error_type(),
            ProducerError::Sink(_) => ErrorType::StreamWriteFailed,
            ProducerError::Store(_) | ProducerError::CheckpointEncode(_) => {
                ErrorType::CheckpointFailed
            }
            ProducerError::EventWithoutTime { .. }
            | ProducerError::EventTimeOutOfRange { .. }
            | ProducerError::EventWithoutId { .. }
            | ProducerError::LegacyOrder
            | ProducerError::CrowdedMillisecond { .. } => ErrorType::MpasBadResponse,
            ProducerError::CorruptCheckpoint { .. } => ErrorType::CheckpointCorrupt,
            ProducerError::LeaseLost => ErrorType::LeaseLost,
        }
    }
}

impl From<ProducerError> for Diagnostic {
    fn from(e: ProducerError) -> Self {
        Diagnostic {
            error_type: e.error_type().as_str().to_string(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashSet;

    fn diagnostic(e: ProducerError) -> Diagnostic {
        Diagnostic::from(e)
    }

    fn json_error() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    #[test]
    fn a_refused_token_request_is_reported_as_mpas_auth_failed_with_its_message() {
        let d = diagnostic(
            SourceError::TokenRejected {
                status: 401,
                reason: "invalid_client Invalid client credentials".into(),
            }
            .into(),
        );
        assert_eq!(d.error_type, "MpasAuthFailed");
        assert_eq!(
            d.error_message,
            "MPAS authentication failed: token endpoint answered HTTP 401: invalid_client Invalid client credentials"
        );
    }

    #[test]
    fn each_failure_kind_maps_to_its_documented_error_type() {
        let cases: Vec<(ProducerError, &str)> = vec![
            (
                ConfigError::new("MPAS_REALM", "a realm name", None).into(),
                "InvalidConfiguration",
            ),
            (
                SecretError::NoString {
                    arn: "arn:s".into(),
                }
                .into(),
                "SecretUnavailable",
            ),
            (
                SourceError::TokenStatus { status: 404 }.into(),
                "MpasAuthFailed",
            ),
            (
                SourceError::Forbidden { status: 403 }.into(),
                "MpasAuthFailed",
            ),
            (
                SourceError::TokenUnavailable { attempts: 6 }.into(),
                "MpasUnavailable",
            ),
            (
                SourceError::Status {
                    status: 503,
                    attempts: 6,
                }
                .into(),
                "MpasUnavailable",
            ),
            (
                SourceError::Transport {
                    detail: "timeout".into(),
                    attempts: 6,
                }
                .into(),
                "MpasUnavailable",
            ),
            (
                SourceError::BadRequest("bad date".into()).into(),
                "MpasQueryRejected",
            ),
            (
                SourceError::Garbage {
                    detail: "truncated".into(),
                    attempts: 3,
                }
                .into(),
                "MpasBadResponse",
            ),
            (
                SourceError::CaBundle("no certificate".into()).into(),
                "InvalidConfiguration",
            ),
            (
                ProducerError::EventWithoutTime {
                    kind: EventKind::User,
                },
                "MpasBadResponse",
            ),
            (
                ProducerError::EventWithoutId {
                    kind: EventKind::Admin,
                },
                "MpasBadResponse",
            ),
            (ProducerError::LegacyOrder, "MpasBadResponse"),
            (
                ProducerError::EventTimeOutOfRange {
                    kind: EventKind::User,
                    time: -1,
                },
                "MpasBadResponse",
            ),
            (
                ProducerError::CrowdedMillisecond {
                    limit: 100_000,
                    at: "2025-02-12T19:27:50.156Z".into(),
                },
                "MpasBadResponse",
            ),
            (
                authtrail_core::Error::Exhausted {
                    failed: 1,
                    total: 2,
                    attempts: 10,
                    last: "ProvisionedThroughputExceededException".into(),
                    out_of_time: false,
                }
                .into(),
                "StreamWriteFailed",
            ),
            (
                authtrail_core::Error::Fatal {
                    code: "ResourceNotFoundException".into(),
                    message: "Stream authtrail-events not found".into(),
                }
                .into(),
                "StreamWriteFailed",
            ),
            (
                CheckpointStoreError::Read {
                    location: "s3://b/k".into(),
                    detail: "denied".into(),
                }
                .into(),
                "CheckpointFailed",
            ),
            (
                ProducerError::CheckpointEncode(json_error()),
                "CheckpointFailed",
            ),
            (
                ProducerError::CorruptCheckpoint { line: 1, column: 1 },
                "CheckpointCorrupt",
            ),
            (ProducerError::LeaseLost, "LeaseLost"),
            (
                SourceError::Redirected {
                    endpoint: MpasEndpoint::Token,
                    status: 307,
                    location: "https://elsewhere.example/".into(),
                }
                .into(),
                "MpasRedirected",
            ),
            (
                SourceError::TooLarge {
                    endpoint: MpasEndpoint::Events,
                    limit: 1024,
                }
                .into(),
                "MpasResponseTooLarge",
            ),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            let d = diagnostic(error);
            assert_eq!(d.error_type, want, "{text}");
            assert_eq!(d.error_message, text);
        }
    }

    #[test]
    fn error_type_names_are_unique_camel_case_words_without_rust_paths() {
        let names: HashSet<&str> = ErrorType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), ErrorType::ALL.len());
        for name in names {
            assert!(name.starts_with(|c: char| c.is_ascii_uppercase()), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        }
    }

    #[test]
    fn every_error_type_name_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        for t in ErrorType::ALL {
            assert!(
                readme.contains(&format!("`{}`", t.as_str())),
                "README lacks {}",
                t.as_str()
            );
        }
    }
}
