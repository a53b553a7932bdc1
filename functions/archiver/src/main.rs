//! Lambda entry point of the archiver: wiring only (a batch, a scheduled digest close, or the
//! preflight checks for the test payload `{"authtrail": "preflight"}`).
use std::sync::Arc;

use authtrail_archiver::preflight::{Preflight, Response};
use authtrail_archiver::{Archiver, Config, KinesisShards, KmsSigner, S3Store};
use authtrail_core::preflight::is_preflight_payload;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration rejected");
            return Err(e.into());
        }
    };
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let store = S3Store::new(authtrail_core::aws::s3_client(&sdk), config.bucket.clone());
    let signer = config
        .digests
        .as_ref()
        .map(|d| KmsSigner::new(aws_sdk_kms::Client::new(&sdk), &d.key_id, d.algorithm));
    let preflight = Arc::new(Preflight::new(
        authtrail_core::aws::s3_client(&sdk),
        config.clone(),
        signer.clone(),
    ));
    let digests_on = config.digests.is_some();
    let mut archiver = Archiver::with_signer(store, config, signer);
    if digests_on {
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        archiver = archiver.with_shard_directory(Arc::new(KinesisShards::new(kinesis)));
    }
    let archiver = Arc::new(archiver);
    run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let (archiver, preflight) = (Arc::clone(&archiver), Arc::clone(&preflight));
        async move {
            let payload = event.payload.get().as_bytes();
            if is_preflight_payload(payload) {
                return Ok(Response::Preflight(Box::new(preflight.run().await)));
            }
            archiver
                .handle(payload, &event.context.request_id)
                .await
                .map(Response::Batch)
                .map_err(Diagnostic::from)
        }
    }))
    .await
}
