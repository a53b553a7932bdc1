//! The `authtrail-runner` command line: its arguments ([`Cli`]), their translation into a
//! [`FunctionConfig`], a [`KinesisSourceConfig`] or a [`ScheduleConfig`], and [`run`], which
//! carries out one command and says how it went as an exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{Result, RunnerError};
use crate::function::{FunctionConfig, LambdaFunction, Outcome};
use crate::kinesis::{KinesisEventSource, KinesisSourceConfig, OnFailure, StartingPosition};
use crate::schedule::{ScheduleConfig, run_schedule};

/// Exit status when something was not processed: records discarded, invocations failed.
pub const EXIT_INCOMPLETE: u8 = 2;

/// `authtrail-runner`: runs Lambda function binaries locally through the Lambda Runtime API.
#[derive(Debug, Parser)]
#[command(
    name = "authtrail-runner",
    version,
    about = "Runs Lambda function binaries locally through the Lambda Runtime API"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The function to run and its execution environment.
#[derive(Debug, Args, Clone)]
pub struct FunctionArgs {
    /// Path of the function binary.
    #[arg(long)]
    pub function: PathBuf,
    /// Function name (default: the binary's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Extra environment for the function, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Function timeout in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Function memory size in MB.
    #[arg(long, default_value_t = 128)]
    pub memory_mb: u32,
    /// Also append the function's output to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// The runner's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Kinesis event-source mapping.
    Kinesis(KinesisArgs),
    /// Invoke with EventBridge scheduled events.
    Schedule(ScheduleArgs),
    /// Invoke once with a payload from a file.
    Invoke(InvokeArgs),
}

/// `kinesis`: an event-source mapping, settings named as in `AWS::Lambda::EventSourceMapping`.
#[derive(Debug, Args)]
pub struct KinesisArgs {
    /// The function.
    #[command(flatten)]
    pub function: FunctionArgs,
    /// Stream name.
    #[arg(long)]
    pub stream: String,
    /// BatchSize (1..=10000).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// MaximumBatchingWindowInSeconds (0..=300).
    #[arg(long, default_value_t = 0)]
    pub window_secs: u64,
    /// StartingPosition: trim-horizon or latest.
    #[arg(long, default_value = "trim-horizon")]
    pub starting_position: String,
    /// FunctionResponseTypes: ReportBatchItemFailures.
    #[arg(long)]
    pub report_batch_item_failures: bool,
    /// MaximumRetryAttempts (-1 = infinite).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub max_retry_attempts: i64,
    /// MaximumRecordAgeInSeconds (-1 = infinite).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub max_record_age_secs: i64,
    /// BisectBatchOnFunctionError.
    #[arg(long)]
    pub bisect: bool,
    /// On-failure destination: bucket or bucket/prefix.
    #[arg(long)]
    pub on_failure_s3: Option<String>,
    /// Wait before retrying a failed batch, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// Wait between reads of an idle shard, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// Stop once every shard is caught up.
    #[arg(long, conflicts_with = "duration_secs")]
    pub drain: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration_secs: Option<u64>,
}

/// `schedule`: EventBridge scheduled events every N seconds.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The function.
    #[command(flatten)]
    pub function: FunctionArgs,
    /// Interval in seconds (fractions allowed).
    #[arg(long, default_value_t = 60.0)]
    pub every_secs: f64,
    /// Stop after N invocations (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Rule name in the event's resources.
    #[arg(long, default_value = "authtrail-schedule")]
    pub rule: String,
}

/// `invoke`: one invocation with a payload from a file.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function.
    #[command(flatten)]
    pub function: FunctionArgs,
    /// File with the JSON payload.
    #[arg(long)]
    pub payload_file: PathBuf,
}

