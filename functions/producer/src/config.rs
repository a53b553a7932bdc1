//! Producer configuration (Contract 4): read once at cold start from environment variables and
//! validated into a typed struct. Every error names the variable and the expected form.
//!
//! Parsing takes a lookup function instead of reading the process environment directly, so the
//! rules are unit-tested without touching global state; [`Settings::from_env`] passes
//! `std::env::var`.

use std::time::Duration;

use authtrail_core::config::{ConfigError, parse_bool};
use authtrail_core::secret::Secret;
use chrono::DateTime;

/// Default fields redacted in user events (JSON pointers into the envelope), per Contract 1.
pub const DEFAULT_USER_REDACTIONS: &[&str] = &["/event/ipAddress", "/event/details/username"];
/// Default fields redacted in admin events (JSON pointers into the envelope), per Contract 1.
pub const DEFAULT_ADMIN_REDACTIONS: &[&str] =
    &["/event/authDetails/ipAddress", "/event/representation"];

/// Where the first run (no cursor yet) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest event the server still keeps (default).
    Oldest,
    /// Only events from the first run on.
    Latest,
    /// Events at or after this time (epoch ms).
    Time(i64),
}

/// Which flavour of the events API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiModeSetting {
    /// Detect on the first request (a 400 on `direction`/epoch dates, or events without `id`).
    Auto,
    /// Keycloak 26.2+: `id`, epoch-ms filters, `direction=asc`.
    Modern,
    /// Older servers: no `id`, day-only filters, newest first.
    Legacy,
}

/// How MPAS credentials are given (never printed: Debug shows `<secret>`).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `grant_type=client_credentials`.
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// `grant_type=password` (client `admin-cli` unless `MPAS_CLIENT_ID` says otherwise).
    Password {
        client_id: String,
        client_secret: Option<Secret>,
        username: String,
        password: Secret,
    },
    /// All of the above as JSON in a Secrets Manager secret, resolved at init.
    SecretArn(String),
}

/// Redaction mode as configured; the key may still have to be fetched from Secrets Manager.
#[derive(Debug, Clone)]
pub enum RedactionSetting {
    Mask,
    HashKey(Secret),
    HashKeySecretArn(String),
}

/// The sink records go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// A Kinesis stream given by name or ARN.
    Kinesis(String),
    /// A Firehose delivery stream name.
    Firehose(String),
}

