//! The settings of type `jms`: where the broker is (`url`, one endpoint or a `failover:` list),
//! the destination, the delivery mode, the credentials and the TLS trust.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ForwarderError;
use crate::config::buffering::BufferingLimits;
use crate::config::err;
use crate::config::secret::{SecretRef, secret_ref};
use crate::emit::{Emitter, EmitterSpec};

/// Default port of `stomp+ssl://` (Amazon MQ's and ActiveMQ's STOMP over TLS).
pub const DEFAULT_TLS_PORT: u16 = 61614;
/// Default port of `stomp://` (ActiveMQ's plain STOMP).
pub const DEFAULT_PLAIN_PORT: u16 = 61613;
/// Default `connectTimeout`, milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default `receiptTimeout`, milliseconds.
pub const DEFAULT_RECEIPT_TIMEOUT_MS: u64 = 10_000;
/// Default `maxMessageSize`, bytes (a Kinesis record is at most 1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Largest `maxMessageSize`: ActiveMQ's default STOMP `maxFrameSize` (100 MiB).
pub const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;
/// Largest `connections`.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest destination name.
const MAX_DESTINATION_NAME: usize = 255;

/// The keys of type `jms` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJms {
    /// The broker: `stomp+ssl://host[:port]` (default port 61614; `stomp+nio+ssl` is read the
    /// same), `stomp://host[:port]` (plain, loopback hosts only; default port 61613), or ActiveMQ's
    /// `failover:(stomp+ssl://a:61614,stomp+ssl://b:61614)` for an active/standby pair (tried in
    /// order). Required. This build speaks STOMP 1.2; `amqps://` and other schemes are refused.
    url: Option<String>,
    /// `topic://name` or `queue://name` (required): where each event is published.
    destination: Option<String>,
    /// `PERSISTENT` (default; a message counts as delivered once the broker confirmed it with a
    /// receipt) or `NON_PERSISTENT` (not stored by the broker; delivered once the broker
    /// confirmed reading the chunk).
    delivery_mode: Option<String>,
    /// The broker user (STOMP `login`); required with a password.
    username: Option<String>,
    /// The password itself: local runs only, with `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true`.
    password: Option<String>,
    /// Secrets Manager ARN of the password: a plain string, or JSON with a `password` field.
    password_secret_arn: Option<String>,
    /// Path of a PEM file whose CAs are trusted in addition to the system's (or alone, with
    /// `caBundleOnly`).
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of `caBundle` (default `false`).
    ca_bundle_only: Option<bool>,
    /// Milliseconds to resolve, connect, finish the TLS handshake and get `CONNECTED`
    /// (default 5000).
    connect_timeout: Option<u64>,
    /// Milliseconds the broker may stay silent while messages wait for its receipts; past it
    /// the connection is dropped and the unconfirmed messages retried (default 10000).
    receipt_timeout: Option<u64>,
    /// Largest SEND frame in bytes (headers and body): a larger record is dead-lettered
    /// instead of making the broker drop the connection. Default 4 MiB; 1024..=100 MiB (set it
    /// to the broker's `maxFrameSize` when that is lower).
    max_message_size: Option<usize>,
    /// Connections kept open, 1..=8 (default 1: the messages of a shard reach the broker in
    /// order). Each carries one chunk at a time; more let chunks travel side by side.
    connections: Option<usize>,
}

/// How the broker keeps the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Stored by the broker (`persistent:true`); delivered when receipted.
    Persistent,
    /// Not stored; delivered when the broker confirmed reading the chunk.
    NonPersistent,
}

/// One broker endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (also the TLS server name and the STOMP `host` header).
    pub host: String,
    /// Port.
    pub port: u16,
    /// STOMP over TLS (`stomp+ssl`); plain TCP otherwise (loopback only).
    pub tls: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "stomp+ssl" } else { "stomp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The validated settings of type `jms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmsConfig {
    /// The endpoints, tried in order.
    pub endpoints: Vec<Endpoint>,
    /// The STOMP destination (`/topic/name`, `/queue/name`).
    pub destination: String,
    /// How the broker keeps the messages.
    pub delivery_mode: DeliveryMode,
    /// The broker user.
    pub username: Option<String>,
    /// The password, plain or by ARN (hidden in `Debug`).
    pub password: Option<SecretRef>,
    /// Extra trusted CAs.
    pub ca_bundle: Option<PathBuf>,
    /// Trust only `ca_bundle`.
    pub ca_bundle_only: bool,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time the broker may stay silent while receipts are awaited.
    pub receipt_timeout: Duration,
    /// Largest SEND frame.
    pub max_message_size: usize,
    /// Connections kept open.
    pub connections: usize,
}

