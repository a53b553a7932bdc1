//! The checkpoint: the cursor of each kind and the lease, kept in one S3 object and written
//! only with conditional requests; its loading and saving during a run ([`load`],
//! [`HeldCheckpoint::save`]) and the stores that keep it ([`S3CheckpointStore`],
//! [`MemoryCheckpointStore`]).
//!
//! ```json
//! {"version":1,"lease":{"owner":"<uuid>","expiresAt":1739388470156},
//!  "user":{"mode":"modern","time":1739388469156,"seen":{"<id>":1739388468000}},
//!  "admin":{...},"updatedAt":"2025-02-12T19:27:50.156Z"}
//! ```
//! `time`: everything visible up to this time was written; the next run re-reads from
//! `time - settle window`. `seen`: dedupe keys (event ids, or content hashes on legacy servers)
//! of events written whose time is inside the re-read window, with their times for pruning.
//! `tally` (when the store has a [`TallyRecorder`]): what was put per minute of event time, for
//! the reconciler (see [`crate::tally`]); saved with the cursor it belongs to.
//! `pending` (Kinesis only): per kind, the put in progress, recorded before its first call and
//! replaced by the save that checkpoints its page (see [`crate::pending`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use authtrail_core::envelope::{EventKind, format_timestamp};
use authtrail_core::tally::line::ProducerTally;
use serde::{Deserialize, Serialize};

use crate::error::{CheckpointStoreError, ProducerError};
use crate::lease::Lease;
use crate::pending::PendingPuts;
use crate::tally::TallyRecorder;

/// Server flavour remembered in the cursor (the seen keys are ids or hashes accordingly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiMode {
    Modern,
    Legacy,
}

/// Where the pull of one kind stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCursor {
    /// The server flavour the cursor was written for.
    pub mode: ApiMode,
    /// Epoch ms up to which every visible event was written.
    pub time: i64,
    /// Dedupe keys of the events written inside the settle window, with their times.
    #[serde(default)]
    pub seen: HashMap<String, i64>,
}

impl KindCursor {
    /// Drops seen keys older than `before` (they are outside every future re-read window).
    pub fn prune(&mut self, before: i64) {
        self.seen.retain(|_, t| *t >= before);
    }
}

/// The checkpoint document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// The invocation running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The user events' cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<KindCursor>,
    /// The admin events' cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<KindCursor>,
    /// When the document was last saved (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// What was put per minute of event time (for the reconciler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<ProducerTally>,
    /// The puts in progress (or interrupted), per kind.
    #[serde(default, skip_serializing_if = "PendingPuts::is_empty")]
    pub pending: PendingPuts,
}

impl Checkpoint {
    /// The cursor of one kind.
    pub fn cursor(&self, kind: EventKind) -> Option<&KindCursor> {
        match kind {
            EventKind::User => self.user.as_ref(),
            EventKind::Admin => self.admin.as_ref(),
        }
    }

    /// Replaces the cursor of one kind.
    pub fn set_cursor(&mut self, kind: EventKind, cursor: KindCursor) {
        match kind {
            EventKind::User => self.user = Some(cursor),
            EventKind::Admin => self.admin = Some(cursor),
        }
    }

    /// The document as JSON bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ProducerError> {
        serde_json::to_vec(self).map_err(ProducerError::CheckpointEncode)
    }
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self {
            version: 1,
            lease: None,
            user: None,
            admin: None,
            updated_at: None,
            tally: None,
            pending: PendingPuts::default(),
        }
    }
}

/// Write condition of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The object must still have this ETag.
    IfMatch(String),
    /// The object must not exist yet.
    IfNoneMatch,
}

/// Where the checkpoint object lives.
pub trait CheckpointStore: Send + Sync {
    /// The object's bytes and ETag, or `None` when it does not exist.
    fn load(
        &self,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, String)>, CheckpointStoreError>> + Send;
    /// Writes the object if `condition` holds; returns the new ETag.
    fn save(
        &self,
        body: Vec<u8>,
        condition: Condition,
    ) -> impl Future<Output = Result<String, CheckpointStoreError>> + Send;
    /// The recorder of records put since the last save, whose tally every save of a run's
    /// checkpoint carries (`None`: no tally is kept).
    fn tally_recorder(&self) -> Option<&TallyRecorder> {
        None
    }
}

/// Reads and parses the checkpoint object: the document and its ETag, or an empty document
/// and no ETag when the object does not exist yet. An object that is not a checkpoint document
/// is an error (it is never overwritten).
pub async fn load<C: CheckpointStore>(
    store: &C,
) -> Result<(Checkpoint, Option<String>), ProducerError> {
    // A run starts (or ends after a failure) here: records noted and not saved belong to a run
    // that failed, and are put again by the next one.
    if let Some(recorder) = store.tally_recorder() {
        recorder.discard();
    }
    match store.load().await? {
        None => Ok((Checkpoint::default(), None)),
        Some((body, etag)) => {
            let cp: Checkpoint =
                serde_json::from_slice(&body).map_err(|e| ProducerError::CorruptCheckpoint {
                    line: e.line(),
                    column: e.column(),
                })?;
            Ok((cp, Some(etag)))
        }
    }
}

