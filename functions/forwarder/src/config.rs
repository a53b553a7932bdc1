//! The forwarder's JSON configuration (`FORWARDER_CONFIG` or the file named by
//! `FORWARDER_CONFIG_FILE`): parsed with serde (unknown keys rejected), then validated into a
//! typed [`ForwarderConfig`] whose invalid states cannot be represented. Every error names the
//! offending key path, for example `emitters[2] ("syslog").facility`.
//!
//! Secrets (`token`, `password`, `hmacKey` and their `*SecretArn` forms) are kept as
//! [`SecretRef`]s here and resolved at cold start by [`crate::build`]; their values never appear
//! in errors or Debug output.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use authtrail_core::secret::Secret;
use serde::Deserialize;

use crate::ForwarderError;
use crate::filter::{FieldFilter, Selector};

// ---------------------------------------------------------------------------------------------
// Raw (serde) form
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    emitters: Vec<RawEmitter>,
    #[serde(default)]
    emit_to_all_of: Option<Vec<String>>,
    #[serde(default)]
    emit_at_least_one_of: Option<Vec<String>>,
    #[serde(default)]
    filter_policies: Option<RawFilterPolicies>,
    #[serde(default)]
    redaction: Option<RawRedaction>,
    #[serde(default)]
    retry: Option<RawRetry>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFilterPolicies {
    field: Option<RawFieldPolicy>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFieldPolicy {
    #[serde(default)]
    include_if: Vec<String>,
    #[serde(default)]
    exclude_if: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRedaction {
    mode: Option<String>,
    #[serde(default)]
    fields: Vec<String>,
    hmac_key: Option<String>,
    hmac_key_secret_arn: Option<String>,
}

impl std::fmt::Debug for RawRedaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRedaction")
            .field("mode", &self.mode)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    max_record_age_in_sec: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBuffering {
    max_batched_events: Option<usize>,
    max_size: Option<usize>,
    max_concurrent_requests: Option<usize>,
    /// Accepted for compatibility with other emitters' vocabulary; a Lambda invocation always
    /// flushes at its end, so this only has to be a valid number.
    write_interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSeverityMapping {
    field: String,
    value_mappings: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEmitter {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    enabled: Option<bool>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    buffering: Option<RawBuffering>,
    emit_timeout_in_sec: Option<u64>,
    filter_policies: Option<RawFilterPolicies>,
    redaction: Option<RawRedaction>,
    // HTTP family
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    ca_bundle: Option<PathBuf>,
    token: Option<String>,
    token_secret_arn: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_secret_arn: Option<String>,
    format: Option<String>,
    gzip: Option<bool>,
    // Splunk HEC
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    index: Option<String>,
    // syslog (host above)
    protocol: Option<String>,
    port: Option<u32>,
    connect_timeout: Option<u64>,
    facility: Option<String>,
    severity_field_mappings: Option<Vec<RawSeverityMapping>>,
    default_severity: Option<String>,
    app_name: Option<String>,
    hostname: Option<String>,
    max_message_size: Option<usize>,
    // firehose
    delivery_stream: Option<String>,
}

impl RawEmitter {
    /// The keys that are set, by their JSON names (for the "not valid for this type" check).
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! key {
            ($field:ident, $json:literal) => {
                if self.$field.is_some() {
                    keys.push($json);
                }
            };
        }
        key!(url, "url");
        key!(headers, "headers");
        key!(ca_bundle, "caBundle");
        key!(token, "token");
        key!(token_secret_arn, "tokenSecretArn");
        key!(username, "username");
        key!(password, "password");
        key!(password_secret_arn, "passwordSecretArn");
        key!(format, "format");
        key!(gzip, "gzip");
        key!(host, "host");
        key!(source, "source");
        key!(sourcetype, "sourcetype");
        key!(index, "index");
        key!(protocol, "protocol");
        key!(port, "port");
        key!(connect_timeout, "connectTimeout");
        key!(facility, "facility");
        key!(severity_field_mappings, "severityFieldMappings");
        key!(default_severity, "defaultSeverity");
        key!(app_name, "appName");
        key!(hostname, "hostname");
        key!(max_message_size, "maxMessageSize");
        key!(delivery_stream, "deliveryStream");
        keys
    }
}

fn allowed_keys(kind: EmitterType) -> &'static [&'static str] {
    match kind {
        EmitterType::Http => &[
            "url",
            "headers",
            "caBundle",
            "token",
            "tokenSecretArn",
            "username",
            "password",
            "passwordSecretArn",
            "format",
            "gzip",
        ],
        EmitterType::SplunkHec => &[
            "url",
            "headers",
            "caBundle",
            "token",
            "tokenSecretArn",
            "gzip",
            "host",
            "source",
            "sourcetype",
            "index",
        ],
        EmitterType::Elasticsearch => &[
            "url",
            "headers",
            "caBundle",
            "token",
            "tokenSecretArn",
            "username",
            "password",
            "passwordSecretArn",
            "gzip",
            "index",
        ],
        EmitterType::Syslog => &[
            "protocol",
            "host",
            "port",
            "connectTimeout",
            "facility",
            "severityFieldMappings",
            "defaultSeverity",
            "appName",
            "hostname",
            "caBundle",
            "maxMessageSize",
        ],
        EmitterType::Firehose => &["deliveryStream"],
        EmitterType::Stdout => &[],
    }
}

// ---------------------------------------------------------------------------------------------
// Typed form
// ---------------------------------------------------------------------------------------------

/// Where a secret comes from: given directly (local runs) or by Secrets Manager ARN.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Plain(Secret),
    Arn(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Plain(_) => f.write_str("Plain(<secret>)"),
            SecretRef::Arn(arn) => write!(f, "Arn({arn})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitterType {
    Http,
    SplunkHec,
    Elasticsearch,
    Syslog,
    Firehose,
    Stdout,
}

impl EmitterType {
    pub fn as_str(self) -> &'static str {
        match self {
            EmitterType::Http => "http",
            EmitterType::SplunkHec => "splunk-hec",
            EmitterType::Elasticsearch => "elasticsearch",
            EmitterType::Syslog => "syslog",
            EmitterType::Firehose => "firehose",
            EmitterType::Stdout => "stdout",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "http" => EmitterType::Http,
            "splunk-hec" => EmitterType::SplunkHec,
            "elasticsearch" | "opensearch" => EmitterType::Elasticsearch,
            "syslog" => EmitterType::Syslog,
            "firehose" => EmitterType::Firehose,
            "stdout" => EmitterType::Stdout,
            _ => return None,
        })
    }
}

/// Redaction settings (resolved into an `authtrail_core::redact::Redactor` at cold start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactionConfig {
    Mask { fields: Vec<String> },
    Hash { fields: Vec<String>, key: SecretRef },
}

