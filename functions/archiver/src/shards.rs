//! Which shards of a stream are closed (resharded), so that the scheduled close knows when a
//! quiet shard has ended and its heartbeat digests can stop (README, "Heartbeats").

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::ArchiveError;

/// The future [`ShardDirectory::closed_shards`] returns.
pub type ClosedShards<'a> =
    Pin<Box<dyn Future<Output = Result<BTreeSet<String>, ArchiveError>> + Send + 'a>>;

/// Where the archiver learns which shards of a stream are closed.
pub trait ShardDirectory: Debug + Send + Sync {
    /// The ids of the closed shards of `stream` (shards with an ending sequence number).
    fn closed_shards<'a>(&'a self, stream: &'a str) -> ClosedShards<'a>;
}

/// Kinesis `ListShards` (needs `kinesis:ListShards` on the stream).
#[derive(Debug, Clone)]
pub struct KinesisShards {
    client: aws_sdk_kinesis::Client,
}

impl KinesisShards {
    /// A directory on this Kinesis client.
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client }
    }

    async fn list(&self, stream: &str) -> Result<BTreeSet<String>, ArchiveError> {
        let failed = |e: &dyn std::fmt::Display| ArchiveError::ListShards {
            stream: stream.to_string(),
            message: e.to_string(),
        };
        let mut closed = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(stream),
            };
            let page = request
                .send()
                .await
                .map_err(|e| failed(&aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
            for shard in page.shards() {
                let ended = shard
                    .sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_some());
                if ended {
                    closed.insert(shard.shard_id().to_string());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(closed),
            }
        }
    }
}

impl ShardDirectory for KinesisShards {
    fn closed_shards<'a>(&'a self, stream: &'a str) -> ClosedShards<'a> {
        Box::pin(self.list(stream))
    }
}

/// A directory held in memory, for tests: the closed shards are set by hand.
#[derive(Debug, Default)]
pub struct FixedShards {
    closed: Mutex<BTreeSet<String>>,
}

impl FixedShards {
    /// Marks `shard` closed.
    pub fn close(&self, shard: &str) {
        if let Ok(mut closed) = self.closed.lock() {
            closed.insert(shard.to_string());
        }
    }
}

impl ShardDirectory for FixedShards {
    fn closed_shards<'a>(&'a self, _stream: &'a str) -> ClosedShards<'a> {
        let closed = self.closed.lock().map(|c| c.clone()).unwrap_or_default();
        Box::pin(async move { Ok(closed) })
    }
}
