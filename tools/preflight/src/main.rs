//! `authtrail-preflight`: can this deployment do its job? See `--help`; the command lives in
//! [`authtrail_preflight::cli`].

use std::process::ExitCode;

use authtrail_preflight::cli::{self, Args};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Args::parse()).await
}
