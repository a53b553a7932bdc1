//! Kinesis PutRecords into the stream named by name or ARN, as a [`BatchWriter`] within
//! [`KINESIS_LIMITS`] (500 records, 5 MiB per call, 1 MiB per record including the key), and
//! reading the stream back ([`ReadBack`]): ListShards (closed shards included), one
//! `AT_TIMESTAMP` iterator per shard, GetRecords until a record arrived after the window, the
//! shard's tip (`MillisBehindLatest` 0), its end (a closed shard) or the bounds. Every shard is
//! read to its tip first; tips reached by a call sent before the window's `tip_until_ms` (a call
//! a dead run sent before it died may still be taken) are then polled together until a call
//! sent after it reaches them.

use authtrail_core::Error;
use authtrail_core::put_batch::{
    BatchLimits, BatchWriter, EntryResult, KINESIS_LIMITS, Record, call_error,
};
use std::future::Future;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::ShardIteratorType;

use super::{ReadBack, ReadStats, ReadWindow};
use crate::error::ReadBackError;

/// Records asked for per GetRecords call (the API's maximum).
const GET_RECORDS_LIMIT: i32 = 10_000;
/// Retries of a throttled read call (GetRecords allows 5 calls per second per shard).
const THROTTLE_RETRIES: u32 = 5;
/// The shortest retention a stream can have (24 hours): younger windows need no check.
const MIN_RETENTION_MS: i64 = 24 * 3_600_000;
/// A window closer than this to the end of the stream's retention counts as gone.
const RETENTION_MARGIN_MS: i64 = 3_600_000;
/// Tips reached before the window's `tip_until_ms` are polled again after at most this long.
const TIP_POLL: Duration = Duration::from_millis(500);

/// Kinesis PutRecords to a stream named by name or ARN.
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    /// A sink writing to `stream_name_or_arn` (an `arn:` value is sent as `StreamARN`).
    pub fn new(client: aws_sdk_kinesis::Client, stream_name_or_arn: &str) -> Self {
        Self {
            client,
            stream: stream_name_or_arn.to_string(),
        }
    }
}

impl BatchWriter for KinesisSink {
    fn limits(&self) -> BatchLimits {
        KINESIS_LIMITS
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        let mut req = self.client.put_records();
        req = if self.stream.starts_with("arn:") {
            req.stream_arn(&self.stream)
        } else {
            req.stream_name(&self.stream)
        };
        for r in records {
            let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.clone()))
                .partition_key(&r.partition_key)
                .build()
                .map_err(|e| Error::Fatal {
                    code: "build".into(),
                    message: e.to_string(),
                })?;
            req = req.records(entry);
        }
        match req.send().await {
            Ok(out) => Ok(out
                .records()
                .iter()
                .map(|e| match e.error_code() {
                    None => EntryResult::Accepted,
                    Some(code) => EntryResult::Failed {
                        code: code.to_string(),
                        message: e.error_message().unwrap_or_default().to_string(),
                    },
                })
                .collect()),
            Err(err) => Err(call_error(
                err.code(),
                DisplayErrorContext(&err).to_string(),
            )),
        }
    }
}

/// How reading one shard ended.
enum ShardEnd {
    /// Read to the window's end, the tip (once no more polling is due) or the end of a closed
    /// shard.
    Covered,
    /// At the shard's tip before `window.tip_until_ms`: poll it again from this iterator.
    AtTip(String),
    /// The visitor asked to stop.
    Stopped,
    /// The call or time budget ran out.
    OutOfBudget,
}

impl ShardEnd {
    /// Files a shard's ending: a tip to poll goes into `at_tip`; `true` when the whole reading
    /// ends here (the visitor stopped it, `stats.stopped`, or the budget ran out).
    fn ends_reading(self, stats: &mut ReadStats, at_tip: &mut Vec<String>) -> bool {
        match self {
            ShardEnd::Covered => false,
            ShardEnd::AtTip(next) => {
                at_tip.push(next);
                false
            }
            ShardEnd::Stopped => {
                stats.stopped = true;
                true
            }
            ShardEnd::OutOfBudget => true,
        }
    }
}

/// Sends a read request again while it is throttled; classifies its failure.
async fn read_call<T, E, F, Fut>(op: &str, mut send: F) -> Result<T, ReadBackError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut attempt = 0;
    loop {
        let err = match send().await {
            Ok(out) => return Ok(out),
            Err(err) => err,
        };
        let detail = format!("{op}: {}", DisplayErrorContext(&err));
        match err.code() {
            Some("AccessDeniedException" | "KMSAccessDeniedException") => {
                return Err(ReadBackError::AccessDenied(detail));
            }
            Some("ProvisionedThroughputExceededException" | "LimitExceededException")
                if attempt < THROTTLE_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            _ => return Err(ReadBackError::Failed(detail)),
        }
    }
}

