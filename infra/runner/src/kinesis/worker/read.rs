//! Filling the worker's buffer: shard iterators, GetRecords, the batching window and the
//! record-by-record conversion into the `KinesisEvent` form.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Fill, Iter, ShardWorker};
use crate::error::{Result, RunnerError};
use crate::kinesis::config::StartingPosition;
use crate::kinesis::source::sdk_err;
use crate::kinesis::wire::{Rec, RecordInput, record_json};

/// Consecutive failed Kinesis reads after which a shard worker gives up.
const MAX_READ_ERRORS: u32 = 8;

/// What one GetRecords call brought.
struct Read {
    /// Records returned (now buffered).
    got: usize,
    /// `MillisBehindLatest` (0 when absent).
    millis_behind: i64,
}

impl ShardWorker {
    /// Reads until a batch is ready (batch full, payload cap, window over, or caught up in a
    /// drain), the shard is done, or the run stops.
    pub(super) async fn fill(&mut self) -> Result<Fill> {
        if !self.buf.is_empty() {
            // Left over from a capped batch or a retry: go again right away.
            return Ok(if self.stopped() {
                Fill::Stopped
            } else {
                Fill::Invoke
            });
        }
        let mut window_start: Option<Instant> = None;
        loop {
            if let Some(fill) = self.before_read() {
                return Ok(fill);
            }
            let Some(iterator) = self.iterator().await? else {
                continue;
            };
            let Some(read) = self.read(iterator).await? else {
                continue;
            };
            if let Some(fill) = self.after_read(&read, &mut window_start).await {
                return Ok(fill);
            }
        }
    }

    /// Before each read: the run stopped, a full batch (count or bytes) or a closed shard end
    /// the filling.
    fn before_read(&self) -> Option<Fill> {
        if self.stopped() {
            return Some(Fill::Stopped);
        }
        let cfg = &self.inner.cfg;
        if self.buf.len() >= cfg.batch_size || self.buf_bytes() >= cfg.payload_limit_bytes {
            return Some(Fill::Invoke);
        }
        if matches!(self.iter, Iter::Closed) {
            return Some(if self.buf.is_empty() {
                Fill::Done
            } else {
                Fill::Invoke
            });
        }
        None
    }

    /// The iterator for the next read. `None` when one had to be fetched (or fetching it
    /// failed and was backed off): the caller checks again before reading.
    async fn iterator(&mut self) -> Result<Option<String>> {
        match &self.iter {
            Iter::Have(it) => Ok(Some(it.clone())),
            Iter::Closed => Ok(None),
            Iter::Need => {
                match self.get_iterator().await {
                    Ok(it) => self.iter = Iter::Have(it),
                    Err(e) => self.read_failed(e).await?,
                }
                Ok(None)
            }
        }
    }

    /// One GetRecords call: buffers the records and moves the iterator on. `None` after a
    /// failed call (backed off; the next read starts from a new iterator).
    async fn read(&mut self, iterator: String) -> Result<Option<Read>> {
        let left = self.inner.cfg.batch_size.saturating_sub(self.buf.len());
        let want = i32::try_from(left.min(10_000)).unwrap_or(10_000);
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
                return Ok(None);
            }
        };
        self.read_errors = 0;
        self.iter = match out.next_shard_iterator() {
            Some(next) => Iter::Have(next.to_owned()),
            None => Iter::Closed,
        };
        for r in out.records() {
            self.push_record(r)?;
        }
        Ok(Some(Read {
            got: out.records().len(),
            millis_behind: out.millis_behind_latest().unwrap_or(0),
        }))
    }

    /// After a read: a batch is ready when the batching window is over (it starts with the first
    /// record read) or, in a drain, when the shard is caught up; otherwise reads again at once
    /// while behind, or after a poll interval (idle) or the rest of the window.
    async fn after_read(
        &mut self,
        read: &Read,
        window_start: &mut Option<Instant>,
    ) -> Option<Fill> {
        let (window, poll) = (
            self.inner.cfg.max_batching_window,
            self.inner.cfg.poll_interval,
        );
        let caught_up = read.got == 0 && read.millis_behind == 0;
        if read.got > 0 {
            let started = *window_start.get_or_insert_with(Instant::now);
            if window.is_zero() || started.elapsed() >= window {
                return Some(Fill::Invoke);
            }
            if read.millis_behind > 0 {
                return None;
            }
        }
        if self.buf.is_empty() {
            if self.drain && caught_up {
                return Some(Fill::Done);
            }
            return self.pause(poll).await.then_some(Fill::Stopped);
        }
        if self.drain && caught_up {
            return Some(Fill::Invoke);
        }
        let started = *window_start.get_or_insert_with(Instant::now);
        let remaining = window.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Some(Fill::Invoke);
        }
        self.pause(remaining.min(poll))
            .await
            .then_some(Fill::Stopped)
    }

    /// Counts a failed read; gives up after [`MAX_READ_ERRORS`] in a row, else backs off.
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

    /// A shard iterator after the last record read or, with none read, at the starting
    /// position.
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

    /// Buffers one record read from the shard in its `KinesisEvent` form.
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
}

fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}
