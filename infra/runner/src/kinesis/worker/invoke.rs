//! Sending one batch and applying what came back: success, partial failure, retry with the
//! head record's attempt budget, bisection, and discarding to the on-failure destination.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::ShardWorker;
use crate::error::{Result, RunnerError};
use crate::function::Outcome;
use crate::kinesis::config::OnFailure;
use crate::kinesis::on_failure::{Discard, invocation_record, object_key};
use crate::kinesis::source::sdk_err;
use crate::kinesis::stats::{BatchRecord, log_batch};
use crate::kinesis::wire::{BadItemFailure, Rec, Verdict, event_payload, judge_response};

/// Attempts at writing one on-failure record.
const ON_FAILURE_ATTEMPTS: u32 = 3;
/// Wait between those attempts.
const ON_FAILURE_RETRY_WAIT: Duration = Duration::from_millis(200);

/// The batch of one invocation, for the statistics.
struct Sent {
    records: usize,
    payload_bytes: usize,
    first: String,
    last: String,
}

impl ShardWorker {
    /// Invokes the function once with the next batch (after discarding expired head records)
    /// and applies the outcome.
    pub(super) async fn invoke_once(&mut self) -> Result<()> {
        if self.discard_expired().await? {
            return Ok(());
        }
        let n = self.next_batch_len();
        if n == 0 {
            return Ok(());
        }
        let payload = event_payload(self.buf.iter().take(n).map(|r| r.json.as_str()));
        let sent = Sent {
            records: n,
            payload_bytes: payload.len(),
            first: self.buf.front().map(|r| r.seq.clone()).unwrap_or_default(),
            last: self
                .buf
                .get(n - 1)
                .map(|r| r.seq.clone())
                .unwrap_or_default(),
        };
        tracing::debug!(shard = %self.shard_id, records = n, payload_bytes = sent.payload_bytes, first = %sent.first, last = %sent.last, "invoking");
        let invocation = self.inner.function.invoke(payload).await?;
        let verdict = self.verdict(&invocation.outcome, n);
        self.count_invocation(sent, &invocation.outcome, verdict);
        self.apply(verdict, n, &invocation.outcome).await
    }

    /// Discards the head records of the next batch that are past `MaximumRecordAgeInSeconds`
    /// (before invoking, as AWS does); true if there were any.
    async fn discard_expired(&mut self) -> Result<bool> {
        let Some(max_age) = self.inner.cfg.max_record_age else {
            return Ok(false);
        };
        let now = Utc::now();
        let expired = self
            .buf
            .iter()
            .take_while(|r| (now - r.arrival).to_std().is_ok_and(|age| age > max_age))
            .count()
            .min(self.next_batch_len());
        if expired == 0 {
            return Ok(false);
        }
        self.stats.counters.records_expired += expired as u64;
        self.discard(0, expired, "RecordAgeExceeded", None).await?;
        Ok(true)
    }

    /// What the outcome of an invocation with the first `n` buffered records means for them.
    fn verdict(&self, outcome: &Outcome, n: usize) -> Verdict {
        match outcome {
            Outcome::Response(body) if self.inner.cfg.report_batch_item_failures => {
                let batch: Vec<&str> = self.buf.iter().take(n).map(|r| r.seq.as_str()).collect();
                match judge_response(body, &batch) {
                    Ok(verdict) => verdict,
                    Err(BadItemFailure::MissingIdentifier) => {
                        tracing::warn!(shard = %self.shard_id, "batch item failure without itemIdentifier: whole batch failed");
                        Verdict::Failed
                    }
                    Err(BadItemFailure::NotInBatch(id)) => {
                        tracing::warn!(shard = %self.shard_id, item = %id, "batch item failure names a record not in the batch: whole batch failed");
                        Verdict::Failed
                    }
                }
            }
            Outcome::Response(_) => Verdict::Success,
            _ => Verdict::Failed,
        }
    }

    /// Counts an invocation and adds it to the shard's invocation log.
    fn count_invocation(&mut self, sent: Sent, outcome: &Outcome, verdict: Verdict) {
        let c = &mut self.stats.counters;
        c.invocations += 1;
        c.records_delivered += sent.records as u64;
        c.max_payload_bytes = c.max_payload_bytes.max(sent.payload_bytes as u64);
        match outcome {
            Outcome::Response(_) => {}
            Outcome::FunctionError { .. } => c.function_errors += 1,
            Outcome::Crashed { .. } => c.crashes += 1,
            Outcome::TimedOut { .. } => c.timeouts += 1,
            Outcome::InitError { .. } => c.init_errors += 1,
        }
        let kind = match verdict {
            Verdict::Partial(_) => "partial_failure",
            _ => outcome.kind(),
        };
        let batch = BatchRecord {
            shard_id: self.shard_id.clone(),
            first_sequence_number: sent.first,
            last_sequence_number: sent.last,
            records: sent.records,
            payload_bytes: sent.payload_bytes,
            outcome: kind,
        };
        log_batch(&mut self.batches, batch);
    }

    /// Applies the verdict on a batch of `n` records: checkpoint what is done; retry, bisect or
    /// give up on the rest.
    async fn apply(&mut self, verdict: Verdict, n: usize, outcome: &Outcome) -> Result<()> {
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
                self.failed_attempt(n - i, Some(outcome)).await?;
            }
            Verdict::Failed if self.inner.cfg.bisect_batch_on_function_error && n > 1 => {
                self.bisect(n).await;
            }
            Verdict::Failed => self.failed_attempt(n, Some(outcome)).await?,
        }
        Ok(())
    }

    /// Splits a failed batch of `n` records in two halves, retried in order (a split does not
    /// use a retry attempt).
    async fn bisect(&mut self, n: usize) {
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
        let backoff = self.inner.cfg.retry_backoff;
        self.pause(backoff).await;
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
        let discard = Discard {
            function_arn: self.inner.function.arn(),
            stream_arn: &self.inner.ctx.stream_arn,
            shard_id: &self.shard_id,
            condition,
            invoke_count: self.failures,
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let record = invocation_record(&discard, &records, outcome, Utc::now(), &request_id)?;
        self.write_on_failure(record).await?;
        let c = &mut self.stats.counters;
        c.discarded_batches += 1;
        c.records_discarded += n as u64;
        self.failures = 0;
        self.failure_head = None;
        self.commit(start + n);
        Ok(())
    }

    /// Writes an invocation record to the on-failure destination, if there is one.
    async fn write_on_failure(&mut self, record: String) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let Some(OnFailure::S3 { bucket, prefix }) = &inner.cfg.on_failure else {
            return Ok(());
        };
        let object_id = uuid::Uuid::new_v4().to_string();
        let key = object_key(prefix, &inner.uuid, &self.shard_id, Utc::now(), &object_id);
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
                    return Ok(());
                }
                Err(e) if attempt >= ON_FAILURE_ATTEMPTS => {
                    return Err(RunnerError::S3(sdk_err("PutObject", e).to_string()));
                }
                Err(e) => {
                    tracing::warn!(error = %sdk_err("PutObject", e), "on-failure write failed; retrying");
                    self.pause(ON_FAILURE_RETRY_WAIT).await;
                }
            }
        }
    }
}
