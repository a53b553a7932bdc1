//! Typed, validated configuration of the simulator.

use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// A secret string whose `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for comparison with presented credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Fault injection rates (each a probability per request, `0.0..=1.0`, their sum at most 1).
///
/// JSON form (for `POST /sim/faults`) uses the camelCase field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultRates {
    /// Answer `500 {"error":"unknown_error",...}`.
    pub error_500: f64,
    /// Answer `429 Too Many Requests` with a `Retry-After` header.
    pub too_many_429: f64,
    /// Sleep `slow_ms` before answering normally.
    pub slow: f64,
    /// Answer `200` with the JSON body cut in the middle (Content-Length matches the cut body).
    pub truncate: f64,
    /// Delay of a slow answer, in milliseconds.
    pub slow_ms: u64,
    /// Value of the `Retry-After` header (seconds) on a 429.
    pub retry_after_secs: u64,
    /// Also inject faults into the token endpoint (500, 429 and slow only).
    pub on_token: bool,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            error_500: 0.0,
            too_many_429: 0.0,
            slow: 0.0,
            truncate: 0.0,
            slow_ms: 2000,
            retry_after_secs: 1,
            on_token: false,
        }
    }
}

impl FaultRates {
    /// Checks every rate is a probability and that they sum to at most 1.
    pub fn validate(&self) -> Result<(), SimError> {
        for (name, v) in [
            ("faults.error_500", self.error_500),
            ("faults.too_many_429", self.too_many_429),
            ("faults.slow", self.slow),
            ("faults.truncate", self.truncate),
        ] {
            check_fraction(name, v)?;
        }
        let sum = self.error_500 + self.too_many_429 + self.slow + self.truncate;
        if sum > 1.0 + 1e-9 {
            return Err(SimError::config(
                "faults",
                format!("the fault rates add up to {sum}, expected at most 1"),
            ));
        }
        Ok(())
    }
}

/// Shape of generated traffic: the hard cases and the event mix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Fraction of events that are generated in same-millisecond bursts.
    pub tie_fraction: f64,
    /// Number of events in one same-millisecond burst.
    pub tie_burst: u32,
    /// Fraction of success events whose transaction commits late.
    pub late_fraction: f64,
    /// A late event becomes visible 1..=`late_max_ms` milliseconds after its `time`.
    pub late_max_ms: u64,
    /// Fraction of generated events that are admin events (the rest are user events).
    pub admin_fraction: f64,
    /// Size of the deterministic user pool.
    pub users: u32,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            tie_fraction: 0.0,
            tie_burst: 20,
            late_fraction: 0.0,
            late_max_ms: 5000,
            admin_fraction: 0.1,
            users: 200,
        }
    }
}

impl TrafficConfig {
    /// Checks fractions are probabilities and sizes are positive.
    pub fn validate(&self) -> Result<(), SimError> {
        check_fraction("traffic.tie_fraction", self.tie_fraction)?;
        check_fraction("traffic.late_fraction", self.late_fraction)?;
        check_fraction("traffic.admin_fraction", self.admin_fraction)?;
        if self.tie_burst < 2 {
            return Err(SimError::config(
                "traffic.tie_burst",
                "expected at least 2 events per burst",
            ));
        }
        if self.users == 0 {
            return Err(SimError::config(
                "traffic.users",
                "expected at least 1 user",
            ));
        }
        if self.late_fraction > 0.0 && self.late_max_ms == 0 {
            return Err(SimError::config(
                "traffic.late_max_ms",
                "expected a positive delay when late_fraction > 0",
            ));
        }
        Ok(())
    }
}

/// Complete configuration of one simulated Keycloak server with one realm.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Realm name used in the URLs (`/realms/{realm}`, `/admin/realms/{realm}`).
    pub realm: String,
    /// The realm's internal id (`realmId` in events); derived from the seed when `None`.
    pub realm_id: Option<String>,
    /// Confidential client allowed the `client_credentials` grant.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// User allowed the `password` grant through `admin-cli` (none: the grant always fails).
    pub username: Option<String>,
    /// That user's password.
    pub password: Option<Secret>,
    /// Access token lifetime in seconds (Keycloak's default is 300).
    pub token_lifetime_secs: u64,
    /// Seed of the traffic generator (and of the fault draws).
    pub seed: u64,
    /// Events per second of simulated time: spacing of the history, speed of live traffic.
    pub rate: f64,
    /// Generate live traffic at `rate` per second of the server clock while running.
    pub live: bool,
    /// Number of events generated at start-up, spread over the `history / rate` seconds before
    /// `history_end_ms`.
    pub history: u64,
    /// End of the start-up history (epoch ms); the server clock's "now" when `None`. Fix it to
    /// get byte-identical events across runs.
    pub history_end_ms: Option<i64>,
    /// Hard cases and event mix.
    pub traffic: TrafficConfig,
    /// Behave like Keycloak before 26.2: no `id`, no `direction`, day-only dates.
    pub legacy: bool,
    /// Fault injection.
    pub faults: FaultRates,
    /// Delete events older than this many seconds (none: keep everything).
    pub retention_secs: Option<u64>,
    /// Start with the clock frozen at this epoch ms (it then moves only by `advance_clock`).
    pub frozen_clock_ms: Option<i64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            realm: "demo".to_owned(),
            realm_id: None,
            client_id: "authtrail".to_owned(),
            client_secret: Secret::new("authtrail-secret"),
            username: None,
            password: None,
            token_lifetime_secs: 300,
            seed: 42,
            rate: 50.0,
            live: false,
            history: 0,
            history_end_ms: None,
            traffic: TrafficConfig::default(),
            legacy: false,
            faults: FaultRates::default(),
            retention_secs: None,
            frozen_clock_ms: None,
        }
    }
}

impl SimConfig {
    /// Validates the configuration; called by `start`/`serve`.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.realm.is_empty() || self.realm.contains('/') {
            return Err(SimError::config(
                "realm",
                "expected a non-empty realm name without '/'",
            ));
        }
        if self.client_id.is_empty() {
            return Err(SimError::config(
                "client_id",
                "expected a non-empty client id",
            ));
        }
        if self.token_lifetime_secs == 0 {
            return Err(SimError::config(
                "token_lifetime_secs",
                "expected a positive number of seconds",
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(SimError::config(
                "rate",
                "expected a positive number of events per second",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(SimError::config(
                "username/password",
                "expected both or neither",
            ));
        }
        self.traffic.validate()?;
        self.faults.validate()?;
        Ok(())
    }
}

fn check_fraction(name: &'static str, v: f64) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(SimError::config(
            name,
            format!("got {v}, expected a number in 0..=1"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_output_hides_the_value() {
        let cfg = SimConfig {
            client_secret: Secret::new("hunter2"),
            password: Some(Secret::new("pw-123")),
            username: Some("u".into()),
            ..SimConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("pw-123"));
    }

    #[test]
    fn validate_rejects_fault_rates_that_add_up_to_more_than_one() {
        let cfg = SimConfig {
            faults: FaultRates {
                error_500: 0.7,
                too_many_429: 0.4,
                ..FaultRates::default()
            },
            ..SimConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(SimConfig::default().validate().is_ok());
    }
}
