//! The shard worker: reads one shard in order, cuts batches, invokes the function, judges the
//! outcome and checkpoints. `read` fills the buffer (iterator, GetRecords, batching window);
//! `invoke` sends one batch and applies what came back (success, partial failure, retry,
//! bisection, discard to the on-failure destination).

mod invoke;
mod read;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::source::Inner;
use super::stats::{BatchRecord, ShardStats};
use super::wire::{ENVELOPE_BYTES, Rec};
use crate::error::Result;

/// The state of the worker's shard iterator.
enum Iter {
    /// A new iterator is needed (start, or after a failed read).
    Need,
    /// The iterator for the next read.
    Have(String),
    /// The shard is closed and read to its end.
    Closed,
}

/// How filling the buffer ended.
enum Fill {
    /// A batch is ready: invoke.
    Invoke,
    /// Nothing more to do (drained, or the closed shard is done).
    Done,
    /// The run was told to stop.
    Stopped,
}

/// What a worker hands back when it ends.
pub(super) struct ShardReport {
    /// The shard.
    pub(super) shard_id: String,
    /// Its counters and checkpoint.
    pub(super) stats: ShardStats,
    /// Its invocations.
    pub(super) batches: Vec<BatchRecord>,
    /// How it ended.
    pub(super) result: Result<()>,
}

/// Reads, batches, invokes and checkpoints one shard.
pub(super) struct ShardWorker {
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

impl ShardWorker {
    /// A worker for `shard_id` that resumes after the mapping's checkpoint of that shard.
    pub(super) fn new(
        inner: Arc<Inner>,
        shard_id: String,
        drain: bool,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let checkpoint = inner.checkpoint(&shard_id);
        Self {
            inner,
            shard_id,
            drain,
            stop,
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
        }
    }

    /// Works the shard until done, stopped or failed.
    pub(super) async fn run(mut self) -> ShardReport {
        let result = self.work().await;
        if let Err(e) = &result {
            tracing::error!(shard = %self.shard_id, error = %e, "shard worker stopped with an error");
        }
        ShardReport {
            shard_id: self.shard_id,
            stats: self.stats,
            batches: self.batches,
            result,
        }
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

    /// Size of a payload holding every buffered record.
    fn buf_bytes(&self) -> usize {
        ENVELOPE_BYTES + self.buf.iter().map(|r| r.json.len() + 1).sum::<usize>()
    }

    /// Records in the next batch: up to the batch size (or the pending bisection half), cut
    /// where the payload would pass the limit (at least one record).
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
            self.inner.set_checkpoint(&self.shard_id, &seq);
            self.stats.checkpoint = Some(seq);
        }
    }
}
