//! The handler: one Kinesis batch in, Parquet objects in the Security Lake bucket (exactly once)
//! and a partial-batch response out.
//!
//! # Exactly once
//!
//! The records of a shard's batch go to sinks ([`SinkId`]): one per (OCSF class, event day),
//! written as Parquet under that class's custom source and day, and one for poison records.
//! Within a sink, one object holds a run of consecutive items of the shard; its key depends on
//! its first item only ([`crate::keys`]), so a retry that starts at the same record collides
//! with it on purpose. Writes use `If-None-Match: *`; on a collision the stored object's
//! metadata says up to which sequence number that sink is stored, those items are skipped and
//! the rest goes under the key of the first item not yet stored (repeating while that exists
//! too). This is the archiver's scheme with more sinks.
//!
//! A retried batch can be shorter than what an earlier attempt stored, so the next batch could
//! start inside a stored object where no key collides. The handler notices (a stored object
//! ends after the batch) and writes per-sink high-water marks in a per-shard state object,
//! which every batch reads first (one GET, usually a 404) to drop what is already stored. The
//! same marks record progress when a batch fails half-way, so the handler reports the lowest
//! sequence number not stored; if even that write fails it reports the first record it handled,
//! and the retry, starting there, collides with what it stored.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Instant;

use authtrail_core::metrics::Emf;
use authtrail_core::{kinesis, seqnum};
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::batch::{self, Sequenced, ShardBatch, SinkId};
use crate::config::Config;
use crate::encode;
use crate::error::SecurityLakeError;
use crate::keys;
use crate::store::{Metadata, ObjectStore, PutOutcome};

/// Metadata names (`x-amz-meta-*`) on data and error objects (the archiver's names).
pub const META_FIRST: &str = "first-sequence-number";
/// The last record's sequence number.
pub const META_LAST: &str = "last-sequence-number";
/// The number of records (rows) in the object.
pub const META_COUNT: &str = "record-count";

/// `Content-Type` of the Parquet objects.
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// Per-shard high-water marks: every item of a sink with a sequence number up to its mark is
/// stored. Sinks are named as [`SinkId`] displays them (`3002/20250212`, `errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Mark per sink.
    #[serde(default)]
    pub marks: BTreeMap<String, String>,
}

/// Counts of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records in the event.
    pub records: usize,
    /// Records mapped to OCSF rows.
    pub rows: usize,
    /// Records that are not JSON objects.
    pub poison: usize,
    /// Record bytes in (decoded).
    pub bytes_in: usize,
    /// Bytes written (Parquet and error objects).
    pub bytes_out: usize,
    /// Objects written.
    pub objects: usize,
    /// Items found already stored (retries).
    pub already_stored: usize,
    /// Shards whose batch is reported for retry.
    pub failed_shards: usize,
    /// OCSF attributes moved to `unmapped.ocsf_overflow`.
    pub overflow: usize,
}

