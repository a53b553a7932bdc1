//! One invocation: hand the payload to the process through the Runtime API, wait for it to be
//! taken (phase 1, the init on a cold start) and for its completion (phase 2), and turn what
//! happened into an [`Outcome`].

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use super::process::Environment;
use super::{Invocation, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome};
use crate::error::{Result, RunnerError};
use crate::runtime_api::{Completion, ErrorReport, Job};

/// Completes with the exit detail once the process has ended.
fn wait_exited(
    rx: &watch::Receiver<Option<String>>,
) -> impl std::future::Future<Output = String> + use<> {
    let mut rx = rx.clone();
    async move {
        let seen = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match seen {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => "process monitor ended".to_owned(),
        }
    }
}

/// Completes with the init error the process reported (never if it reports none).
fn wait_init_error(
    rx: &watch::Receiver<Option<ErrorReport>>,
) -> impl std::future::Future<Output = Option<ErrorReport>> + use<> {
    let mut rx = rx.clone();
    async move {
        let seen = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match seen {
            Ok(v) => v,
            Err(_) => std::future::pending().await,
        }
    }
}

/// How phase 1 of an invocation ended.
enum Start {
    /// The process took the job; its deadline (epoch ms).
    Took(u64),
    /// The process exited first (detail of the exit).
    Exited(String),
    /// The init failed: reported an error or timed out.
    InitFailed(Outcome),
    /// The Runtime API dropped the job.
    Dropped,
}

impl LambdaFunction {
    /// Invokes the function with a JSON-serialisable payload.
    pub async fn invoke_json<T: Serialize + ?Sized>(&self, payload: &T) -> Result<Invocation> {
        self.invoke(serde_json::to_vec(payload)?).await
    }

    /// Invokes the function with a raw payload (JSON bytes), waiting for the outcome. Only
    /// infrastructure problems are errors; whatever the function does is in the [`Outcome`].
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Result<Invocation> {
        let payload: Bytes = payload.into();
        if payload.len() > MAX_INVOKE_PAYLOAD_BYTES {
            return Err(RunnerError::PayloadTooLarge {
                size: payload.len(),
                limit: MAX_INVOKE_PAYLOAD_BYTES,
            });
        }
        let queued_at = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut guard = self.env.lock().await;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut cold_start = false;
        // A warm process that died between invocations is replaced once, transparently.
        let mut replaced_warm = false;
        loop {
            if guard.as_ref().is_none_or(Environment::has_exited) {
                *guard = Some(self.spawn().await?);
                cold_start = true;
            }
            let Some(env) = guard.as_mut() else {
                continue;
            };
            let fresh = env.served == 0;
            let Some((started_rx, done_rx)) = self.hand_over(env, &request_id, &payload).await
            else {
                guard.take();
                continue;
            };
            let exited = wait_exited(&env.exited);
            let init_error = wait_init_error(&env.server.init_error);
            // Phase 1: the process takes the job (after its init on a cold start).
            let deadline_ms = match self.await_start(started_rx, exited, init_error).await {
                Start::Took(deadline_ms) => deadline_ms,
                Start::Exited(detail) if !fresh && !replaced_warm => {
                    guard.take();
                    replaced_warm = true;
                    tracing::warn!(function = %self.cfg.name, %detail, "warm function process had exited; starting a new one");
                    continue;
                }
                Start::Exited(detail) => {
                    guard.take();
                    let outcome = self.exited_before_start(&detail).await;
                    return Ok(self.finish(request_id, cold_start, queued_at, outcome));
                }
                Start::InitFailed(outcome) => {
                    guard.take();
                    return Ok(self.finish(request_id, cold_start, queued_at, outcome));
                }
                Start::Dropped => {
                    guard.take();
                    return Err(RunnerError::Function {
                        name: self.cfg.name.clone(),
                        message: "Runtime API dropped the invocation".into(),
                    });
                }
            };
            env.served += 1;
            let remaining = Duration::from_millis(deadline_ms.saturating_sub(epoch_ms_now()));
            // Phase 2: the function works until it reports, dies or runs out of time.
            let exited = wait_exited(&env.exited);
            let outcome = self.await_completion(done_rx, exited, remaining).await;
            if matches!(outcome, Outcome::Crashed { .. } | Outcome::TimedOut { .. }) {
                // The process is gone or overdue: the next invocation starts a new one.
                guard.take();
            }
            return Ok(self.finish(request_id, cold_start, queued_at, outcome));
        }
    }

