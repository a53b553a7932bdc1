//! Emitters: one delivery attempt of a chunk of prepared records to one destination. Retries,
//! backoff, quorum and dead-lettering live in [`crate::forward`], so they are tested with fakes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::EmitterType;
use crate::record::Prepared;

pub mod firehose;
pub mod http;
pub mod stdout;
pub mod syslog;
pub mod tls;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one record was not delivered by one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status (`"503"`), or a short word for other failures (`"timeout"`, `"connect"`,
    /// `"too-large"`, an AWS error code).
    pub status: String,
    /// The receiver's answer or the error text (truncated; never contains secrets).
    pub text: String,
    /// The receiver asked to wait this long before retrying (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(status: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            text: truncate(text.into(), MAX_RESPONSE_TEXT),
            retry_after: None,
        }
    }
}

/// Longest response text kept for logs and the dead-letter trail.
pub const MAX_RESPONSE_TEXT: usize = 1024;

pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The result of one attempt for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Timeouts, connection errors, 429, 5xx: try again later.
    Retryable(Failure),
    /// The receiver refused the record for good (other 4xx, item-level mapping errors,
    /// too large for the transport): dead-letter it.
    Permanent(Failure),
    /// The receiver refused the whole request for good because of its content (HTTP 400, 413,
    /// 422), without saying which records it objects to. For a single record this is a
    /// permanent refusal; a larger request is split and its halves sent again.
    Rejected(Failure),
}

/// A destination. `emit` makes one attempt for a chunk that already fits the emitter's
/// `buffering` limits and returns one outcome per record, in order.
pub trait Emitter: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> EmitterType;
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>>;
    /// Requests this emitter can usefully have in flight at once (syslog: one ordered
    /// connection); `buffering.maxConcurrentRequests` applies below it.
    fn max_concurrent_requests(&self) -> usize {
        usize::MAX
    }
    /// Bytes this record adds to one request (for `buffering.maxSize`).
    fn size_hint(&self, record: &Prepared) -> usize {
        record.json.len() + 1
    }
}

/// The same outcome for every record of a chunk.
pub fn all(n: usize, outcome: Outcome) -> Vec<Outcome> {
    vec![outcome; n]
}
