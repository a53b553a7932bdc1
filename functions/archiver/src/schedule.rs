//! The scheduled close: an EventBridge rule invokes the archiver every hour, and it closes the
//! digests of every shard, also of shards that went quiet (their next batch would otherwise
//! close them, whenever it comes), and writes a heartbeat digest for every hour a shard had no
//! object, so that each shard's chain has a digest for every hour until the shard ends: a
//! verifier then tells deleted newest digests from quiet hours.

use std::collections::{BTreeMap, BTreeSet};

use authtrail_core::s3key::utc_from_epoch_seconds;
use chrono::{DateTime, Utc};

use crate::archive::Archiver;
use crate::digest;
use crate::error::ArchiveError;
use crate::signer::DigestSigner;
use crate::state;
use crate::store::ObjectStore;

/// An intent older than this (seconds) cannot belong to a running invocation (Lambda's longest
/// timeout is 900 s): the scheduled close resolves it.
pub const STALE_INTENT_SECS: i64 = 960;

/// What a scheduled close did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseSummary {
    /// Shard states read.
    pub shards: usize,
    /// Digests written.
    pub digests: usize,
    /// Shards whose close failed (logged; retried by the next close).
    pub failed_shards: usize,
}

impl<S: ObjectStore, G: DigestSigner> Archiver<S, G> {
    /// The scheduled close: for every shard state under `ARCHIVE_STATE_PREFIX`, resolves
    /// intents older than [`STALE_INTENT_SECS`] and writes the digests of the hours that ended
    /// at least `ARCHIVE_DIGEST_SETTLE_SECONDS` before `now` (the scheduled event's `time`).
    /// Every shard is tried; the first failure is returned after all of them.
    pub async fn close_due(&self, now: DateTime<Utc>) -> Result<CloseSummary, ArchiveError> {
        let mut summary = CloseSummary::default();
        let Some(settings) = self.config.digests.as_ref() else {
            tracing::info!("digests are off (no ARCHIVE_DIGEST_KEY_ID): nothing to close");
            return Ok(summary);
        };
        let before = digest::hour_of(now.timestamp() - settings.settle_secs);
        let stale_before = Utc::now().timestamp() - STALE_INTENT_SECS;
        let mut first_error = None;
        let mut closed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut start_after: Option<String> = None;
        loop {
            let keys = self
                .store
                .list_after(&self.config.state_prefix, start_after.as_deref())
                .await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                summary.shards += 1;
                match self
                    .close_shard(&key, before, stale_before, &mut closed)
                    .await
                {
                    Ok(n) => summary.digests += n,
                    Err(e) => {
                        tracing::warn!(error = %e, key, "closing the shard's digests failed");
                        summary.failed_shards += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            start_after = Some(last);
        }
        tracing::info!(
            shards = summary.shards,
            digests = summary.digests,
            failed_shards = summary.failed_shards,
            closed_before = %utc_from_epoch_seconds(before),
            "closed digests"
        );
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn close_shard(
        &self,
        state_key: &str,
        before: i64,
        stale_before: i64,
        closed: &mut BTreeMap<String, BTreeSet<String>>,
    ) -> Result<usize, ArchiveError> {
        let loaded = state::load(&self.store, state_key).await?;
        let Some(ledger) = loaded.state.ledger.as_ref() else {
            return Ok(0);
        };
        let shard_closed = !ledger.ended
            && self
                .closed_shards(&ledger.stream, closed)
                .await
                .contains(&ledger.shard);
        let current = self
            .resolve_intents(state_key, loaded, Some(stale_before))
            .await?;
        let (written, _) = self
            .close_hours(state_key, before, Some(current), shard_closed)
            .await?;
        Ok(written)
    }

    /// The closed shards of `stream`, asked once per close; none when there is no directory
    /// or it fails (logged: heartbeats then go on, which is safe).
    async fn closed_shards<'c>(
        &self,
        stream: &str,
        cache: &'c mut BTreeMap<String, BTreeSet<String>>,
    ) -> &'c BTreeSet<String> {
        if !cache.contains_key(stream) {
            let found = match &self.shards {
                Some(directory) => directory
                    .closed_shards(stream)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, stream, "listing shards failed: no shard ends in this close");
                        BTreeSet::new()
                    }),
                None => BTreeSet::new(),
            };
            cache.insert(stream.to_string(), found);
        }
        cache.entry(stream.to_string()).or_default()
    }
}
