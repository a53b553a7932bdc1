//! The function's process: its command line and environment, the cold start, and the monitor
//! that notices when it ends.

use std::process::Stdio;
use std::sync::atomic::Ordering;

use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use super::LambdaFunction;
use super::logs::spawn_reader;
use crate::error::{Result, RunnerError};
use crate::runtime_api::RuntimeApiServer;

/// One live process and its Runtime API server.
pub(super) struct Environment {
    pub(super) server: RuntimeApiServer,
    pub(super) exited: watch::Receiver<Option<String>>,
    pub(super) _kill: oneshot::Sender<()>,
    pub(super) served: u64,
    pub(super) pid: Option<u32>,
}

impl Environment {
    /// Whether the process has ended.
    pub(super) fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }
}

impl LambdaFunction {
    /// Starts a process of the function against a new Runtime API server (a cold start).
    pub(super) async fn spawn(&self) -> Result<Environment> {
        let server = RuntimeApiServer::start(self.arn.clone()).await?;
        let mut child = self
            .command(&server.addr.to_string())
            .spawn()
            .map_err(|source| RunnerError::Spawn {
                binary: self.cfg.binary.clone(),
                source,
            })?;
        let pid = child.id();
        self.current_pid.store(pid.unwrap_or(0), Ordering::Relaxed);
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
