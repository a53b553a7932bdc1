//! `authtrail-verify`: see `--help`; the command lives in [`authtrail_verify::cli`].

use std::process::ExitCode;

use authtrail_verify::cli::{self, Args};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Args::parse()).await
}
