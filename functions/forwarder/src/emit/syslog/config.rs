//! The settings of type `syslog`, with the RFC 5424 facility and severity names.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::SyslogEmitter;
use crate::ForwarderError;
use crate::config::err;
use crate::config::filter::validate_pointer;
use crate::emit::{Emitter, EmitterSpec};
use crate::filter::Pointer;

/// The keys of type `syslog` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSyslog {
    /// `TLS` (default: audit records and their user names do not travel in clear), `TCP` or
    /// `UDP` (plaintext, for collectors on a private network).
    protocol: Option<String>,
    /// Collector host name (required; also the TLS server name).
    host: Option<String>,
    /// Collector port, 1-65535 (default TLS 6514, TCP and UDP 514).
    port: Option<u32>,
    /// Milliseconds for resolving, connecting and the TLS handshake (default 30000).
    connect_timeout: Option<u64>,
    /// Facility name (default `authpriv`; see [`facility_code`]).
    facility: Option<String>,
    /// `[{"field": <JSON pointer>, "valueMappings": {<value>: <severity>}}]`; the first mapping
    /// whose field value is listed gives the severity.
    severity_field_mappings: Option<Vec<RawSeverityMapping>>,
    /// Severity of records no mapping matches (default `informational`; see
    /// [`severity_code`]).
    default_severity: Option<String>,
    /// RFC 5424 `APP-NAME` (default `authtrail`; printable ASCII, no spaces, at most 48).
    app_name: Option<String>,
    /// RFC 5424 `HOSTNAME` (default `authtrail`; printable ASCII, no spaces, at most 255).
    hostname: Option<String>,
    /// Path of a PEM file whose CAs are trusted in addition to the system's (TLS only; or
    /// alone, with `caBundleOnly`).
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of `caBundle`, not the system's (TLS only; default `false`).
    ca_bundle_only: Option<bool>,
    /// Largest message (bytes, without the TCP/TLS octet count): larger ones are dead-lettered,
    /// never truncated. Default 8192 (rsyslog's default `maxMessageSize`: set it to the
    /// collector's); 480-65000 for UDP, 480-16777216 for TCP and TLS.
    max_message_size: Option<usize>,
}

/// One entry of `severityFieldMappings` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSeverityMapping {
    /// JSON pointer into the (filtered, redacted) record.
    field: String,
    /// Field value (a string's contents, any other value's compact JSON) to severity name.
    value_mappings: BTreeMap<String, String>,
}

/// The transport of a syslog emitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogProtocol {
    /// TCP with octet-counting framing (RFC 6587).
    Tcp,
    /// TLS with octet-counting framing (RFC 5425).
    Tls,
    /// One datagram per message (RFC 5426).
    Udp,
}

/// A validated entry of `severityFieldMappings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityMapping {
    /// RFC 6901 pointer into the (filtered, redacted) record, as written.
    pub field: String,
    /// `field`, parsed.
    pub pointer: Pointer,
    /// Field value to severity code.
    pub values: HashMap<String, u8>,
}

/// The validated settings of type `syslog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    /// TCP, TLS or UDP.
    pub protocol: SyslogProtocol,
    /// Collector host (and TLS server name).
    pub host: String,
    /// Collector port.
    pub port: u16,
    /// Bound of resolving, connecting and the TLS handshake.
    pub connect_timeout: Duration,
    /// Facility code (0-23).
    pub facility: u8,
    /// Severity mappings, first match wins.
    pub severity_mappings: Vec<SeverityMapping>,
    /// Severity code when no mapping matches.
    pub default_severity: u8,
    /// RFC 5424 `APP-NAME`.
    pub app_name: String,
    /// RFC 5424 `HOSTNAME`.
    pub hostname: String,
    /// Extra CA PEM file (TLS only).
    pub ca_bundle: Option<PathBuf>,
    /// Trust only `ca_bundle`, not the system's roots (TLS only).
    pub ca_bundle_only: bool,
    /// Largest message; bigger ones are dead-lettered (never truncated: a cut JSON event is
    /// useless to a SIEM, and a collector would cut it silently).
    pub max_message_size: usize,
    /// Messages carry CEF lines instead of JSON records (the emitter's `format: cef`, set by
    /// the settings every emitter has, not a key of this type).
    pub cef: bool,
}

impl EmitterSpec for SyslogConfig {
    type Raw = RawSyslog;

