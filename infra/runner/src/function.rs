//! One Lambda function and its execution environment: a child process running the function
//! binary against a local Runtime API server, one invocation at a time.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Mutex, oneshot, watch};

use crate::error::{Result, RunnerError};
use crate::runtime_api::{Completion, ErrorReport, Job, RuntimeApiServer};

/// Lambda's synchronous invocation payload limit (request and response), 6 MB.
pub const MAX_INVOKE_PAYLOAD_BYTES: usize = 6_291_456;

/// The account id the runner puts into ARNs (moto's default account).
pub const ACCOUNT_ID: &str = "123456789012";

/// How to run one function.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// Function name (`AWS_LAMBDA_FUNCTION_NAME`, part of the ARN and log prefix).
    pub name: String,
    /// Path of the function binary (built with `lambda_runtime`).
    pub binary: PathBuf,
    /// Extra environment, applied after the inherited one and the Lambda variables (so it may
    /// override them): e.g. the emulator's `AWS_*` variables and the function's configuration.
    pub env: Vec<(String, String)>,
    /// Whether the process inherits the runner's own environment (default true, as the CLI
    /// relies on for `AWS_ENDPOINT_URL` and credentials).
    pub inherit_env: bool,
    /// Function timeout (`Lambda-Runtime-Deadline-Ms` = now + timeout).
    pub timeout: Duration,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// How long a cold start may take before the first invocation is handed out (AWS: 10 s).
    pub init_timeout: Duration,
    /// Region for the function ARN; `None` takes `AWS_REGION` from `env`, then from the
    /// runner's environment, then `us-east-1`.
    pub region: Option<String>,
    /// Forward the function's stdout/stderr lines to the runner's stderr, prefixed `[name] `.
    pub echo_logs: bool,
    /// Also append every log line to this file.
    pub log_file: Option<PathBuf>,
}

impl FunctionConfig {
    /// A configuration with Lambda-like defaults: 30 s timeout, 128 MB, inherited environment,
    /// logs echoed to stderr.
    pub fn new(name: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            binary: binary.into(),
            env: Vec::new(),
            inherit_env: true,
            timeout: Duration::from_secs(30),
            memory_mb: 128,
            init_timeout: Duration::from_secs(10),
            region: None,
            echo_logs: true,
            log_file: None,
        }
    }

    /// Adds environment variables (builder style).
    pub fn with_env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the timeout (builder style).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| {
                self.env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "AWS_REGION")
                    .map(|(_, v)| v.clone())
            })
            .or_else(|| {
                if self.inherit_env {
                    std::env::var("AWS_REGION").ok()
                } else {
                    None
                }
            })
            .unwrap_or_else(|| "us-east-1".to_owned())
    }
}

/// What happened to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function returned; the response body as posted to `/response`.
    Response(Bytes),
    /// The function reported an error (`/invocation/{id}/error`), as AWS reports an unhandled
    /// function error.
    FunctionError {
        error_type: String,
        error_message: String,
    },
    /// The process exited during the invocation (AWS: `Runtime.ExitError`). The next
    /// invocation starts a fresh process (a cold start).
    Crashed { detail: String },
    /// The deadline passed; the process was killed (AWS: `Sandbox.Timedout`).
    TimedOut { after: Duration },
    /// The function failed to initialise: it posted `/init/error`, exited before asking for
    /// work, or did not ask for work within the init timeout.
    InitError {
        error_type: String,
        error_message: String,
    },
}

/// The record of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `Lambda-Runtime-Aws-Request-Id` of the invocation.
    pub request_id: String,
    /// Whether this invocation started a new process.
    pub cold_start: bool,
    /// Wall time from queueing to outcome.
    pub duration: Duration,
    /// The outcome.
    pub outcome: Outcome,
}

impl Invocation {
    /// True for [`Outcome::Response`].
    pub fn is_success(&self) -> bool {
        matches!(self.outcome, Outcome::Response(_))
    }

    /// The response body, if the function returned one.
    pub fn response(&self) -> Option<&Bytes> {
        match &self.outcome {
            Outcome::Response(b) => Some(b),
            _ => None,
        }
    }

    /// The response deserialised as `T`.
    pub fn response_json<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.outcome {
            Outcome::Response(b) => Ok(serde_json::from_slice(b)?),
            other => Err(RunnerError::Function {
                name: String::new(),
                message: format!("invocation did not succeed: {}", other.kind()),
            }),
        }
    }

    /// The error type in AWS's words, for failed invocations (`Unhandled` function errors keep
    /// the type the function reported).
    pub fn error_type(&self) -> Option<&str> {
        self.outcome.error_type()
    }
}

