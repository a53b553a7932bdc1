//! The Lambda entry of the archiver: a Kinesis batch is archived ([`Archiver::process`]), an
//! EventBridge scheduled event closes the digests that are due ([`Archiver::close_due`]); one
//! summary log line and EMF metrics per invocation.

use std::time::Instant;

use authtrail_core::metrics::Emf;
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::archive::Archiver;
use crate::error::ArchiveError;
use crate::signer::DigestSigner;
use crate::store::ObjectStore;

/// The part of an EventBridge scheduled event the archiver reads.
#[derive(Debug, Deserialize)]
struct ScheduledEvent {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    time: DateTime<Utc>,
}

/// The `time` of an EventBridge "Scheduled Event" payload; `None` for anything else (Kinesis
/// events are far larger than a scheduled event and are not parsed here).
fn scheduled_time(payload: &[u8]) -> Option<DateTime<Utc>> {
    if payload.len() > 16 * 1024 {
        return None;
    }
    let e: ScheduledEvent = serde_json::from_slice(payload).ok()?;
    (e.source == "aws.events" && e.detail_type == "Scheduled Event").then_some(e.time)
}

impl<S: ObjectStore, G: DigestSigner> Archiver<S, G> {
    /// Handles one invocation: the raw `KinesisEvent` JSON in, the partial-batch response out,
    /// logging one summary line and emitting EMF metrics. An EventBridge scheduled event
    /// closes the digests that are due instead ([`Archiver::close_due`]).
    pub async fn handle(
        &self,
        payload: &[u8],
        request_id: &str,
    ) -> Result<KinesisEventResponse, ArchiveError> {
        let started = Instant::now();
        if let Some(time) = scheduled_time(payload) {
            let result = self.close_due(time).await;
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            let (digests, failed) = match &result {
                Ok(s) => (s.digests, s.failed_shards),
                Err(e) => {
                    tracing::error!(error = %e, duration_ms, "scheduled digest close failed");
                    (0, 1)
                }
            };
            Emf::new("authtrail")
                .dimension("Function", "archiver")
                .count("Digests", digests as u64)
                .count("DigestFailures", failed as u64)
                .metric("DurationMs", duration_ms, "Milliseconds")
                .property("RequestId", request_id)
                .emit();
            return result.map(|_| KinesisEventResponse::default());
        }
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
                    digests = s.digests,
                    digest_failures = s.digest_failures,
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
                    .count("Digests", s.digests as u64)
                    .count("DigestFailures", s.digest_failures as u64)
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
}