/// Parses `url` at `path`: one endpoint or `failover:(a,b,...)`.
pub fn endpoints(path: &str, url: &str) -> Result<Vec<Endpoint>, ForwarderError> {
    let url = url.trim();
    let list = match url.strip_prefix("failover:") {
        Some(rest) => {
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .filter(|(_, options)| options.is_empty())
                .map(|(inner, _)| inner)
                .ok_or_else(|| {
                    err(
                        path,
                        "a failover URL is failover:(url,url,...) without options after it",
                    )
                })?;
            inner.split(',').map(str::trim).collect::<Vec<_>>()
        }
        None => vec![url],
    };
    if list.iter().all(|u| u.is_empty()) {
        return Err(err(path, "must name a broker (stomp+ssl://host:61614)"));
    }
    list.into_iter().map(|u| endpoint(path, u)).collect()
}

/// One endpoint URL: `stomp+ssl://host[:port]` or `stomp://host[:port]` (loopback only).
fn endpoint(path: &str, url: &str) -> Result<Endpoint, ForwarderError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(err(
            path,
            format!("must be stomp+ssl://host:port (got {url:?})"),
        ));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "stomp+ssl" | "stomp+nio+ssl" => true,
        "stomp" | "stomp+nio" => false,
        other => {
            return Err(err(
                path,
                format!(
                    "scheme {other:?} is not implemented: this build speaks STOMP 1.2 \
                     (stomp+ssl://host:61614 on Amazon MQ and ActiveMQ; stomp:// for loopback \
                     brokers only)"
                ),
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(err(
            path,
            "must not hold credentials (user:pass@): use username and passwordSecretArn",
        ));
    }
    if authority.contains(['/', '?', '#']) || authority.is_empty() {
        return Err(err(
            path,
            format!("must be {scheme}://host[:port] without a path or options (got {url:?})"),
        ));
    }
    let default_port = if tls {
        DEFAULT_TLS_PORT
    } else {
        DEFAULT_PLAIN_PORT
    };
    let (host, port) = split_host_port(authority).ok_or_else(|| {
        err(
            path,
            format!("must be {scheme}://host[:port] (got {url:?})"),
        )
    })?;
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err(path, format!("port must be 1..=65535 (got {p:?})")))?,
    };
    if !tls && !is_loopback(host) {
        return Err(err(
            path,
            format!(
                "plain stomp:// is allowed for loopback hosts only: use stomp+ssl:// \
                 (host is {host:?})"
            ),
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Whether `host` is a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return (!host.is_empty()).then_some((host, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    (!host.is_empty() && !host.contains(':')).then_some((host, port))
}

/// `topic://name` to `/topic/name`, `queue://name` to `/queue/name`.
pub fn destination(path: &str, text: &str) -> Result<String, ForwarderError> {
    let (kind, name) = if let Some(n) = text.strip_prefix("topic://") {
        ("topic", n)
    } else if let Some(n) = text.strip_prefix("queue://") {
        ("queue", n)
    } else {
        return Err(err(
            path,
            format!("must be topic://name or queue://name (got {text:?})"),
        ));
    };
    if name.is_empty()
        || name.len() > MAX_DESTINATION_NAME
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '*' | '>' | ','))
    {
        return Err(err(
            path,
            format!(
                "the {kind} name must be 1..={MAX_DESTINATION_NAME} characters without spaces, \
                 control characters, wildcards (* >) or commas (got {name:?})"
            ),
        ));
    }
    Ok(format!("/{kind}/{name}"))
}

fn millis(
    label: &str,
    key: &str,
    v: Option<u64>,
    default: u64,
) -> Result<Duration, ForwarderError> {
    match v.unwrap_or(default) {
        ms @ 1..=600_000 => Ok(Duration::from_millis(ms)),
        ms => Err(err(
            format!("{label}.{key}"),
            format!("must be 1..=600000 milliseconds (got {ms})"),
        )),
    }
}

/// The password of `raw`, checked together with `username` (both or neither).
fn credentials(label: &str, raw: &RawJms) -> Result<Option<SecretRef>, ForwarderError> {
    let password = secret_ref(
        label,
        "password",
        "passwordSecretArn",
        raw.password.as_ref(),
        raw.password_secret_arn.as_ref(),
    )?;
    match (&raw.username, &password) {
        (Some(u), _) if u.is_empty() || u.contains(['\n', '\r', '\0']) => Err(err(
            format!("{label}.username"),
            "must be non-empty, without line breaks or NUL",
        )),
        (Some(_), None) => Err(err(
            format!("{label}.passwordSecretArn"),
            "is required with username (or password, local runs only)",
        )),
        (None, Some(_)) => Err(err(
            format!("{label}.username"),
            "is required with a password",
        )),
        _ => Ok(password),
    }
}

impl EmitterSpec for JmsConfig {
    type Raw = RawJms;

    /// Chunks of 2,000 records or 4 MiB by default: a chunk's frames are pipelined, and the
    /// pipeline drains at the end of each chunk while the last receipts come back.
    const BUFFERING: BufferingLimits = BufferingLimits {
        default_batched_events: 2_000,
        default_size: 4 * 1024 * 1024,
        ..BufferingLimits::DEFAULT
    };

    fn validate(label: &str, raw: RawJms) -> Result<Self, ForwarderError> {
        let url = raw.url.as_deref().ok_or_else(|| {
            err(
                format!("{label}.url"),
                "is required for type jms (stomp+ssl://host:61614)",
            )
        })?;
        let endpoints = endpoints(&format!("{label}.url"), url)?;
        let destination = destination(
            &format!("{label}.destination"),
            raw.destination.as_deref().ok_or_else(|| {
                err(
                    format!("{label}.destination"),
                    "is required for type jms (topic://name or queue://name)",
                )
            })?,
        )?;
        let delivery_mode = match raw.delivery_mode.as_deref() {
            None | Some("PERSISTENT") => DeliveryMode::Persistent,
            Some("NON_PERSISTENT") => DeliveryMode::NonPersistent,
            Some(other) => {
                return Err(err(
                    format!("{label}.deliveryMode"),
                    format!("must be PERSISTENT or NON_PERSISTENT (got {other:?})"),
                ));
            }
        };
        let password = credentials(label, &raw)?;
        let ca_bundle_only = raw.ca_bundle_only.unwrap_or(false);
        if ca_bundle_only && raw.ca_bundle.is_none() {
            return Err(err(
                format!("{label}.caBundleOnly"),
                "needs caBundle (the CAs to trust instead of the system's)",
            ));
        }
        let max_message_size = match raw.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE) {
            n @ 1024..=MAX_MESSAGE_SIZE => n,
            n => {
                return Err(err(
                    format!("{label}.maxMessageSize"),
                    format!("must be 1024..={MAX_MESSAGE_SIZE} bytes (got {n})"),
                ));
            }
        };
        let connections = match raw.connections.unwrap_or(1) {
            n @ 1..=MAX_CONNECTIONS => n,
            n => {
                return Err(err(
                    format!("{label}.connections"),
                    format!("must be 1..={MAX_CONNECTIONS} (got {n})"),
                ));
            }
        };
        Ok(JmsConfig {
            connections,
            endpoints,
            destination,
            delivery_mode,
            username: raw.username,
            password,
            ca_bundle: raw.ca_bundle,
            ca_bundle_only,
            connect_timeout: millis(
                label,
                "connectTimeout",
                raw.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?,
            receipt_timeout: millis(
                label,
                "receiptTimeout",
                raw.receipt_timeout,
                DEFAULT_RECEIPT_TIMEOUT_MS,
            )?,
            max_message_size,
        })
    }

    async fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Ok(Arc::new(super::JmsEmitter::start(name, self, sdk).await?))
    }
}