impl Outcome {
    /// A short name for logs and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Response(_) => "response",
            Outcome::FunctionError { .. } => "function_error",
            Outcome::Crashed { .. } => "crashed",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::InitError { .. } => "init_error",
        }
    }

    /// The error type in AWS's words (`None` for a response): the type the function reported
    /// for function and init errors, `Runtime.ExitError` for a crash, `Sandbox.Timedout` for a
    /// timeout.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Outcome::Response(_) => None,
            Outcome::FunctionError { error_type, .. } | Outcome::InitError { error_type, .. } => {
                Some(error_type)
            }
            Outcome::Crashed { .. } => Some("Runtime.ExitError"),
            Outcome::TimedOut { .. } => Some("Sandbox.Timedout"),
        }
    }
}

/// Captured output of a function, across all its processes.
struct LogSink {
    prefix: String,
    echo: bool,
    lines: StdMutex<Vec<String>>,
    file: Option<StdMutex<std::fs::File>>,
    notify: tokio::sync::Notify,
}

impl LogSink {
    fn push(&self, line: String) {
        if self.echo {
            eprintln!("{}{}", self.prefix, line);
        }
        if let Some(file) = &self.file
            && let Ok(mut f) = file.lock()
        {
            let _ = writeln!(f, "{line}");
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
        self.notify.notify_waiters();
    }
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(reader: R, sink: Arc<LogSink>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.push(line);
        }
    });
}

/// One live process and its Runtime API server.
struct Environment {
    server: RuntimeApiServer,
    exited: watch::Receiver<Option<String>>,
    _kill: oneshot::Sender<()>,
    served: u64,
    pid: Option<u32>,
}

impl Environment {
    fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }
}

/// A Lambda function run locally: starts its process on first use (a cold start), hands it one
/// invocation at a time through the Runtime API, restarts it after a crash or timeout, and kills
/// it when dropped.
///
/// Share it between tasks with `Arc`; concurrent `invoke` calls queue (one execution
/// environment, like a function with reserved concurrency 1).
pub struct LambdaFunction {
    cfg: FunctionConfig,
    arn: String,
    env: Mutex<Option<Environment>>,
    logs: Arc<LogSink>,
    cold_starts: AtomicU32,
    invocations: AtomicU64,
}

impl std::fmt::Debug for LambdaFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment may hold secrets: never print it.
        f.debug_struct("LambdaFunction")
            .field("name", &self.cfg.name)
            .field("binary", &self.cfg.binary)
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

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