impl RedactionConfig {
    pub fn fields(&self) -> &[String] {
        match self {
            RedactionConfig::Mask { fields } | RedactionConfig::Hash { fields, .. } => fields,
        }
    }
}

/// The transform applied to records before they leave the function: field filter, then
/// redaction. The top-level one applies to every emitter without its own override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformConfig {
    pub filter: FieldFilter,
    pub redaction: Option<RedactionConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    pub max_batched_events: usize,
    /// Upper bound of one request's uncompressed payload, in bytes.
    pub max_size: usize,
    /// Requests of this emitter in flight at once (syslog over TCP/TLS always sends one at a
    /// time on its one ordered connection).
    pub max_concurrent_requests: usize,
}

/// Default of `buffering.maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    Ndjson,
    JsonArray,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    None,
    Bearer(SecretRef),
    Basic {
        username: String,
        password: SecretRef,
    },
    /// `Authorization: Splunk <token>`.
    Splunk(SecretRef),
    /// `Authorization: ApiKey <key>` (Elasticsearch / OpenSearch API keys).
    ApiKey(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFlavor {
    Generic {
        format: HttpFormat,
    },
    SplunkHec {
        host: String,
        source: String,
        sourcetype: String,
        index: Option<String>,
    },
    Elasticsearch {
        index: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub ca_bundle: Option<PathBuf>,
    pub auth: HttpAuth,
    pub gzip: bool,
    pub flavor: HttpFlavor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogProtocol {
    Tcp,
    Tls,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityMapping {
    /// RFC 6901 pointer into the (filtered, redacted) record.
    pub field: String,
    pub values: HashMap<String, u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    pub protocol: SyslogProtocol,
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub facility: u8,
    pub severity_mappings: Vec<SeverityMapping>,
    pub default_severity: u8,
    pub app_name: String,
    pub hostname: String,
    pub ca_bundle: Option<PathBuf>,
    /// Largest UDP message; bigger ones are dead-lettered (never truncated: a cut JSON event is
    /// useless to a SIEM).
    pub max_message_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitterSettings {
    Http(HttpConfig),
    Syslog(SyslogConfig),
    Firehose { delivery_stream: String },
    Stdout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitterConfig {
    pub name: String,
    pub kind: EmitterType,
    pub enabled: bool,
    pub selector: Selector,
    pub buffering: Buffering,
    pub emit_timeout: Duration,
    /// `Some` when this emitter overrides the top-level filter policies or redaction.
    pub transform_override: Option<TransformConfig>,
    pub settings: EmitterSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per record and emitter within one invocation (the first included).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A record still failing with a retryable error once it is older than this is
    /// dead-lettered instead of retried again (so a dead receiver never blocks the shard).
    pub max_record_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_record_age: Duration::from_secs(3600),
        }
    }
}

/// Which emitters must take a record for it to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Names of emitters that must all take the record.
    pub all_of: Vec<String>,
    /// Names of emitters of which at least one must take it (empty: no such condition).
    pub at_least_one_of: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Enabled emitters only, in configuration order.
    pub emitters: Vec<EmitterConfig>,
    pub quorum: Quorum,
    pub transform: TransformConfig,
    pub retry: RetryPolicy,
}

/// Default `emitTimeoutInSec`.
pub const DEFAULT_EMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `buffering`: 500 events or 1 MiB per request.
pub const DEFAULT_MAX_BATCHED_EVENTS: usize = 500;
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;
/// Firehose PutRecordBatch limits: 500 records and 4 MiB per call.
pub const FIREHOSE_MAX_RECORDS: usize = 500;
pub const FIREHOSE_MAX_CALL_BYTES: usize = 4 * 1024 * 1024;

fn err(path: impl Into<String>, message: impl Into<String>) -> ForwarderError {
    ForwarderError::Config {
        path: path.into(),
        message: message.into(),
    }
}

impl ForwarderConfig {
    /// Reads `FORWARDER_CONFIG` (JSON) or the file named by `FORWARDER_CONFIG_FILE`.
    pub fn from_env() -> Result<Self, ForwarderError> {
        let inline = authtrail_core::config::env_opt("FORWARDER_CONFIG");
        let file = authtrail_core::config::env_opt("FORWARDER_CONFIG_FILE");
        match (inline, file) {
            (Some(_), Some(_)) => Err(err(
                "FORWARDER_CONFIG",
                "set either FORWARDER_CONFIG or FORWARDER_CONFIG_FILE, not both",
            )),
            (Some(json), None) => Self::parse(&json),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    err("FORWARDER_CONFIG_FILE", format!("cannot read {path}: {e}"))
                })?;
                Self::parse(&text)
            }
            (None, None) => Err(err(
                "FORWARDER_CONFIG",
                "must be set to the JSON configuration (or FORWARDER_CONFIG_FILE to its path)",
            )),
        }
    }

    /// Parses and validates the JSON configuration.
    pub fn parse(json: &str) -> Result<Self, ForwarderError> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| {
            // serde's message names unknown fields and bad types; it may quote the offending
            // value, which can be a secret: for type errors we keep only the position.
            let text = e.to_string();
            let safe = if e.is_data()
                && !text.contains("unknown field")
                && !text.contains("missing field")
            {
                format!(
                    "invalid value or type at line {} column {}",
                    e.line(),
                    e.column()
                )
            } else {
                text
            };
            err("FORWARDER_CONFIG", safe)
        })?;
        validate(raw)
    }
}

