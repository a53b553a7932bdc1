//! Emitters: one delivery attempt of a chunk of prepared records to one destination. Retries,
//! backoff, quorum and dead-lettering live in [`crate::forward`], so they are tested with fakes.
//!
//! Each emitter type is one folder here holding its configuration (the raw serde form of its
//! own keys, documented key by key, and the `validate` that makes the typed form), its encoder
//! and its delivery. The HTTP types share [`transport`]. The folders are registered by one line
//! each in the registry at the end of this file, which makes [`EmitterType`] (the `type`
//! names) and [`EmitterSettings`] (the typed settings) and dispatches validation and building.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ForwarderError;
use crate::config::buffering::BufferingLimits;
use crate::config::emitter::{field_names, raw_settings};
use crate::record::Prepared;

pub mod transport;

#[cfg(test)]
pub(crate) mod test_support;

/// A boxed, sendable future (the object-safe form of the traits' async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one record was not delivered by one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status (`"503"`), or a short word for other failures (`"timeout"`, `"connect"`,
    /// `"too-large"`, an AWS error code).
    pub status: String,
    /// The receiver's answer or the error text (truncated; never contains secrets).
    pub text: String,
    /// The receiver asked to wait this long before retrying (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure with `status` and `text` (cut to [`MAX_RESPONSE_TEXT`]).
    pub fn new(status: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            text: truncate(text.into(), MAX_RESPONSE_TEXT),
            retry_after: None,
        }
    }
}

/// Longest response text kept for logs and the dead-letter trail.
pub const MAX_RESPONSE_TEXT: usize = 1024;

/// `s` cut to at most `max` bytes (on a character boundary) and marked with `...` when cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The result of one attempt for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination took the record.
    Delivered,
    /// Timeouts, connection errors, 429, 5xx: try again later.
    Retryable(Failure),
    /// The receiver refused the record for good (other 4xx, item-level mapping errors,
    /// too large for the transport): dead-letter it.
    Permanent(Failure),
    /// The receiver refused the request for a reason an operator fixes, not because of its
    /// content (HTTP 401, 403, 404, 407; AWS access denied, a missing resource, a KMS key it
    /// cannot use): spooled for a later redrive when a spool is configured, else a permanent
    /// refusal. Not retried within the invocation.
    Unavailable(Failure),
    /// The receiver refused the whole request for good because of its content (HTTP 400, 413,
    /// 422), without saying which records it objects to. For a single record this is a
    /// permanent refusal; a larger request is split and its halves sent again.
    Rejected(Failure),
}

/// A destination. `emit` makes one attempt for a chunk that already fits the emitter's
/// `buffering` limits and returns one outcome per record, in order.
pub trait Emitter: Send + Sync {
    /// The emitter's configured name.
    fn name(&self) -> &str;
    /// One attempt for `batch`: one outcome per record, in order.
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>>;
    /// Requests this emitter can usefully have in flight at once (syslog: one ordered
    /// connection); `buffering.maxConcurrentRequests` applies below it.
    fn max_concurrent_requests(&self) -> usize {
        usize::MAX
    }
    /// Bytes this record adds to one request (for `buffering.maxSize`).
    fn size_hint(&self, record: &Prepared) -> usize {
        record.json.len() + 1
    }
    /// Preflight (check `emitter.<name>`): whether the destination is reachable from here, its
    /// TLS certificate verified and the credentials accepted, without delivering an event. The
    /// default, for types without a probe, reports the check as skipped.
    fn probe(&self) -> BoxFuture<'_, authtrail_core::preflight::Check> {
        let check = authtrail_core::preflight::Check::skipped(
            format!("emitter.{}", self.name()),
            "this emitter type has no preflight probe: its first delivery is the check",
        );
        Box::pin(std::future::ready(check))
    }
}

/// The same outcome for every record of a chunk.
pub fn all(n: usize, outcome: Outcome) -> Vec<Outcome> {
    vec![outcome; n]
}

