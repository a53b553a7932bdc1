//! A Kinesis event-source mapping (ESM): reads a stream's shards and invokes a
//! [`LambdaFunction`] with `KinesisEvent` batches, with AWS's batching, partial-batch response,
//! retry, bisect, record-age and on-failure-destination semantics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Result, RunnerError};
use crate::function::{ACCOUNT_ID, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome};

/// `{"Records":[` + `]}`.
const ENVELOPE_BYTES: usize = 14;
/// Consecutive failed Kinesis reads after which a shard worker gives up.
const MAX_READ_ERRORS: u32 = 8;
/// Batch records kept in [`SourceStats::batches`] (the most recent ones).
const MAX_BATCH_LOG: usize = 10_000;

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

/// Counters of one shard (or, summed, of the whole mapping).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Function invocations.
    pub invocations: u64,
    /// Records sent in invocation payloads (re-deliveries counted again).
    pub records_delivered: u64,
    /// Records checkpointed as processed (successes).
    pub records_processed: u64,
    /// Failed invocations that were retried (not counting bisections).
    pub retries: u64,
    /// Batches split in two after a function error.
    pub bisections: u64,
    /// Successful invocations that reported batch item failures.
    pub partial_failures: u64,
    /// Invocations that ended in a function error.
    pub function_errors: u64,
    /// Invocations during which the process exited.
    pub crashes: u64,
    /// Invocations that hit the function timeout.
    pub timeouts: u64,
    /// Invocations that failed in the function's init.
    pub init_errors: u64,
    /// Batches given up on (retries exhausted or records too old).
    pub discarded_batches: u64,
    /// Records given up on and (if configured) sent to the on-failure destination.
    pub records_discarded: u64,
    /// Of those, records discarded for `MaximumRecordAgeInSeconds`.
    pub records_expired: u64,
    /// Largest invocation payload, bytes.
    pub max_payload_bytes: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.invocations += o.invocations;
        self.records_delivered += o.records_delivered;
        self.records_processed += o.records_processed;
        self.retries += o.retries;
        self.bisections += o.bisections;
        self.partial_failures += o.partial_failures;
        self.function_errors += o.function_errors;
        self.crashes += o.crashes;
        self.timeouts += o.timeouts;
        self.init_errors += o.init_errors;
        self.discarded_batches += o.discarded_batches;
        self.records_discarded += o.records_discarded;
        self.records_expired += o.records_expired;
        self.max_payload_bytes = self.max_payload_bytes.max(o.max_payload_bytes);
    }
}

/// Per-shard statistics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardStats {
    /// Counters of this shard.
    pub counters: Counters,
    /// Sequence number of the last record checkpointed (processed or discarded).
    pub checkpoint: Option<String>,
}

/// One invocation of the mapping.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRecord {
    pub shard_id: String,
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    pub records: usize,
    pub payload_bytes: usize,
    /// [`Outcome::kind`], or `partial_failure`.
    pub outcome: &'static str,
}

/// Statistics of one `drain`/`run_*` call.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    /// Sums over all shards.
    pub total: Counters,
    /// By shard id.
    pub shards: BTreeMap<String, ShardStats>,
    /// Every invocation, in order per shard (at most the last 10,000).
    pub batches: Vec<BatchRecord>,
}

impl fmt::Display for SourceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.total;
        write!(
            f,
            "invocations={} records_delivered={} records_processed={} retries={} bisections={} partial_failures={} function_errors={} crashes={} timeouts={} init_errors={} discarded_batches={} records_discarded={} records_expired={} max_payload_bytes={} shards={}",
            t.invocations,
            t.records_delivered,
            t.records_processed,
            t.retries,
            t.bisections,
            t.partial_failures,
            t.function_errors,
            t.crashes,
            t.timeouts,
            t.init_errors,
            t.discarded_batches,
            t.records_discarded,
            t.records_expired,
            t.max_payload_bytes,
            self.shards.len()
        )
    }
}

/// Compares two Kinesis sequence numbers (decimal strings up to 56 digits) as integers.
pub fn cmp_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    authtrail_core::seqnum::compare(a, b)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireKinesis<'a> {
    kinesis_schema_version: &'static str,
    partition_key: &'a str,
    sequence_number: &'a str,
    data: String,
    approximate_arrival_timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_type: Option<&'a str>,
}

