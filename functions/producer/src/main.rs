//! authtrail-producer: wiring only (init at cold start, then one pull per invocation). A failed
//! run is reported to Lambda with a stable `errorType` (see `error.rs` and the README).
use authtrail_producer::{handle, init_from_env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Bad configuration fails here, at init, with a message naming the variable.
    let producer = match init_from_env().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error_type = e.error_type().as_str(), error = %e, "producer initialisation failed");
            return Err(e.into());
        }
    };
    let producer = &producer;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(producer, event).await
    }))
    .await
}
