//! [`KinesisEventSource`]: the mapping itself. Looks the stream up, lists its shards at the start
//! of each run, runs one shard worker per shard and joins their statistics.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::KinesisSourceConfig;
use super::stats::SourceStats;
use super::wire::EventContext;
use super::worker::{ShardReport, ShardWorker};
use crate::error::{Result, RunnerError};
use crate::function::{ACCOUNT_ID, LambdaFunction};

/// What the mapping's shard workers share: settings, clients, the function, the event context
/// and the checkpoints.
pub(super) struct Inner {
    pub(super) cfg: KinesisSourceConfig,
    pub(super) kinesis: aws_sdk_kinesis::Client,
    pub(super) s3: aws_sdk_s3::Client,
    pub(super) function: Arc<LambdaFunction>,
    pub(super) ctx: EventContext,
    pub(super) uuid: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) checkpoints: StdMutex<HashMap<String, String>>,
}

impl Inner {
    /// The last checkpointed sequence number of `shard_id`.
    pub(super) fn checkpoint(&self, shard_id: &str) -> Option<String> {
        self.checkpoints
            .lock()
            .ok()
            .and_then(|m| m.get(shard_id).cloned())
    }

    /// Records `seq` as the checkpoint of `shard_id`.
    pub(super) fn set_checkpoint(&self, shard_id: &str, seq: &str) {
        if let Ok(mut m) = self.checkpoints.lock() {
            m.insert(shard_id.to_owned(), seq.to_owned());
        }
    }
}

/// A Kinesis or S3 SDK error with its whole source chain, as a [`RunnerError::Kinesis`].
pub(super) fn sdk_err<E: std::error::Error + 'static>(
    operation: &'static str,
    e: E,
) -> RunnerError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RunnerError::Kinesis { operation, message }
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

    /// One run: a worker per shard until they are done (`drain`) or `stop` completes; the first
    /// worker error stops the others and is returned once they have finished.
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
        let mut workers = JoinSet::new();
        for shard_id in shards {
            let worker = ShardWorker::new(self.inner.clone(), shard_id, drain, stop_rx.clone());
            workers.spawn(worker.run());
        }
        let (mut stats, first_error) = self.join_workers(workers, stop, &stop_tx).await;
        stats.trim_batch_log();
        tracing::info!(stream = %self.inner.cfg.stream_name, function = %self.inner.function.name(), %stats, "event source mapping stopped");
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Waits for every worker, telling them all to stop when `stop` completes or one fails;
    /// returns their joined statistics and the first error.
    async fn join_workers(
        &self,
        mut workers: JoinSet<ShardReport>,
        stop: impl Future<Output = ()> + Send,
        stop_tx: &watch::Sender<bool>,
    ) -> (SourceStats, Option<RunnerError>) {
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
                joined = workers.join_next() => match joined {
                    None => break,
                    Some(Ok(report)) => {
                        stats.add_shard(report.shard_id, report.stats, report.batches);
                        if let Err(e) = report.result {
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
        (stats, first_error)
    }
}
