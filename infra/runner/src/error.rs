//! The runner's error type.

use std::path::PathBuf;

/// Errors of the runner itself (infrastructure). What a function does with an invocation is never
/// an error here: it is an [`crate::Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The function binary could not be started.
    #[error("could not start function binary {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// The local Runtime API server could not be started.
    #[error("could not start the Runtime API server: {0}")]
    Server(std::io::Error),
    /// An invocation payload above Lambda's synchronous invoke limit.
    #[error("invocation payload of {size} bytes exceeds the {limit}-byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    /// An invalid runner or event-source setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A Kinesis call failed (after the runner's own retries).
    #[error("Kinesis {operation} failed: {message}")]
    Kinesis {
        operation: &'static str,
        message: String,
    },
    /// Writing an on-failure record to S3 failed.
    #[error("S3 on-failure destination write failed: {0}")]
    S3(String),
    /// JSON (de)serialisation of a payload the runner builds.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// Other I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The function's execution environment went away in a way the runner could not recover from.
    #[error("function {name}: {message}")]
    Function { name: String, message: String },
}

/// Result alias of this crate.
pub type Result<T, E = RunnerError> = std::result::Result<T, E>;
