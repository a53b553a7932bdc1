//! `authtrail-demo`: the whole pipeline on this machine. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use authtrail_demo::{DemoOptions, run};
use clap::Parser;

/// Runs the whole authtrail pipeline locally on the AWS emulator: MPAS simulator -> producer ->
/// Kinesis -> archiver (S3) and forwarder (Splunk HEC, Elasticsearch, webhook, syslog over TLS),
/// then accounts for every event, and reconciles every window of the traffic as a deployment
/// does. Exit status 0 when the accounting and the reconciliation say complete.
#[derive(Parser, Debug)]
#[command(name = "authtrail-demo", version)]
struct Args {
    /// Seconds of traffic at the identity provider.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Events per second made at the identity provider.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Fraction of MPAS API requests that fail (500, 429, slow, truncated).
    #[arg(long, default_value_t = 0.05)]
    fault_rate: f64,
    /// Take the HTTPS SIEM receiver down for this many seconds, one third into the run. An
    /// outage longer than the rest of the run (e.g. 120 with the default 60 s run: longer than
    /// every retry budget of the run) lasts its full length after the traffic stops; the
    /// forwarder spools meanwhile and the demo ends once the spool is redriven.
    #[arg(long)]
    siem_outage_secs: Option<u64>,
    /// Seconds between the forwarder's scheduled spool redrives (AWS: 60; sped up for the demo).
    #[arg(long, default_value_t = 5)]
    redrive_every_secs: u64,
    /// Seconds between producer runs (AWS: 60; sped up for the demo).
    #[arg(long, default_value_t = 3)]
    producer_every_secs: u64,
    /// Where the ledger, the SIEM samples and the report go.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Keep everything running after the summary, for exploration, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Window of the reconciliation, seconds (a multiple of 60; AWS default 300).
    #[arg(long, default_value_t = 60)]
    reconcile_window_secs: u64,
    /// After the reconciliation, delete this many events from one archive object and reconcile
    /// again, to see them reported.
    #[arg(long, default_value_t = 0)]
    tamper_archive: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = DemoOptions {
        duration: Duration::from_secs(args.duration_secs),
        rate: args.rate,
        fault_rate: args.fault_rate,
        siem_outage: args.siem_outage_secs.map(Duration::from_secs),
        redrive_every: Duration::from_secs(args.redrive_every_secs.max(1)),
        producer_every: Duration::from_secs(args.producer_every_secs.max(1)),
        keep_running: args.keep_running,
        seed: args.seed,
        reconcile_window: Duration::from_secs(args.reconcile_window_secs.max(60)),
        tamper_archive: args.tamper_archive,
        ..DemoOptions::default()
    };
    if let Some(dir) = args.out_dir {
        opts.out_dir = dir;
    }
    match run(opts).await {
        Ok(outcome)
            if outcome.report.complete
                && outcome
                    .reconciled
                    .as_ref()
                    .is_some_and(|r| r.report.complete) =>
        {
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("authtrail-demo: {e}");
            ExitCode::from(2)
        }
    }
}
