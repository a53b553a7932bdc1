//! `authtrail-check`: did every event arrive, once? See `--help`; the command lives in
//! [`authtrail_check::cli`].

use std::process::ExitCode;

use authtrail_check::cli::{self, Args};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Args::parse()).await
}