/// Watches the process: the returned sender kills it (when sent to or dropped), the receiver
/// learns how it ended.
fn monitor(
    mut child: tokio::process::Child,
    pid: Option<u32>,
    name: String,
) -> (oneshot::Sender<()>, watch::Receiver<Option<String>>) {
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let (exit_tx, exit_rx) = watch::channel(None);
    tokio::spawn(async move {
        let (status, killed) = tokio::select! {
            status = child.wait() => (status, false),
            _ = kill_rx => {
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        };
        let detail = match status {
            Ok(s) if killed => format!("killed by the runner ({s})"),
            Ok(s) => format!("process exited: {s}"),
            Err(e) => format!("process wait failed: {e}"),
        };
        tracing::debug!(function = %name, pid, %detail, "function process ended");
        exit_tx.send_replace(Some(detail));
    });
    (kill_tx, exit_rx)
}

impl LambdaFunction {
    /// Prepares the function and starts its first process (so a missing binary fails here).
    pub async fn start(cfg: FunctionConfig) -> Result<Self> {
        let function = Self::new(cfg)?;
        {
            let mut env = function.env.lock().await;
            *env = Some(function.spawn().await?);
        }
        Ok(function)
    }

    /// Prepares the function without starting a process; the first `invoke` does.
    pub fn new(cfg: FunctionConfig) -> Result<Self> {
        if cfg.name.is_empty() {
            return Err(RunnerError::Config("function name is empty".into()));
        }
        if cfg.timeout.is_zero() {
            return Err(RunnerError::Config("function timeout is zero".into()));
        }
        let file = match &cfg.log_file {
            Some(path) => Some(StdMutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let arn = format!(
            "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}",
            cfg.region(),
            cfg.name
        );
        let logs = Arc::new(LogSink {
            prefix: format!("[{}] ", cfg.name),
            echo: cfg.echo_logs,
            lines: StdMutex::new(Vec::new()),
            file,
            notify: tokio::sync::Notify::new(),
        });
        Ok(Self {
            cfg,
            arn,
            env: Mutex::new(None),
            logs,
            cold_starts: AtomicU32::new(0),
            invocations: AtomicU64::new(0),
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The function's ARN (`arn:aws:lambda:{region}:123456789012:function:{name}`).
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &FunctionConfig {
        &self.cfg
    }

    /// Number of processes started so far (cold starts).
    pub fn cold_starts(&self) -> u32 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    /// Number of invocations so far.
    pub fn invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }

    /// All lines the function's processes wrote to stdout and stderr so far, `\n`-joined.
    pub fn logs(&self) -> String {
        self.log_lines().join("\n")
    }

    /// All captured log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Number of captured lines: a mark for [`Self::log_lines_since`].
    pub fn log_mark(&self) -> usize {
        self.logs.lines.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Lines captured after `mark`.
    pub fn log_lines_since(&self, mark: usize) -> Vec<String> {
        self.logs
            .lines
            .lock()
            .map(|l| l.get(mark..).map(<[String]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits until a captured line satisfies `pred` (output is read asynchronously, so a line
    /// the function printed during an invocation may arrive just after `invoke` returned).
    /// Returns the line, or `None` after `limit`.
    pub async fn wait_for_log(
        &self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.logs.notify.notified();
            if let Some(line) = self.log_lines().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return None;
            }
        }
    }

    /// The process id of the current process, if one is running.
    pub async fn pid(&self) -> Option<u32> {
        self.env
            .lock()
            .await
            .as_ref()
            .filter(|e| !e.has_exited())
            .and_then(|e| e.pid)
    }

    /// Stops the current process (if any). The next invocation cold-starts a new one.
    pub async fn shutdown(&self) {
        let Some(env) = self.env.lock().await.take() else {
            return;
        };
        // Kill the process before the Runtime API goes away: a runtime client whose pending
        // `next` call ends without an invocation would otherwise panic on the way out.
        let Environment {
            server,
            mut exited,
            _kill,
            ..
        } = env;
        drop(_kill);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), exited.wait_for(Option::is_some)).await;
        drop(server);
    }

    /// Starts a process of the function against a new Runtime API server (a cold start).
    async fn spawn(&self) -> Result<Environment> {
        let server = RuntimeApiServer::start(self.arn.clone()).await?;
        let mut child = self
            .command(&server.addr.to_string())
            .spawn()
            .map_err(|source| RunnerError::Spawn {
                binary: self.cfg.binary.clone(),
                source,
            })?;
        let pid = child.id();
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(function = %self.cfg.name, pid, runtime_api = %server.addr, "started function process (cold start)");
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, self.logs.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, self.logs.clone());
        }
        let (kill, exited) = monitor(child, pid, self.cfg.name.clone());
        Ok(Environment {
            server,
            exited,
            _kill: kill,
            served: 0,
            pid,
        })
    }

    /// The function's process: the binary with Lambda's environment variables (then the
    /// configured ones), stdout and stderr captured, killed when dropped.
    fn command(&self, runtime_api: &str) -> Command {
        let mut cmd = Command::new(&self.cfg.binary);
        if !self.cfg.inherit_env {
            cmd.env_clear();
            if let Ok(path) = std::env::var("PATH") {
                cmd.env("PATH", path);
            }
        }
        let stream = format!(
            "{}/[$LATEST]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            uuid::Uuid::new_v4().simple()
        );
        let task_root = self
            .cfg
            .binary
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let handler = self
            .cfg
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bootstrap".to_owned());
        cmd.env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.cfg.name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.cfg.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.cfg.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", handler)
            .env("LAMBDA_TASK_ROOT", task_root)
            .env("TZ", ":UTC")
            .envs(self.cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

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
                    let outcome = self.exited_before_start(&detail);
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

    /// The outcome of a process that exited before asking for the invocation.
    fn exited_before_start(&self, detail: &str) -> Outcome {
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

    fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let start = lines.len().saturating_sub(n);
        lines
            .get(start..)
            .map(|l| l.join(" | "))
            .unwrap_or_default()
    }
}

fn epoch_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