    /// Queues the invocation on the environment's Runtime API; the receivers of its start
    /// (the deadline) and of its completion, or `None` if the server is gone.
    async fn hand_over(
        &self,
        env: &Environment,
        request_id: &str,
        payload: &Bytes,
    ) -> Option<(oneshot::Receiver<u64>, oneshot::Receiver<Completion>)> {
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let job = Job {
            request_id: request_id.to_owned(),
            payload: payload.clone(),
            timeout: self.cfg.timeout,
            client_context: None,
            cognito_identity: None,
            started: started_tx,
            completion: done_tx,
        };
        env.server.jobs.send(job).await.ok()?;
        Some((started_rx, done_rx))
    }

    /// Phase 1: waits until the process takes the job, reports an init error, exits, or the
    /// init timeout passes.
    async fn await_start(
        &self,
        started: oneshot::Receiver<u64>,
        exited: impl Future<Output = String>,
        init_error: impl Future<Output = Option<ErrorReport>>,
    ) -> Start {
        tokio::select! {
            biased;
            deadline = started => deadline.map_or(Start::Dropped, Start::Took),
            report = init_error => {
                let (error_type, error_message) = report
                    .map(|r| (r.error_type, r.error_message))
                    .unwrap_or_else(|| ("Runtime.Unknown".into(), String::new()));
                Start::InitFailed(Outcome::InitError { error_type, error_message })
            }
            detail = exited => Start::Exited(detail),
            _ = tokio::time::sleep(self.cfg.init_timeout) => Start::InitFailed(Outcome::InitError {
                error_type: "Runtime.InitTimeout".into(),
                error_message: format!("the process did not request an invocation within {:?}", self.cfg.init_timeout),
            }),
        }
    }

    /// The outcome of a process that exited before asking for the invocation, with its last
    /// output lines (read to the end first: the exit can be seen before its last lines).
    async fn exited_before_start(&self, detail: &str) -> Outcome {
        self.logs.drained(Duration::from_secs(2)).await;
        let tail = self.log_tail(5);
        Outcome::InitError {
            error_type: "Runtime.ExitError".into(),
            error_message: format!("{detail} before requesting an invocation; last output: {tail}"),
        }
    }

    /// Phase 2: waits until the function reports, its process exits, or `remaining` (up to
    /// the deadline) passes.
    async fn await_completion(
        &self,
        done: oneshot::Receiver<Completion>,
        exited: impl Future<Output = String>,
        remaining: Duration,
    ) -> Outcome {
        tokio::select! {
            biased;
            done = done => match done {
                Ok(Completion::Response(body)) if body.len() > MAX_INVOKE_PAYLOAD_BYTES => Outcome::FunctionError {
                    error_type: "Function.ResponseSizeTooLarge".into(),
                    error_message: format!("Response payload size ({} bytes) exceeded maximum allowed payload size ({MAX_INVOKE_PAYLOAD_BYTES} bytes).", body.len()),
                },
                Ok(Completion::Response(body)) => Outcome::Response(body),
                Ok(Completion::Error(report)) => Outcome::FunctionError { error_type: report.error_type, error_message: report.error_message },
                Err(_) => Outcome::Crashed { detail: "Runtime API dropped the invocation".into() },
            },
            detail = exited => Outcome::Crashed { detail: format!("Runtime exited without providing a reason: {detail}") },
            _ = tokio::time::sleep(remaining) => Outcome::TimedOut { after: self.cfg.timeout },
        }
    }

    /// The invocation record (logged: debug on success, warning otherwise).
    fn finish(
        &self,
        request_id: String,
        cold_start: bool,
        queued_at: Instant,
        outcome: Outcome,
    ) -> Invocation {
        let duration = queued_at.elapsed();
        match &outcome {
            Outcome::Response(_) => {
                tracing::debug!(function = %self.cfg.name, %request_id, cold_start, ?duration, "invocation succeeded")
            }
            other => {
                tracing::warn!(function = %self.cfg.name, %request_id, cold_start, ?duration, outcome = other.kind(), details = ?other, "invocation failed")
            }
        }
        Invocation {
            request_id,
            cold_start,
            duration,
            outcome,
        }
    }

    /// The last `n` captured lines, ` | `-joined.
    fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let start = lines.len().saturating_sub(n);
        lines
            .get(start..)
            .map(|l| l.join(" | "))
            .unwrap_or_default()
    }
}

/// Now, in epoch milliseconds.
fn epoch_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
