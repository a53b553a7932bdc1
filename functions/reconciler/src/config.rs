//! The reconciler's configuration, read and validated once at cold start from environment
//! variables; a bad value fails the cold start naming the variable and the expected form.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ARCHIVE_BUCKET` | the archive's bucket (required) | |
//! | `ARCHIVE_PREFIX` | the archive's key prefix | `raw/` |
//! | `RECONCILE_BUCKET` | where reconciliation objects go | `ARCHIVE_BUCKET` |
//! | `RECONCILE_PREFIX` | their key prefix (ends in `/`) | `reconciliation/` |
//! | `PRODUCER_CHECKPOINTS` | the producers' checkpoint objects, `s3://BUCKET/KEY`, comma-separated | none: no `producer>stream` hop |
//! | `FORWARDER_LOG_GROUP` | the forwarder's CloudWatch Logs group | none: no forwarder hops |
//! | `RECONCILE_WINDOW_SECS` | window length, a multiple of 60 from 60 to 3600 | 300 |
//! | `RECONCILE_SETTLE_SECS` | how long after its end a window is computed | 600 |
//! | `RECONCILE_SLACK_SECS` | how early before its start a window's records may arrive (clock skew) | 120 |
//! | `RECONCILE_LOOKBACK_SECS` | how far back a scheduled run computes windows without an object | 21600 |
//! | `RECONCILE_MAX_WINDOWS` | windows computed per run at most | 12 |

use std::time::Duration;

use authtrail_core::config::ConfigError;

/// An S3 object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
}

impl S3Location {
    /// Reads `s3://BUCKET/KEY` (both parts non-empty).
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.trim().strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        if bucket.is_empty() || key.is_empty() {
            return None;
        }
        Some(Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `ARCHIVE_BUCKET`.
    pub archive_bucket: String,
    /// `ARCHIVE_PREFIX`.
    pub archive_prefix: String,
    /// `RECONCILE_BUCKET`.
    pub reconcile_bucket: String,
    /// `RECONCILE_PREFIX`.
    pub reconcile_prefix: String,
    /// `PRODUCER_CHECKPOINTS`.
    pub producer_checkpoints: Vec<S3Location>,
    /// `FORWARDER_LOG_GROUP`.
    pub forwarder_log_group: Option<String>,
    /// `RECONCILE_WINDOW_SECS`.
    pub window: Duration,
    /// `RECONCILE_SETTLE_SECS`.
    pub settle: Duration,
    /// `RECONCILE_SLACK_SECS`.
    pub slack: Duration,
    /// `RECONCILE_LOOKBACK_SECS`.
    pub lookback: Duration,
    /// `RECONCILE_MAX_WINDOWS`.
    pub max_windows: usize,
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From a lookup of variable names (an empty value counts as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let opt = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let archive_bucket = opt("ARCHIVE_BUCKET")
            .ok_or_else(|| ConfigError::missing("ARCHIVE_BUCKET", "the archive's bucket name"))?;
        let archive_prefix = opt("ARCHIVE_PREFIX").unwrap_or_else(|| "raw/".into());
        let reconcile_bucket = opt("RECONCILE_BUCKET").unwrap_or_else(|| archive_bucket.clone());
        let reconcile_prefix = opt("RECONCILE_PREFIX").unwrap_or_else(|| "reconciliation/".into());
        if !reconcile_prefix.ends_with('/') {
            return Err(ConfigError::new(
                "RECONCILE_PREFIX",
                "a key prefix ending in '/'",
                Some(&reconcile_prefix),
            ));
        }
        let producer_checkpoints = match opt("PRODUCER_CHECKPOINTS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    S3Location::parse(s).ok_or_else(|| {
                        ConfigError::new(
                            "PRODUCER_CHECKPOINTS",
                            "comma-separated s3://BUCKET/KEY locations",
                            Some(s),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let secs = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            let Some(v) = opt(name) else {
                return Ok(default);
            };
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(name, format!("an integer from {min} to {max}"), Some(&v))
                })
        };
        let window = secs("RECONCILE_WINDOW_SECS", 300, 60, 3600)?;
        if window % 60 != 0 {
            return Err(ConfigError::new(
                "RECONCILE_WINDOW_SECS",
                "a multiple of 60",
                Some(&window.to_string()),
            ));
        }
        Ok(Self {
            archive_bucket,
            archive_prefix,
            reconcile_bucket,
            reconcile_prefix,
            producer_checkpoints,
            forwarder_log_group: opt("FORWARDER_LOG_GROUP"),
            window: Duration::from_secs(window),
            settle: Duration::from_secs(secs("RECONCILE_SETTLE_SECS", 600, 0, 86_400)?),
            slack: Duration::from_secs(secs("RECONCILE_SLACK_SECS", 120, 0, 3600)?),
            lookback: Duration::from_secs(secs("RECONCILE_LOOKBACK_SECS", 21_600, 60, 43_200)?),
            max_windows: usize::try_from(secs("RECONCILE_MAX_WINDOWS", 12, 1, 288)?).unwrap_or(12),
        })
    }

    /// Window length in milliseconds.
    pub fn window_ms(&self) -> i64 {
        millis(self.window)
    }

    /// Settle delay in milliseconds.
    pub fn settle_ms(&self) -> i64 {
        millis(self.settle)
    }

    /// Slack in milliseconds.
    pub fn slack_ms(&self) -> i64 {
        millis(self.slack)
    }

    /// Look-back in milliseconds.
    pub fn lookback_ms(&self) -> i64 {
        millis(self.lookback)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|n| map.get(n).cloned())
    }

    #[test]
    fn defaults_need_only_the_archive_bucket() {
        let s = with(&[("ARCHIVE_BUCKET", "arch")]).unwrap();
        assert_eq!(s.archive_prefix, "raw/");
        assert_eq!(s.reconcile_bucket, "arch");
        assert_eq!(s.reconcile_prefix, "reconciliation/");
        assert_eq!(s.window, Duration::from_secs(300));
        assert_eq!(s.settle, Duration::from_secs(600));
        assert!(s.producer_checkpoints.is_empty());
        assert_eq!(s.forwarder_log_group, None);
        let err = with(&[]).unwrap_err();
        assert_eq!(err.var, "ARCHIVE_BUCKET");
    }

    #[test]
    fn producer_checkpoints_are_a_list_of_s3_locations() {
        let s = with(&[
            ("ARCHIVE_BUCKET", "arch"),
            (
                "PRODUCER_CHECKPOINTS",
                "s3://cp/authtrail/checkpoint.json, s3://cp2/realm-b.json",
            ),
        ])
        .unwrap();
        assert_eq!(s.producer_checkpoints.len(), 2);
        assert_eq!(
            s.producer_checkpoints[1].to_string(),
            "s3://cp2/realm-b.json"
        );
        let err = with(&[("ARCHIVE_BUCKET", "a"), ("PRODUCER_CHECKPOINTS", "cp/key")]).unwrap_err();
        assert_eq!(err.var, "PRODUCER_CHECKPOINTS");
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        for (var, value) in [
            ("RECONCILE_WINDOW_SECS", "90"),
            ("RECONCILE_WINDOW_SECS", "30"),
            ("RECONCILE_SETTLE_SECS", "-1"),
            ("RECONCILE_MAX_WINDOWS", "0"),
            ("RECONCILE_PREFIX", "no-slash"),
        ] {
            let err = with(&[("ARCHIVE_BUCKET", "a"), (var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }
}
