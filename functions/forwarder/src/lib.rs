//! authtrail forwarder: Kinesis records (Contract 1 envelopes, Foxpass-style records, any JSON
//! object) into SIEMs, filtered, redacted, delivered or dead-lettered.
//!
//! - [`config`]: the JSON configuration, validated at cold start.
//! - [`record`]: parse once, classify (event type names), transform (filter + redaction).
//! - [`emit`]: the emitters (HTTP, Splunk HEC, Elasticsearch, syslog, Firehose, stdout).
//! - [`forward`]: retries, quorum and the dead-letter trail ([`dlq`]).
//!
//! `main.rs` only wires: [`Handler::from_env`] then [`Handler::handle`] per invocation.

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::redact::{RedactionMode, Redactor};
use authtrail_core::secret::Secret;
use aws_lambda_events::event::streams::KinesisEventResponse;

pub mod config;
pub mod dlq;
pub mod emit;
pub mod filter;
pub mod forward;
pub mod record;
pub mod scan;

use config::{
    EmitterConfig, EmitterSettings, ForwarderConfig, HttpAuth, RedactionConfig, SecretRef,
    TransformConfig,
};
use emit::Emitter;
use forward::{BatchResult, Forwarder, InputRecord, Slot};
use record::{Source, Transform};

/// Errors of the forwarder. None of them carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error("invalid configuration: {path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Env(#[from] authtrail_core::config::ConfigError),
    #[error(transparent)]
    Secret(#[from] authtrail_core::secret::SecretError),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("record without a sequence number cannot be reported as a batch item failure")]
    NoSequenceNumber,
}

/// Reads a secret: plain, or from Secrets Manager. A secret whose value is a JSON object with
/// the field `field` (`token`, `password`, `hmacKey`) yields that field; any other value is
/// used whole.
async fn resolve_secret(
    sdk: Option<&aws_config::SdkConfig>,
    r: &SecretRef,
    field: &str,
) -> Result<Secret, ForwarderError> {
    match r {
        SecretRef::Plain(s) => Ok(s.clone()),
        SecretRef::Arn(arn) => {
            let Some(sdk) = sdk else {
                return Err(ForwarderError::Config {
                    path: arn.clone(),
                    message: "Secrets Manager is not available here".into(),
                });
            };
            let s = authtrail_core::secret::fetch_secret_string(sdk, arn).await?;
            if s.expose().trim_start().starts_with('{')
                && let Ok(f) = authtrail_core::secret::secret_field(arn, &s, field)
            {
                return Ok(f);
            }
            Ok(s)
        }
    }
}

async fn build_transform(
    sdk: Option<&aws_config::SdkConfig>,
    t: &TransformConfig,
) -> Result<Transform, ForwarderError> {
    let redactor = match &t.redaction {
        None => None,
        Some(RedactionConfig::Mask { fields }) => Some(Redactor::new(fields, RedactionMode::Mask)),
        Some(RedactionConfig::Hash { fields, key }) => {
            let key = resolve_secret(sdk, key, "hmacKey").await?;
            Some(Redactor::new(fields, RedactionMode::Hash(key)))
        }
    };
    let redactor = redactor.transpose().map_err(|e| ForwarderError::Config {
        path: "redaction".into(),
        message: e.to_string(),
    })?;
    Ok(Transform::new(t.filter.clone(), redactor))
}

