//! `authtrail-replay`: see `--help`; the command lives in [`authtrail_replay::cli`].

use std::process::ExitCode;

use authtrail_replay::cli::{self, Args};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Args::parse()).await
}