#[derive(Serialize)]
struct WireRecord<'a> {
    kinesis: WireKinesis<'a>,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "eventVersion")]
    event_version: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "eventName")]
    event_name: &'static str,
    #[serde(rename = "invokeIdentityArn")]
    invoke_identity_arn: &'a str,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
}

/// The fields of one record that go into a `KinesisEvent`.
#[derive(Debug, Clone)]
pub struct RecordInput<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub partition_key: &'a str,
    pub data: &'a [u8],
    pub arrival: DateTime<Utc>,
    pub encryption_type: Option<&'a str>,
}

/// Where the records of an event come from (same for every record of a mapping).
#[derive(Debug, Clone)]
pub struct EventContext {
    pub region: String,
    pub stream_arn: String,
    pub invoke_identity_arn: String,
}

/// Serialises one record exactly as it appears in the `Records` array of a Lambda
/// `KinesisEvent` (AWS's field order).
pub fn record_json(ctx: &EventContext, r: &RecordInput<'_>) -> Result<String> {
    let millis = r.arrival.timestamp_millis();
    // Epoch seconds with millisecond precision, as AWS sends it (e.g. 1545084650.987).
    #[allow(clippy::cast_precision_loss)]
    let ts = millis as f64 / 1000.0;
    let wire = WireRecord {
        kinesis: WireKinesis {
            kinesis_schema_version: "1.0",
            partition_key: r.partition_key,
            sequence_number: r.sequence_number,
            data: base64::engine::general_purpose::STANDARD.encode(r.data),
            approximate_arrival_timestamp: ts,
            encryption_type: r.encryption_type,
        },
        event_source: "aws:kinesis",
        event_version: "1.0",
        event_id: format!("{}:{}", r.shard_id, r.sequence_number),
        event_name: "aws:kinesis:record",
        invoke_identity_arn: &ctx.invoke_identity_arn,
        aws_region: &ctx.region,
        event_source_arn: &ctx.stream_arn,
    };
    Ok(serde_json::to_string(&wire)?)
}

/// Joins serialised records into a `KinesisEvent` payload: `{"Records":[r1,r2,...]}`.
pub fn event_payload<'a>(records: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{\"Records\":[");
    for (i, r) in records.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push_str("]}");
    out
}

struct Rec {
    seq: String,
    arrival: DateTime<Utc>,
    json: String,
}

struct Inner {
    cfg: KinesisSourceConfig,
    kinesis: aws_sdk_kinesis::Client,
    s3: aws_sdk_s3::Client,
    function: Arc<LambdaFunction>,
    ctx: EventContext,
    uuid: String,
    created_at: DateTime<Utc>,
    checkpoints: StdMutex<HashMap<String, String>>,
}

/// A Kinesis event-source mapping bound to one function. Checkpoints live in the value: a later
/// `drain` or `run_*` call continues after the last checkpoint. Two mappings on the same stream
/// (say archiver and forwarder) are independent.
pub struct KinesisEventSource {
    inner: Arc<Inner>,
}

impl fmt::Debug for KinesisEventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisEventSource")
            .field("uuid", &self.inner.uuid)
            .field("stream_arn", &self.inner.ctx.stream_arn)
            .field("function", &self.inner.function.name())
            .finish_non_exhaustive()
    }
}

fn sdk_err<E: std::error::Error + 'static>(operation: &'static str, e: E) -> RunnerError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RunnerError::Kinesis { operation, message }
}

