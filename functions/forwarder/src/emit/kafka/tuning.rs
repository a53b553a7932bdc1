//! `tuning` of type `kafka`: the Kafka producer settings the emitter supports, by their Kafka
//! names, each validated; any other name is refused at cold start, naming it.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::ForwarderError;
use crate::config::err;

/// Default `tuning.client.id`.
pub const DEFAULT_CLIENT_ID: &str = "authtrail-forwarder";
/// Default `tuning.request.timeout.ms`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default `tuning.max.request.size` (Kafka's).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 1_048_576;
/// Default `tuning.socket.connection.setup.timeout.ms` (Kafka's).
pub const DEFAULT_CONNECTION_SETUP_TIMEOUT_MS: u64 = 10_000;
/// Default `tuning.metadata.max.age.ms` (Kafka's).
pub const DEFAULT_METADATA_MAX_AGE_MS: u64 = 300_000;
/// The `tuning` names accepted.
pub const TUNING_KEYS: &[&str] = &[
    "acks",
    "client.id",
    "compression.type",
    "linger.ms",
    "max.request.size",
    "metadata.max.age.ms",
    "request.timeout.ms",
    "socket.connection.setup.timeout.ms",
];

/// `tuning.acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `all` / `-1`: every in-sync replica has the records.
    All,
    /// `1`: the leader has them.
    Leader,
}

impl Acks {
    /// The value of a produce request's `acks`.
    pub fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
        }
    }
}

/// `tuning.compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `none`.
    None,
    /// `gzip`.
    Gzip,
}

/// Validated `tuning`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// `client.id`.
    pub client_id: String,
    /// `acks`.
    pub acks: Acks,
    /// `compression.type`.
    pub compression: Compression,
    /// `linger.ms` (accepted; a chunk is sent when it is cut).
    pub linger_ms: u64,
    /// `request.timeout.ms`: the broker's produce timeout and the wait for any answer.
    pub request_timeout: Duration,
    /// `max.request.size`: bytes of records per produce request.
    pub max_request_size: usize,
    /// `socket.connection.setup.timeout.ms`: TCP, TLS and authentication of a connection.
    pub connection_setup_timeout: Duration,
    /// `metadata.max.age.ms`: metadata older than this is fetched again.
    pub metadata_max_age: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.into(),
            acks: Acks::All,
            compression: Compression::None,
            linger_ms: 0,
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            connection_setup_timeout: Duration::from_millis(DEFAULT_CONNECTION_SETUP_TIMEOUT_MS),
            metadata_max_age: Duration::from_millis(DEFAULT_METADATA_MAX_AGE_MS),
        }
    }
}

/// A tuning value as text (Kafka's properties are strings; JSON numbers are accepted).
fn tuning_text(path: &str, v: &Value) -> Result<String, ForwarderError> {
    match v {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(err(
            path,
            format!("must be a string or a number (got {other})"),
        )),
    }
}

fn tuning_number(
    path: &str,
    text: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ForwarderError> {
    text.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "must be a whole number in {}..={} (got {text:?})",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// Validates `tuning`: only the names of [`TUNING_KEYS`], each checked.
pub fn tuning(label: &str, raw: Option<Map<String, Value>>) -> Result<Tuning, ForwarderError> {
    let mut t = Tuning::default();
    for (key, value) in raw.unwrap_or_default() {
        let path = format!("{label}.tuning.{key}");
        let text = tuning_text(&path, &value)?;
        match key.as_str() {
            "client.id" if !text.is_empty() && text.len() <= 255 => t.client_id = text,
            "client.id" => return Err(err(path, "must be 1-255 characters")),
            "acks" => {
                t.acks = match text.as_str() {
                    "all" | "-1" => Acks::All,
                    "1" => Acks::Leader,
                    "0" => {
                        return Err(err(
                            path,
                            "0 is refused: a record counts as delivered only when the broker acknowledged it (use all or 1)",
                        ));
                    }
                    _ => return Err(err(path, format!("must be all, -1 or 1 (got {text:?})"))),
                }
            }
            "compression.type" => {
                t.compression = match text.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" | "lz4" | "zstd" => {
                        return Err(err(
                            path,
                            format!(
                                "{text} is not built in (this build has pure-Rust codecs only): use gzip or none"
                            ),
                        ));
                    }
                    _ => return Err(err(path, format!("must be none or gzip (got {text:?})"))),
                }
            }
            "linger.ms" => t.linger_ms = tuning_number(&path, &text, 0..=60_000)?,
            "request.timeout.ms" => {
                t.request_timeout =
                    Duration::from_millis(tuning_number(&path, &text, 1_000..=300_000)?);
            }
            "max.request.size" => {
                t.max_request_size = tuning_number(&path, &text, 1_024..=104_857_600)? as usize;
            }
            "socket.connection.setup.timeout.ms" => {
                t.connection_setup_timeout =
                    Duration::from_millis(tuning_number(&path, &text, 100..=120_000)?);
            }
            "metadata.max.age.ms" => {
                t.metadata_max_age =
                    Duration::from_millis(tuning_number(&path, &text, 1_000..=86_400_000)?);
            }
            _ => {
                return Err(err(
                    path,
                    format!(
                        "is not a supported Kafka producer setting (supported: {})",
                        TUNING_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(t)
}