/// The checkpoint as a run holds it: the document as last saved and the ETag that the next
/// save must still find (every save is conditional on it).
#[derive(Debug)]
pub struct HeldCheckpoint {
    /// The document as last saved (cursors move here once their pages were committed).
    pub doc: Checkpoint,
    /// ETag of the object as last saved.
    pub etag: String,
}

/// Serializes a checkpoint with one kind's cursor substituted, without cloning the seen set.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointView<'a> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<&'a Lease>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a KindCursor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<&'a KindCursor>,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tally: Option<&'a ProducerTally>,
    #[serde(skip_serializing_if = "PendingPuts::is_empty")]
    pending: &'a PendingPuts,
}

impl HeldCheckpoint {
    /// Saves the document (its `pending` as it is in [`Self::doc`]), with `cursor`'s kind
    /// replaced by it when given, on condition that the object is unchanged since the last save. Someone else's change is
    /// [`ProducerError::LeaseLost`]. With a tally recorder, the tally saved is the last one
    /// plus the records put since.
    pub async fn save<C: CheckpointStore>(
        &mut self,
        store: &C,
        cursor: Option<(EventKind, &KindCursor)>,
    ) -> Result<(), ProducerError> {
        let (user, admin) = match cursor {
            Some((EventKind::User, c)) => (Some(c), self.doc.admin.as_ref()),
            Some((EventKind::Admin, c)) => (self.doc.user.as_ref(), Some(c)),
            None => (self.doc.user.as_ref(), self.doc.admin.as_ref()),
        };
        let now = crate::pull::now_ms();
        let staged = store.tally_recorder().map(|r| {
            let before = [self.doc.user.as_ref(), self.doc.admin.as_ref()];
            r.take_into(self.doc.tally.as_ref(), before, [user, admin], now)
        });
        let view = CheckpointView {
            version: 1,
            lease: self.doc.lease.as_ref(),
            user,
            admin,
            updated_at: format_timestamp(now),
            tally: staged.as_ref().or(self.doc.tally.as_ref()),
            pending: &self.doc.pending,
        };
        let body = serde_json::to_vec(&view).map_err(ProducerError::CheckpointEncode)?;
        match store
            .save(body, Condition::IfMatch(self.etag.clone()))
            .await
        {
            Ok(etag) => {
                self.etag = etag;
                if staged.is_some() {
                    self.doc.tally = staged;
                }
                Ok(())
            }
            Err(CheckpointStoreError::Conflict) => Err(ProducerError::LeaseLost),
            Err(e) => Err(e.into()),
        }
    }
}

/// The checkpoint in S3 (`If-Match` / `If-None-Match: *` conditional writes).
pub struct S3CheckpointStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    tally: Option<Arc<TallyRecorder>>,
}

impl S3CheckpointStore {
    /// The object `s3://{bucket}/{key}`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, key: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            key: key.to_string(),
            tally: None,
        }
    }

    /// Keeps the reconciliation tally of `recorder` in the checkpoint.
    pub fn with_tally(mut self, recorder: Arc<TallyRecorder>) -> Self {
        self.tally = Some(recorder);
        self
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

fn is_conflict<E: aws_sdk_s3::error::ProvideErrorMetadata, R>(
    err: &aws_sdk_s3::error::SdkError<E, R>,
) -> bool
where
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let code = err.code();
    matches!(
        code,
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    )
}

impl CheckpointStore for S3CheckpointStore {
    async fn load(&self) -> Result<Option<(Vec<u8>, String)>, CheckpointStoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await;
        match out {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| CheckpointStoreError::Read {
                        location: self.location(),
                        detail: format!("body: {e}"),
                    })?;
                Ok(Some((body.into_bytes().to_vec(), etag)))
            }
            Err(err) => {
                if err
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key)
                {
                    return Ok(None);
                }
                Err(CheckpointStoreError::Read {
                    location: self.location(),
                    detail: aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
                })
            }
        }
    }

    async fn save(
        &self,
        body: Vec<u8>,
        condition: Condition,
    ) -> Result<String, CheckpointStoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(body.into());
        req = match condition {
            Condition::IfMatch(etag) => req.if_match(etag),
            Condition::IfNoneMatch => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
            Err(err) if is_conflict(&err) => Err(CheckpointStoreError::Conflict),
            Err(err) => Err(CheckpointStoreError::Write {
                location: self.location(),
                detail: aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
            }),
        }
    }

    fn tally_recorder(&self) -> Option<&TallyRecorder> {
        self.tally.as_deref()
    }
}

/// In-memory store with the same conditional semantics, for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryCheckpointStore {
    inner: Mutex<Option<(Vec<u8>, u64)>>,
    /// Number of successful saves.
    pub saves: std::sync::atomic::AtomicUsize,
    /// When set, every save after this many successful ones conflicts (as if another writer
    /// had changed the object).
    pub conflict_after_saves: Mutex<Option<usize>>,
    /// When set, every save after this many successful ones fails as if the process had died
    /// before the write landed (nothing is stored, not even the lease release).
    pub crash_after_saves: Mutex<Option<usize>>,
    /// The reconciliation tally's recorder, when the test keeps a tally.
    pub tally: Option<Arc<TallyRecorder>>,
}

