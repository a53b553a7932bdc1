//! The spool: records an emitter could not take within an invocation (timeouts, connection
//! errors, 5xx, 429, and refusals an operator fixes: 401, 403, 404, 407, access denied), kept
//! in S3 per emitter, exactly as the emitter would have received them, until a redrive delivers
//! them, oldest first.
//!
//! - [`layout`]: the object keys (lexicographic order = oldest first) and the JSON line of one
//!   spooled record.
//! - [`SpoolStore`]: the four object operations the spool needs (create-if-absent, list, get,
//!   delete), so that the forwarder is tested with [`memory::MemorySpool`]; [`s3::S3Spool`] is
//!   the real one.
//! - [`redrive`]: one emitter's redrive under a lease, with the breaker's probe and the expiry
//!   of records older than `spool.maxAgeInSec` to dead letters.
//! - [`Spool`]: the store, the settings and what this warm instance knows of each emitter's
//!   spool (breaker, depth, oldest record), so that a warm instance with nothing spooled makes
//!   no S3 request.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::ForwarderError;
use crate::config::SpoolConfig;
use crate::emit::BoxFuture;

pub mod layout;
pub mod memory;
pub mod redrive;
pub mod s3;

pub use layout::SpoolLine;

/// What a create-if-absent write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created.
    Created,
    /// An object already had the key; nothing was written.
    AlreadyExists,
}

/// The object operations of the spool.
pub trait SpoolStore: Send + Sync {
    /// Creates `key` with `body` unless it exists (`If-None-Match: *`).
    fn put_new<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<PutOutcome, ForwarderError>>;
    /// Every key under `prefix`, in lexicographic order.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ForwarderError>>;
    /// The object's bytes, `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ForwarderError>>;
    /// Deletes `key` (no error when it does not exist).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ForwarderError>>;
}

/// What this warm instance knows of one emitter's spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitterSpoolState {
    /// The breaker: open after an invocation in which the emitter failed and records were
    /// spooled; closed once a redrive or a delivery succeeds again.
    pub breaker_open: bool,
    /// Records known spooled (0: nothing spooled, as far as this instance knows).
    pub depth: usize,
    /// Arrival time of the oldest record known spooled, epoch milliseconds.
    pub oldest_ms: Option<i64>,
}

impl EmitterSpoolState {
    /// Whether an invocation must look at the spool before delivering new records.
    pub fn needs_redrive(&self) -> bool {
        self.breaker_open || self.depth > 0
    }

    /// The age of the oldest record known spooled at `now_ms`, seconds (0 when none).
    pub fn oldest_age_s(&self, now_ms: i64) -> u64 {
        self.oldest_ms
            .map_or(0, |o| (now_ms.saturating_sub(o).max(0) / 1000) as u64)
    }
}

/// The spool of every emitter: the store, its key prefix, the settings, and per slot what this
/// warm instance knows.
pub struct Spool {
    /// Where spooled records are kept.
    pub store: Arc<dyn SpoolStore>,
    /// The key prefix (`SPOOL_PREFIX`, default `spool/`).
    pub prefix: String,
    /// `spool`.
    pub config: SpoolConfig,
    states: Vec<Mutex<EmitterSpoolState>>,
}

impl Spool {
    /// A spool for `slots` emitters, knowing nothing spooled yet.
    pub fn new(
        store: Arc<dyn SpoolStore>,
        prefix: &str,
        config: SpoolConfig,
        slots: usize,
    ) -> Self {
        Self {
            store,
            prefix: prefix.to_string(),
            config,
            states: (0..slots)
                .map(|_| Mutex::new(EmitterSpoolState::default()))
                .collect(),
        }
    }

    fn lock(&self, slot: usize) -> Option<MutexGuard<'_, EmitterSpoolState>> {
        self.states
            .get(slot)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What this instance knows of slot `slot`'s spool.
    pub fn state(&self, slot: usize) -> EmitterSpoolState {
        self.lock(slot).map(|g| *g).unwrap_or_default()
    }

    /// Changes what this instance knows of slot `slot`'s spool.
    pub fn update(&self, slot: usize, f: impl FnOnce(&mut EmitterSpoolState)) {
        if let Some(mut g) = self.lock(slot) {
            f(&mut g);
        }
    }
}