fn validate(raw: RawConfig) -> Result<ForwarderConfig, ForwarderError> {
    if raw.emitters.is_empty() {
        return Err(err("emitters", "must list at least one emitter"));
    }
    let mut names = HashSet::new();
    let mut emitters = Vec::new();
    let mut disabled = HashSet::new();
    for (i, e) in raw.emitters.into_iter().enumerate() {
        let label = format!("emitters[{i}] ({:?})", e.name);
        if e.name.trim().is_empty() {
            return Err(err(
                format!("emitters[{i}].name"),
                "must be a non-empty string",
            ));
        }
        if !names.insert(e.name.clone()) {
            return Err(err(
                format!("{label}.name"),
                "must be unique (another emitter has it)",
            ));
        }
        let emitter = validate_emitter(&label, e)?;
        if emitter.enabled {
            emitters.push(emitter);
        } else {
            disabled.insert(emitter.name.clone());
        }
    }
    if emitters.is_empty() {
        return Err(err("emitters", "must have at least one enabled emitter"));
    }
    let check_list =
        |key: &str, list: &Option<Vec<String>>| -> Result<Vec<String>, ForwarderError> {
            let list = list.clone().unwrap_or_default();
            let mut seen = HashSet::new();
            for (j, n) in list.iter().enumerate() {
                if disabled.contains(n) {
                    return Err(err(
                        format!("{key}[{j}]"),
                        format!("names emitter {n:?}, which is disabled"),
                    ));
                }
                if !emitters.iter().any(|e| &e.name == n) {
                    return Err(err(
                        format!("{key}[{j}]"),
                        format!("names no configured emitter ({n:?})"),
                    ));
                }
                if !seen.insert(n) {
                    return Err(err(format!("{key}[{j}]"), format!("lists {n:?} twice")));
                }
            }
            Ok(list)
        };
    let mut all_of = check_list("emitToAllOf", &raw.emit_to_all_of)?;
    let at_least_one_of = check_list("emitAtLeastOneOf", &raw.emit_at_least_one_of)?;
    if raw
        .emit_at_least_one_of
        .as_ref()
        .is_some_and(|l| l.is_empty())
    {
        return Err(err(
            "emitAtLeastOneOf",
            "must name at least one emitter when given",
        ));
    }
    if raw.emit_to_all_of.is_none() && raw.emit_at_least_one_of.is_none() {
        all_of = emitters.iter().map(|e| e.name.clone()).collect();
    }
    let transform = TransformConfig {
        filter: validate_filter("filterPolicies", raw.filter_policies.as_ref())?,
        redaction: validate_redaction("redaction", raw.redaction.as_ref())?,
    };
    let retry = validate_retry(raw.retry)?;
    Ok(ForwarderConfig {
        emitters,
        quorum: Quorum {
            all_of,
            at_least_one_of,
        },
        transform,
        retry,
    })
}

fn validate_retry(raw: Option<RawRetry>) -> Result<RetryPolicy, ForwarderError> {
    let mut p = RetryPolicy::default();
    let Some(raw) = raw else { return Ok(p) };
    if let Some(n) = raw.max_attempts {
        if !(1..=100).contains(&n) {
            return Err(err(
                "retry.maxAttempts",
                format!("must be 1..=100 (got {n})"),
            ));
        }
        p.max_attempts = n;
    }
    if let Some(ms) = raw.initial_backoff_ms {
        p.initial_backoff = Duration::from_millis(ms);
    }
    if let Some(ms) = raw.max_backoff_ms {
        p.max_backoff = Duration::from_millis(ms);
    }
    if p.max_backoff < p.initial_backoff {
        return Err(err(
            "retry.maxBackoffMs",
            "must be at least retry.initialBackoffMs",
        ));
    }
    if let Some(s) = raw.max_record_age_in_sec {
        p.max_record_age = Duration::from_secs(s);
    }
    Ok(p)
}

