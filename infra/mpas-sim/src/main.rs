//! `mpas-sim`: serves the MPAS (Keycloak) simulator until SIGINT/SIGTERM.
//!
//! Prints exactly one line to stdout, `listening on http://ADDR`, once the port is bound and
//! the history is generated; logs go to stderr.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mpas_sim::{FaultRates, Secret, Sim, SimConfig, TrafficConfig};

/// MPAS (Keycloak Admin REST API) simulator: token and events endpoints, realistic traffic,
/// faults and a ledger under /sim.
#[derive(Debug, Parser)]
#[command(name = "mpas-sim", version)]
struct Cli {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "MPAS_SIM_LISTEN")]
    listen: String,
    /// Realm name.
    #[arg(long, default_value = "demo")]
    realm: String,
    /// Realm internal id (`realmId` in events); derived from the seed by default.
    #[arg(long)]
    realm_id: Option<String>,
    /// Confidential client allowed the client_credentials grant.
    #[arg(long, default_value = "authtrail")]
    client_id: String,
    /// Its secret.
    #[arg(
        long,
        env = "MPAS_SIM_CLIENT_SECRET",
        default_value = "authtrail-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// User allowed the password grant (client_id=admin-cli).
    #[arg(long)]
    username: Option<String>,
    /// That user's password.
    #[arg(long, env = "MPAS_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Access token lifetime, seconds.
    #[arg(long, default_value_t = 300)]
    token_lifetime: u64,
    /// Seed of the traffic generator and fault draws.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Events per second (live traffic and history spacing).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Do not generate live traffic (history and /sim/generate only).
    #[arg(long)]
    no_live: bool,
    /// Events generated at start-up over the preceding history/rate seconds.
    #[arg(long, default_value_t = 0)]
    history: u64,
    /// End of the start-up history, epoch ms (default: now).
    #[arg(long)]
    history_end_ms: Option<i64>,
    /// Fraction of success events committed late.
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    /// Maximum commit delay of a late event, ms.
    #[arg(long, default_value_t = 5000)]
    late_max_ms: u64,
    /// Fraction of events in same-millisecond bursts.
    #[arg(long, default_value_t = 0.0)]
    tie_fraction: f64,
    /// Events per same-millisecond burst.
    #[arg(long, default_value_t = 20)]
    tie_burst: u32,
    /// Fraction of admin events.
    #[arg(long, default_value_t = 0.1)]
    admin_fraction: f64,
    /// Size of the user pool.
    #[arg(long, default_value_t = 200)]
    users: u32,
    /// Behave like Keycloak before 26.2 (no id, no direction, day-only dates).
    #[arg(long)]
    legacy: bool,
    /// Rate of 500 answers on the events endpoints.
    #[arg(long, default_value_t = 0.0)]
    fault_500: f64,
    /// Rate of 429 answers (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    fault_429: f64,
    /// Rate of slow answers.
    #[arg(long, default_value_t = 0.0)]
    fault_slow: f64,
    /// Rate of truncated (invalid JSON) 200 bodies.
    #[arg(long, default_value_t = 0.0)]
    fault_truncate: f64,
    /// Delay of a slow answer, ms.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// Retry-After of a 429, seconds.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Also inject 500/429/slow faults into the token endpoint.
    #[arg(long)]
    fault_token: bool,
    /// Delete events older than this many seconds.
    #[arg(long)]
    retention_secs: Option<u64>,
}

impl Cli {
    fn into_config(self) -> SimConfig {
        SimConfig {
            realm: self.realm,
            realm_id: self.realm_id,
            client_id: self.client_id,
            client_secret: Secret::new(self.client_secret),
            username: self.username,
            password: self.password.map(Secret::new),
            token_lifetime_secs: self.token_lifetime,
            seed: self.seed,
            rate: self.rate,
            live: !self.no_live,
            history: self.history,
            history_end_ms: self.history_end_ms,
            traffic: TrafficConfig {
                tie_fraction: self.tie_fraction,
                tie_burst: self.tie_burst,
                late_fraction: self.late_fraction,
                late_max_ms: self.late_max_ms,
                admin_fraction: self.admin_fraction,
                users: self.users,
            },
            legacy: self.legacy,
            faults: FaultRates {
                error_500: self.fault_500,
                too_many_429: self.fault_429,
                slow: self.fault_slow,
                truncate: self.fault_truncate,
                slow_ms: self.slow_ms,
                retry_after_secs: self.retry_after,
                on_token: self.fault_token,
            },
            retention_secs: self.retention_secs,
            frozen_clock_ms: None,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let listen = cli.listen.clone();
    let config = cli.into_config();
    let sim = match Sim::new(config) {
        Ok(sim) => sim,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, listen, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the bound address");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        tracing::warn!("could not write the listening line to stdout");
    }
    drop(stdout);
    let stats = sim.stats();
    tracing::info!(
        %addr,
        realm = sim.realm(),
        history = stats.generated,
        "mpas-sim serving"
    );
    match sim.serve(listener, mpas_sim::shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("mpas-sim stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