/// The validated configuration of the producer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: String,
    pub realm: String,
    pub credentials: Credentials,
    pub start_from: StartFrom,
    pub api_mode: ApiModeSetting,
    pub user_events: bool,
    pub admin_events: bool,
    pub page_size: u32,
    pub settle_window: Duration,
    pub query_lag: Duration,
    pub http_timeout: Duration,
    pub max_retries: u32,
    /// `MPAS_CA_BUNDLE`: path of a PEM file of CAs to trust for MPAS.
    pub ca_bundle: Option<String>,
    /// `MPAS_CA_BUNDLE_ONLY`: trust only the CAs of `MPAS_CA_BUNDLE` (not the system's roots).
    pub ca_bundle_only: bool,
    /// Largest events page read from MPAS, in bytes after decompression (`MPAS_MAX_PAGE_BYTES`,
    /// by default [`default_max_page_bytes`] of the page size).
    pub max_page_bytes: usize,
    pub sink: SinkTarget,
    pub checkpoint_bucket: String,
    pub checkpoint_key: String,
    pub redact_user: bool,
    pub redact_admin: bool,
    /// `REDACT_FIELDS`: replaces both default lists when set.
    pub redact_fields: Option<Vec<String>>,
    pub redaction: RedactionSetting,
    pub deadline_reserve: Duration,
    pub sink_max_attempts: u32,
    pub sink_base_backoff: Duration,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let boolean = |name: &str, default: bool| -> Result<bool, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => {
                    parse_bool(&v).ok_or_else(|| ConfigError::new(name, "true or false", Some(&v)))
                }
            }
        };
        let number = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ConfigError::new(name, format!("an integer from {min} to {max}"), Some(&v))
                    }),
            }
        };

        let base_url = get("MPAS_BASE_URL").ok_or_else(|| {
            ConfigError::missing("MPAS_BASE_URL", "set to the MPAS base URL (https://...)")
        })?;
        let base_url = parse_base_url(&base_url)?;
        let realm = get("MPAS_REALM")
            .ok_or_else(|| ConfigError::missing("MPAS_REALM", "set to the realm name"))?;
        if realm.contains('/') {
            return Err(ConfigError::new(
                "MPAS_REALM",
                "a realm name without '/'",
                Some(&realm),
            ));
        }

        let credentials = parse_credentials(&get)?;

        let start_from = match get("MPAS_START_FROM") {
            None => StartFrom::Oldest,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "oldest" | "earliest" => StartFrom::Oldest,
                "latest" | "now" => StartFrom::Latest,
                _ => DateTime::parse_from_rfc3339(v.trim())
                    .map(|t| StartFrom::Time(t.timestamp_millis()))
                    .map_err(|_| {
                        ConfigError::new(
                            "MPAS_START_FROM",
                            "oldest, latest or an ISO-8601 time such as 2025-02-12T19:27:50Z",
                            Some(&v),
                        )
                    })?,
            },
        };
        let api_mode = match get("MPAS_API_MODE") {
            None => ApiModeSetting::Auto,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "auto" => ApiModeSetting::Auto,
                "modern" => ApiModeSetting::Modern,
                "legacy" => ApiModeSetting::Legacy,
                _ => {
                    return Err(ConfigError::new(
                        "MPAS_API_MODE",
                        "one of auto, modern, legacy",
                        Some(&v),
                    ));
                }
            },
        };
        let user_events = boolean("MPAS_USER_EVENTS", true)?;
        let admin_events = boolean("MPAS_ADMIN_EVENTS", true)?;
        if !user_events && !admin_events {
            return Err(ConfigError::new(
                "MPAS_USER_EVENTS",
                "true when MPAS_ADMIN_EVENTS is false (nothing to pull otherwise)",
                Some("false"),
            ));
        }
        let page_size = number("MPAS_PAGE_SIZE", 1000, 1, 10_000)? as u32;
        let settle_window = Duration::from_secs(number("MPAS_SETTLE_WINDOW_SECS", 15, 0, 3600)?);
        let query_lag = Duration::from_millis(number("MPAS_QUERY_LAG_MS", 1000, 0, 600_000)?);
        let http_timeout = Duration::from_secs(number("MPAS_HTTP_TIMEOUT_SECS", 10, 1, 300)?);
        let max_retries = number("MPAS_MAX_RETRIES", 5, 0, 20)? as u32;
        let ca_bundle = get("MPAS_CA_BUNDLE");
        let ca_bundle_only = boolean("MPAS_CA_BUNDLE_ONLY", false)?;
        if ca_bundle_only && ca_bundle.is_none() {
            return Err(ConfigError::missing(
                "MPAS_CA_BUNDLE",
                "set to a PEM file when MPAS_CA_BUNDLE_ONLY=true (the only CAs trusted)",
            ));
        }
        let max_page_bytes = match get("MPAS_MAX_PAGE_BYTES") {
            None => default_max_page_bytes(page_size),
            Some(_) => number(
                "MPAS_MAX_PAGE_BYTES",
                0,
                MIN_PAGE_BYTES,
                MAX_PAGE_BYTES_LIMIT,
            )? as usize,
        };

        let sink = match (get("KINESIS_STREAM_NAME"), get("FIREHOSE_DELIVERY_STREAM")) {
            (Some(k), None) => SinkTarget::Kinesis(k.trim().to_string()),
            (None, Some(f)) => SinkTarget::Firehose(f.trim().to_string()),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "KINESIS_STREAM_NAME",
                    "unset when FIREHOSE_DELIVERY_STREAM is set (exactly one sink)",
                    None,
                ));
            }
            (None, None) => {
                return Err(ConfigError::missing(
                    "KINESIS_STREAM_NAME",
                    "set to a stream name or ARN (or set FIREHOSE_DELIVERY_STREAM instead)",
                ));
            }
        };

        let checkpoint_bucket = get("CHECKPOINT_BUCKET").ok_or_else(|| {
            ConfigError::missing(
                "CHECKPOINT_BUCKET",
                "set to the S3 bucket holding the cursor",
            )
        })?;
        let checkpoint_key = get("CHECKPOINT_KEY")
            .unwrap_or_else(|| format!("authtrail/producer/{realm}/checkpoint.json"));

        let redact_user = boolean("REDACT_USER_EVENTS", true)?;
        let redact_admin = boolean("REDACT_ADMIN_EVENTS", true)?;
        let redact_fields = match get("REDACT_FIELDS") {
            None => None,
            Some(v) => Some(parse_field_list(&v)?),
        };
        let redaction = match get("REDACTION_MODE")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("mask") => RedactionSetting::Mask,
            Some("hash") => match (
                get("REDACTION_HMAC_KEY"),
                get("REDACTION_HMAC_KEY_SECRET_ARN"),
            ) {
                (Some(k), _) => RedactionSetting::HashKey(Secret::new(k)),
                (None, Some(arn)) => RedactionSetting::HashKeySecretArn(arn),
                (None, None) => {
                    return Err(ConfigError::missing(
                        "REDACTION_HMAC_KEY",
                        "set (or REDACTION_HMAC_KEY_SECRET_ARN) when REDACTION_MODE=hash",
                    ));
                }
            },
            Some(other) => {
                return Err(ConfigError::new(
                    "REDACTION_MODE",
                    "one of mask, hash",
                    Some(other),
                ));
            }
        };

        let deadline_reserve =
            Duration::from_millis(number("DEADLINE_RESERVE_MS", 5000, 0, 600_000)?);
        let sink_max_attempts = number("SINK_MAX_ATTEMPTS", 10, 1, 100)? as u32;
        let sink_base_backoff =
            Duration::from_millis(number("SINK_BASE_BACKOFF_MS", 100, 1, 60_000)?);

        Ok(Self {
            base_url,
            realm,
            credentials,
            start_from,
            api_mode,
            user_events,
            admin_events,
            page_size,
            settle_window,
            query_lag,
            http_timeout,
            max_retries,
            ca_bundle,
            ca_bundle_only,
            max_page_bytes,
            sink,
            checkpoint_bucket,
            checkpoint_key,
            redact_user,
            redact_admin,
            redact_fields,
            redaction,
            deadline_reserve,
            sink_max_attempts,
            sink_base_backoff,
        })
    }

    /// The JSON pointers redacted in events of one kind (empty when switched off).
    pub fn redaction_fields(&self, admin: bool) -> Vec<String> {
        let enabled = if admin {
            self.redact_admin
        } else {
            self.redact_user
        };
        if !enabled {
            return Vec::new();
        }
        match &self.redact_fields {
            Some(list) => list.clone(),
            None => {
                let defaults = if admin {
                    DEFAULT_ADMIN_REDACTIONS
                } else {
                    DEFAULT_USER_REDACTIONS
                };
                defaults.iter().map(|s| (*s).to_string()).collect()
            }
        }
    }
}