/// Parses `KEY=VALUE` (the key not empty; the value may be, and may hold `=`).
fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parses `--starting-position`: `trim-horizon` (or `trim_horizon`) or `latest`, any case.
fn parse_starting_position(s: &str) -> Result<StartingPosition> {
    match s.to_ascii_lowercase().as_str() {
        "trim-horizon" | "trim_horizon" => Ok(StartingPosition::TrimHorizon),
        "latest" => Ok(StartingPosition::Latest),
        other => Err(RunnerError::Config(format!(
            "--starting-position {other:?}: expected trim-horizon or latest"
        ))),
    }
}

/// The file name of `binary`, the default function name.
fn binary_name(binary: &Path) -> String {
    binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".to_owned())
}

impl FunctionArgs {
    /// The function's configuration (a timeout of at least one second).
    pub fn function_config(&self) -> FunctionConfig {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| binary_name(&self.function));
        let mut cfg = FunctionConfig::new(name, self.function.clone())
            .with_env(self.env.clone())
            .with_timeout(Duration::from_secs(self.timeout_secs.max(1)));
        cfg.memory_mb = self.memory_mb;
        cfg.log_file = self.log_file.clone();
        cfg
    }
}

impl KinesisArgs {
    /// The mapping's settings: a negative record age is infinite, the poll interval at least
    /// 1 ms; the ranges are checked by [`KinesisSourceConfig::validate`] when the source starts.
    pub fn source_config(&self) -> Result<KinesisSourceConfig> {
        Ok(KinesisSourceConfig {
            stream_name: self.stream.clone(),
            batch_size: self.batch_size,
            max_batching_window: Duration::from_secs(self.window_secs),
            starting_position: parse_starting_position(&self.starting_position)?,
            report_batch_item_failures: self.report_batch_item_failures,
            max_retry_attempts: self.max_retry_attempts,
            max_record_age: u64::try_from(self.max_record_age_secs)
                .ok()
                .map(Duration::from_secs),
            bisect_batch_on_function_error: self.bisect,
            on_failure: self
                .on_failure_s3
                .as_deref()
                .map(OnFailure::s3_from_str)
                .transpose()?,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            ..KinesisSourceConfig::default()
        })
    }
}

impl ScheduleArgs {
    /// The schedule: the interval must be a positive number of seconds.
    pub fn schedule_config(&self) -> Result<ScheduleConfig> {
        let every = Duration::try_from_secs_f64(self.every_secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| RunnerError::Config("--every-secs must be positive".into()))?;
        let mut cfg = ScheduleConfig::every(self.rule.clone(), every);
        cfg.count = self.count;
        Ok(cfg)
    }
}

/// Completes on Ctrl-C (never, if the signal cannot be listened for).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// An outcome for stdout: a response body as text, anything else in its debug form.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response(body) => String::from_utf8_lossy(body).into_owned(),
        other => format!("{other:?}"),
    }
}

/// The exit status of a command: 0 when everything was processed, [`EXIT_INCOMPLETE`] when
/// not, 1 when the runner failed.
pub fn exit_status(result: &Result<bool>) -> u8 {
    match result {
        Ok(true) => 0,
        Ok(false) => EXIT_INCOMPLETE,
        Err(_) => 1,
    }
}

/// Runs one command; prints its summary line, and the error if it failed (on stderr).
pub async fn run(cli: Cli) -> ExitCode {
    let result = execute(cli).await;
    if let Err(e) = &result {
        eprintln!("authtrail-runner: {e}");
    }
    ExitCode::from(exit_status(&result))
}

/// Runs one command: `Ok(true)` when everything was processed.
pub async fn execute(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Kinesis(k) => run_kinesis(k).await,
        Command::Schedule(s) => run_schedule_command(s).await,
        Command::Invoke(i) => run_invoke(i).await,
    }
}