/// What an emitter type's folder provides: its typed settings, made from its raw form by
/// `validate`, and the emitter they build.
pub trait EmitterSpec: Sized {
    /// The raw serde form of the type's own keys: `deny_unknown_fields`, every field optional
    /// and documented (the documentation of the type's options).
    type Raw: DeserializeOwned;
    /// The type's `buffering` defaults and upper bounds.
    const BUFFERING: BufferingLimits = BufferingLimits::DEFAULT;
    /// The typed settings; `label` names the emitter in messages (`emitters[3] ("syslog")`).
    fn validate(label: &str, raw: Self::Raw) -> Result<Self, ForwarderError>;
    /// The emitter, built once at cold start (secrets read; `sdk` is needed for Secrets
    /// Manager ARNs and AWS destinations).
    fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> impl Future<Output = Result<Arc<dyn Emitter>, ForwarderError>> + Send;
}

fn validate_settings<S: EmitterSpec>(
    label: &str,
    settings: Map<String, Value>,
) -> Result<S, ForwarderError> {
    S::validate(label, raw_settings::<S::Raw>(label, settings)?)
}

/// Makes [`EmitterType`] and [`EmitterSettings`] from the registry lines below.
macro_rules! registry {
    ($($variant:ident => $module:ident::$spec:ident, $name:literal $(| $alias:literal)*;)+) => {
        $(pub mod $module;)+

        /// An emitter type, as its `type` names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EmitterType {
            $(#[doc = concat!("`", $name, "`: [`", stringify!($module), "`].")] $variant,)+
        }

        impl EmitterType {
            /// Every type, in registry order.
            pub const ALL: &'static [EmitterType] = &[$(EmitterType::$variant),+];

            /// The `type` name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EmitterType::$variant => $name,)+
                }
            }

            /// The type a `type` value names (aliases included).
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name $(| $alias)* => Some(EmitterType::$variant),)+
                    _ => None,
                }
            }

            /// The keys of the type's own settings.
            pub fn setting_keys(self) -> &'static [&'static str] {
                match self {
                    $(EmitterType::$variant => field_names::<<$module::$spec as EmitterSpec>::Raw>(),)+
                }
            }

            /// The type's `buffering` defaults and upper bounds.
            pub fn buffering_limits(self) -> BufferingLimits {
                match self {
                    $(EmitterType::$variant => <$module::$spec as EmitterSpec>::BUFFERING,)+
                }
            }
        }

        /// The validated settings of one emitter, by type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum EmitterSettings {
            $(#[doc = concat!("`", $name, "`.")] $variant($module::$spec),)+
        }

        impl EmitterSettings {
            /// Validates the type's own keys.
            pub(crate) fn validate(
                kind: EmitterType,
                label: &str,
                settings: Map<String, Value>,
            ) -> Result<Self, ForwarderError> {
                Ok(match kind {
                    $(EmitterType::$variant => EmitterSettings::$variant(validate_settings(label, settings)?),)+
                })
            }

            /// Builds the emitter.
            pub async fn build(
                &self,
                name: &str,
                sdk: Option<&aws_config::SdkConfig>,
            ) -> Result<Arc<dyn Emitter>, ForwarderError> {
                match self {
                    $(EmitterSettings::$variant(s) => s.build(name, sdk).await,)+
                }
            }
        }
    };
}

// The registry: one line per emitter type (variant => folder::settings, `type` names).
registry! {
    Http => http::HttpConfig, "http";
    SplunkHec => splunk_hec::SplunkHecConfig, "splunk-hec";
    Elasticsearch => elasticsearch::ElasticsearchConfig, "elasticsearch" | "opensearch";
    Syslog => syslog::SyslogConfig, "syslog";
    Firehose => firehose::FirehoseConfig, "firehose";
    Stdout => stdout::StdoutConfig, "stdout";
    Postgres => postgres::PostgresConfig, "postgres" | "jdbc";
    Kafka => kafka::KafkaConfig, "kafka";
    Jms => jms::JmsConfig, "jms";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_type_is_found_by_its_name_and_accepts_the_keys_of_its_raw_form() {
        for &t in EmitterType::ALL {
            assert_eq!(EmitterType::parse(t.as_str()), Some(t));
            assert_eq!(
                t.setting_keys().is_empty(),
                matches!(t, EmitterType::Stdout),
                "{t:?}"
            );
        }
        assert_eq!(
            EmitterType::parse("opensearch"),
            Some(EmitterType::Elasticsearch)
        );
        assert_eq!(EmitterType::parse("amqp"), None);
        assert!(
            EmitterType::Syslog
                .setting_keys()
                .contains(&"severityFieldMappings")
        );
        assert!(EmitterType::Firehose.setting_keys() == ["deliveryStream"]);
    }
}
