//! The handler: one Kinesis batch in, archive objects (exactly once) and a partial-batch
//! response out.
//!
//! # Exactly once
//!
//! Records go to two sinks: archive lines (`ARCHIVE_PREFIX`) and poison records
//! (`ARCHIVE_ERROR_PREFIX`). For each sink, one object holds a run of consecutive items of the
//! shard; its key is derived from its first item only (arrival hour, sequence number), so a
//! retry that starts at the same record collides with it on purpose. Writes use
//! `If-None-Match: *`; on a collision the stored object's metadata says up to which sequence
//! number that sink is stored, those items are skipped and the rest goes under the key of the
//! first item not yet stored (repeating while that exists too).
//!
//! A retried batch can be shorter than the object already stored, so the next batch would start
//! in the middle of it where no key collides. The handler notices (the stored object ends after
//! the batch) and writes a per-shard high-water mark (`ARCHIVE_STATE_PREFIX`), which every batch
//! reads first to drop what is already stored. The same mark records progress when a batch fails
//! half-way, so the handler can report the lowest sequence number not stored; if even that
//! write fails it reports the first record it handled, and the retry, starting at the same
//! record, collides with what it stored.
//!
//! With digests on (`ARCHIVE_DIGEST_KEY_ID`), every write is journalled in the shard state
//! before and after it, and hours the shard has moved past are closed into signed digests
//! ([`crate::ledger`]); a scheduled event closes the hours of quiet shards.

use std::cmp::Ordering;
use std::sync::Arc;

use authtrail_core::s3key::{escape_part, hourly_key, utc_from_epoch_seconds};
use authtrail_core::{kinesis, seqnum};
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;

use crate::batch::{self, Sequenced, ShardBatch};
use crate::config::Config;
use crate::digest::{self, DigestObject, META_PREVIOUS_LAST, ObjectKind};
use crate::error::ArchiveError;
use crate::ledger::Journal;
use crate::shards::ShardDirectory;
use crate::signer::{DigestSigner, NoSigner};
use crate::state::{self, Recorded, ShardState};
use crate::store::{Metadata, ObjectStore, PutOutcome};

/// Metadata names (`x-amz-meta-*`) on archive and error objects.
pub const META_FIRST: &str = "first-sequence-number";
pub const META_LAST: &str = "last-sequence-number";
pub const META_COUNT: &str = "record-count";

/// Counts of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub objects: usize,
    pub poison: usize,
    /// Records found already stored (retries).
    pub already_stored: usize,
    /// Shards whose batch is reported for retry.
    pub failed_shards: usize,
    /// Digests written (hours the shards moved past).
    pub digests: usize,
    /// Shards whose digests could not be written (they stay pending for the next try).
    pub digest_failures: usize,
}

/// The archiver: configuration, the object store, the digest signer (`NoSigner` without
/// digests), and where the scheduled close learns which shards are closed (none known
/// without one: heartbeats then never stop).
#[derive(Debug)]
pub struct Archiver<S, G = NoSigner> {
    pub(crate) store: S,
    pub(crate) config: Config,
    pub(crate) signer: Option<G>,
    pub(crate) shards: Option<Arc<dyn ShardDirectory>>,
}

/// What writing one object of a sink did.
#[derive(Debug)]
enum Written {
    /// The object was created; it holds the items up to `last`.
    Created { size: usize, last: String },
    /// An object was already under `key`; it holds the sink's items up to `through`.
    AlreadyStored { key: String, through: String },
    /// An object was under `key` when writing but not when reading its metadata.
    Vanished { key: String },
}

#[derive(Debug, Default)]
struct SinkResult {
    /// Sequence number of the first item this invocation handled (after the high-water mark).
    first_handled: Option<String>,
    /// Highest sequence number of the sink known stored (all items up to it are).
    stored_through: Option<String>,
    /// First item not stored, when the sink failed.
    first_unstored: Option<String>,
    error: Option<ArchiveError>,
    objects: usize,
    bytes_out: usize,
    already_stored: usize,
}

/// Where a shard's batch must be retried from, if anywhere: nowhere when everything is stored
/// and recorded; from where this invocation started when the state could not record its
/// progress (or the retry would start inside an object where no key collides); else from the
/// lowest sequence number not stored.
fn retry_point(
    failed: bool,
    saved: bool,
    [raw, errors]: [&SinkResult; 2],
    first: String,
) -> Option<String> {
    let handled = || min_seq([raw.first_handled.as_ref(), errors.first_handled.as_ref()]);
    match (failed, saved) {
        (false, true) => None,
        (_, false) => Some(handled().unwrap_or(first)),
        (true, true) => Some(
            min_seq([raw.first_unstored.as_ref(), errors.first_unstored.as_ref()]).unwrap_or(first),
        ),
    }
}

