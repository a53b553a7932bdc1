//! `authtrail-runner`: runs Lambda function binaries locally with Kinesis, EventBridge-schedule
//! or one-off payloads. AWS endpoint, region and credentials come from the standard `AWS_*`
//! environment variables; the function processes inherit them. The commands live in
//! [`authtrail_runner::cli`].

use authtrail_runner::cli::{self, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::init_tracing();
    cli::run(Cli::parse()).await
}