fn validate_pointer(path: &str, p: &str) -> Result<(), ForwarderError> {
    if !p.starts_with('/') {
        return Err(err(
            path,
            format!("must be a JSON pointer starting with '/' (got {p:?})"),
        ));
    }
    Ok(())
}

fn validate_filter(
    path: &str,
    raw: Option<&RawFilterPolicies>,
) -> Result<FieldFilter, ForwarderError> {
    let Some(field) = raw.and_then(|r| r.field.as_ref()) else {
        return Ok(FieldFilter::default());
    };
    for (i, p) in field.include_if.iter().enumerate() {
        validate_pointer(&format!("{path}.field.includeIf[{i}]"), p)?;
    }
    for (i, p) in field.exclude_if.iter().enumerate() {
        validate_pointer(&format!("{path}.field.excludeIf[{i}]"), p)?;
    }
    FieldFilter::new(&field.include_if, &field.exclude_if)
        .map_err(|m| err(format!("{path}.field"), m))
}

fn secret_ref(
    path: &str,
    plain_key: &str,
    arn_key: &str,
    plain: Option<&String>,
    arn: Option<&String>,
) -> Result<Option<SecretRef>, ForwarderError> {
    match (plain, arn) {
        (Some(_), Some(_)) => Err(err(
            format!("{path}.{plain_key}"),
            format!("give either {plain_key} or {arn_key}, not both"),
        )),
        (Some(p), None) if p.is_empty() => {
            Err(err(format!("{path}.{plain_key}"), "must not be empty"))
        }
        (Some(p), None) => Ok(Some(SecretRef::Plain(Secret::new(p.clone())))),
        (None, Some(a)) if !a.starts_with("arn:") => Err(err(
            format!("{path}.{arn_key}"),
            format!("must be a Secrets Manager ARN (arn:...) (got {a:?})"),
        )),
        (None, Some(a)) => Ok(Some(SecretRef::Arn(a.clone()))),
        (None, None) => Ok(None),
    }
}

fn validate_redaction(
    path: &str,
    raw: Option<&RawRedaction>,
) -> Result<Option<RedactionConfig>, ForwarderError> {
    let Some(r) = raw else { return Ok(None) };
    for (i, p) in r.fields.iter().enumerate() {
        validate_pointer(&format!("{path}.fields[{i}]"), p)?;
    }
    let key = secret_ref(
        path,
        "hmacKey",
        "hmacKeySecretArn",
        r.hmac_key.as_ref(),
        r.hmac_key_secret_arn.as_ref(),
    )?;
    match r.mode.as_deref().unwrap_or("mask") {
        "mask" => {
            if key.is_some() {
                return Err(err(
                    format!("{path}.hmacKey"),
                    "is only valid with mode \"hash\"",
                ));
            }
            Ok(Some(RedactionConfig::Mask {
                fields: r.fields.clone(),
            }))
        }
        "hash" => match key {
            Some(key) => Ok(Some(RedactionConfig::Hash {
                fields: r.fields.clone(),
                key,
            })),
            None => Err(err(
                format!("{path}.hmacKeySecretArn"),
                "mode \"hash\" needs hmacKeySecretArn (or hmacKey for local runs)",
            )),
        },
        other => Err(err(
            format!("{path}.mode"),
            format!("must be one of mask, hash (got {other:?})"),
        )),
    }
}

/// Checks an emitter URL: `https`, or `http` to a loopback host only (local receivers); TLS
/// verification itself is never optional.
fn validate_url(path: &str, url: &str) -> Result<reqwest::Url, ForwarderError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| err(path, format!("must be an absolute URL ({e}) (got {url:?})")))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(err(
                    path,
                    format!(
                        "must use https (http is allowed for loopback hosts only) (got {url:?})"
                    ),
                ));
            }
        }
        other => {
            return Err(err(
                path,
                format!("must be an https URL (got scheme {other:?})"),
            ));
        }
    }
    if parsed.host().is_none() {
        return Err(err(path, format!("must name a host (got {url:?})")));
    }
    Ok(parsed)
}

pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "ntp" => 12,
        "security" | "audit" => 13,
        "console" => 14,
        "solaris-cron" | "clock" => 15,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

pub fn severity_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "emergency" | "emerg" => 0,
        "alert" => 1,
        "critical" | "crit" => 2,
        "error" | "err" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "informational" | "info" => 6,
        "debug" => 7,
        _ => return None,
    })
}

const FACILITIES: &str = "kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, clock, local0..local7";
const SEVERITIES: &str = "emergency, alert, critical, error, warning, notice, informational, debug";