/// `kinesis`: the mapping until drained, for a time or until Ctrl-C; complete when nothing was
/// discarded.
async fn run_kinesis(k: KinesisArgs) -> Result<bool> {
    let function = Arc::new(LambdaFunction::start(k.function.function_config()).await?);
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let cfg = k.source_config()?;
    let source = KinesisEventSource::new(&sdk, cfg, function.clone()).await?;
    let stats = if k.drain {
        source.drain().await?
    } else if let Some(secs) = k.duration_secs {
        source
            .run_until(async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(secs)) => {}
                    () = ctrl_c() => {}
                }
            })
            .await?
    } else {
        source.run_until(ctrl_c()).await?
    };
    println!(
        "authtrail-runner kinesis function={} {stats} cold_starts={}",
        function.name(),
        function.cold_starts()
    );
    Ok(stats.total.records_discarded == 0)
}

/// `schedule`: scheduled invocations until the count or Ctrl-C; complete when all succeeded.
async fn run_schedule_command(s: ScheduleArgs) -> Result<bool> {
    let function = LambdaFunction::start(s.function.function_config()).await?;
    let cfg = s.schedule_config()?;
    let done = run_schedule(&function, &cfg, ctrl_c()).await?;
    let ok = done.iter().filter(|i| i.is_success()).count();
    println!(
        "authtrail-runner schedule function={} invocations={} succeeded={} failed={} cold_starts={}",
        function.name(),
        done.len(),
        ok,
        done.len() - ok,
        function.cold_starts()
    );
    Ok(ok == done.len())
}

/// `invoke`: one invocation; the outcome on stdout, a summary on stderr.
async fn run_invoke(i: InvokeArgs) -> Result<bool> {
    let payload = tokio::fs::read(&i.payload_file).await?;
    let function = LambdaFunction::new(i.function.function_config())?;
    let invocation = function.invoke(payload).await?;
    println!("{}", describe(&invocation.outcome));
    eprintln!(
        "authtrail-runner invoke function={} outcome={} duration_ms={} request_id={}",
        function.name(),
        invocation.outcome.kind(),
        invocation.duration.as_millis(),
        invocation.request_id
    );
    Ok(invocation.is_success())
}

