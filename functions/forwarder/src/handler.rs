//! The Lambda handler: the forwarder built once per cold start from the environment, one
//! [`Handler::handle`] per invocation (a Kinesis batch, a scheduled event that redrives every
//! emitter's spool, or the preflight test payload, answered with a [`Report`]), and one summary
//! log line with EMF metrics per invocation.

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::preflight::Report;
use aws_lambda_events::event::streams::KinesisEventResponse;
use serde::Serialize;

use crate::config::ForwarderConfig;
use crate::forward::{BatchResult, Forwarder};
use crate::{ForwarderError, ForwarderEvent, dlq, spool};

/// The Lambda handler state, built once per cold start.
pub struct Handler {
    /// The forwarder.
    pub forwarder: Forwarder,
    /// What the preflight checks besides the emitters.
    pub preflight: crate::preflight::Targets,
}

/// What an invocation returns: the partial-batch response (Kinesis batches and scheduled
/// redrives), or the preflight report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// `{"batchItemFailures": [...]}`.
    Batch(KinesisEventResponse),
    /// The preflight report.
    Preflight(Box<Report>),
}

impl Handler {
    /// Cold start: `FORWARDER_CONFIG` / `FORWARDER_CONFIG_FILE`, `DLQ_BUCKET` (required),
    /// `DLQ_PREFIX` (default `dlq/`), `SPOOL_BUCKET` (default `DLQ_BUCKET`), `SPOOL_PREFIX`
    /// (default `spool/`, must end in `/`), standard AWS variables.
    pub async fn from_env() -> Result<Self, ForwarderError> {
        let config = ForwarderConfig::from_env()?;
        let bucket = authtrail_core::config::env_required(
            "DLQ_BUCKET",
            "the name of the S3 bucket for dead letters",
        )?;
        let prefix = authtrail_core::config::env_opt("DLQ_PREFIX").unwrap_or_else(|| "dlq/".into());
        let sdk = authtrail_core::aws::load_sdk_config().await;
        let sink = Arc::new(dlq::S3DeadLetters::new(
            authtrail_core::aws::s3_client(&sdk),
            &bucket,
        ));
        let mut forwarder = crate::build(&config, Some(&sdk), sink, &prefix).await?;
        let spool_bucket =
            authtrail_core::config::env_opt("SPOOL_BUCKET").unwrap_or_else(|| bucket.clone());
        let spool_prefix =
            authtrail_core::config::env_opt("SPOOL_PREFIX").unwrap_or_else(|| "spool/".into());
        if !spool_prefix.ends_with('/') {
            return Err(crate::config::err("SPOOL_PREFIX", "must end in '/'"));
        }
        let preflight = crate::preflight::Targets {
            s3: authtrail_core::aws::s3_client(&sdk),
            dlq_bucket: bucket.clone(),
            dlq_prefix: prefix.clone(),
            spool: config
                .spool
                .enabled
                .then(|| (spool_bucket.clone(), spool_prefix.clone())),
        };
        if config.spool.enabled {
            let store = Arc::new(spool::s3::S3Spool::new(
                authtrail_core::aws::s3_client(&sdk),
                &spool_bucket,
            ));
            forwarder = forwarder.with_spool(store, &spool_prefix, config.spool);
            forwarder.load_breakers().await;
        }
        tracing::info!(
            emitters = ?config.emitters.iter().map(|e| format!("{}:{}", e.name, e.kind.as_str())).collect::<Vec<_>>(),
            all_of = ?config.quorum.all_of,
            at_least_one_of = ?config.quorum.at_least_one_of,
            dlq_bucket = %bucket,
            dlq_prefix = %prefix,
            spool = config.spool.enabled,
            spool_bucket = %spool_bucket,
            spool_prefix = %spool_prefix,
            "forwarder configured"
        );
        Ok(Self {
            forwarder,
            preflight,
        })
    }

