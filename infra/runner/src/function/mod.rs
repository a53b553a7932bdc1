//! One Lambda function and its execution environment: a child process running the function
//! binary against a local Runtime API server, one invocation at a time.
//!
//! `config` says how to run it, `process` starts and watches the process, `invoke` carries
//! one invocation through, `outcome` is what came of it, `logs` the captured output.

mod config;
mod invoke;
mod logs;
mod outcome;
mod process;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::error::{Result, RunnerError};
use logs::LogSink;
use process::Environment;

pub use config::FunctionConfig;
pub use outcome::{Invocation, Outcome};

/// Lambda's synchronous invocation payload limit (request and response), 6 MB.
pub const MAX_INVOKE_PAYLOAD_BYTES: usize = 6_291_456;

/// The account id the runner puts into ARNs (moto's default account).
pub const ACCOUNT_ID: &str = "123456789012";

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
    /// Pid of the latest process (0: none yet), readable while an invocation runs.
    current_pid: AtomicU32,
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
            open_readers: std::sync::atomic::AtomicUsize::new(0),
        });
        Ok(Self {
            cfg,
            arn,
            env: Mutex::new(None),
            logs,
            cold_starts: AtomicU32::new(0),
            invocations: AtomicU64::new(0),
            current_pid: AtomicU32::new(0),
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

    /// Kills the latest process with SIGKILL at once, also in the middle of an invocation (a
    /// crash as Lambda sees one: the invocation ends as crashed, the next one cold-starts).
    /// Returns the pid signalled, or `None` when no process was started yet or the signal could
    /// not be sent (the process had already ended).
    pub fn kill_now(&self) -> Option<u32> {
        let pid = self.current_pid.load(Ordering::Relaxed);
        if pid == 0 {
            return None;
        }
        let sent = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        sent.then_some(pid)
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
}
