//! The `mpas-sim` command line: its flags ([`Cli`]), their translation into a [`SimConfig`],
//! and [`run`], which serves until SIGINT/SIGTERM after printing the one line that tells a
//! caller where (`listening on http://ADDR`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

use crate::config::{FaultRates, Secret, SimConfig, TrafficConfig};
use crate::{Sim, shutdown_signal};

/// Exit status for an invalid configuration.
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// MPAS (Keycloak Admin REST API) simulator: token and events endpoints, realistic traffic,
/// faults and a ledger under /sim.
#[derive(Debug, Parser)]
#[command(name = "mpas-sim", version)]
pub struct Cli {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "MPAS_SIM_LISTEN")]
    pub listen: String,
    /// Realm name.
    #[arg(long, default_value = "demo")]
    pub realm: String,
    /// Realm internal id (`realmId` in events); derived from the seed by default.
    #[arg(long)]
    pub realm_id: Option<String>,
    /// Confidential client allowed the client_credentials grant.
    #[arg(long, default_value = "authtrail")]
    pub client_id: String,
    /// Its secret.
    #[arg(
        long,
        env = "MPAS_SIM_CLIENT_SECRET",
        default_value = "authtrail-secret",
        hide_env_values = true
    )]
    pub client_secret: Secret,
    /// User allowed the password grant (client_id=admin-cli).
    #[arg(long)]
    pub username: Option<String>,
    /// That user's password.
    #[arg(long, env = "MPAS_SIM_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// Access token lifetime, seconds.
    #[arg(long, default_value_t = 300)]
    pub token_lifetime: u64,
    /// Seed of the traffic generator and fault draws.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events per second (live traffic and history spacing).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Do not generate live traffic (history and /sim/generate only).
    #[arg(long)]
    pub no_live: bool,
    /// Events generated at start-up over the preceding history/rate seconds.
    #[arg(long, default_value_t = 0)]
    pub history: u64,
    /// End of the start-up history, epoch ms (default: now).
    #[arg(long)]
    pub history_end_ms: Option<i64>,
    /// Fraction of success events committed late.
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// Maximum commit delay of a late event, ms.
    #[arg(long, default_value_t = 5000)]
    pub late_max_ms: u64,
    /// Fraction of events in same-millisecond bursts.
    #[arg(long, default_value_t = 0.0)]
    pub tie_fraction: f64,
    /// Events per same-millisecond burst.
    #[arg(long, default_value_t = 20)]
    pub tie_burst: u32,
    /// Fraction of admin events.
    #[arg(long, default_value_t = 0.1)]
    pub admin_fraction: f64,
    /// Size of the user pool.
    #[arg(long, default_value_t = 200)]
    pub users: u32,
    /// Behave like Keycloak before 26.2 (no id, no direction, day-only dates).
    #[arg(long)]
    pub legacy: bool,
    /// Rate of 500 answers on the events endpoints.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,
    /// Rate of 429 answers (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Rate of slow answers.
    #[arg(long, default_value_t = 0.0)]
    pub fault_slow: f64,
    /// Rate of truncated (invalid JSON) 200 bodies.
    #[arg(long, default_value_t = 0.0)]
    pub fault_truncate: f64,
    /// Delay of a slow answer, ms.
    #[arg(long, default_value_t = 2000)]
    pub slow_ms: u64,
    /// Retry-After of a 429, seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Also inject 500/429/slow faults into the token endpoint.
    #[arg(long)]
    pub fault_token: bool,
    /// Delete events older than this many seconds.
    #[arg(long)]
    pub retention_secs: Option<u64>,
}

