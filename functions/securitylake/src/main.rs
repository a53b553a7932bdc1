//! Lambda entry point of the Security Lake writer: wiring only.
use std::sync::Arc;

use authtrail_securitylake::{Config, S3Store, Writer};
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
    let store = S3Store::new(authtrail_core::aws::s3_client(&sdk));
    let writer = Arc::new(Writer::new(store, config));
    run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let writer = Arc::clone(&writer);
        async move {
            let payload = event.payload.get().as_bytes();
            writer
                .handle(payload, &event.context.request_id)
                .await
                .map_err(Diagnostic::from)
        }
    }))
    .await
}
