//! How to run one function: [`FunctionConfig`].

use std::path::PathBuf;
use std::time::Duration;

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

    /// The region of the function's ARN (see [`Self::region`]'s field doc).
    pub(super) fn region(&self) -> String {
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