impl Cli {
    /// The simulator's configuration (not yet validated: [`Sim::new`] does that).
    pub fn into_config(self) -> SimConfig {
        SimConfig {
            realm: self.realm,
            realm_id: self.realm_id,
            client_id: self.client_id,
            client_secret: self.client_secret,
            username: self.username,
            password: self.password,
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

/// Writes the line a caller waits for, `listening on http://ADDR`, and flushes it.
pub fn announce(out: &mut impl Write, addr: SocketAddr) -> std::io::Result<()> {
    writeln!(out, "listening on http://{addr}")?;
    out.flush()
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Builds the simulator (history included), binds, announces the address on stdout and serves
/// until SIGINT/SIGTERM. Exit status: 0 after a clean stop, [`EXIT_INVALID_CONFIG`] for an
/// invalid configuration, 1 when binding or serving failed.
pub async fn run(cli: Cli) -> ExitCode {
    let listen = cli.listen.clone();
    let sim = match Sim::new(cli.into_config()) {
        Ok(sim) => sim,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let Some((listener, addr)) = bind(&listen).await else {
        return ExitCode::FAILURE;
    };
    if announce(&mut std::io::stdout().lock(), addr).is_err() {
        tracing::warn!("could not write the listening line to stdout");
    }
    let stats = sim.stats();
    tracing::info!(
        %addr,
        realm = sim.realm(),
        history = stats.generated,
        "mpas-sim serving"
    );
    match sim.serve(listener, shutdown_signal()).await {
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

/// Binds `listen` and reads the bound address; logs why if that fails.
async fn bind(listen: &str) -> Option<(TcpListener, SocketAddr)> {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, listen, "cannot bind");
            return None;
        }
    };
    match listener.local_addr() {
        Ok(addr) => Some((listener, addr)),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the bound address");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mpas-sim").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn binary_defaults_serve_live_traffic_at_twenty_events_per_second() {
        let cfg = parse(&["--client-secret", "s"]).into_config();
        assert!(cfg.live);
        assert_eq!(cfg.rate, 20.0);
        assert_eq!(cfg.realm, "demo");
        assert_eq!(cfg.client_id, "authtrail");
        assert_eq!(cfg.token_lifetime_secs, 300);
        assert_eq!(cfg.traffic.admin_fraction, 0.1);
        assert_eq!(cfg.faults, FaultRates::default());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn flags_map_onto_traffic_faults_and_credentials() {
        let cfg = parse(&[
            "--no-live",
            "--legacy",
            "--client-secret",
            "s",
            "--username",
            "auditor",
            "--password",
            "pw",
            "--history",
            "500",
            "--history-end-ms",
            "1739318400000",
            "--late-fraction",
            "0.05",
            "--late-max-ms",
            "100",
            "--tie-fraction",
            "0.2",
            "--tie-burst",
            "3",
            "--fault-500",
            "0.1",
            "--fault-429",
            "0.2",
            "--fault-slow",
            "0.05",
            "--fault-truncate",
            "0.01",
            "--slow-ms",
            "10",
            "--retry-after",
            "2",
            "--fault-token",
            "--retention-secs",
            "3600",
        ])
        .into_config();
        assert!(!cfg.live && cfg.legacy);
        assert_eq!(cfg.client_secret.expose(), "s");
        assert_eq!(cfg.username.as_deref(), Some("auditor"));
        assert_eq!(cfg.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(cfg.history, 500);
        assert_eq!(cfg.history_end_ms, Some(1_739_318_400_000));
        assert_eq!(cfg.traffic.late_fraction, 0.05);
        assert_eq!(cfg.traffic.late_max_ms, 100);
        assert_eq!(cfg.traffic.tie_fraction, 0.2);
        assert_eq!(cfg.traffic.tie_burst, 3);
        assert_eq!(cfg.faults.error_500, 0.1);
        assert_eq!(cfg.faults.too_many_429, 0.2);
        assert_eq!(cfg.faults.slow, 0.05);
        assert_eq!(cfg.faults.truncate, 0.01);
        assert_eq!(cfg.faults.slow_ms, 10);
        assert_eq!(cfg.faults.retry_after_secs, 2);
        assert!(cfg.faults.on_token);
        assert_eq!(cfg.retention_secs, Some(3600));
        assert_eq!(cfg.frozen_clock_ms, None);
    }

    #[test]
    fn parsed_secrets_never_show_in_debug_output() {
        let cli = parse(&["--client-secret", "cli-secret", "--password", "pw-value"]);
        let text = format!("{cli:?}");
        assert!(
            !text.contains("cli-secret") && !text.contains("pw-value"),
            "{text}"
        );
    }

    #[test]
    fn announce_writes_the_one_listening_line() {
        let mut out = Vec::new();
        announce(&mut out, "127.0.0.1:8081".parse().unwrap()).unwrap();
        assert_eq!(out, b"listening on http://127.0.0.1:8081\n");
    }

    #[tokio::test]
    async fn invalid_configuration_exits_with_status_two_before_binding() {
        let cli = parse(&[
            "--client-secret",
            "s",
            "--rate",
            "0",
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(run(cli).await, ExitCode::from(EXIT_INVALID_CONFIG));
    }

    #[tokio::test]
    async fn listen_address_in_use_exits_with_status_one() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = taken.local_addr().unwrap().to_string();
        let cli = parse(&["--client-secret", "s", "--no-live", "--listen", &listen]);
        assert_eq!(run(cli).await, ExitCode::FAILURE);
    }
}
