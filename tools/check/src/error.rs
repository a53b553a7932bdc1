//! The error type of `authtrail-check`.

/// What can stop a check: a source that cannot be read, or arguments that make no check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A source (file, directory, URL, S3 prefix) could not be read.
    #[error("{source_name}: {detail}")]
    Read {
        /// The source, as given.
        source_name: String,
        /// What went wrong.
        detail: String,
    },
    /// A location that should be `s3://BUCKET/PREFIX` is not an S3 URL.
    #[error("invalid argument: {0:?} is not an s3://BUCKET/PREFIX URL")]
    NotS3Url(String),
    /// An S3 URL without a bucket.
    #[error("invalid argument: {0:?} names no bucket")]
    NoBucket(String),
    /// A `--siem` value that is not `NAME=PATH`.
    #[error("invalid argument: --siem {0:?}: expected NAME=PATH")]
    SiemSpec(String),
    /// Neither expected events nor an archive to take them from.
    #[error("invalid argument: give --expected-url/--expected-file or --archive")]
    NoReference,
    /// A time argument that is not RFC 3339.
    #[error(
        "invalid argument: {name} {value:?}: expected an RFC 3339 time such as 2025-02-12T19:00:00Z"
    )]
    TimeArg {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
    },
    /// `reconcile` without a stack or a bucket.
    #[error("invalid argument: reconcile needs --stack or --bucket")]
    NoReconcileLocation,
}