/// The writer: configuration and the object store.
#[derive(Debug)]
pub struct Writer<S> {
    store: S,
    config: Config,
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
    /// Sequence number of the first item this invocation handled (after the mark).
    first_handled: Option<String>,
    /// Highest sequence number of the sink known stored.
    stored_through: Option<String>,
    /// First item not stored, when the sink failed.
    first_unstored: Option<String>,
    error: Option<SecurityLakeError>,
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

impl<S: ObjectStore> Writer<S> {
    /// A writer on `store` with `config`.
    pub fn new(store: S, config: Config) -> Self {
        Self { store, config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Handles one invocation: the raw `KinesisEvent` JSON in, the partial-batch response out,
    /// logging one summary line and emitting EMF metrics.
    pub async fn handle(
        &self,
        payload: &[u8],
        request_id: &str,
    ) -> Result<KinesisEventResponse, SecurityLakeError> {
        let started = Instant::now();
        let result = self.process(payload).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let emf = Emf::new("authtrail")
            .dimension("Function", "securitylake")
            .metric("DurationMs", duration_ms, "Milliseconds")
            .property("RequestId", request_id);
        match &result {
            Ok((response, s)) => {
                tracing::info!(
                    records = s.records,
                    rows = s.rows,
                    poison_records = s.poison,
                    bytes_in = s.bytes_in,
                    bytes_out = s.bytes_out,
                    objects = s.objects,
                    already_stored = s.already_stored,
                    failed_shards = s.failed_shards,
                    overflow_attributes = s.overflow,
                    batch_item_failures = response.batch_item_failures.len(),
                    duration_ms,
                    "wrote batch to security lake"
                );
                emf.count("Records", s.records as u64)
                    .count("Rows", s.rows as u64)
                    .count("PoisonRecords", s.poison as u64)
                    .metric("BytesIn", s.bytes_in as f64, "Bytes")
                    .metric("BytesOut", s.bytes_out as f64, "Bytes")
                    .count("Objects", s.objects as u64)
                    .count("AlreadyStored", s.already_stored as u64)
                    .count("FailedShards", s.failed_shards as u64)
                    .count("OverflowAttributes", s.overflow as u64)
                    .emit();
            }
            Err(e) => {
                tracing::error!(error = %e, duration_ms, "batch rejected");
                emf.count("RejectedBatches", 1).emit();
            }
        }
        result.map(|(r, _)| r)
    }

    /// Processes the payload without logging: the response and the counts.
    pub async fn process(
        &self,
        payload: &[u8],
    ) -> Result<(KinesisEventResponse, Summary), SecurityLakeError> {
        let event = kinesis::parse(payload)?;
        let mut response = KinesisEventResponse::default();
        let mut summary = Summary::default();
        for group in batch::group_by_shard(&event.records) {
            let batch = batch::build(group)?;
            summary.records += batch.all_seqs.len();
            summary.rows += batch.data.values().map(Vec::len).sum::<usize>();
            summary.poison += batch.poison.len();
            summary.bytes_in += batch.bytes_in;
            summary.overflow += batch.overflow;
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
        let state_key = keys::state_key(&self.config, &batch.stream, &batch.shard);
        let state = match self.load_state(&state_key).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    retry_from = %first, "reading the shard state failed: batch reported for retry");
                return Some(first);
            }
        };
        let mut results = Vec::new();
        for (sink, rows) in &batch.data {
            let mark = state.marks.get(&sink.to_string()).cloned();
            results.push((*sink, self.store_sink(*sink, batch, rows, mark).await));
        }
        if !batch.poison.is_empty() {
            let mark = state.marks.get(&SinkId::Errors.to_string()).cloned();
            let r = self
                .store_sink(SinkId::Errors, batch, &batch.poison, mark)
                .await;
            results.push((SinkId::Errors, r));
        }
        let mut new_state = ShardState {
            marks: state
                .marks
                .iter()
                .filter(|(_, m)| seqnum::compare(m, &first) != Ordering::Less)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut failed = false;
        for (sink, r) in &results {
            summary.objects += r.objects;
            summary.bytes_out += r.bytes_out;
            summary.already_stored += r.already_stored;
            if let Some(through) = &r.stored_through {
                new_state.marks.insert(sink.to_string(), through.clone());
            }
            if let Some(e) = &r.error {
                failed = true;
                tracing::warn!(error = %e, sink = %sink, stream = %batch.stream, shard = %batch.shard,
                    first_unstored = r.first_unstored.as_deref().unwrap_or(""),
                    "storing records failed");
            }
        }
        self.finish_shard(batch, &state_key, (&state, &new_state), &results, failed)
            .await
    }

    /// Saves the marks when they are needed and says where a failed batch resumes.
    async fn finish_shard(
        &self,
        batch: &ShardBatch<'_>,
        state_key: &str,
        (state, new_state): (&ShardState, &ShardState),
        results: &[(SinkId, SinkResult)],
        failed: bool,
    ) -> Option<String> {
        let first = batch.all_seqs.first()?.to_string();
        let last = batch.all_seqs.last()?;
        let handled = || min_seq(results.iter().map(|(_, r)| r.first_handled.as_ref()));
        if !failed {
            let beyond = new_state
                .marks
                .values()
                .any(|m| seqnum::compare(m, last) == Ordering::Greater);
            if beyond
                && new_state != state
                && let Err(e) = self.save_state(state_key, new_state).await
            {
                let retry_from = handled().unwrap_or(first);
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    %retry_from, "saving the shard state failed: batch reported for retry");
                return Some(retry_from);
            }
            return None;
        }
        // Something failed: record the progress so the retry can start at the lowest sequence
        // number not stored; when that is impossible, start again where this invocation did.
        let saved = new_state == state || self.save_state(state_key, new_state).await.is_ok();
        let retry_from = if saved {
            min_seq(results.iter().map(|(_, r)| r.first_unstored.as_ref()))
        } else {
            handled()
        };
        Some(retry_from.unwrap_or(first))
    }

