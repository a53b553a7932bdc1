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
//!   spool (breaker, depth, oldest record, when it may probe next), so that a warm instance with
//!   nothing spooled makes no S3 request. The breaker is also kept in S3
//!   (`{SPOOL_PREFIX}{emitter}/.breaker`, present while open), written only when it opens or
//!   closes and read once per emitter at cold start ([`Spool::load_breakers`]), so that a new
//!   instance does not spend a retry budget on an emitter known to be down.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

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
    /// While the breaker is open: when this instance may probe the emitter next.
    pub next_probe: Option<Instant>,
    /// While the breaker is open: the time between two probes (doubled after each failed
    /// probe, up to `spool.probeMaxIntervalInSec`).
    pub probe_interval: Duration,
}

/// The longest time the cold start spends reading the breakers (all emitters together).
pub const BREAKER_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The time between probes after one more failed probe: doubled, capped at `max`.
pub fn grown_interval(current: Duration, max: Duration) -> Duration {
    current.saturating_mul(2).min(max).max(current.min(max))
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

    /// Opens slot `slot`'s breaker (its first probe one `spool.probeIntervalInSec` from now);
    /// `true` when it was closed.
    pub fn open_breaker(&self, slot: usize) -> bool {
        let interval = self.config.probe_interval;
        let mut opened = false;
        self.update(slot, |s| {
            if !s.breaker_open {
                opened = true;
                s.breaker_open = true;
                s.probe_interval = interval;
                s.next_probe = Some(Instant::now() + interval);
            }
        });
        opened
    }

    /// Closes slot `slot`'s breaker; `true` when it was open.
    pub fn close_breaker(&self, slot: usize) -> bool {
        let mut closed = false;
        self.update(slot, |s| {
            closed = s.breaker_open;
            s.breaker_open = false;
            s.next_probe = None;
        });
        closed
    }

    /// Whether this instance may probe slot `slot` now (its breaker is open and the probe
    /// interval has passed); if so the next probe is scheduled one interval later, so that a
    /// probe is claimed at most once per interval.
    pub fn claim_probe(&self, slot: usize) -> bool {
        let now = Instant::now();
        let base = self.config.probe_interval;
        let mut claimed = false;
        self.update(slot, |s| {
            if s.breaker_open && s.next_probe.is_none_or(|t| now >= t) {
                claimed = true;
                if s.probe_interval.is_zero() {
                    s.probe_interval = base;
                }
                s.next_probe = Some(now + s.probe_interval);
            }
        });
        claimed
    }

    /// A probe of slot `slot` failed: the time to the next one grows (doubled, capped).
    pub fn probe_failed(&self, slot: usize) {
        let (base, max) = (self.config.probe_interval, self.config.probe_max_interval);
        self.update(slot, |s| {
            let current = if s.probe_interval.is_zero() {
                base
            } else {
                s.probe_interval
            };
            s.probe_interval = grown_interval(current, max);
            s.next_probe = Some(Instant::now() + s.probe_interval);
        });
    }

    /// Writes the breaker of `emitter` to the store: the marker object (empty) created when it
    /// opened, deleted when it closed. A failure is logged (the marker only spares a new instance a
    /// retry budget).
    pub async fn persist_breaker(&self, emitter: &str, open: bool) {
        let key = layout::breaker_key(&self.prefix, emitter);
        let result = if open {
            // Empty: its presence is the whole message (and tools that read every object under
            // the spool prefix as JSON lines find no line in it).
            self.store.put_new(&key, Vec::new()).await.map(|_| ())
        } else {
            self.store.delete(&key).await
        };
        match result {
            Ok(()) => tracing::info!(emitter, open, "breaker recorded in the spool"),
            Err(e) => {
                tracing::warn!(emitter, open, error = %e, "breaker not recorded in the spool")
            }
        }
    }

    /// Cold start: reads the breaker of every emitter (`names`, by slot) from the store, so
    /// that an emitter known to be down is spooled to at once and probed one
    /// `spool.probeIntervalInSec` later. A failed read, or one not done within
    /// [`BREAKER_READ_TIMEOUT`] of the start (a store that does not answer must not hold the
    /// cold start up), leaves the breaker closed.
    pub async fn load_breakers(&self, names: &[&str]) {
        let end = Instant::now() + BREAKER_READ_TIMEOUT;
        for (slot, name) in names.iter().enumerate() {
            let key = layout::breaker_key(&self.prefix, name);
            let read = match tokio::time::timeout_at(end, self.store.get(&key)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(emitter = name, "breaker not read in time; taken as closed");
                    continue;
                }
            };
            match read {
                Ok(Some(_)) => {
                    self.open_breaker(slot);
                    tracing::info!(emitter = name, "breaker open (read from the spool)");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(emitter = name, error = %e, "breaker not read; taken as closed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::spool::memory::MemorySpool;

    fn spool(store: Arc<MemorySpool>, slots: usize) -> Spool {
        let config = SpoolConfig {
            probe_interval: Duration::from_secs(60),
            probe_max_interval: Duration::from_secs(600),
            ..SpoolConfig::default()
        };
        Spool::new(store, "spool/", config, slots)
    }

    #[test]
    fn the_probe_interval_doubles_after_each_failed_probe_and_stops_at_the_cap() {
        let max = Duration::from_secs(600);
        let mut d = Duration::from_secs(60);
        let mut seen = vec![d.as_secs()];
        for _ in 0..6 {
            d = grown_interval(d, max);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, vec![60, 120, 240, 480, 600, 600, 600]);
        let s = spool(Arc::new(MemorySpool::new()), 1);
        assert!(s.open_breaker(0));
        assert_eq!(s.state(0).probe_interval, Duration::from_secs(60));
        for _ in 0..5 {
            s.probe_failed(0);
        }
        assert_eq!(s.state(0).probe_interval, max);
    }

    #[test]
    fn a_probe_is_claimed_at_most_once_per_interval_and_only_while_the_breaker_is_open() {
        let s = spool(Arc::new(MemorySpool::new()), 1);
        assert!(!s.claim_probe(0), "closed: no probe");
        s.open_breaker(0);
        assert!(!s.claim_probe(0), "not before one interval after opening");
        s.update(0, |st| st.next_probe = Some(Instant::now()));
        assert!(s.claim_probe(0));
        assert!(
            !s.claim_probe(0),
            "claimed: the next one is an interval later"
        );
        assert!(s.close_breaker(0));
        assert!(!s.close_breaker(0));
    }

    #[tokio::test]
    async fn the_breaker_written_when_it_opens_is_read_back_at_cold_start_and_gone_once_closed() {
        let store = Arc::new(MemorySpool::new());
        let warm = spool(store.clone(), 2);
        assert!(warm.open_breaker(1));
        warm.persist_breaker("down siem", true).await;
        assert!(store.objects().contains_key("spool/down%20siem/.breaker"));

        let cold = spool(store.clone(), 2);
        cold.load_breakers(&["up", "down siem"]).await;
        assert!(!cold.state(0).breaker_open);
        let st = cold.state(1);
        assert!(st.breaker_open && st.needs_redrive());
        assert!(st.next_probe.is_some_and(|t| t > Instant::now()));

        assert!(cold.close_breaker(1));
        cold.persist_breaker("down siem", false).await;
        let again = spool(store.clone(), 2);
        again.load_breakers(&["up", "down siem"]).await;
        assert!(!again.state(1).breaker_open);
    }
}