/// Logs to stderr, filtered by `RUNNER_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("authtrail-runner").chain(args.iter().copied()))
    }

    fn kinesis(args: &[&str]) -> KinesisArgs {
        let mut all = vec![
            "kinesis",
            "--function",
            "/bin/archiver",
            "--stream",
            "audit",
        ];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Kinesis(k) => k,
            other => panic!("expected kinesis, got {other:?}"),
        }
    }

    fn schedule(args: &[&str]) -> ScheduleArgs {
        let mut all = vec!["schedule", "--function", "/bin/producer"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Schedule(s) => s,
            other => panic!("expected schedule, got {other:?}"),
        }
    }

    #[test]
    fn kinesis_defaults_are_the_aws_defaults_with_infinite_retries_and_age() {
        let cfg = kinesis(&[]).source_config().unwrap();
        assert_eq!(cfg.stream_name, "audit");
        assert_eq!(cfg.batch_size, 100);
        assert_eq!(cfg.max_batching_window, Duration::ZERO);
        assert_eq!(cfg.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(cfg.max_retry_attempts, -1);
        assert_eq!(cfg.max_record_age, None);
        assert!(!cfg.report_batch_item_failures && !cfg.bisect_batch_on_function_error);
        assert_eq!(cfg.on_failure, None);
        assert_eq!(cfg.retry_backoff, Duration::from_millis(500));
        assert_eq!(cfg.poll_interval, Duration::from_secs(1));
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn kinesis_flags_map_onto_the_event_source_mapping_settings() {
        let k = kinesis(&[
            "--batch-size",
            "10000",
            "--window-secs",
            "60",
            "--starting-position",
            "LATEST",
            "--report-batch-item-failures",
            "--max-retry-attempts",
            "3",
            "--max-record-age-secs",
            "120",
            "--bisect",
            "--on-failure-s3",
            "dlq/esm",
            "--retry-backoff-ms",
            "10",
            "--poll-interval-ms",
            "0",
            "--drain",
        ]);
        assert!(k.drain);
        let cfg = k.source_config().unwrap();
        assert_eq!(cfg.batch_size, 10_000);
        assert_eq!(cfg.max_batching_window, Duration::from_secs(60));
        assert_eq!(cfg.starting_position, StartingPosition::Latest);
        assert!(cfg.report_batch_item_failures && cfg.bisect_batch_on_function_error);
        assert_eq!(cfg.max_retry_attempts, 3);
        assert_eq!(cfg.max_record_age, Some(Duration::from_secs(120)));
        assert_eq!(
            cfg.on_failure,
            Some(OnFailure::S3 {
                bucket: "dlq".into(),
                prefix: "esm".into()
            })
        );
        assert_eq!(cfg.retry_backoff, Duration::from_millis(10));
        // A zero poll interval is raised to 1 ms (zero is invalid).
        assert_eq!(cfg.poll_interval, Duration::from_millis(1));
    }

    #[test]
    fn starting_position_accepts_both_spellings_and_rejects_others() {
        let pos = |s: &str| kinesis(&["--starting-position", s]).source_config();
        assert_eq!(
            pos("trim_horizon").unwrap().starting_position,
            StartingPosition::TrimHorizon
        );
        assert_eq!(
            pos("Trim-Horizon").unwrap().starting_position,
            StartingPosition::TrimHorizon
        );
        let err = pos("at-timestamp").unwrap_err().to_string();
        assert!(err.contains("--starting-position"), "{err}");
    }

    #[test]
    fn on_failure_destination_without_a_bucket_is_rejected() {
        assert!(
            kinesis(&["--on-failure-s3", "/prefix"])
                .source_config()
                .is_err()
        );
    }

    #[test]
    fn drain_and_duration_cannot_be_given_together() {
        let args = [
            "kinesis",
            "--function",
            "f",
            "--stream",
            "s",
            "--drain",
            "--duration-secs",
            "5",
        ];
        assert!(parse(&args).is_err());
    }

    #[test]
    fn env_flags_must_be_key_equals_value() {
        let k = kinesis(&["--env", "A=1", "--env", "B=x=y", "--env", "C="]);
        let env = k.function.function_config().env;
        for pair in [("A", "1"), ("B", "x=y"), ("C", "")] {
            assert!(
                env.contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?} in {env:?}"
            );
        }
        let bad = ["kinesis", "--function", "f", "--stream", "s", "--env", "=v"];
        assert!(parse(&bad).is_err());
        assert!(parse(&["kinesis", "--function", "f", "--stream", "s", "--env", "A"]).is_err());
    }

    #[test]
    fn function_is_named_after_its_binary_unless_named_and_times_out_after_at_least_a_second() {
        let k = kinesis(&["--timeout-secs", "0", "--memory-mb", "512"]);
        let cfg = k.function.function_config();
        assert_eq!(cfg.name, "archiver");
        assert_eq!(cfg.timeout, Duration::from_secs(1));
        assert_eq!(cfg.memory_mb, 512);
        let named = kinesis(&["--name", "archive-fn"])
            .function
            .function_config();
        assert_eq!(named.name, "archive-fn");
    }

    #[test]
    fn schedule_interval_must_be_positive() {
        let cfg = schedule(&["--every-secs", "0.5", "--count", "3"])
            .schedule_config()
            .unwrap();
        assert_eq!(cfg.count, Some(3));
        for bad in ["0", "NaN", "inf", "1e30"] {
            assert!(
                schedule(&["--every-secs", bad]).schedule_config().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn exit_status_is_zero_when_complete_two_when_incomplete_one_on_error() {
        assert_eq!(exit_status(&Ok(true)), 0);
        assert_eq!(exit_status(&Ok(false)), EXIT_INCOMPLETE);
        assert_eq!(exit_status(&Err(RunnerError::Config("x".into()))), 1);
    }
}