    /// One invocation. `deadline_ms` is the Lambda deadline (epoch milliseconds).
    pub async fn handle(
        &self,
        event: ForwarderEvent,
        deadline_ms: u64,
        request_id: &str,
    ) -> Result<Response, ForwarderError> {
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        let deadline = tokio::time::Instant::now() + remaining;
        let started = std::time::Instant::now();
        let result = match event {
            ForwarderEvent::Kinesis(batch) => {
                self.forwarder
                    .process_request(&batch.records, deadline, request_id)
                    .await
            }
            ForwarderEvent::Scheduled => self.forwarder.redrive_all(deadline, request_id).await,
            ForwarderEvent::Preflight => {
                let report = crate::preflight::run(&self.forwarder, &self.preflight).await;
                tracing::info!(
                    request_id,
                    ok = report.ok,
                    failed = ?report.failed().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "preflight"
                );
                return Ok(Response::Preflight(Box::new(report)));
            }
        };
        log_summary(&result, started.elapsed(), request_id);
        if let Some(tally) = &result.tally {
            crate::tally::emit(tally);
        }
        let mut response = KinesisEventResponse::default();
        for seq in &result.failures {
            if seq.is_empty() {
                // An empty identifier fails the whole batch on AWS: say so plainly instead.
                return Err(ForwarderError::NoSequenceNumber);
            }
            response.add_failure(seq.clone());
        }
        Ok(Response::Batch(response))
    }
}

/// One summary log line per invocation and EMF metrics (one line per emitter).
pub fn log_summary(r: &BatchResult, elapsed: Duration, request_id: &str) {
    let per_emitter: serde_json::Map<String, serde_json::Value> = r
        .emitters
        .iter()
        .map(|(name, s)| (name.clone(), serde_json::to_value(s).unwrap_or_default()))
        .collect();
    tracing::info!(
        records = r.records,
        not_done = r.failures.len(),
        malformed = r.malformed,
        dead_letters = r.dead_letters,
        dead_letter_errors = r.dead_letter_errors,
        spool_write_failures = r.spool_write_failures,
        duration_ms = elapsed.as_millis() as u64,
        emitters = %serde_json::Value::Object(per_emitter),
        "forwarder invocation summary"
    );
    use authtrail_core::metrics::Emf;
    Emf::new("authtrail")
        .dimension("Function", "forwarder")
        .count("Records", r.records as u64)
        .count("NotDone", r.failures.len() as u64)
        .count("Malformed", r.malformed as u64)
        .count("DeadLetters", r.dead_letters as u64)
        .count("DeadLetterErrors", r.dead_letter_errors as u64)
        .count("Spooled", sum(r, |s| s.spooled))
        .count("SpoolExpired", sum(r, |s| s.spool_expired))
        .count("RedriveFailures", sum(r, |s| s.redrive_failures))
        .count("BreakersOpen", sum(r, |s| usize::from(s.breaker_open)))
        .count("SpoolWriteFailures", r.spool_write_failures as u64)
        .metric(
            "SpoolOldestAgeSeconds",
            r.emitters
                .iter()
                .map(|(_, s)| s.spool_age_s)
                .max()
                .unwrap_or(0) as f64,
            "Seconds",
        )
        .metric("DurationMs", elapsed.as_secs_f64() * 1000.0, "Milliseconds")
        .property("RequestId", request_id)
        .emit();
    for (name, s) in &r.emitters {
        Emf::new("authtrail")
            .dimension("Function", "forwarder")
            .dimension("Emitter", name)
            .count("Delivered", s.delivered as u64)
            .count("Retried", s.retried as u64)
            .count("DeadLettered", s.dead_lettered as u64)
            .count("Pending", s.pending as u64)
            .count("Spooled", s.spooled as u64)
            .count("Redriven", s.redriven as u64)
            .count("SpoolExpired", s.spool_expired as u64)
            .count("RedriveFailures", s.redrive_failures as u64)
            .count("BreakerOpen", u64::from(s.breaker_open))
            .count("SpoolDepth", s.spool_depth as u64)
            .metric("SpoolOldestAgeSeconds", s.spool_age_s as f64, "Seconds")
            .metric("LatencyMs", s.latency_ms as f64, "Milliseconds")
            .property("RequestId", request_id)
            .emit();
    }
}

/// The sum of one emitter counter over every emitter.
fn sum(r: &BatchResult, f: impl Fn(&crate::forward::EmitterStats) -> usize) -> u64 {
    r.emitters.iter().map(|(_, s)| f(s) as u64).sum()
}
