//! authtrail producer: pulls MPAS (Keycloak) user and admin events into Kinesis (or Firehose),
//! none lost and none twice, with the cursor and a lease in S3. See README.md.
//!
//! `main.rs` only wires; the logic lives here behind three capabilities so unit tests run
//! against in-memory fakes: [`mpas::EventSource`], [`sink::Sink`] (batched writes and reading
//! back), [`checkpoint::CheckpointStore`]. Where things are: [`pull`] (the algorithm, with its
//! modern and legacy variants and the recovery of an interrupted put), [`lease`],
//! [`checkpoint`], [`pending`] (the intent of a put, saved before it), [`sink`] (one file per
//! sink), [`record`] (the envelope), [`summary`] (the run summary), [`tally`] (what was put per
//! minute, for the reconciler), [`error`] (every failure and its `errorType`).

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod lease;
pub mod mpas;
pub mod pending;
pub mod preflight;
pub mod pull;
pub mod record;
pub mod sink;
pub mod summary;
pub mod tally;

use authtrail_core::config::ConfigError;
use authtrail_core::redact::{RedactionMode, Redactor};
use authtrail_core::secret::{Secret, fetch_secret_string};
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub use crate::error::ProducerError;

use crate::checkpoint::S3CheckpointStore;
use crate::config::{Credentials, RedactionSetting, Settings, SinkTarget};
use crate::mpas::{ClientOptions, HttpEventSource};
use crate::pull::{Producer, PullSettings};
use crate::sink::{AnySink, FirehoseClient, KinesisSink};
use crate::summary::RunSummary;
use crate::tally::{TallyRecorder, TallySink};

/// The producer as deployed: HTTPS to MPAS, Kinesis or Firehose (tallied for the reconciler),
/// S3 checkpoint.
pub type LambdaProducer = Producer<HttpEventSource, TallySink<AnySink>, S3CheckpointStore>;

/// Builds the redactors of both kinds from the settings (the hash key already resolved).
pub fn build_redactors(
    settings: &Settings,
    hash_key: Option<Secret>,
) -> Result<(Redactor, Redactor), ConfigError> {
    let mode = match hash_key {
        Some(k) => RedactionMode::Hash(k),
        None => RedactionMode::Mask,
    };
    let build = |admin: bool| {
        Redactor::new(&settings.redaction_fields(admin), mode.clone()).map_err(|e| {
            ConfigError::new(
                "REDACT_FIELDS",
                "JSON pointers starting with '/'",
                Some(&e.to_string()),
            )
        })
    };
    Ok((build(false)?, build(true)?))
}

/// Cold start: reads and validates the configuration, resolves secrets, builds the clients.
pub async fn init_from_env() -> Result<LambdaProducer, ProducerError> {
    init_with_preflight_from_env().await.map(|(p, _)| p)
}

/// [`init_from_env`], keeping the settings for the checks of the preflight test payload
/// ([`preflight::Preflight`]).
pub async fn init_with_preflight_from_env()
-> Result<(LambdaProducer, preflight::Preflight), ProducerError> {
    let settings = Settings::from_env()?;
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let producer = init(&settings, &sdk).await?;
    Ok((producer, preflight::Preflight::new(settings, sdk)))
}

/// Builds the deployed producer from validated settings.
pub async fn init(
    settings: &Settings,
    sdk: &aws_config::SdkConfig,
) -> Result<LambdaProducer, ProducerError> {
    let credentials = match &settings.credentials {
        Credentials::SecretArn(arn) => {
            let secret = fetch_secret_string(sdk, arn).await?;
            config::credentials_from_secret_json(arn, &secret)?
        }
        other => other.clone(),
    };
    let hash_key = match &settings.redaction {
        RedactionSetting::Mask => None,
        RedactionSetting::HashKey(k) => Some(k.clone()),
        RedactionSetting::HashKeySecretArn(arn) => Some(fetch_secret_string(sdk, arn).await?),
    };
    let (redact_user, redact_admin) = build_redactors(settings, hash_key)?;
    let ca = match &settings.ca_bundle {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            ConfigError::new(
                "MPAS_CA_BUNDLE",
                "the path of a readable PEM file",
                Some(&format!("{path}: {e}")),
            )
        })?),
        None => None,
    };
    let options = ClientOptions {
        ca_bundle_pem: ca.as_deref(),
        ca_bundle_only: settings.ca_bundle_only,
        max_page_bytes: settings.max_page_bytes,
        ..ClientOptions::new(settings.http_timeout, settings.max_retries)
    };
    let source = HttpEventSource::new(&settings.base_url, &settings.realm, credentials, &options)?;
    let sink = match &settings.sink {
        SinkTarget::Kinesis(stream) => {
            AnySink::Kinesis(KinesisSink::new(aws_sdk_kinesis::Client::new(sdk), stream))
        }
        SinkTarget::Firehose(stream) => AnySink::Firehose(FirehoseClient::new(
            aws_sdk_firehose::Client::new(sdk),
            stream,
        )),
    };
    let recorder = std::sync::Arc::new(TallyRecorder::new(
        settings.settle_window,
        settings.user_events,
        settings.admin_events,
    ));
    let sink = TallySink::new(sink, recorder.clone());
    let store = S3CheckpointStore::new(
        authtrail_core::aws::s3_client(sdk),
        &settings.checkpoint_bucket,
        &settings.checkpoint_key,
    )
    .with_tally(recorder);
    Ok(Producer::new(
        PullSettings::from(settings),
        source,
        sink,
        store,
        redact_user,
        redact_admin,
    ))
}

/// The Lambda handler: any payload (an EventBridge scheduled event, or `{}` from a manual
/// invoke) runs one pull. Logs the summary line, prints the EMF metrics, returns the summary.
/// A failure is logged with its `errorType` and counted (`RunFailed`); Lambda reports it as the
/// error's [`lambda_runtime::Diagnostic`].
pub async fn handle<S, K, C>(
    producer: &Producer<S, K, C>,
    event: LambdaEvent<Value>,
) -> Result<RunSummary, ProducerError>
where
    S: mpas::EventSource,
    K: sink::Sink,
    C: checkpoint::CheckpointStore,
{
    let request_id = event.context.request_id.clone();
    let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
    let deadline_ms = if deadline_ms == 0 {
        pull::now_ms() + 60_000
    } else {
        deadline_ms
    };
    match producer.run(deadline_ms).await {
        Ok(summary) => {
            summary.log(&request_id);
            summary.to_emf(&request_id).emit();
            Ok(summary)
        }
        Err(e) => {
            tracing::error!(
                request_id,
                error_type = e.error_type().as_str(),
                error = %e,
                "producer run failed; the cursor stays at the last checkpoint"
            );
            RunSummary::failure_emf(&request_id).emit();
            Err(e)
        }
    }
}