impl KinesisSink {
    /// Refuses a window that may have left the stream's retention (only asked when the window
    /// is older than the shortest retention, 24 h).
    async fn check_retention(&self, from_ms: i64) -> Result<(), ReadBackError> {
        let age = crate::pull::now_ms().saturating_sub(from_ms);
        if age < MIN_RETENTION_MS - RETENTION_MARGIN_MS {
            return Ok(());
        }
        let out = read_call("DescribeStreamSummary", || {
            let req = self.client.describe_stream_summary();
            let req = if self.stream.starts_with("arn:") {
                req.stream_arn(&self.stream)
            } else {
                req.stream_name(&self.stream)
            };
            req.send()
        })
        .await
        .map_err(|e| ReadBackError::BeyondRetention(format!("retention unknown: {e}")))?;
        let hours = out
            .stream_description_summary()
            .map_or(24, |s| s.retention_period_hours());
        let retention_ms = i64::from(hours) * 3_600_000;
        if age > retention_ms - RETENTION_MARGIN_MS {
            return Err(ReadBackError::BeyondRetention(format!(
                "{} h old, the stream keeps {hours} h",
                age / 3_600_000
            )));
        }
        Ok(())
    }

    /// Every shard of the stream, closed ones included.
    async fn list_shards(&self) -> Result<Vec<String>, ReadBackError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = read_call("ListShards", || {
                let req = self.client.list_shards();
                let req = match &token {
                    Some(t) => req.next_token(t),
                    None if self.stream.starts_with("arn:") => req.stream_arn(&self.stream),
                    None => req.stream_name(&self.stream),
                };
                req.send()
            })
            .await?;
            shards.extend(out.shards().iter().map(|s| s.shard_id().to_string()));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(shards),
            }
        }
    }

    /// The `AT_TIMESTAMP` iterator of one shard at `window.from_ms` (`None`: nothing to read).
    async fn shard_iterator(
        &self,
        shard: &str,
        window: &ReadWindow,
    ) -> Result<Option<String>, ReadBackError> {
        let out = read_call("GetShardIterator", || {
            let req = self
                .client
                .get_shard_iterator()
                .shard_id(shard)
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(window.from_ms));
            let req = if self.stream.starts_with("arn:") {
                req.stream_arn(&self.stream)
            } else {
                req.stream_name(&self.stream)
            };
            req.send()
        })
        .await?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    /// Reads one shard from `iterator` on until the window's end, its tip or its end.
    async fn read_from(
        &self,
        mut iterator: String,
        window: &ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> ControlFlow<()> + Send),
        stats: &mut ReadStats,
    ) -> Result<ShardEnd, ReadBackError> {
        let max_bytes = self.limits().max_bytes_per_record;
        loop {
            if stats.calls >= window.max_calls || Instant::now() >= window.deadline {
                return Ok(ShardEnd::OutOfBudget);
            }
            stats.calls += 1;
            let sent_at = crate::pull::now_ms();
            let out = read_call("GetRecords", || {
                self.client
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(GET_RECORDS_LIMIT)
                    .send()
            })
            .await?;
            for r in out.records() {
                let arrival = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok());
                if arrival.is_some_and(|a| a > window.until_ms) {
                    return Ok(ShardEnd::Covered);
                }
                let data = r.data().as_ref();
                stats.records += 1;
                stats.bytes += data.len() as u64;
                if data.len() > max_bytes {
                    stats.oversized += 1;
                    continue;
                }
                if visit(data).is_break() {
                    return Ok(ShardEnd::Stopped);
                }
            }
            let at_tip = out.millis_behind_latest() == Some(0)
                || (out.records().is_empty() && out.millis_behind_latest().is_none());
            let Some(next) = out.next_shard_iterator() else {
                return Ok(ShardEnd::Covered);
            };
            if at_tip {
                // The tip as of a call sent after `tip_until_ms` holds every record a dead run's
                // calls will ever add; before that, one of them may still be taken.
                return Ok(if sent_at > window.tip_until_ms {
                    ShardEnd::Covered
                } else {
                    ShardEnd::AtTip(next.to_string())
                });
            }
            iterator = next.to_string();
        }
    }
}

impl ReadBack for KinesisSink {
    fn read_target(&self) -> Option<&str> {
        Some(&self.stream)
    }

    async fn read_back(
        &self,
        window: &ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> ControlFlow<()> + Send),
    ) -> Result<ReadStats, ReadBackError> {
        self.check_retention(window.from_ms).await?;
        let shards = self.list_shards().await?;
        let mut stats = ReadStats {
            shards: u32::try_from(shards.len()).unwrap_or(u32::MAX),
            ..ReadStats::default()
        };
        // Every shard to its tip first, then the tips reached too early polled together.
        let mut at_tip = Vec::new();
        for shard in &shards {
            let Some(iterator) = self.shard_iterator(shard, window).await? else {
                continue;
            };
            let end = self.read_from(iterator, window, visit, &mut stats).await?;
            if end.ends_reading(&mut stats, &mut at_tip) {
                return Ok(stats);
            }
        }
        while !at_tip.is_empty() {
            let wait = (window.tip_until_ms - crate::pull::now_ms() + 1).max(0) as u64;
            let wake = Instant::now() + Duration::from_millis(wait).min(TIP_POLL);
            if wake >= window.deadline {
                return Ok(stats);
            }
            tokio::time::sleep_until(wake.into()).await;
            let mut still = Vec::new();
            for iterator in at_tip {
                let end = self.read_from(iterator, window, visit, &mut stats).await?;
                if end.ends_reading(&mut stats, &mut still) {
                    return Ok(stats);
                }
            }
            at_tip = still;
        }
        stats.covered = true;
        Ok(stats)
    }
}