impl KinesisEventSource {
    /// Creates the mapping (validates `cfg` and looks the stream up).
    pub async fn new(
        sdk: &SdkConfig,
        cfg: KinesisSourceConfig,
        function: Arc<LambdaFunction>,
    ) -> Result<Self> {
        cfg.validate()?;
        let created_at = Utc::now();
        let kinesis = aws_sdk_kinesis::Client::new(sdk);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(true)
                .build(),
        );
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(&cfg.stream_name)
            .send()
            .await
            .map_err(|e| sdk_err("DescribeStreamSummary", e))?;
        let stream_arn = summary
            .stream_description_summary()
            .map(|d| d.stream_arn().to_owned())
            .ok_or_else(|| RunnerError::Kinesis {
                operation: "DescribeStreamSummary",
                message: "no stream description".into(),
            })?;
        let region = sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_else(|| "us-east-1".to_owned());
        let ctx = EventContext {
            region,
            stream_arn,
            invoke_identity_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/{}-role", function.name()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                kinesis,
                s3,
                function,
                ctx,
                uuid: uuid::Uuid::new_v4().to_string(),
                created_at,
                checkpoints: StdMutex::new(HashMap::new()),
            }),
        })
    }

    /// The mapping's UUID (part of on-failure object keys).
    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    /// The stream's ARN.
    pub fn stream_arn(&self) -> &str {
        &self.inner.ctx.stream_arn
    }

    /// The function it invokes.
    pub fn function(&self) -> &Arc<LambdaFunction> {
        &self.inner.function
    }

    /// Last checkpointed sequence number by shard id.
    pub fn checkpoints(&self) -> BTreeMap<String, String> {
        self.inner
            .checkpoints
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Processes until every shard is caught up: each shard's reads return nothing new, nothing
    /// is buffered, in flight or waiting for a retry. The batching window is not waited out once
    /// a shard is caught up (no more records would join the batch). With infinite retries a
    /// poison record keeps this running, as it blocks a shard on AWS.
    pub async fn drain(&self) -> Result<SourceStats> {
        self.run(true, std::future::pending::<()>()).await
    }

    /// Runs until `stop` completes (e.g. `tokio::signal::ctrl_c()`), then finishes the
    /// invocations in flight and returns.
    pub async fn run_until(&self, stop: impl Future<Output = ()> + Send) -> Result<SourceStats> {
        self.run(false, stop).await
    }

    /// Runs for `limit`.
    pub async fn run_for(&self, limit: Duration) -> Result<SourceStats> {
        self.run(false, tokio::time::sleep(limit)).await
    }

    async fn list_shards(&self) -> Result<Vec<String>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self.inner.kinesis.list_shards();
            let req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_arn(&self.inner.ctx.stream_arn),
            };
            let out = req.send().await.map_err(|e| sdk_err("ListShards", e))?;
            shards.extend(out.shards().iter().map(|s| s.shard_id().to_owned()));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(shards)
    }

    async fn run(&self, drain: bool, stop: impl Future<Output = ()> + Send) -> Result<SourceStats> {
        let shards = self.list_shards().await?;
        tracing::info!(
            stream = %self.inner.cfg.stream_name,
            function = %self.inner.function.name(),
            shards = shards.len(),
            drain,
            "event source mapping started"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut set = JoinSet::new();
        for shard_id in shards {
            let checkpoint = self
                .inner
                .checkpoints
                .lock()
                .ok()
                .and_then(|m| m.get(&shard_id).cloned());
            let worker = ShardWorker {
                inner: self.inner.clone(),
                shard_id,
                drain,
                stop: stop_rx.clone(),
                stats: ShardStats {
                    checkpoint: checkpoint.clone(),
                    ..ShardStats::default()
                },
                batches: Vec::new(),
                buf: VecDeque::new(),
                iter: Iter::Need,
                read_pos: checkpoint,
                failures: 0,
                failure_head: None,
                segments: VecDeque::new(),
                read_errors: 0,
            };
            set.spawn(worker.run());
        }
        tokio::pin!(stop);
        let mut stopped = false;
        let mut stats = SourceStats::default();
        let mut first_error: Option<RunnerError> = None;
        loop {
            tokio::select! {
                () = &mut stop, if !stopped => {
                    stopped = true;
                    stop_tx.send_replace(true);
                }
                joined = set.join_next() => match joined {
                    None => break,
                    Some(Ok((shard_id, shard_stats, batches, result))) => {
                        stats.total.add(&shard_stats.counters);
                        stats.shards.insert(shard_id, shard_stats);
                        stats.batches.extend(batches);
                        if let Err(e) = result {
                            stop_tx.send_replace(true);
                            first_error.get_or_insert(e);
                        }
                    }
                    Some(Err(join_error)) => {
                        stop_tx.send_replace(true);
                        first_error.get_or_insert(RunnerError::Function {
                            name: self.inner.function.name().to_owned(),
                            message: format!("shard worker failed: {join_error}"),
                        });
                    }
                }
            }
        }
        if stats.batches.len() > MAX_BATCH_LOG {
            let excess = stats.batches.len() - MAX_BATCH_LOG;
            stats.batches.drain(..excess);
        }
        tracing::info!(stream = %self.inner.cfg.stream_name, function = %self.inner.function.name(), %stats, "event source mapping stopped");
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

enum Iter {
    Need,
    Have(String),
    Closed,
}

enum Fill {
    Invoke,
    Done,
    Stopped,
}

enum Verdict {
    /// The first `n` records of the batch are done.
    Success,
    /// Records before index `i` are done; `i..` failed.
    Partial(usize),
    /// Nothing done.
    Failed,
}

struct ShardWorker {
    inner: Arc<Inner>,
    shard_id: String,
    drain: bool,
    stop: watch::Receiver<bool>,
    stats: ShardStats,
    batches: Vec<BatchRecord>,
    buf: VecDeque<Rec>,
    iter: Iter,
    /// Sequence number of the last record read (buffered or done).
    read_pos: Option<String>,
    /// Consecutive failed invocations for the record at `failure_head`.
    failures: u64,
    failure_head: Option<String>,
    /// Pending halves after bisection: sizes of the next batches.
    segments: VecDeque<usize>,
    read_errors: u32,
}

type WorkerResult = (String, ShardStats, Vec<BatchRecord>, Result<()>);

impl ShardWorker {
    async fn run(mut self) -> WorkerResult {
        let result = self.work().await;
        if let Err(e) = &result {
            tracing::error!(shard = %self.shard_id, error = %e, "shard worker stopped with an error");
        }
        (self.shard_id, self.stats, self.batches, result)
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d`; returns true if stopped meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => self.stopped(),
            _ = stop.wait_for(|s| *s) => true,
        }
    }

    async fn work(&mut self) -> Result<()> {
        loop {
            match self.fill().await? {
                Fill::Done | Fill::Stopped => return Ok(()),
                Fill::Invoke => self.invoke_once().await?,
            }
        }
    }

    fn buf_bytes(&self) -> usize {
        ENVELOPE_BYTES + self.buf.iter().map(|r| r.json.len() + 1).sum::<usize>()
    }

    async fn fill(&mut self) -> Result<Fill> {
        if !self.buf.is_empty() {
            // Left over from a capped batch or a retry: go again right away.
            return Ok(if self.stopped() {
                Fill::Stopped
            } else {
                Fill::Invoke
            });
        }
        let cfg = &self.inner.cfg;
        let (batch_size, window, poll, limit) = (
            cfg.batch_size,
            cfg.max_batching_window,
            cfg.poll_interval,
            cfg.payload_limit_bytes,
        );
        let mut window_start: Option<Instant> = None;
        loop {
            if self.stopped() {
                return Ok(Fill::Stopped);
            }
            if self.buf.len() >= batch_size || self.buf_bytes() >= limit {
                return Ok(Fill::Invoke);
            }
            let iterator = match &self.iter {
                Iter::Closed => {
                    return Ok(if self.buf.is_empty() {
                        Fill::Done
                    } else {
                        Fill::Invoke
                    });
                }
                Iter::Need => match self.get_iterator().await {
                    Ok(it) => {
                        self.iter = Iter::Have(it);
                        continue;
                    }
                    Err(e) => {
                        self.read_failed(e).await?;
                        continue;
                    }
                },
                Iter::Have(it) => it.clone(),
            };
            let want = i32::try_from((batch_size - self.buf.len()).min(10_000)).unwrap_or(10_000);
            let out = match self
                .inner
                .kinesis
                .get_records()
                .shard_iterator(iterator)
                .limit(want)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    self.iter = Iter::Need;
                    self.read_failed(sdk_err("GetRecords", e)).await?;
                    continue;
                }
            };
            self.read_errors = 0;
            self.iter = match out.next_shard_iterator() {
                Some(next) => Iter::Have(next.to_owned()),
                None => Iter::Closed,
            };
            let got = out.records().len();
            for r in out.records() {
                self.push_record(r)?;
            }
            let caught_up = got == 0 && out.millis_behind_latest().unwrap_or(0) == 0;
            if got > 0 {
                let started = *window_start.get_or_insert_with(Instant::now);
                if window.is_zero() || started.elapsed() >= window {
                    return Ok(Fill::Invoke);
                }
                if out.millis_behind_latest().unwrap_or(0) > 0 {
                    continue;
                }
            }
            if self.buf.is_empty() {
                if self.drain && caught_up {
                    return Ok(Fill::Done);
                }
                if self.pause(poll).await {
                    return Ok(Fill::Stopped);
                }
                continue;
            }
            if self.drain && caught_up {
                return Ok(Fill::Invoke);
            }
            let started = *window_start.get_or_insert_with(Instant::now);
            let remaining = window.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Ok(Fill::Invoke);
            }
            if self.pause(remaining.min(poll)).await {
                return Ok(Fill::Stopped);
            }
        }
    }

    async fn read_failed(&mut self, e: RunnerError) -> Result<()> {
        self.read_errors += 1;
        if self.read_errors >= MAX_READ_ERRORS {
            return Err(e);
        }
        tracing::warn!(shard = %self.shard_id, error = %e, attempt = self.read_errors, "Kinesis read failed; retrying");
        let backoff = Duration::from_millis(100 * u64::from(self.read_errors));
        self.pause(backoff).await;
        Ok(())
    }

    async fn get_iterator(&self) -> Result<String> {
        let req = self
            .inner
            .kinesis
            .get_shard_iterator()
            // By name: moto encodes the stream name into the iterator and loses it when given
            // only the ARN ("Stream None ... not found").
            .stream_name(&self.inner.cfg.stream_name)
            .shard_id(&self.shard_id);
        let req = match (&self.read_pos, &self.inner.cfg.starting_position) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            (None, StartingPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, StartingPosition::Latest) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(to_smithy(self.inner.created_at)),
            (None, StartingPosition::AtTimestamp(t)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(to_smithy(*t)),
        };
        let out = req
            .send()
            .await
            .map_err(|e| sdk_err("GetShardIterator", e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| RunnerError::Kinesis {
                operation: "GetShardIterator",
                message: "no iterator returned".into(),
            })
    }

    fn push_record(&mut self, r: &aws_sdk_kinesis::types::Record) -> Result<()> {
        let arrival = r
            .approximate_arrival_timestamp()
            .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?))
            .unwrap_or_else(Utc::now);
        let json = record_json(
            &self.inner.ctx,
            &RecordInput {
                shard_id: &self.shard_id,
                sequence_number: r.sequence_number(),
                partition_key: r.partition_key().unwrap_or_default(),
                data: r.data().as_ref(),
                arrival,
                encryption_type: r
                    .encryption_type()
                    .map(|e| e.as_str())
                    .filter(|e| *e != "NONE"),
            },
        )?;
        self.read_pos = Some(r.sequence_number().to_owned());
        self.buf.push_back(Rec {
            seq: r.sequence_number().to_owned(),
            arrival,
            json,
        });
        Ok(())
    }

    fn next_batch_len(&self) -> usize {
        let cfg = &self.inner.cfg;
        let cap = self
            .segments
            .front()
            .copied()
            .unwrap_or(usize::MAX)
            .min(cfg.batch_size);
        let mut size = ENVELOPE_BYTES;
        let mut n = 0;
        for r in &self.buf {
            let add = r.json.len() + usize::from(n > 0);
            if n >= cap || (n > 0 && size + add > cfg.payload_limit_bytes) {
                break;
            }
            size += add;
            n += 1;
        }
        n
    }

    /// Removes the first `n` buffered records (done or discarded) and checkpoints the last.
    fn commit(&mut self, n: usize) {
        let mut last = None;
        for _ in 0..n {
            if let Some(r) = self.buf.pop_front() {
                last = Some(r.seq);
            }
        }
        let mut left = n;
        while left > 0 {
            match self.segments.front_mut() {
                Some(s) if *s > left => {
                    *s -= left;
                    left = 0;
                }
                Some(s) => {
                    left -= *s;
                    self.segments.pop_front();
                }
                None => break,
            }
        }
        if let Some(seq) = last {
            if let Ok(mut m) = self.inner.checkpoints.lock() {
                m.insert(self.shard_id.clone(), seq.clone());
            }
            self.stats.checkpoint = Some(seq);
        }
    }

    async fn invoke_once(&mut self) -> Result<()> {
        let cfg = self.inner.cfg.clone();
        // Records past MaximumRecordAgeInSeconds are discarded before invoking.
        if let Some(max_age) = cfg.max_record_age {
            let now = Utc::now();
            let expired = self
                .buf
                .iter()
                .take_while(|r| (now - r.arrival).to_std().is_ok_and(|age| age > max_age))
                .count()
                .min(self.next_batch_len());
            if expired > 0 {
                self.stats.counters.records_expired += expired as u64;
                self.discard(0, expired, "RecordAgeExceeded", None).await?;
                return Ok(());
            }
        }
        let n = self.next_batch_len();
        if n == 0 {
            return Ok(());
        }
        let payload = event_payload(self.buf.iter().take(n).map(|r| r.json.as_str()));
        let payload_bytes = payload.len();
        let first = self.buf.front().map(|r| r.seq.clone()).unwrap_or_default();
        let last = self
            .buf
            .get(n - 1)
            .map(|r| r.seq.clone())
            .unwrap_or_default();
        tracing::debug!(shard = %self.shard_id, records = n, payload_bytes, %first, %last, "invoking");
        let invocation = self.inner.function.invoke(payload).await?;
        let verdict = match &invocation.outcome {
            Outcome::Response(body) if cfg.report_batch_item_failures => {
                self.judge_response(body, n)
            }
            Outcome::Response(_) => Verdict::Success,
            _ => Verdict::Failed,
        };
        let c = &mut self.stats.counters;
        c.invocations += 1;
        c.records_delivered += n as u64;
        c.max_payload_bytes = c.max_payload_bytes.max(payload_bytes as u64);
        match &invocation.outcome {
            Outcome::Response(_) => {}
            Outcome::FunctionError { .. } => c.function_errors += 1,
            Outcome::Crashed { .. } => c.crashes += 1,
            Outcome::TimedOut { .. } => c.timeouts += 1,
            Outcome::InitError { .. } => c.init_errors += 1,
        }
        let kind = match verdict {
            Verdict::Partial(_) => "partial_failure",
            _ => invocation.outcome.kind(),
        };
        self.batches.push(BatchRecord {
            shard_id: self.shard_id.clone(),
            first_sequence_number: first,
            last_sequence_number: last,
            records: n,
            payload_bytes,
            outcome: kind,
        });
        if self.batches.len() > 2 * MAX_BATCH_LOG {
            self.batches.drain(..MAX_BATCH_LOG);
        }
        match verdict {
            Verdict::Success => {
                self.stats.counters.records_processed += n as u64;
                self.failures = 0;
                self.failure_head = None;
                self.commit(n);
            }
            Verdict::Partial(i) => {
                self.stats.counters.partial_failures += 1;
                self.stats.counters.records_processed += i as u64;
                self.commit(i);
                self.failed_attempt(n - i, Some(&invocation.outcome))
                    .await?;
            }
            Verdict::Failed => {
                if cfg.bisect_batch_on_function_error && n > 1 {
                    let half = n.div_ceil(2);
                    match self.segments.front_mut() {
                        Some(s) if *s == n => {
                            *s = n - half;
                        }
                        Some(s) => {
                            // The batch was cut shorter than its segment (payload cap).
                            *s -= n;
                            self.segments.push_front(n - half);
                        }
                        None => self.segments.push_front(n - half),
                    }
                    self.segments.push_front(half);
                    self.stats.counters.bisections += 1;
                    tracing::warn!(shard = %self.shard_id, records = n, "function error: bisecting the batch");
                    self.pause(cfg.retry_backoff).await;
                } else {
                    self.failed_attempt(n, Some(&invocation.outcome)).await?;
                }
            }
        }
        Ok(())
    }

    /// A failed invocation of `n` records starting at the buffer head: count it against the
    /// head record's retry budget; give up or back off.
    async fn failed_attempt(&mut self, n: usize, outcome: Option<&Outcome>) -> Result<()> {
        let head = self.buf.front().map(|r| r.seq.clone());
        if head.is_some() && head == self.failure_head {
            self.failures += 1;
        } else {
            self.failures = 1;
            self.failure_head = head;
        }
        let max = self.inner.cfg.max_retry_attempts;
        if max >= 0 && self.failures > max.unsigned_abs() {
            self.discard(0, n, "RetryAttemptsExhausted", outcome)
                .await?;
        } else {
            self.stats.counters.retries += 1;
            let backoff = self.inner.cfg.retry_backoff;
            self.pause(backoff).await;
        }
        Ok(())
    }

    fn judge_response(&self, body: &[u8], n: usize) -> Verdict {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return Verdict::Success,
        };
        let Some(failures) = value.get("batchItemFailures") else {
            return Verdict::Success;
        };
        let failures = match failures {
            serde_json::Value::Null => return Verdict::Success,
            serde_json::Value::Array(a) if a.is_empty() => return Verdict::Success,
            serde_json::Value::Array(a) => a,
            _ => return Verdict::Failed,
        };
        let mut lowest: Option<usize> = None;
        for f in failures {
            let id = f.get("itemIdentifier").and_then(serde_json::Value::as_str);
            let Some(id) = id.filter(|s| !s.is_empty()) else {
                tracing::warn!(shard = %self.shard_id, "batch item failure without itemIdentifier: whole batch failed");
                return Verdict::Failed;
            };
            let Some(idx) = self.buf.iter().take(n).position(|r| r.seq == id) else {
                tracing::warn!(shard = %self.shard_id, item = %id, "batch item failure names a record not in the batch: whole batch failed");
                return Verdict::Failed;
            };
            lowest = Some(match lowest {
                Some(l) => {
                    let cur = self.buf.get(l).map(|r| r.seq.as_str()).unwrap_or_default();
                    if cmp_sequence_numbers(id, cur).is_lt() {
                        idx
                    } else {
                        l
                    }
                }
                None => idx,
            });
        }
        match lowest {
            Some(0) => Verdict::Failed,
            Some(i) => Verdict::Partial(i),
            None => Verdict::Success,
        }
    }

    /// Gives up on buffered records `start..start + n`: on-failure record, checkpoint past them.
    async fn discard(
        &mut self,
        start: usize,
        n: usize,
        condition: &'static str,
        outcome: Option<&Outcome>,
    ) -> Result<()> {
        let records: Vec<&Rec> = self.buf.iter().skip(start).take(n).collect();
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        tracing::error!(
            shard = %self.shard_id,
            function = %self.inner.function.name(),
            condition,
            records = n,
            start_sequence_number = %first.seq,
            end_sequence_number = %last.seq,
            invoke_count = self.failures,
            "DISCARDING RECORDS: event source mapping gave up on a batch"
        );
        let record = self.invocation_record(&records, condition, outcome)?;
        let inner = self.inner.clone();
        if let Some(OnFailure::S3 { bucket, prefix }) = &inner.cfg.on_failure {
            let now = Utc::now();
            let key = format!(
                "{prefix}{sep}aws/lambda/{uuid}/{shard}/{date}/{stamp}-{id}",
                sep = if prefix.is_empty() || prefix.ends_with('/') {
                    ""
                } else {
                    "/"
                },
                uuid = inner.uuid,
                shard = self.shard_id,
                date = now.format("%Y/%m/%d"),
                stamp = now.format("%Y-%m-%dT%H.%M.%S"),
                id = uuid::Uuid::new_v4(),
            );
            let mut attempt = 0;
            loop {
                attempt += 1;
                let put = inner
                    .s3
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(record.clone().into_bytes().into())
                    .send()
                    .await;
                match put {
                    Ok(_) => {
                        tracing::warn!(bucket = %bucket, key = %key, "wrote on-failure record");
                        break;
                    }
                    Err(e) if attempt >= 3 => {
                        return Err(RunnerError::S3(sdk_err("PutObject", e).to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %sdk_err("PutObject", e), "on-failure write failed; retrying");
                        self.pause(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        let c = &mut self.stats.counters;
        c.discarded_batches += 1;
        c.records_discarded += n as u64;
        self.failures = 0;
        self.failure_head = None;
        self.commit(start + n);
        Ok(())
    }

    fn invocation_record(
        &self,
        records: &[&Rec],
        condition: &str,
        outcome: Option<&Outcome>,
    ) -> Result<String> {
        let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let (first, last) = match (records.first(), records.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Ok(String::new()),
        };
        let mut record = serde_json::json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": self.inner.function.arn(),
                "condition": condition,
                "approximateInvokeCount": self.failures,
            },
            "version": "1.0",
            "timestamp": iso(Utc::now()),
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first.seq,
                "endSequenceNumber": last.seq,
                "approximateArrivalOfFirstRecord": iso(first.arrival),
                "approximateArrivalOfLastRecord": iso(last.arrival),
                "batchSize": records.len(),
                "streamArn": self.inner.ctx.stream_arn,
            },
        });
        if let Some(outcome) = outcome {
            let error_type = match outcome {
                Outcome::Response(_) => None,
                Outcome::FunctionError { error_type, .. }
                | Outcome::InitError { error_type, .. } => Some(error_type.as_str()),
                Outcome::Crashed { .. } => Some("Runtime.ExitError"),
                Outcome::TimedOut { .. } => Some("Sandbox.Timedout"),
            };
            record["responseContext"] = serde_json::json!({
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": if error_type.is_some() { "Unhandled" } else { "" },
                "errorType": error_type,
            });
        }
        let payload = event_payload(records.iter().map(|r| r.json.as_str()));
        let mut text = serde_json::to_string(&record)?;
        // Append the original event batch as `payload` (a JSON string, as in S3 destination
        // records), without re-parsing it.
        if text.ends_with('}') {
            text.pop();
            text.push_str(",\"payload\":");
            text.push_str(&serde_json::to_string(&payload)?);
            text.push('}');
        }
        Ok(text)
    }
}

fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;

    fn ctx() -> EventContext {
        EventContext {
            region: "us-east-1".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
            invoke_identity_arn: "arn:aws:iam::123456789012:role/f-role".into(),
        }
    }

    #[test]
    fn built_payload_deserializes_into_kinesis_event_with_aws_fields() {
        let arrival = DateTime::<Utc>::from_timestamp_millis(1_545_084_650_987).unwrap();
        let data = br#"{"a":1}"#;
        let r = record_json(
            &ctx(),
            &RecordInput {
                shard_id: "shardId-000000000000",
                sequence_number: "49590338271490256608559692538361571095921575989136588898",
                partition_key: "pk",
                data,
                arrival,
                encryption_type: None,
            },
        )
        .unwrap();
        let payload = event_payload([r.as_str(), r.as_str()]);
        assert_eq!(payload.len(), ENVELOPE_BYTES + 2 * r.len() + 1);
        let ev: KinesisEvent = serde_json::from_str(&payload).unwrap();
        assert_eq!(ev.records.len(), 2);
        let rec = &ev.records[0];
        assert_eq!(rec.event_source.as_deref(), Some("aws:kinesis"));
        assert_eq!(rec.event_name.as_deref(), Some("aws:kinesis:record"));
        assert_eq!(rec.event_version.as_deref(), Some("1.0"));
        assert_eq!(
            rec.event_id.as_deref(),
            Some("shardId-000000000000:49590338271490256608559692538361571095921575989136588898")
        );
        assert_eq!(rec.kinesis.data.0, data.to_vec());
        assert_eq!(rec.kinesis.partition_key, "pk");
        assert_eq!(rec.kinesis.kinesis_schema_version.as_deref(), Some("1.0"));
        assert_eq!(rec.kinesis.approximate_arrival_timestamp.0, arrival);
        assert!(r.contains("\"approximateArrivalTimestamp\":1545084650.987"));
        assert!(r.starts_with("{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\""));
    }

    #[test]
    fn sequence_numbers_compare_as_integers_not_strings() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_sequence_numbers("9", "10"), Less);
        assert_eq!(cmp_sequence_numbers("10", "9"), Greater);
        assert_eq!(cmp_sequence_numbers("100", "100"), Equal);
        assert_eq!(
            cmp_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Less
        );
    }

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
