//! `spool`: the per-emitter spool of records an emitter could not take within an invocation
//! (see the forwarder README, "Delivery through outages").

use std::time::Duration;

use serde::Deserialize;

use super::err;
use crate::ForwarderError;

/// `spool` as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSpool {
    /// Spool records an emitter could not take (default true); `false` keeps retries within
    /// the invocation, then dead letters and the quorum.
    enabled: Option<bool>,
    /// Age past which a spooled record becomes a dead letter, seconds (default 604800).
    max_age_in_sec: Option<u64>,
    /// Time a redrive may spend per invocation, seconds (default 20).
    redrive_budget_in_sec: Option<u64>,
    /// Timeout of the one probe sent to an emitter whose breaker is open, seconds (default 5).
    probe_timeout_in_sec: Option<u64>,
    /// Time between two probes of an emitter whose breaker is open, per warm instance, seconds
    /// (default 60); doubled after each failed probe up to `probeMaxIntervalInSec`.
    probe_interval_in_sec: Option<u64>,
    /// The longest time between two probes, seconds (default 600).
    probe_max_interval_in_sec: Option<u64>,
}

/// The spool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Whether records an emitter could not take are spooled.
    pub enabled: bool,
    /// Spooled records older than this (since their arrival in the stream) become dead letters.
    pub max_age: Duration,
    /// Time a redrive may spend per invocation.
    pub redrive_budget: Duration,
    /// Timeout of the probe sent to an emitter whose breaker is open.
    pub probe_timeout: Duration,
    /// Time between two probes of an emitter whose breaker is open (per warm instance), after
    /// the breaker opened; doubled after each failed probe.
    pub probe_interval: Duration,
    /// Upper bound of the time between two probes.
    pub probe_max_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: Duration::from_secs(604_800),
            redrive_budget: Duration::from_secs(20),
            probe_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_secs(60),
            probe_max_interval: Duration::from_secs(600),
        }
    }
}

/// Validates `spool` (defaults for what is not given).
pub(crate) fn validate_spool(raw: Option<RawSpool>) -> Result<SpoolConfig, ForwarderError> {
    let mut s = SpoolConfig::default();
    let Some(raw) = raw else { return Ok(s) };
    let positive = |key: &str, v: Option<u64>, max: u64| -> Result<Option<Duration>, _> {
        match v {
            None => Ok(None),
            Some(n) if (1..=max).contains(&n) => Ok(Some(Duration::from_secs(n))),
            Some(n) => Err(err(
                format!("spool.{key}"),
                format!("must be 1..={max} (got {n})"),
            )),
        }
    };
    if let Some(e) = raw.enabled {
        s.enabled = e;
    }
    if let Some(d) = positive("maxAgeInSec", raw.max_age_in_sec, 366 * 86_400)? {
        s.max_age = d;
    }
    if let Some(d) = positive("redriveBudgetInSec", raw.redrive_budget_in_sec, 900)? {
        s.redrive_budget = d;
    }
    if let Some(d) = positive("probeTimeoutInSec", raw.probe_timeout_in_sec, 60)? {
        s.probe_timeout = d;
    }
    if let Some(d) = positive("probeIntervalInSec", raw.probe_interval_in_sec, 3600)? {
        s.probe_interval = d;
    }
    if let Some(d) = positive(
        "probeMaxIntervalInSec",
        raw.probe_max_interval_in_sec,
        86_400,
    )? {
        s.probe_max_interval = d;
    } else if raw.probe_interval_in_sec.is_some() {
        s.probe_max_interval = s.probe_max_interval.max(s.probe_interval);
    }
    if s.probe_max_interval < s.probe_interval {
        return Err(err(
            "spool.probeMaxIntervalInSec",
            format!(
                "must be at least spool.probeIntervalInSec ({} s; got {} s)",
                s.probe_interval.as_secs(),
                s.probe_max_interval.as_secs()
            ),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::config::ForwarderConfig;

    use super::*;

    const EMITTERS: &str = r#""emitters":[{"name":"out","type":"stdout"}]"#;

    #[test]
    fn the_spool_is_on_by_default_with_seven_days_retention() {
        let c = ForwarderConfig::parse(&format!("{{{EMITTERS}}}")).unwrap();
        assert_eq!(c.spool, SpoolConfig::default());
        assert!(c.spool.enabled);
        assert_eq!(c.spool.max_age, Duration::from_secs(604_800));
    }

    #[test]
    fn spool_settings_are_read_and_unknown_or_zero_values_refused_at_cold_start() {
        let c = ForwarderConfig::parse(&format!(
            r#"{{{EMITTERS},"spool":{{"enabled":false,"maxAgeInSec":60,"redriveBudgetInSec":3,"probeTimeoutInSec":1}}}}"#
        ))
        .unwrap();
        assert_eq!(
            c.spool,
            SpoolConfig {
                enabled: false,
                max_age: Duration::from_secs(60),
                redrive_budget: Duration::from_secs(3),
                probe_timeout: Duration::from_secs(1),
                ..SpoolConfig::default()
            }
        );
        let e = ForwarderConfig::parse(&format!(r#"{{{EMITTERS},"spool":{{"depth":1}}}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `depth`"), "{e}");
        let e = ForwarderConfig::parse(&format!(
            r#"{{{EMITTERS},"spool":{{"probeTimeoutInSec":0}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("spool.probeTimeoutInSec"), "{e}");
    }

    #[test]
    fn probe_intervals_are_read_and_refused_out_of_range_naming_the_key() {
        let c = ForwarderConfig::parse(&format!(
            r#"{{{EMITTERS},"spool":{{"probeIntervalInSec":10,"probeMaxIntervalInSec":120}}}}"#
        ))
        .unwrap();
        assert_eq!(c.spool.probe_interval, Duration::from_secs(10));
        assert_eq!(c.spool.probe_max_interval, Duration::from_secs(120));
        // An interval above the default cap raises the cap to it.
        let c = ForwarderConfig::parse(&format!(
            r#"{{{EMITTERS},"spool":{{"probeIntervalInSec":900}}}}"#
        ))
        .unwrap();
        assert_eq!(c.spool.probe_max_interval, Duration::from_secs(900));
        for (body, key) in [
            (r#"{"probeIntervalInSec":0}"#, "spool.probeIntervalInSec"),
            (r#"{"probeIntervalInSec":3601}"#, "spool.probeIntervalInSec"),
            (
                r#"{"probeMaxIntervalInSec":0}"#,
                "spool.probeMaxIntervalInSec",
            ),
            (
                r#"{"probeMaxIntervalInSec":86401}"#,
                "spool.probeMaxIntervalInSec",
            ),
            (
                r#"{"probeIntervalInSec":120,"probeMaxIntervalInSec":60}"#,
                "spool.probeMaxIntervalInSec",
            ),
        ] {
            let e = ForwarderConfig::parse(&format!(r#"{{{EMITTERS},"spool":{body}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{body}: {e}");
        }
    }
}
