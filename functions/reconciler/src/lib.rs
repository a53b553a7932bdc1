//! authtrail reconciler: proof of completeness per window of event time.
//!
//! On a schedule, for each window that is settled (ended at least the settle delay ago), it
//! compares what the producers put into the stream (their checkpoint tallies), what the archive
//! holds (read object by object) and what the forwarder finished and each emitter delivered,
//! spooled, dead-lettered or filtered out (the forwarder's tally lines in its CloudWatch Logs
//! group), by count and by an order-independent digest of the records; writes one
//! reconciliation object per window (core's [`Reconciliation`], deterministic key) and emits
//! the `Unaccounted` metric per hop. See README.md.
//!
//! Where things are: [`config`] (the environment), [`store`] (S3, counted), [`archive`] (the
//! archive read independently, cached on a warm instance), [`producer`] (checkpoint tallies),
//! [`forwarder`] (tally lines from CloudWatch Logs), [`compare`] (one window, hop by hop),
//! [`run`] (which windows, the object and the metrics), [`error`].

pub mod archive;
pub mod compare;
pub mod config;
pub mod error;
pub mod forwarder;
pub mod producer;
pub mod run;
pub mod store;

use std::sync::Arc;

pub use authtrail_core::tally::object::Reconciliation;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub use crate::error::ReconcileError;
use crate::forwarder::{LogsSource, TallySource};
pub use crate::run::{Reconciler, Request, RunSummary};
use crate::store::{ObjectStore, Requests, S3Store};

/// The reconciler as deployed: S3 and the forwarder's CloudWatch Logs group.
pub type LambdaReconciler = Reconciler<S3Store, LogsSource>;

/// Cold start: reads and validates the configuration, builds the clients.
pub async fn init_from_env() -> Result<LambdaReconciler, ReconcileError> {
    let settings = config::Settings::from_env()?;
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let requests = Arc::new(Requests::default());
    let store = S3Store::new(authtrail_core::aws::s3_client(&sdk), requests.clone());
    let tallies = settings.forwarder_log_group.as_deref().map(|group| {
        LogsSource::new(
            aws_sdk_cloudwatchlogs::Client::new(&sdk),
            group,
            requests.clone(),
        )
    });
    tracing::info!(
        archive = %format!("s3://{}/{}", settings.archive_bucket, settings.archive_prefix),
        objects = %format!("s3://{}/{}", settings.reconcile_bucket, settings.reconcile_prefix),
        producers = settings.producer_checkpoints.len(),
        forwarder_log_group = settings.forwarder_log_group.as_deref().unwrap_or("-"),
        window_secs = settings.window.as_secs(),
        settle_secs = settings.settle.as_secs(),
        "reconciler configured"
    );
    Ok(Reconciler::new(settings, store, tallies, requests))
}

/// The Lambda handler: a scheduled event (or `{}`) computes the settled windows without an
/// object; `{"authtrail":"reconcile","from":ISO,"to":ISO}` computes a range again. Logs the
/// summary line and returns it.
pub async fn handle<S: ObjectStore, L: TallySource>(
    reconciler: &Reconciler<S, L>,
    event: LambdaEvent<Value>,
) -> Result<RunSummary, ReconcileError> {
    let request_id = event.context.request_id.clone();
    let outcome = match Request::from_payload(&event.payload) {
        Ok(request) => {
            reconciler
                .run(chrono::Utc::now().timestamp_millis(), &request)
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(summary) => {
            run::log_summary(&summary, &request_id);
            Ok(summary)
        }
        Err(e) => {
            tracing::error!(request_id, error_type = e.error_type(), error = %e, "reconciler run failed");
            Err(e)
        }
    }
}
