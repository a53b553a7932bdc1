//! `mpas-sim`: serves the MPAS (Keycloak) simulator until SIGINT/SIGTERM.
//!
//! Prints exactly one line to stdout, `listening on http://ADDR`, once the port is bound and
//! the history is generated; logs go to stderr. The command lives in [`mpas_sim::cli`].

use std::process::ExitCode;

use clap::Parser;
use mpas_sim::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_tracing();
    cli::run(Cli::parse()).await
}
