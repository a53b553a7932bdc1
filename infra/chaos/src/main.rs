//! `authtrail-chaos`: the chaos run. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use authtrail_chaos::{ChaosOptions, Counts, run};
use clap::Parser;

/// Runs the whole pipeline on the emulator with faults injected on a seeded schedule, then
/// accounts for every record per place. Exit status 0 when nothing was lost and every
/// duplicate is one the guarantees allow; 1 otherwise; 2 when the run itself failed.
#[derive(Parser, Debug)]
#[command(name = "authtrail-chaos", version)]
struct Args {
    /// Events made at the identity provider.
    #[arg(long, env = "CHAOS_EVENTS", default_value_t = 1_000_000)]
    events: u64,
    /// Seconds of traffic (every fault's time and length is a fraction of it).
    #[arg(long, env = "CHAOS_DURATION_SECS", default_value_t = 1500)]
    duration_secs: u64,
    /// Seed of the traffic and of the fault schedule.
    #[arg(long, env = "CHAOS_SEED", default_value_t = 42)]
    seed: u64,
    /// Fraction of MPAS requests that fail.
    #[arg(long, env = "CHAOS_MPAS_FAULT_RATE", default_value_t = 0.2)]
    mpas_fault_rate: f64,
    /// Producer SIGKILLs.
    #[arg(long, env = "CHAOS_KILLS", default_value_t = 10)]
    kills: usize,
    /// MPAS token expiries.
    #[arg(long, env = "CHAOS_TOKEN_EXPIRIES", default_value_t = 10)]
    token_expiries: usize,
    /// Where the output goes.
    #[arg(long, env = "CHAOS_OUT_DIR", default_value = "chaos-out")]
    out_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    let opts = ChaosOptions {
        events: a.events,
        duration: Duration::from_secs(a.duration_secs.max(10)),
        seed: a.seed,
        mpas_fault_rate: a.mpas_fault_rate,
        counts: Counts {
            kills: a.kills,
            token_expiries: a.token_expiries,
        },
        out_dir: a.out_dir,
        ..ChaosOptions::default()
    };
    match run(opts).await {
        Ok(o) if o.verdict.pass => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("authtrail-chaos: {e}");
            ExitCode::from(2)
        }
    }
}
