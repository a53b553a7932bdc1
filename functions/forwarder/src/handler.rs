//! The Lambda handler: the forwarder built once per cold start from the environment, one
//! [`Handler::handle`] per invocation, and one summary log line with EMF metrics per
//! invocation.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::config::ForwarderConfig;
use crate::forward::{BatchResult, Forwarder};
use crate::{ForwarderError, KinesisBatch, dlq};

/// The Lambda handler state, built once per cold start.
pub struct Handler {
    /// The forwarder.
    pub forwarder: Forwarder,
}

impl Handler {
    /// Cold start: `FORWARDER_CONFIG` / `FORWARDER_CONFIG_FILE`, `DLQ_BUCKET` (required),
    /// `DLQ_PREFIX` (default `dlq/`), standard AWS variables.
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
        let forwarder = crate::build(&config, Some(&sdk), sink, &prefix).await?;
        tracing::info!(
            emitters = ?config.emitters.iter().map(|e| format!("{}:{}", e.name, e.kind.as_str())).collect::<Vec<_>>(),
            all_of = ?config.quorum.all_of,
            at_least_one_of = ?config.quorum.at_least_one_of,
            dlq_bucket = %bucket,
            dlq_prefix = %prefix,
            "forwarder configured"
        );
        Ok(Self { forwarder })
    }

    /// One invocation. `deadline_ms` is the Lambda deadline (epoch milliseconds).
    pub async fn handle(
        &self,
        event: KinesisBatch,
        deadline_ms: u64,
        request_id: &str,
    ) -> Result<KinesisEventResponse, ForwarderError> {
        let records = event.records;
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        let deadline = tokio::time::Instant::now() + remaining;
        let started = std::time::Instant::now();
        let result = self.forwarder.process(&records, deadline).await;
        log_summary(&result, started.elapsed(), request_id);
        let mut response = KinesisEventResponse::default();
        for seq in &result.failures {
            if seq.is_empty() {
                // An empty identifier fails the whole batch on AWS: say so plainly instead.
                return Err(ForwarderError::NoSequenceNumber);
            }
            response.add_failure(seq.clone());
        }
        Ok(response)
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
            .metric("LatencyMs", s.latency_ms as f64, "Milliseconds")
            .property("RequestId", request_id)
            .emit();
    }
}
