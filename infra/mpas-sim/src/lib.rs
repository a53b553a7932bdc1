//! MPAS (Keycloak Admin REST API) simulator: token and events endpoints, realistic traffic,
//! faults and a ledger.
//!
//! Start one in-process with [`start`] (binds `127.0.0.1:0`) and use the returned [`SimHandle`]
//! for the base URL, the ledger and the control calls; or run the `mpas-sim` binary, which
//! prints `listening on http://ADDR` on stdout and serves the same API.
//!
//! Clock model: every "now" of the simulator (event times of live and generated traffic,
//! commit visibility, token expiry, retention) comes from one server clock, the wall clock
//! plus an offset. [`Sim::advance_clock`] moves it forward (late commits come due, tokens
//! expire); [`Sim::freeze_clock`] stops it, so a test sees exactly the events it generated and
//! nothing moves until it says so. [`Sim::commit_pending`] makes every pending event visible
//! at once.
//!
//! The `mpas-sim` binary's command line is [`cli`].

pub mod cli;
mod config;
mod control;
mod error;
mod generator;
mod keycloak;
mod model;
mod rng;
mod state;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{FaultRates, Secret, SimConfig, TrafficConfig};
pub use error::SimError;
pub use generator::{GenerateReport, GenerateSpec};
pub use model::{EventKind, LedgerEntry};
pub use state::{FaultStats, Stats};

use state::Shared;

/// Interval of the live traffic generator.
const LIVE_TICK: Duration = Duration::from_millis(20);

/// A configured simulator (its history already generated), not yet serving.
///
/// Cheap to clone: clones share the same state.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("realm", &self.shared.config.realm)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Validates the configuration and generates the start-up history.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        Ok(Self {
            shared: Arc::new(Shared::new(config)?),
        })
    }

    /// The axum router serving the Keycloak endpoints and `/sim/...`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/realms/{realm}/protocol/openid-connect/token",
                post(keycloak::token),
            )
            .route("/admin/realms/{realm}/events", get(keycloak::user_events))
            .route(
                "/admin/realms/{realm}/admin-events",
                get(keycloak::admin_events),
            )
            .route("/sim/health", get(control::health))
            .route("/sim/info", get(control::info))
            .route("/sim/stats", get(control::stats))
            .route("/sim/ledger", get(control::ledger))
            .route("/sim/generate", post(control::generate))
            .route(
                "/sim/faults",
                get(control::get_faults).post(control::set_faults),
            )
            .route(
                "/sim/clock",
                get(control::get_clock).post(control::set_clock),
            )
            .route("/sim/commit", post(control::commit))
            .route("/sim/expire", post(control::expire))
            .route("/sim/retention", post(control::retention))
            .fallback(not_found)
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves on `listener` until `shutdown` completes (live traffic runs meanwhile if
    /// configured).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let live = self.spawn_live();
        let router = self.router();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| SimError::io("serving HTTP", e));
        if let Some(task) = live {
            task.abort();
        }
        result
    }

    fn spawn_live(&self) -> Option<JoinHandle<()>> {
        if !self.shared.config.live {
            return None;
        }
        let shared = Arc::clone(&self.shared);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let rate = shared.config.rate;
                if let Err(e) = shared.lock().live_tick(rate) {
                    tracing::error!(error = %e, "live traffic generation failed");
                    return;
                }
            }
        }))
    }

    /// The realm name of the URLs.
    pub fn realm(&self) -> &str {
        &self.shared.config.realm
    }

    /// The realm's internal id (`realmId` of every event).
    pub fn realm_id(&self) -> &str {
        &self.shared.realm_id
    }

    /// Every event made visible so far (both kinds), in order of visibility.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let mut inner = self.shared.lock();
        inner.sync();
        inner.store.ledger().to_vec()
    }

    /// Generates more events now (see [`GenerateSpec`] for the defaults).
    pub fn generate(&self, spec: &GenerateSpec) -> Result<GenerateReport, SimError> {
        let rate = self.shared.config.rate;
        self.shared.lock().generate(spec, rate)
    }

    /// The current fault rates.
    pub fn faults(&self) -> FaultRates {
        self.shared.lock().faults.clone()
    }

    /// Replaces the fault rates.
    pub fn set_faults(&self, rates: FaultRates) -> Result<(), SimError> {
        rates.validate()?;
        self.shared.lock().faults = rates;
        Ok(())
    }

    /// The server clock (epoch ms).
    pub fn now_ms(&self) -> i64 {
        self.shared.lock().clock.now()
    }

    /// Moves the server clock forward (or back, with a negative value).
    pub fn advance_clock(&self, ms: i64) {
        self.shared.lock().clock.advance(ms);
    }

    /// Stops the server clock at its current value.
    pub fn freeze_clock(&self) {
        self.shared.lock().clock.freeze();
    }

    /// Ends live traffic for good: generates what is due up to the current server clock, then
    /// makes no more. Returns how many events that last tick made. With
    /// [`Simulator::commit_pending`] after it, the ledger is final.
    pub fn stop_traffic(&self) -> Result<u64, SimError> {
        let rate = self.shared.config.rate;
        let mut inner = self.shared.lock();
        let n = inner.live_tick(rate)?;
        inner.live = None;
        Ok(n)
    }

    /// Lets the server clock run again from its current value.
    pub fn unfreeze_clock(&self) {
        self.shared.lock().clock.unfreeze();
    }

    /// Makes every pending (late-committing) event visible now; returns how many.
    pub fn commit_pending(&self) -> usize {
        let mut inner = self.shared.lock();
        let now = inner.sync();
        inner.store.commit_all(now)
    }

    /// Deletes every event with `time < before_ms`.
    pub fn expire_before(&self, before_ms: i64) {
        let mut inner = self.shared.lock();
        inner.sync();
        inner.store.expire_before(before_ms);
    }

    /// Sets (or clears) the retention: events older than this are deleted.
    pub fn set_retention(&self, retention: Option<Duration>) {
        let mut inner = self.shared.lock();
        inner.retention_ms = retention.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        inner.sync();
    }

    /// Ends the life of every access token issued so far, now: as a token whose lifetime runs
    /// out between two pages of a pull, the next events request carrying one is answered 401
    /// (a client renews its token then). Returns how many tokens were still valid.
    pub fn expire_tokens(&self) -> usize {
        let mut inner = self.shared.lock();
        let now = inner.sync();
        let mut expired = 0;
        for token in inner.tokens.values_mut() {
            if token.expires_at > now {
                token.expires_at = now;
                expired += 1;
            }
        }
        expired
    }

    /// Counters and store sizes.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

