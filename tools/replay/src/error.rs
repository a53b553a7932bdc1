//! [`ReplayError`]: every way `authtrail-replay` can fail, and the exit status each one gives.

use crate::cli::EXIT_INCOMPLETE;
use crate::cli::EXIT_USAGE;

/// An error of the replay command. Usage and configuration errors exit with status 2; errors
/// reading a source or writing the state file once sending has begun exit with status 1 (some
/// records were not delivered; the state file lets a second run carry on).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No source, or more than one.
    #[error("give exactly one source: --archive, --stream or --dlq")]
    Source,
    /// Neither or both of `--config` and `--config-json`.
    #[error(
        "give the forwarder configuration with exactly one of --config FILE or --config-json JSON"
    )]
    ConfigSource,
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {path}: {detail}")]
    ConfigFile {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The forwarder refused the configuration (or the emitter name), or could not build the
    /// emitter (secrets, TLS).
    #[error(transparent)]
    Forwarder(#[from] authtrail_forwarder::ForwarderError),
    /// An argument that the chosen source needs is missing.
    #[error("{source_arg} needs {needed}")]
    Missing {
        /// The source argument.
        source_arg: &'static str,
        /// What it needs.
        needed: &'static str,
    },
    /// An argument that does not belong to the chosen source.
    #[error("{arg} does not apply to {source_arg}")]
    NotApplicable {
        /// The argument given.
        arg: &'static str,
        /// The source argument.
        source_arg: &'static str,
    },
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
    /// A sequence number that is not a decimal Kinesis sequence number.
    #[error("{arg}: {value:?} is not a Kinesis sequence number (decimal digits)")]
    Sequence {
        /// The argument.
        arg: &'static str,
        /// What was given.
        value: String,
    },
    /// `--from-seq` after `--to-seq`.
    #[error("--from-seq must not be after --to-seq")]
    SequenceRange,
    /// An S3 location that is not `s3://BUCKET/PREFIX`.
    #[error("{arg}: {value:?} is not an S3 location s3://BUCKET/PREFIX")]
    S3Url {
        /// The argument.
        arg: &'static str,
        /// What was given.
        value: String,
    },
    /// A bad numeric argument.
    #[error("{arg}: {message}")]
    Value {
        /// The argument.
        arg: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// The state file cannot be read or does not parse.
    #[error("cannot read the state file {path}: {detail}")]
    StateRead {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The state file belongs to another replay.
    #[error(
        "the state file {path} belongs to another replay ({found}); this one is {wanted}: use another --state file"
    )]
    StateMismatch {
        /// The file.
        path: String,
        /// The replay it records.
        found: String,
        /// This replay.
        wanted: String,
    },
    /// The state file cannot be written.
    #[error("cannot write the state file {path}: {detail}")]
    StateWrite {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// A source cannot be read (S3 listing or object, Kinesis).
    #[error("cannot read {location}: {detail}")]
    Read {
        /// What was being read.
        location: String,
        /// Why.
        detail: String,
    },
}

impl ReplayError {
    /// The exit status this error gives: 1 for failures while reading sources or writing the
    /// state file, 2 for usage and configuration errors.
    pub fn exit_status(&self) -> u8 {
        match self {
            ReplayError::Read { .. } | ReplayError::StateWrite { .. } => EXIT_INCOMPLETE,
            _ => EXIT_USAGE,
        }
    }
}