async fn build_emitter(
    sdk: Option<&aws_config::SdkConfig>,
    e: &EmitterConfig,
) -> Result<Arc<dyn Emitter>, ForwarderError> {
    Ok(match &e.settings {
        EmitterSettings::Http(h) => {
            use emit::http::ResolvedAuth;
            let auth = match &h.auth {
                HttpAuth::None => ResolvedAuth::None,
                HttpAuth::Bearer(t) => ResolvedAuth::Bearer(resolve_secret(sdk, t, "token").await?),
                HttpAuth::Splunk(t) => ResolvedAuth::Splunk(resolve_secret(sdk, t, "token").await?),
                HttpAuth::ApiKey(t) => ResolvedAuth::ApiKey(resolve_secret(sdk, t, "token").await?),
                HttpAuth::Basic { username, password } => ResolvedAuth::Basic {
                    username: username.clone(),
                    password: resolve_secret(sdk, password, "password").await?,
                },
            };
            Arc::new(emit::http::HttpEmitter::new(
                &e.name,
                e.kind,
                h.url.clone(),
                &h.headers,
                h.ca_bundle.as_deref(),
                auth,
                h.gzip,
                h.flavor.clone(),
            )?)
        }
        EmitterSettings::Syslog(s) => {
            Arc::new(emit::syslog::SyslogEmitter::new(&e.name, s.clone())?)
        }
        EmitterSettings::Firehose { delivery_stream } => {
            let Some(sdk) = sdk else {
                return Err(ForwarderError::Config {
                    path: format!("emitter {:?}", e.name),
                    message: "Firehose needs AWS configuration".into(),
                });
            };
            Arc::new(emit::firehose::FirehoseEmitter::new(
                &e.name,
                aws_sdk_firehose::Client::new(sdk),
                delivery_stream,
            ))
        }
        EmitterSettings::Stdout => Arc::new(emit::stdout::StdoutEmitter::new(&e.name)),
    })
}

/// Builds the forwarder from a validated configuration: reads secrets, builds one client per
/// emitter. `sdk` is needed for Secrets Manager ARNs and Firehose emitters.
pub async fn build(
    config: &ForwarderConfig,
    sdk: Option<&aws_config::SdkConfig>,
    dlq: Arc<dyn dlq::DeadLetterSink>,
    dlq_prefix: &str,
) -> Result<Forwarder, ForwarderError> {
    let mut profiles = vec![build_transform(sdk, &config.transform).await?];
    let mut slots = Vec::new();
    for e in &config.emitters {
        let profile = match &e.transform_override {
            Some(t) => {
                profiles.push(build_transform(sdk, t).await?);
                profiles.len() - 1
            }
            None => 0,
        };
        slots.push(Slot {
            emitter: build_emitter(sdk, e).await?,
            selector: e.selector.clone(),
            buffering: e.buffering,
            timeout: e.emit_timeout,
            profile,
        });
    }
    let index_of = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| config.emitters.iter().position(|e| &e.name == n))
            .collect()
    };
    Ok(Forwarder {
        slots,
        profiles,
        all_of: index_of(&config.quorum.all_of),
        at_least_one_of: index_of(&config.quorum.at_least_one_of),
        retry: config.retry,
        dlq,
        dlq_prefix: dlq_prefix.to_string(),
    })
}

/// The Kinesis event as the forwarder reads it: only the fields it uses, the data decoded
/// straight from the event text. `aws_lambda_events::KinesisEvent` keeps every field (with a
/// flattened catch-all map per record), which costs more than the rest of the transform.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct KinesisBatch {
    #[serde(rename = "Records", default)]
    pub records: Vec<BatchRecord>,
}

/// One record of a [`KinesisBatch`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BatchRecord {
    /// The shard id (the part of `eventID` before its `:`), shared by the batch's records.
    #[serde(rename = "eventID", default, deserialize_with = "shard_of_event_id")]
    pub shard: Option<Arc<str>>,
    /// The stream name (from `eventSourceARN`), shared by the batch's records.
    #[serde(
        rename = "eventSourceARN",
        default,
        deserialize_with = "stream_of_source_arn"
    )]
    pub stream: Option<Arc<str>>,
    pub kinesis: BatchKinesis,
}

