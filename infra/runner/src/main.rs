//! `authtrail-runner`: runs Lambda function binaries locally with Kinesis, EventBridge-schedule
//! or one-off payloads. AWS endpoint, region and credentials come from the standard `AWS_*`
//! environment variables; the function processes inherit them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure, Outcome,
    RunnerError, ScheduleConfig, StartingPosition, run_schedule,
};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "authtrail-runner",
    version,
    about = "Runs Lambda function binaries locally through the Lambda Runtime API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct FunctionArgs {
    /// Path of the function binary.
    #[arg(long)]
    function: PathBuf,
    /// Function name (default: the binary's file name).
    #[arg(long)]
    name: Option<String>,
    /// Extra environment for the function, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Function timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Function memory size in MB.
    #[arg(long, default_value_t = 128)]
    memory_mb: u32,
    /// Also append the function's output to this file.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Kinesis event-source mapping.
    Kinesis(KinesisArgs),
    /// Invoke with EventBridge scheduled events.
    Schedule(ScheduleArgs),
    /// Invoke once with a payload from a file.
    Invoke(InvokeArgs),
}

#[derive(Args)]
struct KinesisArgs {
    #[command(flatten)]
    function: FunctionArgs,
    /// Stream name.
    #[arg(long)]
    stream: String,
    /// BatchSize (1..=10000).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// MaximumBatchingWindowInSeconds (0..=300).
    #[arg(long, default_value_t = 0)]
    window_secs: u64,
    /// StartingPosition: trim-horizon or latest.
    #[arg(long, default_value = "trim-horizon")]
    starting_position: String,
    /// FunctionResponseTypes: ReportBatchItemFailures.
    #[arg(long)]
    report_batch_item_failures: bool,
    /// MaximumRetryAttempts (-1 = infinite).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    max_retry_attempts: i64,
    /// MaximumRecordAgeInSeconds (-1 = infinite).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    max_record_age_secs: i64,
    /// BisectBatchOnFunctionError.
    #[arg(long)]
    bisect: bool,
    /// On-failure destination: bucket or bucket/prefix.
    #[arg(long)]
    on_failure_s3: Option<String>,
    /// Wait before retrying a failed batch, milliseconds.
    #[arg(long, default_value_t = 500)]
    retry_backoff_ms: u64,
    /// Wait between reads of an idle shard, milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Stop once every shard is caught up.
    #[arg(long, conflicts_with = "duration_secs")]
    drain: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
}

#[derive(Args)]
struct ScheduleArgs {
    #[command(flatten)]
    function: FunctionArgs,
    /// Interval in seconds (fractions allowed).
    #[arg(long, default_value_t = 60.0)]
    every_secs: f64,
    /// Stop after N invocations (default: until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Rule name in the event's resources.
    #[arg(long, default_value = "authtrail-schedule")]
    rule: String,
}

#[derive(Args)]
struct InvokeArgs {
    #[command(flatten)]
    function: FunctionArgs,
    /// File with the JSON payload.
    #[arg(long)]
    payload_file: PathBuf,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn function_config(a: &FunctionArgs) -> FunctionConfig {
    let name = a.name.clone().unwrap_or_else(|| {
        a.function
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".to_owned())
    });
    let mut cfg = FunctionConfig::new(name, a.function.clone())
        .with_env(a.env.clone())
        .with_timeout(Duration::from_secs(a.timeout_secs.max(1)));
    cfg.memory_mb = a.memory_mb;
    cfg.log_file = a.log_file.clone();
    cfg
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response(body) => String::from_utf8_lossy(body).into_owned(),
        other => format!("{other:?}"),
    }
}

async fn run(cli: Cli) -> Result<bool, RunnerError> {
    match cli.command {
        Command::Kinesis(k) => {
            let function = Arc::new(LambdaFunction::start(function_config(&k.function)).await?);
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let starting_position = match k.starting_position.to_ascii_lowercase().as_str() {
                "trim-horizon" | "trim_horizon" => StartingPosition::TrimHorizon,
                "latest" => StartingPosition::Latest,
                other => {
                    return Err(RunnerError::Config(format!(
                        "--starting-position {other:?}: expected trim-horizon or latest"
                    )));
                }
            };
            let cfg = KinesisSourceConfig {
                stream_name: k.stream,
                batch_size: k.batch_size,
                max_batching_window: Duration::from_secs(k.window_secs),
                starting_position,
                report_batch_item_failures: k.report_batch_item_failures,
                max_retry_attempts: k.max_retry_attempts,
                max_record_age: u64::try_from(k.max_record_age_secs)
                    .ok()
                    .map(Duration::from_secs),
                bisect_batch_on_function_error: k.bisect,
                on_failure: k
                    .on_failure_s3
                    .as_deref()
                    .map(OnFailure::s3_from_str)
                    .transpose()?,
                retry_backoff: Duration::from_millis(k.retry_backoff_ms),
                poll_interval: Duration::from_millis(k.poll_interval_ms.max(1)),
                ..KinesisSourceConfig::default()
            };
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
        Command::Schedule(s) => {
            let function = LambdaFunction::start(function_config(&s.function)).await?;
            let every = Duration::try_from_secs_f64(s.every_secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| RunnerError::Config("--every-secs must be positive".into()))?;
            let mut cfg = ScheduleConfig::every(s.rule, every);
            cfg.count = s.count;
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
        Command::Invoke(i) => {
            let payload = tokio::fs::read(&i.payload_file).await?;
            let function = LambdaFunction::new(function_config(&i.function))?;
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
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("authtrail-runner: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
