//! The per-shard state object (`{ARCHIVE_STATE_PREFIX}{stream}-{shardId}.json`): high-water
//! marks, and with digests on the shard's ledger (objects about to be written, objects written
//! and not yet in a digest, a digest being written, the newest digest). Read and written with
//! conditional requests, so that the Kinesis invocations of a shard and the scheduled digest
//! close never lose each other's changes.

use std::cmp::Ordering;

use authtrail_core::seqnum;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::{DigestLink, DigestObject, ObjectKind};
use crate::error::ArchiveError;
use crate::store::ObjectStore;

/// Per-shard high-water marks (every item of a sink with a sequence number up to the mark is
/// stored) and, with digests on, the shard's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Archive objects: stored through this sequence number.
    #[serde(default)]
    pub raw: Option<String>,
    /// Error objects: stored through this sequence number.
    #[serde(default)]
    pub errors: Option<String>,
    /// The digest ledger (digests on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Ledger>,
}

impl ShardState {
    /// The mark of `kind`.
    pub fn mark(&self, kind: ObjectKind) -> Option<&String> {
        match kind {
            ObjectKind::Archive => self.raw.as_ref(),
            ObjectKind::Errors => self.errors.as_ref(),
        }
    }

    /// Raises the mark of `kind` to `seq` (never lowers it).
    pub fn raise_mark(&mut self, kind: ObjectKind, seq: &str) {
        let mark = match kind {
            ObjectKind::Archive => &mut self.raw,
            ObjectKind::Errors => &mut self.errors,
        };
        if mark
            .as_deref()
            .is_none_or(|m| seqnum::compare(m, seq) == Ordering::Less)
        {
            *mark = Some(seq.to_string());
        }
    }

    /// The ledger, created for `stream`/`shard` when missing.
    pub fn ledger_mut(&mut self, stream: &str, shard: &str) -> &mut Ledger {
        self.ledger.get_or_insert_with(|| Ledger {
            stream: stream.to_string(),
            shard: shard.to_string(),
            ..Ledger::default()
        })
    }
}

/// What the shard's digests still need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Stream name (for digests made by the scheduled close).
    pub stream: String,
    /// Shard id.
    pub shard: String,
    /// Objects written and not yet listed by a digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Recorded>,
    /// Objects about to be written (recorded before the write, so none is ever missed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<Intent>,
    /// A digest being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<Closing>,
    /// The newest digest of the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<DigestLink>,
    /// The newest key hour (epoch seconds) a digest of the shard covers; heartbeats follow
    /// it hour by hour (unset before the shard's first digest of this version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_through: Option<i64>,
    /// The shard is closed and its final digest (`shardEnded`) is written: no more heartbeats.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

impl Ledger {
    /// Whether `key` is pending or in the digest being written.
    pub fn holds(&self, key: &str) -> bool {
        self.pending.iter().any(|r| r.object.key == key)
            || self
                .closing
                .as_ref()
                .is_some_and(|c| c.objects.iter().any(|k| k == key))
    }
}

/// An object written and recorded: what its digest will say, and its key hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// Start of the object's key hour (epoch seconds).
    pub hour: i64,
    /// The digest entry.
    #[serde(flatten)]
    pub object: DigestObject,
}

/// An object about to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Its key.
    pub key: String,
    /// Archive or error object.
    pub kind: ObjectKind,
    /// Start of its key hour (epoch seconds).
    pub hour: i64,
    /// When the intent was recorded (epoch seconds, wall clock).
    pub at: i64,
}

/// A digest being written: decided (key and objects) before it is signed, so that two writers
/// of the same shard write the same digest once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// The digest's key.
    pub key: String,
    /// The key hour of its objects (epoch seconds).
    pub hour: i64,
    /// The keys of the pending objects it lists (none for a heartbeat).
    pub objects: Vec<String>,
    /// A heartbeat: a digest of an hour without objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heartbeat: bool,
    /// The shard's final heartbeat (`shardEnded`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

/// Reads a state object's bytes; a state that does not parse is ignored (logged), so that the
/// archiver's own bookkeeping never blocks a shard.
pub fn parse_state(key: &str, body: &[u8]) -> ShardState {
    match serde_json::from_slice::<ShardState>(body) {
        Ok(s)
            if s.raw.as_deref().is_none_or(seqnum::is_valid)
                && s.errors.as_deref().is_none_or(seqnum::is_valid) =>
        {
            s
        }
        _ => {
            tracing::error!(key, "shard state object is not valid: ignored");
            ShardState::default()
        }
    }
}