impl MemoryCheckpointStore {
    /// An empty store whose saves keep the tally of `recorder`.
    pub fn with_tally(recorder: Arc<TallyRecorder>) -> Self {
        Self {
            tally: Some(recorder),
            ..Self::default()
        }
    }

    /// The current object, parsed.
    pub fn current(&self) -> Option<Checkpoint> {
        let guard = self.inner.lock().ok()?;
        guard
            .as_ref()
            .and_then(|(b, _)| serde_json::from_slice(b).ok())
    }

    /// Overwrites the object unconditionally (as another writer would).
    pub fn overwrite(&self, cp: &Checkpoint) {
        if let (Ok(mut guard), Ok(body)) = (self.inner.lock(), serde_json::to_vec(cp)) {
            let version = guard.as_ref().map_or(1, |(_, v)| v + 1);
            *guard = Some((body, version));
        }
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    async fn load(&self) -> Result<Option<(Vec<u8>, String)>, CheckpointStoreError> {
        let guard = self.inner.lock().map_err(|_| CheckpointStoreError::Read {
            location: "memory".into(),
            detail: "poisoned".into(),
        })?;
        Ok(guard.as_ref().map(|(b, v)| (b.clone(), format!("\"{v}\""))))
    }

    async fn save(
        &self,
        body: Vec<u8>,
        condition: Condition,
    ) -> Result<String, CheckpointStoreError> {
        let mut guard = self.inner.lock().map_err(|_| CheckpointStoreError::Write {
            location: "memory".into(),
            detail: "poisoned".into(),
        })?;
        let limit = self.conflict_after_saves.lock().ok().and_then(|g| *g);
        if limit.is_some_and(|n| self.saves.load(std::sync::atomic::Ordering::SeqCst) >= n) {
            return Err(CheckpointStoreError::Conflict);
        }
        let crash = self.crash_after_saves.lock().ok().and_then(|g| *g);
        if crash.is_some_and(|n| self.saves.load(std::sync::atomic::Ordering::SeqCst) >= n) {
            return Err(CheckpointStoreError::Write {
                location: "memory".into(),
                detail: "simulated crash before the write".into(),
            });
        }
        let current = guard.as_ref().map(|(_, v)| format!("\"{v}\""));
        let ok = match (&condition, &current) {
            (Condition::IfNoneMatch, None) => true,
            (Condition::IfMatch(want), Some(have)) => want == have,
            _ => false,
        };
        if !ok {
            return Err(CheckpointStoreError::Conflict);
        }
        let version = guard.as_ref().map_or(1, |(_, v)| v + 1);
        *guard = Some((body, version));
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(format!("\"{version}\""))
    }

    fn tally_recorder(&self) -> Option<&TallyRecorder> {
        self.tally.as_deref()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn checkpoint_json_uses_the_documented_field_names() {
        let cp = Checkpoint {
            lease: Some(Lease {
                owner: "o".into(),
                expires_at: 5,
            }),
            user: Some(KindCursor {
                mode: ApiMode::Modern,
                time: 7,
                seen: HashMap::from([("id1".to_string(), 6)]),
            }),
            ..Checkpoint::default()
        };
        let v: serde_json::Value = serde_json::to_value(&cp).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["lease"]["expiresAt"], 5);
        assert_eq!(v["user"]["mode"], "modern");
        assert_eq!(v["user"]["seen"]["id1"], 6);
        assert!(v.get("admin").is_none());
        let back: Checkpoint = serde_json::from_value(v).unwrap();
        assert_eq!(back, cp);
    }

    #[test]
    fn pruning_drops_only_keys_before_the_window() {
        let mut c = KindCursor {
            mode: ApiMode::Legacy,
            time: 100,
            seen: HashMap::from([("a".to_string(), 10), ("b".to_string(), 90)]),
        };
        c.prune(50);
        assert_eq!(c.seen.len(), 1);
        assert!(c.seen.contains_key("b"));
    }

    #[tokio::test]
    async fn memory_store_enforces_conditions_like_s3() {
        let s = MemoryCheckpointStore::default();
        let e1 = s.save(b"1".to_vec(), Condition::IfNoneMatch).await.unwrap();
        assert!(matches!(
            s.save(b"2".to_vec(), Condition::IfNoneMatch).await,
            Err(CheckpointStoreError::Conflict)
        ));
        let e2 = s
            .save(b"2".to_vec(), Condition::IfMatch(e1.clone()))
            .await
            .unwrap();
        assert!(matches!(
            s.save(b"3".to_vec(), Condition::IfMatch(e1)).await,
            Err(CheckpointStoreError::Conflict)
        ));
        assert_eq!(s.load().await.unwrap().unwrap(), (b"2".to_vec(), e2));
    }
}
