//! The settings of an event-source mapping, named after `AWS::Lambda::EventSourceMapping`, and
//! their validation against the ranges AWS accepts.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Result, RunnerError};
use crate::function::MAX_INVOKE_PAYLOAD_BYTES;

/// Where a mapping starts reading a shard that has no checkpoint yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record in the shard.
    TrimHorizon,
    /// Records that arrive after the event source was created (read as `AT_TIMESTAMP` of the
    /// creation time, so records put between `new` and the first read are not missed).
    Latest,
    /// Records from this arrival time on.
    AtTimestamp(DateTime<Utc>),
}

/// On-failure destination for records the mapping gives up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    /// One JSON invocation record per discarded batch, written to
    /// `s3://{bucket}/{prefix}aws/lambda/{esm-uuid}/{shardId}/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-{uuid}`.
    S3 { bucket: String, prefix: String },
}

impl OnFailure {
    /// Parses `bucket` or `bucket/prefix` (the CLI form).
    pub fn s3_from_str(spec: &str) -> Result<Self> {
        let (bucket, prefix) = match spec.split_once('/') {
            Some((b, p)) => (b, p),
            None => (spec, ""),
        };
        if bucket.is_empty() {
            return Err(RunnerError::Config(format!(
                "on-failure S3 destination {spec:?}: expected bucket or bucket/prefix"
            )));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Event-source mapping settings (names follow `AWS::Lambda::EventSourceMapping`).
#[derive(Debug, Clone)]
pub struct KinesisSourceConfig {
    /// Stream name.
    pub stream_name: String,
    /// `BatchSize`, 1..=10,000 (AWS default 100).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`, 0..=300 s (default 0).
    pub max_batching_window: Duration,
    /// `StartingPosition` (AWS requires one; default here `TRIM_HORIZON`).
    pub starting_position: StartingPosition,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `MaximumRetryAttempts`: -1 (infinite, AWS default) or 0..=10,000.
    pub max_retry_attempts: i64,
    /// `MaximumRecordAgeInSeconds`: `None` = -1 (infinite, AWS default). AWS accepts
    /// 60..=604,800 s; the runner accepts any non-zero value up to that, so tests can be fast.
    pub max_record_age: Option<Duration>,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    /// `DestinationConfig.OnFailure`.
    pub on_failure: Option<OnFailure>,
    /// Cap on the serialised invoke payload (6,291,456 bytes, Lambda's limit).
    pub payload_limit_bytes: usize,
    /// Wait before retrying a failed batch.
    pub retry_backoff: Duration,
    /// Wait between reads of a shard that had nothing new (AWS polls each shard about once
    /// per second).
    pub poll_interval: Duration,
}

impl Default for KinesisSourceConfig {
    fn default() -> Self {
        Self {
            stream_name: String::new(),
            batch_size: 100,
            max_batching_window: Duration::ZERO,
            starting_position: StartingPosition::TrimHorizon,
            report_batch_item_failures: false,
            max_retry_attempts: -1,
            max_record_age: None,
            bisect_batch_on_function_error: false,
            on_failure: None,
            payload_limit_bytes: MAX_INVOKE_PAYLOAD_BYTES,
            retry_backoff: Duration::from_millis(500),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl KinesisSourceConfig {
    /// Defaults (AWS's where it has them) for `stream_name`.
    pub fn new(stream_name: impl Into<String>) -> Self {
        Self {
            stream_name: stream_name.into(),
            ..Self::default()
        }
    }

    /// Checks every setting against AWS's accepted ranges (see the field docs for the one
    /// relaxation).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RunnerError::Config(m));
        if self.stream_name.is_empty() {
            return bad("stream name is empty".into());
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!("BatchSize {} outside 1..=10000", self.batch_size));
        }
        if self.max_batching_window > Duration::from_secs(300) {
            return bad(format!(
                "MaximumBatchingWindowInSeconds {:?} above 300 s",
                self.max_batching_window
            ));
        }
        if !(-1..=10_000).contains(&self.max_retry_attempts) {
            return bad(format!(
                "MaximumRetryAttempts {} outside -1..=10000",
                self.max_retry_attempts
            ));
        }
        if let Some(age) = self.max_record_age
            && (age.is_zero() || age > Duration::from_secs(604_800))
        {
            return bad(format!(
                "MaximumRecordAgeInSeconds {age:?} outside (0, 604800] s"
            ));
        }
        if self.payload_limit_bytes < 1024 || self.payload_limit_bytes > MAX_INVOKE_PAYLOAD_BYTES {
            return bad(format!(
                "payload limit {} outside 1024..={MAX_INVOKE_PAYLOAD_BYTES}",
                self.payload_limit_bytes
            ));
        }
        if self.poll_interval.is_zero() {
            return bad("poll interval is zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn config_validation_rejects_values_aws_rejects() {
        let ok = KinesisSourceConfig::new("s");
        assert!(ok.validate().is_ok());
        for bad in [
            KinesisSourceConfig {
                batch_size: 0,
                ..ok.clone()
            },
            KinesisSourceConfig {
                batch_size: 10_001,
                ..ok.clone()
            },
            KinesisSourceConfig {
                max_batching_window: Duration::from_secs(301),
                ..ok.clone()
            },
            KinesisSourceConfig {
                max_retry_attempts: -2,
                ..ok.clone()
            },
            KinesisSourceConfig {
                max_retry_attempts: 10_001,
                ..ok.clone()
            },
            KinesisSourceConfig {
                max_record_age: Some(Duration::from_secs(604_801)),
                ..ok.clone()
            },
            KinesisSourceConfig {
                payload_limit_bytes: MAX_INVOKE_PAYLOAD_BYTES + 1,
                ..ok.clone()
            },
            KinesisSourceConfig {
                stream_name: String::new(),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn on_failure_spec_parses_bucket_and_prefix() {
        assert_eq!(
            OnFailure::s3_from_str("b/p/q").unwrap(),
            OnFailure::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            OnFailure::s3_from_str("b").unwrap(),
            OnFailure::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert!(OnFailure::s3_from_str("/p").is_err());
    }
}