/// Bytes of page budget per event of `MPAS_PAGE_SIZE` (Keycloak events are 0.3 to 2 KB; admin
/// events with a `representation` can be tens of KB).
pub const PAGE_BYTES_PER_EVENT: usize = 16 * 1024;
/// Smallest default page cap, and smallest `MPAS_MAX_PAGE_BYTES` accepted (1 MiB).
pub const MIN_PAGE_BYTES: u64 = 1024 * 1024;
/// Floor of the default page cap (8 MiB), whatever the page size.
const DEFAULT_PAGE_BYTES_FLOOR: usize = 8 * 1024 * 1024;
/// Ceiling of the default page cap (64 MiB): a 256 MB function parses that much safely.
const DEFAULT_PAGE_BYTES_CEILING: usize = 64 * 1024 * 1024;
/// Largest `MPAS_MAX_PAGE_BYTES` accepted (512 MiB).
pub const MAX_PAGE_BYTES_LIMIT: u64 = 512 * 1024 * 1024;

/// The default cap of one events page: 16 KiB per event of `page_size`, at least 8 MiB, at
/// most 64 MiB (counted after gzip decoding).
pub fn default_max_page_bytes(page_size: u32) -> usize {
    (page_size as usize)
        .saturating_mul(PAGE_BYTES_PER_EVENT)
        .clamp(DEFAULT_PAGE_BYTES_FLOOR, DEFAULT_PAGE_BYTES_CEILING)
}