/// The `kinesis` part of a [`BatchRecord`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchKinesis {
    /// `approximateArrivalTimestamp` in epoch milliseconds.
    #[serde(
        rename = "approximateArrivalTimestamp",
        deserialize_with = "authtrail_core::kinesis::arrival_millis"
    )]
    pub arrival_ms: i64,
    #[serde(deserialize_with = "base64_data")]
    pub data: Vec<u8>,
    pub sequence_number: String,
}

fn base64_data<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("base64 data")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            // SIMD decoding (SSE4.1/AVX2 found at run time, NEON on arm64): the data is about
            // 60% of the event's bytes.
            base64_simd::STANDARD
                .decode_to_vec(s)
                .map_err(|_| E::custom("data is not valid base64"))
        }
    }
    d.deserialize_str(V)
}

/// The stream name in an event source ARN (`arn:...:stream/NAME`, also with a
/// `/consumer/...` suffix for enhanced fan-out).
fn stream_name(arn: &str) -> Option<&str> {
    arn.split_once(":stream/")
        .map(|(_, s)| s.split('/').next().unwrap_or(s))
}

/// The shard id at the front of an event id (`shardId-000000000006:4959...`).
fn shard_id(event_id: &str) -> Option<&str> {
    event_id.split(':').next().filter(|s| !s.is_empty())
}

