//! `retry`: the retry policy shared by every emitter.

use std::time::Duration;

use serde::Deserialize;

use super::err;
use crate::ForwarderError;

/// `retry` as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetry {
    /// Attempts per record and emitter within one invocation, 1-100 (default 4).
    max_attempts: Option<u32>,
    /// First backoff, milliseconds (default 200).
    initial_backoff_ms: Option<u64>,
    /// Longest backoff, milliseconds (default 5000).
    max_backoff_ms: Option<u64>,
    /// Age past which a record still failing with a retryable error is dead-lettered, seconds
    /// (default 3600).
    max_record_age_in_sec: Option<u64>,
}

/// The retry policy of every emitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per record and emitter within one invocation (the first included).
    pub max_attempts: u32,
    /// Backoff before the first retry (doubled for each further one).
    pub initial_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// A record still failing with a retryable error once it is older than this is
    /// dead-lettered instead of retried again (so a dead receiver never blocks the shard).
    pub max_record_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_record_age: Duration::from_secs(3600),
        }
    }
}

/// Validates `retry` (defaults for what is not given).
pub(crate) fn validate_retry(raw: Option<RawRetry>) -> Result<RetryPolicy, ForwarderError> {
    let mut p = RetryPolicy::default();
    let Some(raw) = raw else { return Ok(p) };
    if let Some(n) = raw.max_attempts {
        if !(1..=100).contains(&n) {
            return Err(err(
                "retry.maxAttempts",
                format!("must be 1..=100 (got {n})"),
            ));
        }
        p.max_attempts = n;
    }
    if let Some(ms) = raw.initial_backoff_ms {
        p.initial_backoff = Duration::from_millis(ms);
    }
    if let Some(ms) = raw.max_backoff_ms {
        p.max_backoff = Duration::from_millis(ms);
    }
    if p.max_backoff < p.initial_backoff {
        return Err(err(
            "retry.maxBackoffMs",
            "must be at least retry.initialBackoffMs",
        ));
    }
    if let Some(s) = raw.max_record_age_in_sec {
        p.max_record_age = Duration::from_secs(s);
    }
    Ok(p)
}