/// A state as read or written, with the ETag of that version (`None`: no state object yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versioned {
    /// The state.
    pub state: ShardState,
    /// The ETag of the object holding it.
    pub etag: Option<String>,
}

/// The state and its ETag.
pub async fn load<S: ObjectStore>(store: &S, key: &str) -> Result<Versioned, ArchiveError> {
    Ok(match store.get_versioned(key).await? {
        Some((body, etag)) => Versioned {
            state: parse_state(key, &body),
            etag: Some(etag),
        },
        None => Versioned::default(),
    })
}

/// How many conditional writes [`update`] tries before giving up.
pub const UPDATE_ATTEMPTS: usize = 8;

/// Applies `change` to the state and writes it back only if nobody wrote in between
/// (`If-Match`), reading and applying again when someone did. The first try starts from
/// `known` (the version this invocation last read or wrote) when given, saving a read.
/// `change` must give the same result when applied again to a newer state. Returns the state
/// as written (or as read, when `change` left it unchanged) and what `change` returned.
pub async fn update<S: ObjectStore, T>(
    store: &S,
    bucket: &str,
    key: &str,
    known: Option<Versioned>,
    mut change: impl FnMut(&mut ShardState) -> T,
) -> Result<(Versioned, T), ArchiveError> {
    let mut known = known;
    for _ in 0..UPDATE_ATTEMPTS {
        let read = match known.take() {
            Some(v) => v,
            None => load(store, key).await?,
        };
        let mut state = read.state.clone();
        let out = change(&mut state);
        if state == read.state {
            return Ok((read, out));
        }
        let body = serde_json::to_vec(&state).map_err(ArchiveError::Encode)?;
        match store
            .put_versioned(
                key,
                Bytes::from(body),
                "application/json",
                read.etag.as_deref(),
            )
            .await?
        {
            Some(etag) => {
                let etag = Some(etag).filter(|e| !e.is_empty());
                return Ok((Versioned { state, etag }, out));
            }
            None => tracing::info!(key, "shard state changed meanwhile: reading it again"),
        }
    }
    Err(ArchiveError::StateConflict {
        bucket: bucket.to_string(),
        key: key.to_string(),
        attempts: UPDATE_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_state_without_ledger_is_written_as_before_digests_existed() {
        let s = ShardState {
            raw: Some("12".into()),
            errors: None,
            ledger: None,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"raw":"12","errors":null}"#
        );
        assert_eq!(parse_state("k", br#"{"raw":"12"}"#), s);
    }

    #[test]
    fn marks_only_rise() {
        let mut s = ShardState::default();
        s.raise_mark(ObjectKind::Archive, "20");
        s.raise_mark(ObjectKind::Archive, "3");
        s.raise_mark(ObjectKind::Errors, "7");
        assert_eq!(s.raw.as_deref(), Some("20"));
        assert_eq!(s.errors.as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn an_update_that_loses_a_race_is_applied_again_to_the_newer_state() {
        let store = MemoryStore::new();
        let (first, ()) = update(&store, "b", "s.json", None, |s| {
            s.raise_mark(ObjectKind::Archive, "5")
        })
        .await
        .unwrap();
        let mut raced = false;
        let (state, ()) = update(&store, "b", "s.json", Some(first), |s| {
            if !raced {
                raced = true;
                // Someone else writes between this read and the write.
                let other = ShardState {
                    errors: Some("9".into()),
                    ..s.clone()
                };
                let body = serde_json::to_vec(&other).unwrap();
                block_on(store.put("s.json", Bytes::from(body), "application/json")).unwrap();
            }
            s.raise_mark(ObjectKind::Archive, "6");
        })
        .await
        .unwrap();
        assert_eq!(state.state.raw.as_deref(), Some("6"));
        assert_eq!(
            state.state.errors.as_deref(),
            Some("9"),
            "the other write is kept"
        );
        let stored = load(&store, "s.json").await.unwrap();
        assert_eq!(stored, state, "the ETag returned is the stored version's");
    }

    /// Runs a MemoryStore future, which never waits, to completion.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
