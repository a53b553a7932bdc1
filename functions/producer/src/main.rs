//! authtrail-producer: wiring only (init at cold start, then one pull per invocation, or the
//! preflight checks for the test payload). A failed run is reported to Lambda with a stable
//! `errorType` (see `error.rs` and the README).
use authtrail_core::preflight::is_preflight_value;
use authtrail_producer::preflight::Response;
use authtrail_producer::{handle, init_with_preflight_from_env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Bad configuration fails here, at init, with a message naming the variable.
    let (producer, preflight) = match init_with_preflight_from_env().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error_type = e.error_type().as_str(), error = %e, "producer initialisation failed");
            return Err(e.into());
        }
    };
    let (producer, preflight) = (&producer, &preflight);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The test payload {"authtrail": "preflight"} is answered with the checks' report.
        if is_preflight_value(&event.payload) {
            return Ok(Response::Preflight(Box::new(preflight.run().await)));
        }
        handle(producer, event).await.map(Response::Run)
    }))
    .await
}
