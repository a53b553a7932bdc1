//! authtrail-reconciler: wiring only (init at cold start, then one run per invocation). A
//! failed run is reported to Lambda with a stable `errorType` (see `error.rs`).
use authtrail_reconciler::{handle, init_from_env};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let reconciler = match init_from_env().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error_type = e.error_type(), error = %e, "reconciler initialisation failed");
            return Err(e.into());
        }
    };
    let reconciler = &reconciler;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(reconciler, event).await
    }))
    .await
}
