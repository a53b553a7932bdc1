//! Local test harness: starts the AWS emulator (moto's server) on a free loopback port, points
//! the SDK at it, and always stops it, also when a test fails (the child is killed on drop).
//!
//! Used by the integration tests, the benchmarks and `make demo`. Nothing here is
//! emulator-specific in the functions themselves: they read the standard `AWS_*` variables that
//! [`Emulator::env`] returns.

pub mod activemq;
pub mod kafka;
mod postgres;
mod proxy;

pub use postgres::{Database, Postgres, pg_bin_dir, shared as shared_postgres};
pub use proxy::CutProxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::process::{Child, Command};

/// Errors of the harness: each names what is missing and how to get it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        what: String,
        path: String,
        hint: &'static str,
    },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs} s (log: {log})")]
    NotReady {
        what: String,
        secs: u64,
        log: String,
    },
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("AWS call failed: {0}")]
    Aws(String),
    #[error("test setup failed: {0}")]
    Setup(String),
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        what: String,
        status: String,
        stderr: String,
    },
}

/// The workspace root (where the top-level `Cargo.toml` and `.venv/` live).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// The directory holding the workspace's built binaries for the current profile.
///
/// Order: `AUTHTRAIL_BIN_DIR`, then the directory of the running executable (or its parent when
/// it runs from `deps/`, as test binaries do), then `target/debug` under the workspace root.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUTHTRAIL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let dir = if dir.ends_with("deps") {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        return dir.to_path_buf();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// Path of a workspace binary (for example `authtrail-archiver`), built for the current profile.
pub fn bin_path(name: &str) -> Result<PathBuf, HarnessError> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Missing {
            what: format!("binary {name}"),
            path: path.display().to_string(),
            hint: "build the workspace binaries first: `cargo build --workspace --bins` (make test does)",
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound, read and released; good enough for local servers).
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Path of a tool installed in the project's virtualenv (`.venv/bin/NAME`).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("AUTHTRAIL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    venv.join("bin").join(name)
}

/// A directory for logs and scratch files of one harness run, removed on drop unless
/// `AUTHTRAIL_KEEP_LOGS` is set.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Result<Self, HarnessError> {
        let base = std::env::var_os("AUTHTRAIL_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let unique = format!(
            "authtrail-{label}-{}-{}",
            std::process::id(),
            SCRATCH_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let path = base.join(unique);
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

static SCRATCH_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("AUTHTRAIL_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// moto's server, running on a free loopback port until dropped.
#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
    region: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    _scratch: ScratchDir,
}

/// Waits until `url` answers 2xx, failing early when the child exits.
pub async fn wait_ready(child: &mut Child, url: &str, log: &Path) -> Result<(), HarnessError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| HarnessError::Aws(e.to_string()))?;
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HarnessError::NotReady {
                what: format!("{url} (process exited with {status})"),
                secs: started.elapsed().as_secs(),
                log: log.display().to_string(),
            });
        }
        if let Ok(resp) = client.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(HarnessError::NotReady {
        what: url.to_string(),
        secs: START_TIMEOUT.as_secs(),
        log: log.display().to_string(),
    })
}

/// Dummy credentials: moto accepts any; real ones must never reach a local run.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";
/// The account moto reports for every resource.
pub const ACCOUNT_ID: &str = "123456789012";

const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Emulator {
    /// Starts moto's server from the project's virtualenv on a free port and waits until it
    /// answers. Run `make venv` (or `make test`) once to install it.
    ///
    /// The server is `infra/python/moto_server.py`: moto's own server with its Kinesis shard
    /// store made O(1) per put and safe for concurrent puts (see that file). `MOTO_SERVER`
    /// names another server executable to run instead (it gets `-H 127.0.0.1 -p PORT`).
    pub async fn start() -> Result<Self, HarnessError> {
        let (program, mut args) = match std::env::var_os("MOTO_SERVER") {
            Some(server) => (PathBuf::from(server), Vec::new()),
            None => (
                venv_bin("python3"),
                vec![
                    workspace_root()
                        .join("infra/python/moto_server.py")
                        .into_os_string(),
                ],
            ),
        };
        if !program.is_file() {
            return Err(HarnessError::Missing {
                what: "moto_server".into(),
                path: program.display().to_string(),
                hint: "install the pinned Python tools with `make venv`",
            });
        }
        args.extend(["-H".into(), "127.0.0.1".into(), "-p".into()]);
        let scratch = ScratchDir::new("moto")?;
        let log = scratch.path().join("moto.log");
        // A port picked here can be taken by someone else before moto binds it: retry a few times.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log_file = std::fs::File::create(&log)?;
            let mut child = Command::new(&program)
                .args(&args)
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| HarnessError::Spawn {
                    what: "moto_server".into(),
                    source,
                })?;
            let endpoint = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut child, &format!("{endpoint}/moto-api/"), &log).await {
                Ok(()) => {
                    return Ok(Self {
                        endpoint,
                        region: REGION.to_string(),
                        port,
                        child: Some(child),
                        log,
                        _scratch: scratch,
                    });
                }
                Err(e) => {
                    let _ = child.kill().await;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(HarnessError::NotReady {
            what: "moto_server".into(),
            secs: START_TIMEOUT.as_secs(),
            log: log.display().to_string(),
        }))
    }

    /// Stops the server now (drop does the same without waiting).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Path of the server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The standard AWS variables that point an SDK (or a spawned function) at this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), self.region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.region.clone()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_S3_FORCE_PATH_STYLE".into(), "true".into()),
        ]
    }

    /// An SDK configuration for this emulator (dummy static credentials, fixed region).
    pub async fn sdk_config(&self) -> SdkConfig {
        let creds = aws_sdk_kinesis::config::Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "authtrail-harness",
        );
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .load()
            .await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk_config().await)
    }

    /// Creates a provisioned stream with `shards` shards and waits until it is ACTIVE.
    /// Returns the stream ARN.
    pub async fn create_stream(&self, name: &str, shards: i32) -> Result<String, HarnessError> {
        let kinesis = self.kinesis().await;
        kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .map_err(|e| HarnessError::Aws(format!("CreateStream {name}: {e:?}")))?;
        let started = Instant::now();
        loop {
            let desc = kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .map_err(|e| HarnessError::Aws(format!("DescribeStreamSummary {name}: {e:?}")))?;
            if let Some(summary) = desc.stream_description_summary()
                && summary.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active
            {
                return Ok(summary.stream_arn().to_string());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(HarnessError::Aws(format!(
                    "stream {name} not ACTIVE after 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn create_bucket(&self, name: &str) -> Result<(), HarnessError> {
        self.s3()
            .await
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| HarnessError::Aws(format!("CreateBucket {name}: {e:?}")))?;
        Ok(())
    }

    /// Every object under `prefix` in `bucket`, in key order, as (key, body).
    pub async fn objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, HarnessError> {
        let s3 = self.s3().await;
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| HarnessError::Aws(format!("ListObjectsV2 {bucket}: {e:?}")))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| HarnessError::Aws(format!("GetObject {bucket}/{key}: {e:?}")))?
                .body
                .collect()
                .await
                .map_err(|e| HarnessError::Aws(format!("GetObject {bucket}/{key} body: {e}")))?
                .into_bytes()
                .to_vec();
            out.push((key, body));
        }
        Ok(out)
    }

    /// Wipes all emulator state (moto's `POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<(), HarnessError> {
        let resp = reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint))
            .send()
            .await
            .map_err(|e| HarnessError::Aws(format!("reset: {e}")))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(HarnessError::Aws(format!(
                "reset answered {}",
                resp.status()
            )))
        }
    }
}
