//! `buffering`: how an emitter cuts the records of an invocation into requests. Shared by every
//! emitter type; a type may lower the limits ([`BufferingLimits`], Firehose does).

use serde::Deserialize;

use super::err;
use crate::ForwarderError;

/// `buffering` as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBuffering {
    /// Records per request (default and maximum: [`BufferingLimits`]).
    max_batched_events: Option<usize>,
    /// Uncompressed bytes per request, at least 1024 (default and maximum: [`BufferingLimits`]).
    max_size: Option<usize>,
    /// Requests of this emitter in flight at once, 1-64 (default 4).
    max_concurrent_requests: Option<usize>,
    /// Accepted for compatibility with other emitters' vocabulary; a Lambda invocation always
    /// flushes at its end, so this only has to be a valid number.
    #[allow(dead_code)]
    write_interval: Option<u64>,
}

/// How one emitter cuts its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    /// Records per request.
    pub max_batched_events: usize,
    /// Upper bound of one request's uncompressed payload, in bytes.
    pub max_size: usize,
    /// Requests of this emitter in flight at once (syslog over TCP/TLS always sends one at a
    /// time on its one ordered connection).
    pub max_concurrent_requests: usize,
}

/// Default of `buffering.maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4;
/// Default `buffering.maxBatchedEvents`.
pub const DEFAULT_MAX_BATCHED_EVENTS: usize = 500;
/// Default `buffering.maxSize`: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;

/// The defaults and upper bounds of `buffering` for one emitter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferingLimits {
    /// `maxBatchedEvents` when not given.
    pub default_batched_events: usize,
    /// Largest `maxBatchedEvents` accepted.
    pub max_batched_events: usize,
    /// `maxSize` when not given.
    pub default_size: usize,
    /// Largest `maxSize` accepted.
    pub max_size: usize,
}

impl BufferingLimits {
    /// The limits of every type that does not set its own: 500 records or 1 MiB per request by
    /// default, at most 10,000 records and 100 MiB.
    pub const DEFAULT: BufferingLimits = BufferingLimits {
        default_batched_events: DEFAULT_MAX_BATCHED_EVENTS,
        max_batched_events: 10_000,
        default_size: DEFAULT_MAX_SIZE,
        max_size: 100 * 1024 * 1024,
    };
}

/// Validates an emitter's `buffering` against its type's limits; `label` names the emitter.
pub(crate) fn validate_buffering(
    label: &str,
    raw: Option<&RawBuffering>,
    limits: BufferingLimits,
) -> Result<Buffering, ForwarderError> {
    let mut buffering = Buffering {
        max_batched_events: limits.default_batched_events,
        max_size: limits.default_size,
        max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
    };
    let Some(b) = raw else {
        return Ok(buffering);
    };
    if let Some(n) = b.max_batched_events {
        let cap = limits.max_batched_events;
        if n == 0 || n > cap {
            return Err(err(
                format!("{label}.buffering.maxBatchedEvents"),
                format!("must be 1..={cap} (got {n})"),
            ));
        }
        buffering.max_batched_events = n;
    }
    if let Some(n) = b.max_size {
        let cap = limits.max_size;
        if !(1024..=cap).contains(&n) {
            return Err(err(
                format!("{label}.buffering.maxSize"),
                format!("must be 1024..={cap} bytes (got {n})"),
            ));
        }
        buffering.max_size = n;
    }
    if let Some(n) = b.max_concurrent_requests {
        if !(1..=64).contains(&n) {
            return Err(err(
                format!("{label}.buffering.maxConcurrentRequests"),
                format!("must be 1..=64 (got {n})"),
            ));
        }
        buffering.max_concurrent_requests = n;
    }
    Ok(buffering)
}
