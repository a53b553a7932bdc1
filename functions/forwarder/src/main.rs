//! Wiring only: tracing, configuration and clients at cold start, then one `Handler::handle`
//! per invocation (a Kinesis batch or a scheduled redrive). Failures reach Lambda with the stable `errorType` names of
//! `ForwarderError::error_type`.

use authtrail_forwarder::{ForwarderEvent, Handler};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let handler = Handler::from_env().await.map_err(|e| {
        tracing::error!(error_type = e.error_type(), error = %e, "cold start failed");
        e
    })?;
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<ForwarderEvent>| async move {
            let deadline = event.context.deadline;
            handler
                .handle(event.payload, deadline, &event.context.request_id)
                .await
        },
    ))
    .await
}
