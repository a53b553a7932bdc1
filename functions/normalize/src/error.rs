//! The crate's one error type.

use thiserror::Error;

/// What can go wrong while rendering a record.
#[derive(Debug, Error)]
pub enum NormalizeError {
    /// The normalised record could not be written as JSON.
    #[error("normalised record not serializable: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The record's text is not JSON.
    #[error("record is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}