async fn not_found() -> axum::response::Response {
    keycloak::json_response(
        axum::http::StatusCode::NOT_FOUND,
        serde_json::json!({"error": "HTTP 404 Not Found"}),
    )
}

/// A simulator serving in the background of the current tokio runtime; shuts down on drop.
///
/// Dereferences to [`Sim`] for the ledger and control calls.
#[derive(Debug)]
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), SimError>>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (no trailing slash, no `/auth` prefix).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint URL of the realm.
    pub fn token_url(&self) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base_url(),
            self.sim.realm()
        )
    }

    /// `{base}/admin/realms/{realm}/events`.
    pub fn events_url(&self) -> String {
        format!(
            "{}/admin/realms/{}/events",
            self.base_url(),
            self.sim.realm()
        )
    }

    /// `{base}/admin/realms/{realm}/admin-events`.
    pub fn admin_events_url(&self) -> String {
        format!(
            "{}/admin/realms/{}/admin-events",
            self.base_url(),
            self.sim.realm()
        )
    }

    /// The simulator (also reachable through `Deref`).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a simulator on `127.0.0.1:0` in the background of the current tokio runtime.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| SimError::io("binding 127.0.0.1:0", e))?;
    start_on(config, listener).await
}

/// Starts a simulator on an already bound listener in the background.
pub async fn start_on(config: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::io("reading the bound address", e))?;
    let sim = Sim::new(config)?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    Ok(SimHandle {
        sim,
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Builds a simulator and serves it on `listener` until SIGINT or SIGTERM.
pub async fn serve(config: SimConfig, listener: TcpListener) -> Result<(), SimError> {
    Sim::new(config)?.serve(listener, shutdown_signal()).await
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