fn max_seq(a: Option<String>, b: &str) -> Option<String> {
    match a {
        Some(a) if seqnum::compare(&a, b) != Ordering::Less => Some(a),
        _ => Some(b.to_string()),
    }
}

fn min_seq<'s>(seqs: impl IntoIterator<Item = Option<&'s String>>) -> Option<String> {
    seqs.into_iter()
        .flatten()
        .min_by(|a, b| seqnum::compare(a, b))
        .cloned()
}

impl<S: ObjectStore> Archiver<S, NoSigner> {
    /// An archiver without a digest signer.
    pub fn new(store: S, config: Config) -> Self {
        Self {
            store,
            config,
            signer: None,
            shards: None,
        }
    }
}

impl<S: ObjectStore, G: DigestSigner> Archiver<S, G> {
    /// An archiver whose digests (when `config.digests` is set) are signed by `signer`.
    pub fn with_signer(store: S, config: Config, signer: Option<G>) -> Self {
        Self {
            store,
            config,
            signer,
            shards: None,
        }
    }

    /// The same archiver, learning closed shards from `shards` (the scheduled close stops a
    /// closed shard's heartbeats with a final `shardEnded` digest).
    pub fn with_shard_directory(mut self, shards: Arc<dyn ShardDirectory>) -> Self {
        self.shards = Some(shards);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The digest signer, if any.
    pub fn signer(&self) -> Option<&G> {
        self.signer.as_ref()
    }

    /// The archive key of an object whose first record is `seq` and arrived at `arrival`
    /// (epoch seconds), Contract 2: `{prefix}{yyyy}/{MM}/{dd}/{HH}/{stream}-{shard}-{seq}.jsonl.gz`.
    /// The parts are escaped ([`escape_part`]), which leaves real names as they are.
    pub fn archive_key(&self, stream: &str, shard: &str, seq: &str, arrival: i64) -> String {
        let extension = format!(".{}", self.config.compression.extension());
        hourly_key(
            &self.config.prefix,
            utc_from_epoch_seconds(arrival),
            &[stream, shard, seq],
            &extension,
        )
    }

    /// The key of an error object whose first poison record is `seq`.
    pub fn error_key(&self, stream: &str, shard: &str, seq: &str, arrival: i64) -> String {
        hourly_key(
            &self.config.error_prefix,
            utc_from_epoch_seconds(arrival),
            &[stream, shard, seq],
            ".jsonl",
        )
    }

    /// The key of a shard's high-water mark object.
    pub fn state_key(&self, stream: &str, shard: &str) -> String {
        format!(
            "{}{}-{}.json",
            self.config.state_prefix,
            escape_part(stream),
            escape_part(shard)
        )
    }

    /// Processes the payload without logging: the response and the counts.
    pub async fn process(
        &self,
        payload: &[u8],
    ) -> Result<(KinesisEventResponse, Summary), ArchiveError> {
        let event = kinesis::parse(payload)?;
        let mut response = KinesisEventResponse::default();
        let mut summary = Summary::default();
        for group in batch::group_by_shard(&event.records) {
            let batch = batch::build(group)?;
            summary.records += batch.all_seqs.len();
            summary.bytes_in += batch.bytes_in;
            summary.poison += batch.poison.len();
            if let Some(retry_from) = self.store_shard(&batch, &mut summary).await {
                summary.failed_shards += 1;
                response.add_failure(retry_from);
            }
        }
        Ok((response, summary))
    }

    /// Stores one shard's batch; returns the sequence number to retry from, if any.
    async fn store_shard(&self, batch: &ShardBatch<'_>, summary: &mut Summary) -> Option<String> {
        let first = batch.all_seqs.first()?.to_string();
        let last = batch.all_seqs.last()?.to_string();
        let state_key = self.state_key(&batch.stream, &batch.shard);
        let begun = match self.begin_shard(&state_key, batch, summary).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    retry_from = %first, "reading the shard state failed: batch reported for retry");
                return Some(first);
            }
        };
        let state = begun.state.clone();
        let mut journal = self
            .config
            .digests
            .as_ref()
            .map(|_| Journal::new(state_key.clone(), &batch.stream, &batch.shard, Some(begun)));
        let raw = self
            .store_sink(
                ObjectKind::Archive,
                batch,
                &batch.goods,
                state.raw.clone(),
                &mut journal,
            )
            .await;
        let errors = self
            .store_sink(
                ObjectKind::Errors,
                batch,
                &batch.poison,
                state.errors.clone(),
                &mut journal,
            )
            .await;
        for r in [&raw, &errors] {
            summary.objects += r.objects;
            summary.bytes_out += r.bytes_out;
            summary.already_stored += r.already_stored;
        }
        let failed = raw.error.is_some() || errors.error.is_some();
        for (kind, r) in [(ObjectKind::Archive, &raw), (ObjectKind::Errors, &errors)] {
            if let Some(e) = &r.error {
                tracing::warn!(error = %e, sink = kind.as_str(), stream = %batch.stream,
                    shard = %batch.shard, first_unstored = r.first_unstored.as_deref().unwrap_or(""),
                    "storing records failed");
            }
        }
        let saved = match journal.as_mut() {
            Some(journal) => {
                let marks = [
                    (ObjectKind::Archive, raw.stored_through.as_ref()),
                    (ObjectKind::Errors, errors.stored_through.as_ref()),
                ];
                match journal.finish(self, marks).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                            "recording the written objects in the shard state failed");
                        false
                    }
                }
            }
            None => {
                self.save_marks(&state_key, state, [&raw, &errors], &last, failed)
                    .await
            }
        };
        let retry_from = retry_point(failed, saved, [&raw, &errors], first);
        if !failed && let Some(seq) = &retry_from {
            tracing::warn!(stream = %batch.stream, shard = %batch.shard, retry_from = %seq,
                "saving the shard state failed: batch reported for retry");
        }
        retry_from
    }

    /// Without digests: saves the high-water marks when the batch needs them (a stored object
    /// ends after the batch, or a sink failed half-way). Returns whether the state is as it
    /// must be.
    async fn save_marks(
        &self,
        state_key: &str,
        state: ShardState,
        [raw, errors]: [&SinkResult; 2],
        last: &str,
        failed: bool,
    ) -> bool {
        let new_state = ShardState {
            raw: raw.stored_through.clone(),
            errors: errors.stored_through.clone(),
            ledger: state.ledger.clone(),
        };
        if new_state == state {
            return true;
        }
        let beyond_batch = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|s| seqnum::compare(s, last) == Ordering::Greater)
        };
        if !failed && !beyond_batch(&new_state.raw) && !beyond_batch(&new_state.errors) {
            return true;
        }
        self.save_state(state_key, &new_state).await.is_ok()
    }

    pub(crate) async fn load_state(&self, key: &str) -> Result<ShardState, ArchiveError> {
        Ok(match self.store.get(key).await? {
            Some(body) => state::parse_state(key, &body),
            None => ShardState::default(),
        })
    }

    async fn save_state(&self, key: &str, state: &ShardState) -> Result<(), ArchiveError> {
        let body = serde_json::to_vec(state).map_err(ArchiveError::Encode)?;
        self.store
            .put(key, Bytes::from(body), "application/json")
            .await?;
        Ok(())
    }

    /// Stores the items of one sink exactly once, starting after the high-water mark.
    async fn store_sink<T: Sequenced>(
        &self,
        kind: ObjectKind,
        batch: &ShardBatch<'_>,
        items: &[T],
        mark: Option<String>,
        journal: &mut Option<Journal>,
    ) -> SinkResult {
        let n = items.len();
        let mut i = match &mark {
            Some(m) => {
                items.partition_point(|it| seqnum::compare(it.seq(), m) != Ordering::Greater)
            }
            None => 0,
        };
        let mut result = SinkResult {
            already_stored: i,
            first_handled: items.get(i).map(|it| it.seq().to_string()),
            stored_through: mark,
            ..SinkResult::default()
        };
        // A vanished object (deleted, or a non-atomic emulator) is retried a few times.
        let mut vanished = 0;
        while i < n {
            let previous = result.stored_through.clone();
            match self
                .write_from(kind, batch, items, i, previous, journal)
                .await
            {
                Ok(Written::Created { size, last }) => {
                    result.objects += 1;
                    result.bytes_out += size;
                    result.stored_through = max_seq(result.stored_through.take(), &last);
                    i = n;
                }
                Ok(Written::AlreadyStored { key, through }) => {
                    let j = i + items[i..].partition_point(|it| {
                        seqnum::compare(it.seq(), &through) != Ordering::Greater
                    });
                    tracing::info!(
                        key,
                        stored_last = through,
                        skipped = j - i,
                        "object already stored: skipping what it holds"
                    );
                    result.already_stored += j - i;
                    result.stored_through = max_seq(result.stored_through.take(), &through);
                    i = j;
                }
                Ok(Written::Vanished { .. }) if vanished < 3 => vanished += 1,
                Ok(Written::Vanished { key }) => {
                    result.error = Some(ArchiveError::ForeignObject {
                        bucket: self.config.bucket.clone(),
                        key,
                        problem: "keeps vanishing between the write and the read".into(),
                    });
                    break;
                }
                Err(e) => {
                    result.error = Some(e);
                    break;
                }
            }
        }
        if result.error.is_some() {
            result.first_unstored = items.get(i).map(|it| it.seq().to_string());
        }
        result
    }

    /// Writes the object holding items `i..` of `kind` unless an object exists under its key
    /// (`If-None-Match: *`), and says what happened. With a journal, the write is recorded as
    /// an intent before and the object after; `previous` (the last sequence number of the
    /// previous object of the shard and kind) goes into its metadata.
    async fn write_from<T: Sequenced>(
        &self,
        kind: ObjectKind,
        batch: &ShardBatch<'_>,
        items: &[T],
        i: usize,
        previous: Option<String>,
        journal: &mut Option<Journal>,
    ) -> Result<Written, ArchiveError> {
        let (Some(item), Some(last)) = (items.get(i), items.last()) else {
            return Err(ArchiveError::EmptyObject);
        };
        let (key, body, content_type) = self.object_for(kind, batch, i..items.len())?;
        let count = items.len() - i;
        let mut metadata = Metadata::new();
        metadata.insert(META_FIRST.into(), item.seq().to_string());
        metadata.insert(META_LAST.into(), last.seq().to_string());
        metadata.insert(META_COUNT.into(), count.to_string());
        let hour = digest::hour_of(item.arrival());
        if let Some(journal) = journal.as_mut() {
            if let Some(p) = &previous {
                metadata.insert(META_PREVIOUS_LAST.into(), p.clone());
            }
            journal.intend(self, &key, kind, hour).await?;
        }
        let (sha256_hex, sha256_base64) = digest::sha256_hex_and_base64(&body);
        let size = body.len();
        match self
            .store
            .put_if_absent(&key, body, content_type, &metadata, &sha256_base64)
            .await?
        {
            PutOutcome::Created => {
                if let Some(journal) = journal.as_mut() {
                    journal.record(Recorded {
                        hour,
                        object: DigestObject {
                            key,
                            kind,
                            sha256: sha256_hex,
                            size: size as u64,
                            record_count: count as u64,
                            first_sequence_number: item.seq().to_string(),
                            last_sequence_number: last.seq().to_string(),
                            previous_last_sequence_number: previous,
                        },
                    });
                }
                Ok(Written::Created {
                    size,
                    last: last.seq().to_string(),
                })
            }
            PutOutcome::AlreadyExists => {
                self.already_stored(key, kind, hour, item.seq(), journal)
                    .await
            }
        }
    }

    /// What the object already under `key` holds, from its metadata: up to which sequence
    /// number (at least `first`, the first item it was meant for) it stores the sink's items.
    /// With a journal, the object is recorded too.
    async fn already_stored(
        &self,
        key: String,
        kind: ObjectKind,
        hour: i64,
        first: &str,
        journal: &mut Option<Journal>,
    ) -> Result<Written, ArchiveError> {
        let Some(head) = self.store.head(&key).await? else {
            return Ok(Written::Vanished { key });
        };
        match head.metadata.get(META_LAST) {
            Some(l) if seqnum::is_valid(l) && seqnum::compare(l, first) != Ordering::Less => {
                let through = l.clone();
                if let Some(journal) = journal.as_mut() {
                    journal.record(self.recorded_from_head(&key, kind, hour, head).await?);
                }
                Ok(Written::AlreadyStored { through, key })
            }
            _ => Err(ArchiveError::ForeignObject {
                bucket: self.config.bucket.clone(),
                key,
                problem: format!("has no valid {META_LAST} metadata"),
            }),
        }
    }

    /// Key, body and content type of the object holding items `range` of `kind`.
    fn object_for(
        &self,
        kind: ObjectKind,
        batch: &ShardBatch<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<(String, Bytes, &'static str), ArchiveError> {
        match kind {
            ObjectKind::Archive => {
                let first = batch
                    .goods
                    .get(range.start)
                    .ok_or(ArchiveError::EmptyObject)?;
                Ok((
                    self.archive_key(&batch.stream, &batch.shard, &first.seq, first.arrival),
                    batch::archive_body(batch, range, self.config.compression)?,
                    self.config.compression.content_type(),
                ))
            }
            ObjectKind::Errors => {
                let first = batch
                    .poison
                    .get(range.start)
                    .ok_or(ArchiveError::EmptyObject)?;
                Ok((
                    self.error_key(&batch.stream, &batch.shard, &first.seq, first.arrival),
                    batch::error_body(batch, range)?,
                    "application/x-ndjson",
                ))
            }
        }
    }
}
