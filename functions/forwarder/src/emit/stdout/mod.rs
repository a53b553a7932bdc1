//! `stdout`: the records as JSON lines in the function's log (CloudWatch Logs on AWS).

use std::io::Write;
use std::sync::Arc;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::record::Prepared;

mod config;

pub use config::{RawStdout, StdoutConfig};

/// The stdout emitter.
pub struct StdoutEmitter {
    name: String,
}

impl StdoutEmitter {
    /// The emitter `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }
}

impl Emitter for StdoutEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_concurrent_requests(&self) -> usize {
        1 // the function log keeps the batch order
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(batch.iter().map(|p| p.json.len() + 1).sum());
            for p in batch {
                buf.extend_from_slice(p.json.as_bytes());
                buf.push(b'\n');
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(&buf).and_then(|_| out.flush()) {
                Ok(()) => all(batch.len(), Outcome::Delivered),
                Err(e) => all(
                    batch.len(),
                    Outcome::Retryable(Failure::new("stdout", e.to_string())),
                ),
            }
        })
    }
}
