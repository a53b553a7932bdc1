//! A local implementation of the Lambda Runtime API (`/2018-06-01/runtime/...`), the HTTP
//! interface a custom runtime such as `lambda_runtime` polls for work.
//!
//! One server serves one execution environment (one function process). The runner queues a
//! [`Job`]; the process's long-polling `GET /runtime/invocation/next` takes it, gets the payload
//! and the `Lambda-Runtime-*` headers, and later posts to `/response` or `/error`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::error::{Result, RunnerError};

/// What a function reported for one invocation.
#[derive(Debug)]
pub(crate) enum Completion {
    Response(Bytes),
    Error(ErrorReport),
}

/// An error body as a runtime reports it (`/invocation/{id}/error` or `/init/error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// `errorType` from the body (or the `Lambda-Runtime-Function-Error-Type` header when the
    /// body has none).
    pub error_type: String,
    /// `errorMessage` from the body.
    pub error_message: String,
    /// The `Lambda-Runtime-Function-Error-Type` header, if sent (`lambda_runtime` sends
    /// `unhandled`).
    pub header_error_type: Option<String>,
    /// The body as sent (may carry `stackTrace` and other fields).
    pub body: Bytes,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

impl ErrorReport {
    fn parse(headers: &HeaderMap, body: Bytes) -> Self {
        let header_error_type = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let error_type = parsed
            .error_type
            .or_else(|| header_error_type.clone())
            .unwrap_or_else(|| "Unhandled".to_owned());
        let error_message = parsed
            .error_message
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Self {
            error_type,
            error_message,
            header_error_type,
            body,
        }
    }
}

/// One queued invocation.
pub(crate) struct Job {
    pub request_id: String,
    pub payload: Bytes,
    pub timeout: Duration,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    /// Told the deadline (epoch ms) when the process takes the job.
    pub started: oneshot::Sender<u64>,
    /// Told what the process reported.
    pub completion: oneshot::Sender<Completion>,
}

struct ApiState {
    jobs: Mutex<mpsc::Receiver<Job>>,
    in_flight: StdMutex<HashMap<String, oneshot::Sender<Completion>>>,
    init_error: watch::Sender<Option<ErrorReport>>,
    function_arn: String,
}

/// A running Runtime API server for one execution environment. Dropping it stops the server.
pub(crate) struct RuntimeApiServer {
    pub addr: SocketAddr,
    pub jobs: mpsc::Sender<Job>,
    pub init_error: watch::Receiver<Option<ErrorReport>>,
    _shutdown: oneshot::Sender<()>,
}

impl RuntimeApiServer {
    pub async fn start(function_arn: String) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(RunnerError::Server)?;
        let addr = listener.local_addr().map_err(RunnerError::Server)?;
        let (jobs_tx, jobs_rx) = mpsc::channel(1);
        let (init_tx, init_rx) = watch::channel(None);
        let state = Arc::new(ApiState {
            jobs: Mutex::new(jobs_rx),
            in_flight: StdMutex::new(HashMap::new()),
            init_error: init_tx,
            function_arn,
        });
        let app = router(state);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "Runtime API server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            jobs: jobs_tx,
            init_error: init_rx,
            _shutdown: shutdown_tx,
        })
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn header(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    let job = {
        let mut jobs = state.jobs.lock().await;
        jobs.recv().await
    };
    let Some(job) = job else {
        // The environment is being torn down.
        return (StatusCode::GONE, "execution environment shut down").into_response();
    };
    let deadline_ms = epoch_ms(SystemTime::now() + job.timeout);
    let trace_id = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline_ms / 1000,
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut headers = HeaderMap::new();
    let pairs: [(&'static str, Option<String>); 6] = [
        (
            "lambda-runtime-aws-request-id",
            Some(job.request_id.clone()),
        ),
        ("lambda-runtime-deadline-ms", Some(deadline_ms.to_string())),
        (
            "lambda-runtime-invoked-function-arn",
            Some(state.function_arn.clone()),
        ),
        ("lambda-runtime-trace-id", Some(trace_id)),
        ("lambda-runtime-client-context", job.client_context.clone()),
        (
            "lambda-runtime-cognito-identity",
            job.cognito_identity.clone(),
        ),
    ];
    for (name, value) in pairs {
        if let Some(v) = value.as_deref().and_then(header) {
            headers.insert(name, v);
        }
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(mut in_flight) = state.in_flight.lock() {
        in_flight.insert(job.request_id.clone(), job.completion);
    }
    let _ = job.started.send(deadline_ms);
    (StatusCode::OK, headers, job.payload).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

fn take_in_flight(state: &ApiState, id: &str) -> Option<oneshot::Sender<Completion>> {
    state.in_flight.lock().ok().and_then(|mut m| m.remove(id))
}

fn unknown_request(id: &str) -> Response {
    tracing::warn!(request_id = %id, "runtime posted a result for an unknown or finished invocation");
    (
        StatusCode::BAD_REQUEST,
        "{\"errorType\":\"InvalidRequestID\",\"errorMessage\":\"unknown or finished request id\"}",
    )
        .into_response()
}

async fn response(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match take_in_flight(&state, &id) {
        Some(tx) => {
            let _ = tx.send(Completion::Response(body));
            accepted()
        }
        None => unknown_request(&id),
    }
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match take_in_flight(&state, &id) {
        Some(tx) => {
            let _ = tx.send(Completion::Error(ErrorReport::parse(&headers, body)));
            accepted()
        }
        None => unknown_request(&id),
    }
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let report = ErrorReport::parse(&headers, body);
    tracing::warn!(error_type = %report.error_type, "function reported an init error");
    state.init_error.send_replace(Some(report));
    accepted()
}