thread_local! {
    /// The last stream and shard names read, so that a batch's records share one copy of each
    /// instead of allocating two strings per record.
    static LAST_NAMES: std::cell::RefCell<[Option<Arc<str>>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

/// `part` as a shared string, reusing the last one kept in `slot` when equal.
fn interned(slot: usize, part: Option<&str>) -> Option<Arc<str>> {
    let part = part?;
    LAST_NAMES
        .with(|cell| {
            let mut last = cell.borrow_mut();
            let kept = last.get_mut(slot)?;
            match kept {
                Some(k) if **k == *part => Some(k.clone()),
                _ => {
                    let fresh: Arc<str> = Arc::from(part);
                    *kept = Some(fresh.clone());
                    Some(fresh)
                }
            }
        })
        .or_else(|| Some(Arc::from(part)))
}

/// Deserializes an optional string into `interned(slot, extract(text))`.
fn interned_part<'de, D: serde::Deserializer<'de>>(
    d: D,
    slot: usize,
    extract: fn(&str) -> Option<&str>,
) -> Result<Option<Arc<str>>, D::Error> {
    struct V {
        slot: usize,
        extract: fn(&str) -> Option<&str>,
    }
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Arc<str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(interned(self.slot, (self.extract)(s)))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(V { slot, extract })
}

fn stream_of_source_arn<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Arc<str>>, D::Error> {
    interned_part(d, 0, stream_name)
}

fn shard_of_event_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    interned_part(d, 1, shard_id)
}

const UNKNOWN_STREAM: &str = "unknown-stream";
const UNKNOWN_SHARD: &str = "unknown-shard";

impl KinesisBatch {
    /// The batch's input records.
    pub fn into_inputs(self) -> Vec<InputRecord> {
        let unknown_stream: Arc<str> = Arc::from(UNKNOWN_STREAM);
        let unknown_shard: Arc<str> = Arc::from(UNKNOWN_SHARD);
        self.records
            .into_iter()
            .map(|r| InputRecord {
                source: Source {
                    stream: r.stream.unwrap_or_else(|| unknown_stream.clone()),
                    shard: r.shard.unwrap_or_else(|| unknown_shard.clone()),
                    sequence_number: r.kinesis.sequence_number,
                    arrival_ms: r.kinesis.arrival_ms,
                },
                data: r.kinesis.data,
            })
            .collect()
    }
}

/// The Lambda handler state, built once per cold start.
pub struct Handler {
    pub forwarder: Forwarder,
}

impl Handler {
    /// Cold start: `FORWARDER_CONFIG` / `FORWARDER_CONFIG_FILE`, `DLQ_BUCKET` (required),
    /// `DLQ_PREFIX` (default `dlq/`), standard AWS variables.
    pub async fn from_env() -> Result<Self, ForwarderError> {
        let config = ForwarderConfig::from_env()?;
        let bucket = authtrail_core::config::env_required(
            "DLQ_BUCKET",
            "the name of the S3 bucket for dead letters",
        )?;
        let prefix = authtrail_core::config::env_opt("DLQ_PREFIX").unwrap_or_else(|| "dlq/".into());
        let sdk = authtrail_core::aws::load_sdk_config().await;
        let sink = Arc::new(dlq::S3DeadLetters::new(
            authtrail_core::aws::s3_client(&sdk),
            &bucket,
        ));
        let forwarder = build(&config, Some(&sdk), sink, &prefix).await?;
        tracing::info!(
            emitters = ?config.emitters.iter().map(|e| format!("{}:{}", e.name, e.kind.as_str())).collect::<Vec<_>>(),
            all_of = ?config.quorum.all_of,
            at_least_one_of = ?config.quorum.at_least_one_of,
            dlq_bucket = %bucket,
            dlq_prefix = %prefix,
            "forwarder configured"
        );
        Ok(Self { forwarder })
    }

    /// One invocation. `deadline_ms` is the Lambda deadline (epoch milliseconds).
    pub async fn handle(
        &self,
        event: KinesisBatch,
        deadline_ms: u64,
        request_id: &str,
    ) -> Result<KinesisEventResponse, ForwarderError> {
        let records = event.into_inputs();
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        let deadline = tokio::time::Instant::now() + remaining;
        let started = std::time::Instant::now();
        let result = self.forwarder.process(&records, deadline).await;
        log_summary(&result, started.elapsed(), request_id);
        let mut response = KinesisEventResponse::default();
        for seq in &result.failures {
            if seq.is_empty() {
                // An empty identifier fails the whole batch on AWS: say so plainly instead.
                return Err(ForwarderError::NoSequenceNumber);
            }
            response.add_failure(seq.clone());
        }
        Ok(response)
    }
}

/// One summary log line per invocation and EMF metrics (one line per emitter).
pub fn log_summary(r: &BatchResult, elapsed: Duration, request_id: &str) {
    let per_emitter: serde_json::Map<String, serde_json::Value> = r
        .emitters
        .iter()
        .map(|(name, s)| (name.clone(), serde_json::to_value(s).unwrap_or_default()))
        .collect();
    tracing::info!(
        records = r.records,
        not_done = r.failures.len(),
        malformed = r.malformed,
        dead_letters = r.dead_letters,
        dead_letter_errors = r.dead_letter_errors,
        duration_ms = elapsed.as_millis() as u64,
        emitters = %serde_json::Value::Object(per_emitter),
        "forwarder invocation summary"
    );
    use authtrail_core::metrics::Emf;
    Emf::new("authtrail")
        .dimension("Function", "forwarder")
        .count("Records", r.records as u64)
        .count("NotDone", r.failures.len() as u64)
        .count("Malformed", r.malformed as u64)
        .count("DeadLetters", r.dead_letters as u64)
        .count("DeadLetterErrors", r.dead_letter_errors as u64)
        .metric("DurationMs", elapsed.as_secs_f64() * 1000.0, "Milliseconds")
        .property("RequestId", request_id)
        .emit();
    for (name, s) in &r.emitters {
        Emf::new("authtrail")
            .dimension("Function", "forwarder")
            .dimension("Emitter", name)
            .count("Delivered", s.delivered as u64)
            .count("Retried", s.retried as u64)
            .count("DeadLettered", s.dead_lettered as u64)
            .count("Pending", s.pending as u64)
            .metric("LatencyMs", s.latency_ms as f64, "Milliseconds")
            .property("RequestId", request_id)
            .emit();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;

    /// The records as `aws_lambda_events` reads them (its arrival time, which takes the digits
    /// after the point as milliseconds whatever their number: `.5` is read as 5 ms).
    fn input_records(event: KinesisEvent) -> Vec<InputRecord> {
        event
            .records
            .into_iter()
            .map(|r| InputRecord {
                source: Source {
                    stream: Arc::from(
                        r.event_source_arn
                            .as_deref()
                            .and_then(stream_name)
                            .unwrap_or(UNKNOWN_STREAM),
                    ),
                    shard: Arc::from(
                        r.event_id
                            .as_deref()
                            .and_then(shard_id)
                            .unwrap_or(UNKNOWN_SHARD),
                    ),
                    sequence_number: r.kinesis.sequence_number,
                    arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                },
                data: r.kinesis.data.0,
            })
            .collect()
    }

    #[test]
    fn kinesis_records_carry_stream_shard_sequence_and_arrival_time() {
        let event: KinesisBatch = serde_json::from_str(
            r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},
            "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
            "eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/x","awsRegion":"us-east-2",
            "eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}]}"#,
        )
        .unwrap();
        let r = event.into_inputs();
        assert_eq!(&*r[0].source.stream, "lambda-stream");
        assert_eq!(&*r[0].source.shard, "shardId-000000000006");
        assert_eq!(
            r[0].source.sequence_number,
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(r[0].source.arrival_ms, 1545084650987);
        assert_eq!(r[0].data, br#"{"a":1}"#);
    }

    #[test]
    fn the_lean_batch_reads_the_same_records_as_aws_lambda_events() {
        let text = r#"{"Records":[
            {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"1","data":"eyJhIjoxfQ==","approximateArrivalTimestamp":1545084650.987},
             "eventSource":"aws:kinesis","eventID":"shardId-000000000006:1","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/s1","extra":{"x":[1]}},
            {"kinesis":{"sequenceNumber":"2","data":"","approximateArrivalTimestamp":1545084650}},
            {"kinesis":{"sequenceNumber":"3","data":"bm90IGpzb24=","approximateArrivalTimestamp":1545084650.5},"eventID":"","eventSourceARN":"arn:aws:kinesis:us-east-2:1:stream/s2/consumer/c:1"}]}"#;
        let lean: KinesisBatch = serde_json::from_str(text).unwrap();
        let full: KinesisEvent = serde_json::from_str(text).unwrap();
        let (a, mut b) = (lean.into_inputs(), input_records(full));
        assert_eq!(a.len(), 3);
        // `.5` is half a second; aws_lambda_events reads it as 5 ms.
        assert_eq!(a[2].source.arrival_ms, 1545084650500);
        assert_eq!(b[2].source.arrival_ms, 1545084650005);
        b[2].source.arrival_ms = 1545084650500;
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.source, &x.data), (&y.source, &y.data));
        }
        assert_eq!(&*a[2].source.stream, "s2");
        assert!(serde_json::from_str::<KinesisBatch>(r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":"%%%","approximateArrivalTimestamp":1}}]}"#).is_err());
    }

    #[test]
    fn record_data_is_decoded_as_strict_padded_base64_like_aws_lambda_events() {
        use base64::Engine;
        let decode = |data: &str| {
            let text = format!(
                r#"{{"Records":[{{"kinesis":{{"sequenceNumber":"1","data":"{data}","approximateArrivalTimestamp":1}}}}]}}"#
            );
            serde_json::from_str::<KinesisBatch>(&text)
                .ok()
                .map(|b| b.into_inputs().remove(0).data)
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&b64.encode(&bytes)), Some(bytes), "length {len}");
        }
        // What the strict decoder of aws_lambda_events refuses is refused here too.
        for bad in [
            "eyJhIjoxfQ",
            "eyJhIjoxfQ=",
            "eyJhIjoxfQ===",
            "eyJh Ijox",
            "eyJhIjoxfR==",
            "@@@@",
            "e===",
        ] {
            assert!(
                b64.decode(bad).is_err(),
                "{bad} is accepted by the base64 crate"
            );
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
