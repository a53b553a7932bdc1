//! The error type of the core mechanisms (Kinesis event reading, JSON pointers, batched writes)
//! and the formatting of an error with its chain of sources.
//!
//! The older modules keep their own error types, which other crates already name:
//! [`crate::config::ConfigError`], [`crate::redact::RedactError`] and
//! [`crate::secret::SecretError`].

use std::error::Error as StdError;
use std::fmt;

/// A failure of one of the core mechanisms. No variant carries record data or a secret: a
/// record is named by its sequence number, a call failure by the service's code and message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is not a Lambda `KinesisEvent` (JSON syntax, a missing member, a field of
    /// the wrong type, record data that is not base64).
    #[error("invalid Kinesis event: {0}")]
    InvalidKinesisEvent(serde_json::Error),
    /// A record's `data` is not strict, padded, standard-alphabet base64.
    #[error("record {sequence_number:?}: data is not valid base64")]
    InvalidRecordData { sequence_number: String },
    /// A record's `approximateArrivalTimestamp` does not fit in epoch milliseconds.
    #[error("record {sequence_number:?}: approximateArrivalTimestamp is out of range")]
    ArrivalOutOfRange { sequence_number: String },
    /// A JSON pointer that does not start with `/` (RFC 6901).
    #[error("{0:?} is not a JSON pointer (it must start with '/')")]
    NotAPointer(String),
    /// A JSON pointer with a `~` not followed by `0` or `1` (RFC 6901).
    #[error("{0:?} has an invalid escape (only ~0 and ~1)")]
    BadPointerEscape(String),
    /// A batched write call failed as a whole and may succeed when sent again (throttling,
    /// 5xx, transport errors).
    #[error("batch write failed (retryable, {code}): {message}")]
    Retryable { code: String, message: String },
    /// A batched write call failed as a whole and no retry will fix it (missing stream, access
    /// denied, validation, KMS key unusable).
    #[error("batch write failed ({code}): {message}")]
    Fatal { code: String, message: String },
    /// Records were still refused when the attempts (or, `out_of_time`, the time) ran out.
    #[error(
        "{failed} of {total} records were still not accepted after {attempts} attempts{} (last error: {last})",
        if *out_of_time { " (no time left for another)" } else { "" }
    )]
    Exhausted {
        failed: usize,
        total: usize,
        attempts: u32,
        last: String,
        /// The deadline, not the attempts, ended the retries.
        out_of_time: bool,
    },
    /// A record larger than the service accepts; nothing was sent.
    #[error("a record of {size} bytes exceeds the sink's limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    /// The service answered a different number of per-record results than records sent.
    #[error("the service answered {got} results for {sent} records")]
    ResultCountMismatch { sent: usize, got: usize },
}

/// Displays an error followed by each of its sources, separated by `": "` (the AWS SDK's
/// errors say only "dispatch failure" on their own; the cause is in the chain).
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a dyn StdError);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error and its sources on one line: `outer: middle: inner`.
pub fn error_chain(e: &dyn StdError) -> String {
    ErrorChain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn error_chain_lists_every_source_in_order() {
        let e = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "dispatch failure: io error: connection refused"
        );
        assert_eq!(
            format!("{:?}", ErrorChain(&e)),
            "dispatch failure: io error: connection refused"
        );
    }

    #[test]
    fn error_chain_of_an_error_without_source_is_its_display() {
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn pointer_errors_name_the_pointer() {
        assert_eq!(
            Error::NotAPointer("a.b".into()).to_string(),
            "\"a.b\" is not a JSON pointer (it must start with '/')"
        );
        assert_eq!(
            Error::BadPointerEscape("/a~2".into()).to_string(),
            "\"/a~2\" has an invalid escape (only ~0 and ~1)"
        );
    }
}