    async fn load_state(&self, key: &str) -> Result<ShardState, SecurityLakeError> {
        let Some(body) = self.store.get(&self.config.state_bucket, key).await? else {
            return Ok(ShardState::default());
        };
        match serde_json::from_slice::<ShardState>(&body) {
            Ok(s) if s.marks.values().all(|m| seqnum::is_valid(m)) => Ok(s),
            _ => {
                // Never block the shard on our own bookkeeping: without the marks, only a batch
                // that starts inside an object stored by a longer earlier attempt could
                // duplicate.
                tracing::error!(key, "shard state object is not valid: ignored");
                Ok(ShardState::default())
            }
        }
    }

    async fn save_state(&self, key: &str, state: &ShardState) -> Result<(), SecurityLakeError> {
        let body = serde_json::to_vec(state).map_err(SecurityLakeError::Encode)?;
        self.store
            .put(
                &self.config.state_bucket,
                key,
                Bytes::from(body),
                "application/json",
            )
            .await?;
        Ok(())
    }

    /// Stores the items of one sink exactly once, starting after its mark.
    async fn store_sink<T: Sequenced>(
        &self,
        sink: SinkId,
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
                    result.error = Some(SecurityLakeError::ForeignObject {
                        bucket: self.bucket_of(sink).to_string(),
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

    fn bucket_of(&self, sink: SinkId) -> &str {
        match sink {
            SinkId::Data { .. } => &self.config.bucket,
            SinkId::Errors => &self.config.state_bucket,
        }
    }

    /// Writes the object holding items `i..` of `sink` unless an object exists under its key
    /// (`If-None-Match: *`), and says what happened.
    async fn write_from<T: Sequenced>(
        &self,
        sink: SinkId,
        batch: &ShardBatch<'_>,
        items: &[T],
        i: usize,
    ) -> Result<Written, SecurityLakeError> {
        let (Some(item), Some(last)) = (items.get(i), items.last()) else {
            return Err(SecurityLakeError::EmptyObject);
        };
        let (key, body, content_type) = self.object_for(sink, batch, i..items.len())?;
        let mut metadata = Metadata::new();
        metadata.insert(META_FIRST.into(), item.seq().to_string());
        metadata.insert(META_LAST.into(), last.seq().to_string());
        metadata.insert(META_COUNT.into(), (items.len() - i).to_string());
        let size = body.len();
        let bucket = self.bucket_of(sink);
        match self
            .store
            .put_if_absent(bucket, &key, body, content_type, &metadata)
            .await?
        {
            PutOutcome::Created => Ok(Written::Created {
                size,
                last: last.seq().to_string(),
            }),
            PutOutcome::AlreadyExists => self.already_stored(bucket, key, item.seq()).await,
        }
    }

    /// What the object already under `key` holds, from its metadata: up to which sequence
    /// number (at least `first`, the first item it was meant for) it stores the sink's items.
    async fn already_stored(
        &self,
        bucket: &str,
        key: String,
        first: &str,
    ) -> Result<Written, SecurityLakeError> {
        let Some(meta) = self.store.head_metadata(bucket, &key).await? else {
            return Ok(Written::Vanished { key });
        };
        match meta.get(META_LAST) {
            Some(l) if seqnum::is_valid(l) && seqnum::compare(l, first) != Ordering::Less => {
                Ok(Written::AlreadyStored {
                    through: l.clone(),
                    key,
                })
            }
            _ => Err(SecurityLakeError::ForeignObject {
                bucket: bucket.to_string(),
                key,
                problem: format!("has no valid {META_LAST} metadata"),
            }),
        }
    }

    /// Key, body and content type of the object holding items `range` of `sink`.
    fn object_for(
        &self,
        sink: SinkId,
        batch: &ShardBatch<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<(String, Bytes, &'static str), SecurityLakeError> {
        match sink {
            SinkId::Data { class, day } => {
                let rows = batch.data.get(&sink).map(Vec::as_slice).unwrap_or_default();
                let first = rows
                    .get(range.start)
                    .ok_or(SecurityLakeError::EmptyObject)?;
                let key = keys::data_key(
                    &self.config,
                    class,
                    day,
                    &batch.stream,
                    &batch.shard,
                    &first.seq,
                );
                let body = encode::parquet_object(class, &batch::time_ordered(rows, range))?;
                Ok((key, body, PARQUET_CONTENT_TYPE))
            }
            SinkId::Errors => {
                let first = batch
                    .poison
                    .get(range.start)
                    .ok_or(SecurityLakeError::EmptyObject)?;
                let key = keys::error_key(
                    &self.config,
                    &batch.stream,
                    &batch.shard,
                    &first.seq,
                    first.arrival,
                );
                Ok((
                    key,
                    batch::error_body(batch, range)?,
                    "application/x-ndjson",
                ))
            }
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
