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

use std::cmp::Ordering;
use std::time::Instant;

use authtrail_core::metrics::Emf;
use authtrail_core::s3key::{escape_part, hourly_key, utc_from_epoch_seconds};
use authtrail_core::{kinesis, seqnum};
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::batch::{self, Sequenced, ShardBatch};
use crate::config::Config;
use crate::error::ArchiveError;
use crate::store::{Metadata, ObjectStore, PutOutcome};

/// Metadata names (`x-amz-meta-*`) on archive and error objects.
pub const META_FIRST: &str = "first-sequence-number";
pub const META_LAST: &str = "last-sequence-number";
pub const META_COUNT: &str = "record-count";

/// Per-shard high-water marks: every item of a sink with a sequence number up to the mark is
/// stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    #[serde(default)]
    pub raw: Option<String>,
    #[serde(default)]
    pub errors: Option<String>,
}

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
}

/// The archiver: configuration and the object store.
#[derive(Debug)]
pub struct Archiver<S> {
    store: S,
    config: Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Raw,
    Errors,
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

impl<S: ObjectStore> Archiver<S> {
    pub fn new(store: S, config: Config) -> Self {
        Self { store, config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
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

    /// Handles one invocation: the raw `KinesisEvent` JSON in, the partial-batch response out,
    /// logging one summary line and emitting EMF metrics.
    pub async fn handle(
        &self,
        payload: &[u8],
        request_id: &str,
    ) -> Result<KinesisEventResponse, ArchiveError> {
        let started = Instant::now();
        let result = self.process(payload).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok((response, s)) => {
                tracing::info!(
                    records = s.records,
                    bytes_in = s.bytes_in,
                    bytes_out = s.bytes_out,
                    objects = s.objects,
                    poison_records = s.poison,
                    already_stored = s.already_stored,
                    failed_shards = s.failed_shards,
                    batch_item_failures = response.batch_item_failures.len(),
                    duration_ms,
                    "archived batch"
                );
                Emf::new("authtrail")
                    .dimension("Function", "archiver")
                    .count("Records", s.records as u64)
                    .metric("BytesIn", s.bytes_in as f64, "Bytes")
                    .metric("BytesOut", s.bytes_out as f64, "Bytes")
                    .count("Objects", s.objects as u64)
                    .count("PoisonRecords", s.poison as u64)
                    .count("AlreadyStored", s.already_stored as u64)
                    .count("FailedShards", s.failed_shards as u64)
                    .metric("DurationMs", duration_ms, "Milliseconds")
                    .property("RequestId", request_id)
                    .emit();
            }
            Err(e) => {
                tracing::error!(error = %e, duration_ms, "batch rejected");
                Emf::new("authtrail")
                    .dimension("Function", "archiver")
                    .count("RejectedBatches", 1)
                    .metric("DurationMs", duration_ms, "Milliseconds")
                    .property("RequestId", request_id)
                    .emit();
            }
        }
        result.map(|(r, _)| r)
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
        let state = match self.load_state(&state_key).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    retry_from = %first, "reading the shard state failed: batch reported for retry");
                return Some(first);
            }
        };
        let raw = self
            .store_sink(Sink::Raw, batch, &batch.goods, state.raw.clone())
            .await;
        let errors = self
            .store_sink(Sink::Errors, batch, &batch.poison, state.errors.clone())
            .await;
        for r in [&raw, &errors] {
            summary.objects += r.objects;
            summary.bytes_out += r.bytes_out;
            summary.already_stored += r.already_stored;
        }
        let new_state = ShardState {
            raw: raw.stored_through.clone(),
            errors: errors.stored_through.clone(),
        };
        let failed = raw.error.is_some() || errors.error.is_some();
        for (sink, r) in [(Sink::Raw, &raw), (Sink::Errors, &errors)] {
            if let Some(e) = &r.error {
                tracing::warn!(error = %e, ?sink, stream = %batch.stream, shard = %batch.shard,
                    first_unstored = r.first_unstored.as_deref().unwrap_or(""),
                    "storing records failed");
            }
        }
        let beyond_batch = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|s| seqnum::compare(s, &last) == Ordering::Greater)
        };
        if !failed {
            let needs_save = new_state != state
                && (beyond_batch(&new_state.raw) || beyond_batch(&new_state.errors));
            if needs_save && let Err(e) = self.save_state(&state_key, &new_state).await {
                let retry_from =
                    min_seq([raw.first_handled.as_ref(), errors.first_handled.as_ref()])
                        .unwrap_or(first);
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    %retry_from, "saving the shard state failed: batch reported for retry");
                return Some(retry_from);
            }
            return None;
        }
        // Something failed: record the progress so the retry can start at the lowest sequence
        // number not stored; when that is impossible, start again where this invocation did.
        let saved = new_state == state || self.save_state(&state_key, &new_state).await.is_ok();
        let retry_from = if saved {
            min_seq([raw.first_unstored.as_ref(), errors.first_unstored.as_ref()])
        } else {
            min_seq([raw.first_handled.as_ref(), errors.first_handled.as_ref()])
        };
        Some(retry_from.unwrap_or(first))
    }

    async fn load_state(&self, key: &str) -> Result<ShardState, ArchiveError> {
        let Some(body) = self.store.get(key).await? else {
            return Ok(ShardState::default());
        };
        match serde_json::from_slice::<ShardState>(&body) {
            Ok(s)
                if s.raw.as_deref().is_none_or(seqnum::is_valid)
                    && s.errors.as_deref().is_none_or(seqnum::is_valid) =>
            {
                Ok(s)
            }
            _ => {
                // Never block the shard on our own bookkeeping: without the mark, only a batch
                // that starts inside an object stored by a shorter retry could duplicate.
                tracing::error!(key, "shard state object is not valid: ignored");
                Ok(ShardState::default())
            }
        }
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
        sink: Sink,
        batch: &ShardBatch<'_>,
        items: &[T],
        mark: Option<String>,
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
            match self.write_from(sink, batch, items, i).await {
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

    /// Writes the object holding items `i..` of `sink` unless an object exists under its key
    /// (`If-None-Match: *`), and says what happened.
    async fn write_from<T: Sequenced>(
        &self,
        sink: Sink,
        batch: &ShardBatch<'_>,
        items: &[T],
        i: usize,
    ) -> Result<Written, ArchiveError> {
        let (Some(item), Some(last)) = (items.get(i), items.last()) else {
            return Err(ArchiveError::EmptyObject);
        };
        let (key, body, content_type) = self.object_for(sink, batch, i..items.len())?;
        let mut metadata = Metadata::new();
        metadata.insert(META_FIRST.into(), item.seq().to_string());
        metadata.insert(META_LAST.into(), last.seq().to_string());
        metadata.insert(META_COUNT.into(), (items.len() - i).to_string());
        let size = body.len();
        match self
            .store
            .put_if_absent(&key, body, content_type, &metadata)
            .await?
        {
            PutOutcome::Created => Ok(Written::Created {
                size,
                last: last.seq().to_string(),
            }),
            PutOutcome::AlreadyExists => self.already_stored(key, item.seq()).await,
        }
    }

    /// What the object already under `key` holds, from its metadata: up to which sequence
    /// number (at least `first`, the first item it was meant for) it stores the sink's items.
    async fn already_stored(&self, key: String, first: &str) -> Result<Written, ArchiveError> {
        let Some(meta) = self.store.head_metadata(&key).await? else {
            return Ok(Written::Vanished { key });
        };
        match meta.get(META_LAST) {
            Some(l) if seqnum::is_valid(l) && seqnum::compare(l, first) != Ordering::Less => {
                Ok(Written::AlreadyStored {
                    through: l.clone(),
                    key,
                })
            }
            _ => Err(ArchiveError::ForeignObject {
                bucket: self.config.bucket.clone(),
                key,
                problem: format!("has no valid {META_LAST} metadata"),
            }),
        }
    }

    /// Key, body and content type of the object holding items `range` of `sink`.
    fn object_for(
        &self,
        sink: Sink,
        batch: &ShardBatch<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<(String, Bytes, &'static str), ArchiveError> {
        match sink {
            Sink::Raw => {
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
            Sink::Errors => {
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