    fn validate(label: &str, raw: RawSyslog) -> Result<Self, ForwarderError> {
        let protocol = protocol(label, raw.protocol.as_deref())?;
        let host = raw.host.unwrap_or_default();
        if host.is_empty() {
            return Err(err(format!("{label}.host"), "is required for type syslog"));
        }
        let port = match raw.port {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                return Err(err(
                    format!("{label}.port"),
                    format!("must be 1..=65535 (got {p})"),
                ));
            }
            None if protocol == SyslogProtocol::Tls => 6514,
            None => 514,
        };
        if protocol != SyslogProtocol::Tls && raw.ca_bundle.is_some() {
            return Err(err(
                format!("{label}.caBundle"),
                "is only valid with protocol TLS",
            ));
        }
        let ca_bundle_only = raw.ca_bundle_only.unwrap_or(false);
        if ca_bundle_only && raw.ca_bundle.is_none() {
            return Err(err(
                format!("{label}.caBundleOnly"),
                "needs caBundle (the CAs to trust instead of the system's)",
            ));
        }
        let facility_name = raw.facility.as_deref().unwrap_or("authpriv");
        let facility = facility_code(facility_name).ok_or_else(|| {
            err(
                format!("{label}.facility"),
                format!("must be one of {FACILITIES} (got {facility_name:?})"),
            )
        })?;
        let default_name = raw.default_severity.as_deref().unwrap_or("informational");
        let default_severity = severity_code(default_name).ok_or_else(|| {
            err(
                format!("{label}.defaultSeverity"),
                format!("must be one of {SEVERITIES} (got {default_name:?})"),
            )
        })?;
        let severity_mappings = severity_mappings(label, raw.severity_field_mappings)?;
        let connect_timeout = match raw.connect_timeout {
            Some(0) => {
                return Err(err(
                    format!("{label}.connectTimeout"),
                    "must be at least 1 (milliseconds)",
                ));
            }
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(30),
        };
        let app_name = raw.app_name.unwrap_or_else(|| "authtrail".into());
        check_header_token(&format!("{label}.appName"), &app_name, 48)?;
        let hostname = raw.hostname.unwrap_or_else(|| "authtrail".into());
        check_header_token(&format!("{label}.hostname"), &hostname, 255)?;
        let max_allowed = if protocol == SyslogProtocol::Udp {
            MAX_UDP_MESSAGE_SIZE
        } else {
            MAX_STREAM_MESSAGE_SIZE
        };
        let max_message_size = match raw.max_message_size {
            Some(n) if (480..=max_allowed).contains(&n) => n,
            Some(n) => {
                return Err(err(
                    format!("{label}.maxMessageSize"),
                    format!("must be 480..={max_allowed} bytes for this protocol (got {n})"),
                ));
            }
            None => DEFAULT_MAX_MESSAGE_SIZE,
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
            ca_bundle: raw.ca_bundle,
            ca_bundle_only,
            max_message_size,
            cef: false,
        })
    }

    async fn build(
        &self,
        name: &str,
        _sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Ok(Arc::new(SyslogEmitter::new(name, self.clone())?))
    }
}

/// Default `maxMessageSize`: rsyslog's default `maxMessageSize` (8k).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8192;
/// Largest `maxMessageSize` for UDP (one datagram).
pub const MAX_UDP_MESSAGE_SIZE: usize = 65_000;
/// Largest `maxMessageSize` for TCP and TLS.
pub const MAX_STREAM_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// `protocol`: TLS unless stated otherwise.
fn protocol(label: &str, name: Option<&str>) -> Result<SyslogProtocol, ForwarderError> {
    match name.unwrap_or("TLS").to_ascii_uppercase().as_str() {
        "TCP" => Ok(SyslogProtocol::Tcp),
        "TLS" => Ok(SyslogProtocol::Tls),
        "UDP" => Ok(SyslogProtocol::Udp),
        _ => Err(err(
            format!("{label}.protocol"),
            format!(
                "must be one of TCP, TLS, UDP (got {:?})",
                name.unwrap_or_default()
            ),
        )),
    }
}

fn severity_mappings(
    label: &str,
    raw: Option<Vec<RawSeverityMapping>>,
) -> Result<Vec<SeverityMapping>, ForwarderError> {
    let mut out = Vec::new();
    for (i, m) in raw.into_iter().flatten().enumerate() {
        let path = format!("{label}.severityFieldMappings[{i}]");
        validate_pointer(&format!("{path}.field"), &m.field)?;
        let pointer =
            Pointer::parse(&m.field).map_err(|e| err(format!("{path}.field"), e.to_string()))?;
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
        out.push(SeverityMapping {
            field: m.field,
            pointer,
            values,
        });
    }
    Ok(out)
}

/// RFC 5424 header fields are printable US-ASCII without spaces, of bounded length.
fn check_header_token(path: &str, v: &str, max: usize) -> Result<(), ForwarderError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(err(
            path,
            format!("must be 1..={max} printable ASCII characters without spaces (got {v:?})"),
        ));
    }
    Ok(())
}

/// The code of a facility name (case-insensitive): `kern` 0 ... `local7` 23.
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

/// The code of a severity name (case-insensitive, short forms too): `emergency` 0 ... `debug`
/// 7.
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
