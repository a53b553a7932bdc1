//! The error type of `authtrail-preflight`: what stops a preflight before its checks run. A
//! check that fails is not an error; it is a failed check in the report.

/// Why the preflight could not run.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The stack could not be read (missing, no permission, not an authtrail stack).
    #[error("stack {stack}: {detail}")]
    Stack {
        /// The stack's name.
        stack: String,
        /// What went wrong.
        detail: String,
    },
    /// A function of the stack could not be read.
    #[error("function {function}: {detail}")]
    Function {
        /// The function's name.
        function: String,
        /// What went wrong.
        detail: String,
    },
    /// A file named by an argument could not be read.
    #[error("{path}: {detail}")]
    File {
        /// The path, as given.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A configuration (the forwarder's JSON, the producer's variables) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Arguments that make no preflight.
    #[error("invalid arguments: {0}")]
    Arguments(String),
}