/// `MPAS_BASE_URL`: an `https://` URL, or `http://` to a loopback host (127.0.0.0/8, `::1`,
/// `localhost`), without userinfo; trailing `/` removed. Errors never echo userinfo.
fn parse_base_url(raw: &str) -> Result<String, ConfigError> {
    const VAR: &str = "MPAS_BASE_URL";
    const EXPECTED: &str =
        "an http:// or https:// URL (http:// for loopback hosts only: 127.0.0.0/8, ::1, localhost)";
    let trimmed = raw.trim().trim_end_matches('/');
    let shown = without_userinfo(trimmed);
    let url =
        reqwest::Url::parse(trimmed).map_err(|_| ConfigError::new(VAR, EXPECTED, Some(&shown)))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            VAR,
            "a URL without user:password@ (credentials go in MPAS_CLIENT_SECRET, MPAS_PASSWORD or MPAS_CREDENTIALS_SECRET_ARN)",
            Some(&shown),
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        _ => return Err(ConfigError::new(VAR, EXPECTED, Some(&shown))),
    }
    Ok(trimmed.to_string())
}

/// Whether the URL's host is loopback: 127.0.0.0/8, `::1` or `localhost`.
fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `text` with any `user:pass@` of a URL's authority replaced by `***@` (for error messages;
/// works on strings that do not parse as URLs too).
pub fn without_userinfo(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

fn parse_credentials(get: &impl Fn(&str) -> Option<String>) -> Result<Credentials, ConfigError> {
    if let Some(arn) = get("MPAS_CREDENTIALS_SECRET_ARN") {
        return Ok(Credentials::SecretArn(arn.trim().to_string()));
    }
    match (get("MPAS_USERNAME"), get("MPAS_PASSWORD")) {
        (Some(username), Some(password)) => {
            return Ok(Credentials::Password {
                client_id: get("MPAS_CLIENT_ID").unwrap_or_else(|| "admin-cli".to_string()),
                client_secret: get("MPAS_CLIENT_SECRET").map(Secret::new),
                username,
                password: Secret::new(password),
            });
        }
        (Some(_), None) => {
            return Err(ConfigError::missing(
                "MPAS_PASSWORD",
                "set when MPAS_USERNAME is set (password grant)",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::missing(
                "MPAS_USERNAME",
                "set when MPAS_PASSWORD is set (password grant)",
            ));
        }
        (None, None) => {}
    }
    match (get("MPAS_CLIENT_ID"), get("MPAS_CLIENT_SECRET")) {
        (Some(client_id), Some(secret)) => Ok(Credentials::ClientCredentials {
            client_id,
            client_secret: Secret::new(secret),
        }),
        (Some(_), None) => Err(ConfigError::missing(
            "MPAS_CLIENT_SECRET",
            "set when MPAS_CLIENT_ID is set (client credentials grant)",
        )),
        _ => Err(ConfigError::missing(
            "MPAS_CLIENT_ID",
            "set with MPAS_CLIENT_SECRET (or MPAS_USERNAME/MPAS_PASSWORD, or MPAS_CREDENTIALS_SECRET_ARN)",
        )),
    }
}

/// Credentials read from the JSON secret named by `MPAS_CREDENTIALS_SECRET_ARN`: fields
/// `clientId`/`client_id`, `clientSecret`/`client_secret`, `username`, `password`.
pub fn credentials_from_secret_json(arn: &str, json: &Secret) -> Result<Credentials, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(json.expose()).map_err(|_| {
        ConfigError::new(
            "MPAS_CREDENTIALS_SECRET_ARN",
            format!("a secret ({arn}) holding a JSON object"),
            None,
        )
    })?;
    let field = |names: &[&str]| {
        names.iter().find_map(|n| {
            value
                .get(*n)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
    };
    let lookup = |name: &str| match name {
        "MPAS_CLIENT_ID" => field(&["clientId", "client_id", "MPAS_CLIENT_ID"]),
        "MPAS_CLIENT_SECRET" => field(&["clientSecret", "client_secret", "MPAS_CLIENT_SECRET"]),
        "MPAS_USERNAME" => field(&["username", "MPAS_USERNAME"]),
        "MPAS_PASSWORD" => field(&["password", "MPAS_PASSWORD"]),
        _ => None,
    };
    parse_credentials(&lookup).map_err(|e| {
        ConfigError::new(
            "MPAS_CREDENTIALS_SECRET_ARN",
            format!(
                "a secret ({arn}) with clientId+clientSecret or username+password ({})",
                e.var
            ),
            None,
        )
    })
}

/// `REDACT_FIELDS`: comma-separated JSON pointers or a JSON array of them.
fn parse_field_list(v: &str) -> Result<Vec<String>, ConfigError> {
    let expected = "comma-separated JSON pointers (e.g. /event/ipAddress,/event/details/username) or a JSON array of them";
    let trimmed = v.trim();
    let list: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed)
            .map_err(|_| ConfigError::new("REDACT_FIELDS", expected, Some(v)))?
    } else {
        trimmed
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if list.iter().any(|p| !p.starts_with('/')) {
        return Err(ConfigError::new("REDACT_FIELDS", expected, Some(v)));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("MPAS_BASE_URL", "https://mpas.example.com/".to_string()),
            ("MPAS_REALM", "demo".to_string()),
            ("MPAS_CLIENT_ID", "authtrail".to_string()),
            ("MPAS_CLIENT_SECRET", "s3cr3t-value".to_string()),
            ("KINESIS_STREAM_NAME", "events".to_string()),
            ("CHECKPOINT_BUCKET", "ckpt".to_string()),
        ])
    }

    fn parse(vars: &HashMap<&'static str, String>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| vars.get(k).cloned())
    }

    fn err_with(var: &'static str, value: &str) -> String {
        let mut vars = base();
        vars.insert(var, value.to_string());
        parse(&vars).unwrap_err().to_string()
    }

    #[test]
    fn minimal_configuration_gets_documented_defaults() {
        let s = parse(&base()).unwrap();
        assert_eq!(s.base_url, "https://mpas.example.com");
        assert_eq!(s.start_from, StartFrom::Oldest);
        assert_eq!(s.api_mode, ApiModeSetting::Auto);
        assert!(s.user_events && s.admin_events && s.redact_user && s.redact_admin);
        assert_eq!(s.sink, SinkTarget::Kinesis("events".into()));
        assert_eq!(s.checkpoint_key, "authtrail/producer/demo/checkpoint.json");
        assert_eq!(s.page_size, 1000);
        assert_eq!(s.settle_window, Duration::from_secs(15));
        assert!(matches!(s.redaction, RedactionSetting::Mask));
        assert!(matches!(
            s.credentials,
            Credentials::ClientCredentials { .. }
        ));
        assert_eq!(
            s.redaction_fields(false),
            vec!["/event/ipAddress", "/event/details/username"]
        );
        assert_eq!(
            s.redaction_fields(true),
            vec!["/event/authDetails/ipAddress", "/event/representation"]
        );
    }

    #[test]
    fn debug_output_never_contains_the_client_secret() {
        let s = parse(&base()).unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn missing_base_url_names_the_variable() {
        let mut vars = base();
        vars.remove("MPAS_BASE_URL");
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("MPAS_BASE_URL") && e.contains("URL"), "{e}");
    }

    #[test]
    fn bad_values_fail_with_variable_and_expected_form() {
        for (var, value, expected) in [
            ("MPAS_BASE_URL", "ftp://x", "http:// or https:// URL"),
            ("MPAS_START_FROM", "yesterday", "ISO-8601"),
            ("MPAS_API_MODE", "v2", "one of auto, modern, legacy"),
            ("MPAS_PAGE_SIZE", "0", "an integer from 1 to 10000"),
            ("MPAS_SETTLE_WINDOW_SECS", "-1", "an integer"),
            ("REDACT_USER_EVENTS", "maybe", "true or false"),
            ("REDACTION_MODE", "rot13", "one of mask, hash"),
            ("REDACT_FIELDS", "event.ipAddress", "JSON pointers"),
        ] {
            let e = err_with(var, value);
            assert!(e.contains(var) && e.contains(expected), "{var}: {e}");
        }
    }

    #[test]
    fn exactly_one_sink_must_be_configured() {
        let mut vars = base();
        vars.insert("FIREHOSE_DELIVERY_STREAM", "fh".into());
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("exactly one sink"), "{e}");
        vars.remove("KINESIS_STREAM_NAME");
        assert_eq!(
            parse(&vars).unwrap().sink,
            SinkTarget::Firehose("fh".into())
        );
        vars.remove("FIREHOSE_DELIVERY_STREAM");
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("KINESIS_STREAM_NAME"), "{e}");
    }

    #[test]
    fn password_grant_defaults_to_admin_cli_and_needs_both_parts() {
        let mut vars = base();
        vars.remove("MPAS_CLIENT_ID");
        vars.remove("MPAS_CLIENT_SECRET");
        vars.insert("MPAS_USERNAME", "svc".into());
        let e = parse(&vars).unwrap_err().to_string();
        assert!(e.contains("MPAS_PASSWORD"), "{e}");
        vars.insert("MPAS_PASSWORD", "pw".into());
        match parse(&vars).unwrap().credentials {
            Credentials::Password {
                client_id,
                username,
                ..
            } => {
                assert_eq!(client_id, "admin-cli");
                assert_eq!(username, "svc");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hash_mode_requires_a_key() {
        let e = err_with("REDACTION_MODE", "hash");
        assert!(e.contains("REDACTION_HMAC_KEY"), "{e}");
        let mut vars = base();
        vars.insert("REDACTION_MODE", "hash".into());
        vars.insert("REDACTION_HMAC_KEY", "k".into());
        assert!(matches!(
            parse(&vars).unwrap().redaction,
            RedactionSetting::HashKey(_)
        ));
    }

    #[test]
    fn redact_fields_replaces_both_lists_and_accepts_json_arrays() {
        let mut vars = base();
        vars.insert("REDACT_FIELDS", r#"["/event/userId"]"#.into());
        let s = parse(&vars).unwrap();
        assert_eq!(s.redaction_fields(false), vec!["/event/userId"]);
        assert_eq!(s.redaction_fields(true), vec!["/event/userId"]);
        vars.insert("REDACT_FIELDS", "/event/a, /event/b".into());
        vars.insert("REDACT_ADMIN_EVENTS", "false".into());
        let s = parse(&vars).unwrap();
        assert_eq!(s.redaction_fields(false), vec!["/event/a", "/event/b"]);
        assert!(s.redaction_fields(true).is_empty());
    }

    #[test]
    fn start_from_accepts_iso_time_and_keywords() {
        let mut vars = base();
        vars.insert("MPAS_START_FROM", "2025-02-12T19:27:50.156Z".into());
        assert_eq!(
            parse(&vars).unwrap().start_from,
            StartFrom::Time(1_739_388_470_156)
        );
        vars.insert("MPAS_START_FROM", "latest".into());
        assert_eq!(parse(&vars).unwrap().start_from, StartFrom::Latest);
    }

    #[test]
    fn credentials_secret_json_accepts_camel_case_fields_without_leaking() {
        let c = credentials_from_secret_json(
            "arn:x",
            &Secret::new(r#"{"clientId":"a","clientSecret":"zzz-secret"}"#),
        )
        .unwrap();
        assert!(matches!(c, Credentials::ClientCredentials { .. }));
        let e = credentials_from_secret_json("arn:x", &Secret::new(r#"{"clientId":"a"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MPAS_CREDENTIALS_SECRET_ARN"), "{e}");
        let e = credentials_from_secret_json("arn:x", &Secret::new("zzz-secret"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("zzz-secret"), "{e}");
    }

    #[test]
    fn plain_http_base_url_is_refused_unless_the_host_is_loopback() {
        for url in [
            "http://mpas.example.com",
            "http://192.0.2.1:8080",
            "http://127.example.com",
        ] {
            let e = err_with("MPAS_BASE_URL", url);
            assert!(
                e.contains("MPAS_BASE_URL") && e.contains("loopback hosts only"),
                "{url}: {e}"
            );
        }
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.1.2.3",
            "http://[::1]:9000",
            "http://localhost:8080",
            "http://LOCALHOST",
            "https://mpas.example.com",
        ] {
            let mut vars = base();
            vars.insert("MPAS_BASE_URL", url.to_string());
            let s = parse(&vars).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(s.base_url, url.trim_end_matches('/'));
        }
    }

    #[test]
    fn base_url_errors_never_echo_userinfo() {
        for url in [
            "https://svc:hunter2@mpas.example.com",
            "http://svc:hunter2@mpas.example.com",
            "ftp://svc:hunter2@mpas.example.com",
            "https://svc:hunter2@",
            "https://hunter2@mpas.example.com/x",
        ] {
            let e = err_with("MPAS_BASE_URL", url);
            assert!(e.contains("MPAS_BASE_URL"), "{e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
        assert_eq!(
            without_userinfo("https://u:p@host:1/a@b?c@d"),
            "https://***@host:1/a@b?c@d"
        );
        assert_eq!(without_userinfo("https://host/a@b"), "https://host/a@b");
    }

    #[test]
    fn ca_bundle_only_needs_a_bundle_and_defaults_to_off() {
        assert!(!parse(&base()).unwrap().ca_bundle_only);
        let e = err_with("MPAS_CA_BUNDLE_ONLY", "true");
        assert!(
            e.contains("MPAS_CA_BUNDLE") && e.contains("MPAS_CA_BUNDLE_ONLY"),
            "{e}"
        );
        let mut vars = base();
        vars.insert("MPAS_CA_BUNDLE", "/opt/ca.pem".into());
        vars.insert("MPAS_CA_BUNDLE_ONLY", "true".into());
        assert!(parse(&vars).unwrap().ca_bundle_only);
    }

    #[test]
    fn page_cap_follows_the_page_size_within_bounds_and_can_be_set() {
        assert_eq!(parse(&base()).unwrap().max_page_bytes, 16 * 1024 * 1000);
        assert_eq!(default_max_page_bytes(1), 8 * 1024 * 1024);
        assert_eq!(default_max_page_bytes(10_000), 64 * 1024 * 1024);
        let mut vars = base();
        vars.insert("MPAS_MAX_PAGE_BYTES", "2097152".into());
        assert_eq!(parse(&vars).unwrap().max_page_bytes, 2_097_152);
        let e = err_with("MPAS_MAX_PAGE_BYTES", "1000");
        assert!(e.contains("MPAS_MAX_PAGE_BYTES"), "{e}");
    }
}