fn validate_emitter(label: &str, e: RawEmitter) -> Result<EmitterConfig, ForwarderError> {
    let kind = EmitterType::parse(&e.kind).ok_or_else(|| {
        err(
            format!("{label}.type"),
            format!(
                "must be one of http, splunk-hec, elasticsearch, syslog, firehose, stdout (got {:?})",
                e.kind
            ),
        )
    })?;
    let allowed = allowed_keys(kind);
    for key in e.set_keys() {
        if !allowed.contains(&key) {
            return Err(err(
                format!("{label}.{key}"),
                format!("is not a setting of type {}", kind.as_str()),
            ));
        }
    }
    let selector_of =
        |key: &str, list: &Option<Vec<String>>| -> Result<Vec<String>, ForwarderError> {
            let list = list.clone().unwrap_or_default();
            for (j, t) in list.iter().enumerate() {
                if t.trim().is_empty() {
                    return Err(err(
                        format!("{label}.{key}[{j}]"),
                        "must be a non-empty event type",
                    ));
                }
            }
            Ok(list)
        };
    let selector = Selector::new(
        selector_of("include", &e.include)?,
        selector_of("exclude", &e.exclude)?,
    );

    let (max_batched_default, max_size_default) = match kind {
        EmitterType::Firehose => (FIREHOSE_MAX_RECORDS, FIREHOSE_MAX_CALL_BYTES),
        _ => (DEFAULT_MAX_BATCHED_EVENTS, DEFAULT_MAX_SIZE),
    };
    let mut buffering = Buffering {
        max_batched_events: max_batched_default,
        max_size: max_size_default,
        max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
    };
    if let Some(b) = &e.buffering {
        if let Some(n) = b.max_batched_events {
            let cap = if kind == EmitterType::Firehose {
                FIREHOSE_MAX_RECORDS
            } else {
                10_000
            };
            if n == 0 || n > cap {
                return Err(err(
                    format!("{label}.buffering.maxBatchedEvents"),
                    format!("must be 1..={cap} (got {n})"),
                ));
            }
            buffering.max_batched_events = n;
        }
        if let Some(n) = b.max_size {
            let cap = if kind == EmitterType::Firehose {
                FIREHOSE_MAX_CALL_BYTES
            } else {
                100 * 1024 * 1024
            };
            if !(1024..=cap).contains(&n) {
                return Err(err(
                    format!("{label}.buffering.maxSize"),
                    format!("must be 1024..={cap} bytes (got {n})"),
                ));
            }
            buffering.max_size = n;
        }
        if let Some(n) = b.max_concurrent_requests {
            if !(1..=64).contains(&n) {
                return Err(err(
                    format!("{label}.buffering.maxConcurrentRequests"),
                    format!("must be 1..=64 (got {n})"),
                ));
            }
            buffering.max_concurrent_requests = n;
        }
        let _ = b.write_interval;
    }
    let emit_timeout = match e.emit_timeout_in_sec {
        Some(0) => {
            return Err(err(
                format!("{label}.emitTimeoutInSec"),
                "must be at least 1",
            ));
        }
        Some(s) if s > 900 => {
            return Err(err(
                format!("{label}.emitTimeoutInSec"),
                format!("must be at most 900 (got {s})"),
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => DEFAULT_EMIT_TIMEOUT,
    };
    let transform_override = if e.filter_policies.is_some() || e.redaction.is_some() {
        Some(TransformConfig {
            filter: validate_filter(
                &format!("{label}.filterPolicies"),
                e.filter_policies.as_ref(),
            )?,
            redaction: validate_redaction(&format!("{label}.redaction"), e.redaction.as_ref())?,
        })
    } else {
        None
    };

    let settings = match kind {
        EmitterType::Http | EmitterType::SplunkHec | EmitterType::Elasticsearch => {
            EmitterSettings::Http(validate_http(label, kind, &e)?)
        }
        EmitterType::Syslog => EmitterSettings::Syslog(validate_syslog(label, &e)?),
        EmitterType::Firehose => {
            let ds = e.delivery_stream.clone().unwrap_or_default();
            if ds.is_empty() {
                return Err(err(
                    format!("{label}.deliveryStream"),
                    "is required for type firehose",
                ));
            }
            EmitterSettings::Firehose {
                delivery_stream: ds,
            }
        }
        EmitterType::Stdout => EmitterSettings::Stdout,
    };
    Ok(EmitterConfig {
        name: e.name,
        kind,
        enabled: e.enabled.unwrap_or(true),
        selector,
        buffering,
        emit_timeout,
        transform_override,
        settings,
    })
}

fn validate_http(
    label: &str,
    kind: EmitterType,
    e: &RawEmitter,
) -> Result<HttpConfig, ForwarderError> {
    let url_text = e.url.as_deref().ok_or_else(|| {
        err(
            format!("{label}.url"),
            format!("is required for type {}", kind.as_str()),
        )
    })?;
    let mut url = validate_url(&format!("{label}.url"), url_text)?;
    let mut headers = Vec::new();
    for (k, v) in e.headers.clone().unwrap_or_default() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(err(
                format!("{label}.headers"),
                format!("{k:?} is not a valid header name"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(&v).is_err() {
            return Err(err(
                format!("{label}.headers.{k}"),
                "is not a valid header value",
            ));
        }
        if k.eq_ignore_ascii_case("authorization") {
            return Err(err(
                format!("{label}.headers.{k}"),
                "use token/tokenSecretArn or username/password instead (secrets do not belong in headers)",
            ));
        }
        headers.push((k, v));
    }
    let token = secret_ref(
        label,
        "token",
        "tokenSecretArn",
        e.token.as_ref(),
        e.token_secret_arn.as_ref(),
    )?;
    let password = secret_ref(
        label,
        "password",
        "passwordSecretArn",
        e.password.as_ref(),
        e.password_secret_arn.as_ref(),
    )?;
    let basic = match (&e.username, password) {
        (Some(u), Some(p)) => Some((u.clone(), p)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                format!("{label}.password"),
                "username needs password or passwordSecretArn",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                format!("{label}.username"),
                "password needs a username",
            ));
        }
    };
    if token.is_some() && basic.is_some() {
        return Err(err(
            format!("{label}.token"),
            "give either token or username/password, not both",
        ));
    }
    let (auth, flavor, gzip_default) = match kind {
        EmitterType::Http => {
            let format = match e.format.as_deref().unwrap_or("ndjson") {
                "ndjson" => HttpFormat::Ndjson,
                "json-array" | "json" => HttpFormat::JsonArray,
                other => {
                    return Err(err(
                        format!("{label}.format"),
                        format!("must be one of ndjson, json-array (got {other:?})"),
                    ));
                }
            };
            let auth = match (token, basic) {
                (Some(t), _) => HttpAuth::Bearer(t),
                (None, Some((username, password))) => HttpAuth::Basic { username, password },
                (None, None) => HttpAuth::None,
            };
            (auth, HttpFlavor::Generic { format }, false)
        }
        EmitterType::SplunkHec => {
            let Some(t) = token else {
                return Err(err(
                    format!("{label}.tokenSecretArn"),
                    "type splunk-hec needs tokenSecretArn (or token for local runs)",
                ));
            };
            if url.path() == "/" || url.path().is_empty() {
                url.set_path("/services/collector/event");
            }
            let flavor = HttpFlavor::SplunkHec {
                host: e.host.clone().unwrap_or_else(|| "authtrail".into()),
                source: e.source.clone().unwrap_or_else(|| "authtrail".into()),
                sourcetype: e.sourcetype.clone().unwrap_or_else(|| "_json".into()),
                index: e.index.clone(),
            };
            (HttpAuth::Splunk(t), flavor, true)
        }
        EmitterType::Elasticsearch => {
            let index = e.index.clone().unwrap_or_else(|| "authtrail".into());
            if index.is_empty()
                || index.starts_with(['_', '-', '+'])
                || index.contains(['/', ' ', '"', '*', '\\', '<', '>', '|', ',', '#', '?'])
                || index != index.to_lowercase()
            {
                return Err(err(
                    format!("{label}.index"),
                    format!("must be a valid lowercase Elasticsearch index name (got {index:?})"),
                ));
            }
            let auth = match (token, basic) {
                (Some(t), _) => HttpAuth::ApiKey(t),
                (None, Some((username, password))) => HttpAuth::Basic { username, password },
                (None, None) => HttpAuth::None,
            };
            // `url` is the cluster's base URL; requests go to {url}/_bulk.
            let path = url.path().trim_end_matches('/').to_string();
            if !path.ends_with("/_bulk") {
                url.set_path(&format!("{path}/_bulk"));
            }
            (auth, HttpFlavor::Elasticsearch { index }, true)
        }
        _ => return Err(err(format!("{label}.type"), "is not an HTTP type")),
    };
    Ok(HttpConfig {
        url,
        headers,
        ca_bundle: e.ca_bundle.clone(),
        auth,
        gzip: e.gzip.unwrap_or(gzip_default),
        flavor,
    })
}

fn validate_syslog(label: &str, e: &RawEmitter) -> Result<SyslogConfig, ForwarderError> {
    let protocol = match e
        .protocol
        .as_deref()
        .unwrap_or("TCP")
        .to_ascii_uppercase()
        .as_str()
    {
        "TCP" => SyslogProtocol::Tcp,
        "TLS" => SyslogProtocol::Tls,
        "UDP" => SyslogProtocol::Udp,
        _ => {
            return Err(err(
                format!("{label}.protocol"),
                format!(
                    "must be one of TCP, TLS, UDP (got {:?})",
                    e.protocol.as_deref().unwrap_or_default()
                ),
            ));
        }
    };
    let host = e.host.clone().unwrap_or_default();
    if host.is_empty() {
        return Err(err(format!("{label}.host"), "is required for type syslog"));
    }
    let port = match e.port {
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            return Err(err(
                format!("{label}.port"),
                format!("must be 1..=65535 (got {p})"),
            ));
        }
        None => match protocol {
            SyslogProtocol::Tls => 6514,
            _ => 514,
        },
    };
    if protocol != SyslogProtocol::Tls && e.ca_bundle.is_some() {
        return Err(err(
            format!("{label}.caBundle"),
            "is only valid with protocol TLS",
        ));
    }
    let facility_name = e.facility.as_deref().unwrap_or("authpriv");
    let facility = facility_code(facility_name).ok_or_else(|| {
        err(
            format!("{label}.facility"),
            format!("must be one of {FACILITIES} (got {facility_name:?})"),
        )
    })?;
    let default_name = e.default_severity.as_deref().unwrap_or("informational");
    let default_severity = severity_code(default_name).ok_or_else(|| {
        err(
            format!("{label}.defaultSeverity"),
            format!("must be one of {SEVERITIES} (got {default_name:?})"),
        )
    })?;
    let mut severity_mappings = Vec::new();
    for (i, m) in e.severity_field_mappings.iter().flatten().enumerate() {
        let path = format!("{label}.severityFieldMappings[{i}]");
        validate_pointer(&format!("{path}.field"), &m.field)?;
        let mut values = HashMap::new();
        for (value, sev) in &m.value_mappings {
            let code = severity_code(sev).ok_or_else(|| {
                err(
                    format!("{path}.valueMappings.{value}"),
                    format!("must be one of {SEVERITIES} (got {sev:?})"),
                )
            })?;
            values.insert(value.clone(), code);
        }
        severity_mappings.push(SeverityMapping {
            field: m.field.clone(),
            values,
        });
    }
    let connect_timeout = match e.connect_timeout {
        Some(0) => {
            return Err(err(
                format!("{label}.connectTimeout"),
                "must be at least 1 (milliseconds)",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(30),
    };
    let app_name = e.app_name.clone().unwrap_or_else(|| "authtrail".into());
    check_syslog_token(&format!("{label}.appName"), &app_name, 48)?;
    let hostname = e.hostname.clone().unwrap_or_else(|| "authtrail".into());
    check_syslog_token(&format!("{label}.hostname"), &hostname, 255)?;
    let max_message_size = match e.max_message_size {
        Some(n) if (480..=65_000).contains(&n) => n,
        Some(n) => {
            return Err(err(
                format!("{label}.maxMessageSize"),
                format!("must be 480..=65000 bytes (got {n})"),
            ));
        }
        None => 8192,
    };
    Ok(SyslogConfig {
        protocol,
        host,
        port,
        connect_timeout,
        facility,
        severity_mappings,
        default_severity,
        app_name,
        hostname,
        ca_bundle: e.ca_bundle.clone(),
        max_message_size,
    })
}

/// RFC 5424 header fields are printable US-ASCII without spaces, of bounded length.
fn check_syslog_token(path: &str, v: &str, max: usize) -> Result<(), ForwarderError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(err(
            path,
            format!("must be 1..={max} printable ASCII characters without spaces (got {v:?})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const EXAMPLE: &str = r#"{
      "emitters": [
        {"name": "splunk", "type": "splunk-hec", "url": "https://splunk.example:8088/services/collector/event",
         "tokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec", "include": ["LOGIN_ERROR", "admin-event"],
         "buffering": {"maxBatchedEvents": 500, "maxSize": 1048576}, "emitTimeoutInSec": 30},
        {"name": "webhook", "type": "http", "url": "https://siem.example/ingest", "headers": {"X-Source": "authtrail"}, "exclude": ["REFRESH_TOKEN"]},
        {"name": "elastic", "type": "elasticsearch", "url": "https://es.example:9200", "index": "audit"},
        {"name": "syslog", "type": "syslog", "protocol": "TLS", "host": "collector.example", "port": 6514,
         "connectTimeout": 30000, "facility": "authpriv",
         "severityFieldMappings": [{"field": "/event/type", "valueMappings": {"LOGIN_ERROR": "warning", "LOGIN": "informational"}}]},
        {"name": "firehose", "type": "firehose", "deliveryStream": "siem-backup"},
        {"name": "stdout", "type": "stdout", "enabled": false}
      ],
      "emitToAllOf": ["syslog"],
      "emitAtLeastOneOf": ["splunk", "webhook", "elastic"],
      "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"], "includeIf": []}},
      "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username"], "hmacKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hmac"}
    }"#;

    fn message(json: &str) -> String {
        ForwarderConfig::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn the_issue_example_parses_into_typed_settings() {
        let c = ForwarderConfig::parse(EXAMPLE).unwrap();
        // The disabled stdout emitter is dropped.
        assert_eq!(c.emitters.len(), 5);
        assert_eq!(c.quorum.all_of, vec!["syslog"]);
        assert_eq!(
            c.quorum.at_least_one_of,
            vec!["splunk", "webhook", "elastic"]
        );
        let splunk = &c.emitters[0];
        assert_eq!(splunk.emit_timeout, Duration::from_secs(30));
        assert_eq!(splunk.buffering.max_batched_events, 500);
        assert_eq!(
            splunk.buffering.max_concurrent_requests,
            DEFAULT_MAX_CONCURRENT_REQUESTS
        );
        let EmitterSettings::Http(h) = &splunk.settings else {
            panic!()
        };
        assert!(matches!(h.auth, HttpAuth::Splunk(SecretRef::Arn(_))));
        assert!(h.gzip);
        let EmitterSettings::Http(es) = &c.emitters[2].settings else {
            panic!()
        };
        assert_eq!(es.url.as_str(), "https://es.example:9200/_bulk");
        let EmitterSettings::Syslog(s) = &c.emitters[3].settings else {
            panic!()
        };
        assert_eq!(
            (s.facility, s.port, s.protocol),
            (10, 6514, SyslogProtocol::Tls)
        );
        assert_eq!(s.severity_mappings[0].values["LOGIN_ERROR"], 4);
        assert_eq!(c.emitters[1].emit_timeout, DEFAULT_EMIT_TIMEOUT);
        assert!(matches!(
            c.transform.redaction,
            Some(RedactionConfig::Hash { .. })
        ));
    }

    #[test]
    fn without_quorum_lists_every_enabled_emitter_is_required() {
        let c = ForwarderConfig::parse(
            r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"b","type":"stdout"},{"name":"c","type":"stdout","enabled":false}]}"#,
        )
        .unwrap();
        assert_eq!(c.quorum.all_of, vec!["a", "b"]);
        assert!(c.quorum.at_least_one_of.is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let m = message(r#"{"emitters":[{"name":"a","type":"stdout","colour":"red"}]}"#);
        assert!(m.contains("colour"), "{m}");
        let m = message(r#"{"emitters":[{"name":"a","type":"stdout"}],"emitToAll":["a"]}"#);
        assert!(m.contains("emitToAll"), "{m}");
    }

    #[test]
    fn keys_of_another_emitter_type_are_rejected_with_the_emitter_named() {
        let m = message(
            r#"{"emitters":[{"name":"web","type":"http","url":"https://x.example/","facility":"auth"}]}"#,
        );
        assert!(
            m.contains("emitters[0] (\"web\").facility") && m.contains("type http"),
            "{m}"
        );
    }

    #[test]
    fn bad_values_name_their_key_path() {
        let cases = [
            (
                r#"{"emitters":[{"name":"s","type":"syslog","host":"h","facility":"bogus"}]}"#,
                "emitters[0] (\"s\").facility",
            ),
            (
                r#"{"emitters":[{"name":"s","type":"syslog","host":"h","port":70000}]}"#,
                ".port",
            ),
            (
                r#"{"emitters":[{"name":"s","type":"syslog","host":"h","protocol":"SCTP"}]}"#,
                ".protocol",
            ),
            (
                r#"{"emitters":[{"name":"s","type":"syslog","host":"h","severityFieldMappings":[{"field":"/t","valueMappings":{"X":"loud"}}]}]}"#,
                "severityFieldMappings[0].valueMappings.X",
            ),
            (
                r#"{"emitters":[{"name":"w","type":"http","url":"http://siem.example/ingest"}]}"#,
                ".url",
            ),
            (r#"{"emitters":[{"name":"w","type":"bogus"}]}"#, ".type"),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"}],"emitToAllOf":["b"]}"#,
                "emitToAllOf[0]",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"b","type":"stdout","enabled":false}],"emitAtLeastOneOf":["b"]}"#,
                "emitAtLeastOneOf[0]",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"a","type":"stdout"}]}"#,
                "emitters[1] (\"a\").name",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"}],"redaction":{"mode":"hash","fields":["/x"]}}"#,
                "redaction.hmacKeySecretArn",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"}],"redaction":{"fields":["x"]}}"#,
                "redaction.fields[0]",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout"}],"filterPolicies":{"field":{"excludeIf":["x"]}}}"#,
                "filterPolicies.field.excludeIf[0]",
            ),
            (
                r#"{"emitters":[{"name":"f","type":"firehose","deliveryStream":"d","buffering":{"maxBatchedEvents":501}}]}"#,
                "buffering.maxBatchedEvents",
            ),
            (
                r#"{"emitters":[{"name":"h","type":"splunk-hec","url":"https://s.example"}]}"#,
                "tokenSecretArn",
            ),
            (
                r#"{"emitters":[{"name":"a","type":"stdout","buffering":{"maxConcurrentRequests":0}}]}"#,
                "buffering.maxConcurrentRequests",
            ),
        ];
        for (json, path) in cases {
            let m = message(json);
            assert!(m.contains(path), "expected {path:?} in {m:?}");
        }
    }

    #[test]
    fn http_is_allowed_for_loopback_receivers_only() {
        assert!(
            ForwarderConfig::parse(
                r#"{"emitters":[{"name":"w","type":"http","url":"http://127.0.0.1:8080/ingest"}]}"#
            )
            .is_ok()
        );
        assert!(
            ForwarderConfig::parse(
                r#"{"emitters":[{"name":"w","type":"http","url":"http://localhost:8080/ingest"}]}"#
            )
            .is_ok()
        );
        assert!(
            ForwarderConfig::parse(
                r#"{"emitters":[{"name":"w","type":"http","url":"http://10.0.0.1/ingest"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug_output() {
        let json = r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":"hunter2-token","headers":{"X":"y"}}],
            "redaction":{"mode":"hash","fields":["/a"],"hmacKey":"hunter2-key"}}"#;
        let c = ForwarderConfig::parse(json).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // A bad type next to a secret: the message gives the position, not the value.
        let m = message(
            r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":["hunter2"]}]}"#,
        );
        assert!(!m.contains("hunter2"), "{m}");
        // Both forms of one secret.
        let m = message(
            r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":"hunter2","tokenSecretArn":"arn:x"}]}"#,
        );
        assert!(m.contains("token") && !m.contains("hunter2"), "{m}");
    }

    #[test]
    fn authorization_headers_are_refused_in_favour_of_secret_settings() {
        let m = message(
            r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","headers":{"Authorization":"Bearer x"}}]}"#,
        );
        assert!(m.contains("headers.Authorization"), "{m}");
    }
}
