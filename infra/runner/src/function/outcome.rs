//! What an invocation came to: [`Outcome`] and the [`Invocation`] record.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{Result, RunnerError};

/// What happened to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function returned; the response body as posted to `/response`.
    Response(Bytes),
    /// The function reported an error (`/invocation/{id}/error`), as AWS reports an unhandled
    /// function error.
    FunctionError {
        error_type: String,
        error_message: String,
    },
    /// The process exited during the invocation (AWS: `Runtime.ExitError`). The next
    /// invocation starts a fresh process (a cold start).
    Crashed { detail: String },
    /// The deadline passed; the process was killed (AWS: `Sandbox.Timedout`).
    TimedOut { after: Duration },
    /// The function failed to initialise: it posted `/init/error`, exited before asking for
    /// work, or did not ask for work within the init timeout.
    InitError {
        error_type: String,
        error_message: String,
    },
}

/// The record of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `Lambda-Runtime-Aws-Request-Id` of the invocation.
    pub request_id: String,
    /// Whether this invocation started a new process.
    pub cold_start: bool,
    /// Wall time from queueing to outcome.
    pub duration: Duration,
    /// The outcome.
    pub outcome: Outcome,
}

impl Invocation {
    /// True for [`Outcome::Response`].
    pub fn is_success(&self) -> bool {
        matches!(self.outcome, Outcome::Response(_))
    }

    /// The response body, if the function returned one.
    pub fn response(&self) -> Option<&Bytes> {
        match &self.outcome {
            Outcome::Response(b) => Some(b),
            _ => None,
        }
    }

    /// The response deserialised as `T`.
    pub fn response_json<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.outcome {
            Outcome::Response(b) => Ok(serde_json::from_slice(b)?),
            other => Err(RunnerError::Function {
                name: String::new(),
                message: format!("invocation did not succeed: {}", other.kind()),
            }),
        }
    }

    /// The error type in AWS's words, for failed invocations (`Unhandled` function errors keep
    /// the type the function reported).
    pub fn error_type(&self) -> Option<&str> {
        self.outcome.error_type()
    }
}

impl Outcome {
    /// A short name for logs and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Response(_) => "response",
            Outcome::FunctionError { .. } => "function_error",
            Outcome::Crashed { .. } => "crashed",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::InitError { .. } => "init_error",
        }
    }

    /// The error type in AWS's words (`None` for a response): the type the function reported
    /// for function and init errors, `Runtime.ExitError` for a crash, `Sandbox.Timedout` for a
    /// timeout.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Outcome::Response(_) => None,
            Outcome::FunctionError { error_type, .. } | Outcome::InitError { error_type, .. } => {
                Some(error_type)
            }
            Outcome::Crashed { .. } => Some("Runtime.ExitError"),
            Outcome::TimedOut { .. } => Some("Sandbox.Timedout"),
        }
    }
}
