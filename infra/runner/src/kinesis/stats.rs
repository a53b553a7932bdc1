//! What a run of the mapping reports: counters per shard and in total, checkpoints, and the log
//! of invocations.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Batch records kept in [`SourceStats::batches`] (the most recent ones).
pub(super) const MAX_BATCH_LOG: usize = 10_000;

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
    /// Adds `o` to these counters (the largest payload is the larger of the two).
    pub(super) fn add(&mut self, o: &Counters) {
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
    /// [`Outcome::kind`](crate::Outcome::kind), or `partial_failure`.
    pub outcome: &'static str,
}

/// Appends `batch` to a shard's invocation log, dropping the oldest [`MAX_BATCH_LOG`] entries
/// once it holds twice that many (the run keeps the last [`MAX_BATCH_LOG`] in the end).
pub(super) fn log_batch(log: &mut Vec<BatchRecord>, batch: BatchRecord) {
    log.push(batch);
    if log.len() > 2 * MAX_BATCH_LOG {
        log.drain(..MAX_BATCH_LOG);
    }
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

impl SourceStats {
    /// Adds one shard's statistics and invocation log.
    pub(super) fn add_shard(
        &mut self,
        shard_id: String,
        shard: ShardStats,
        batches: Vec<BatchRecord>,
    ) {
        self.total.add(&shard.counters);
        self.shards.insert(shard_id, shard);
        self.batches.extend(batches);
    }

    /// Keeps only the last [`MAX_BATCH_LOG`] invocations.
    pub(super) fn trim_batch_log(&mut self) {
        if self.batches.len() > MAX_BATCH_LOG {
            let excess = self.batches.len() - MAX_BATCH_LOG;
            self.batches.drain(..excess);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> BatchRecord {
        BatchRecord {
            shard_id: "shardId-000000000000".into(),
            first_sequence_number: n.to_string(),
            last_sequence_number: n.to_string(),
            records: 1,
            payload_bytes: 100,
            outcome: "response",
        }
    }

    #[test]
    fn shard_counters_sum_into_the_total_with_the_largest_payload_kept() {
        let mut stats = SourceStats::default();
        for (shard, payload) in [("a", 700), ("b", 300)] {
            let counters = Counters {
                invocations: 2,
                records_processed: 5,
                max_payload_bytes: payload,
                ..Counters::default()
            };
            let shard_stats = ShardStats {
                counters,
                checkpoint: Some("9".into()),
            };
            stats.add_shard(shard.into(), shard_stats, vec![batch(1)]);
        }
        assert_eq!(stats.total.invocations, 4);
        assert_eq!(stats.total.records_processed, 10);
        assert_eq!(stats.total.max_payload_bytes, 700);
        assert_eq!(stats.shards.len(), 2);
        assert_eq!(stats.batches.len(), 2);
        let line = stats.to_string();
        assert!(line.starts_with("invocations=4 records_delivered=0 records_processed=10 "));
        assert!(line.ends_with(" max_payload_bytes=700 shards=2"));
    }

    #[test]
    fn batch_log_keeps_the_most_recent_invocations() {
        let mut log = Vec::new();
        for n in 0..=2 * MAX_BATCH_LOG {
            log_batch(&mut log, batch(n));
        }
        assert_eq!(log.len(), MAX_BATCH_LOG + 1);
        assert_eq!(log[0].first_sequence_number, MAX_BATCH_LOG.to_string());
        let mut stats = SourceStats {
            batches: log,
            ..SourceStats::default()
        };
        stats.trim_batch_log();
        assert_eq!(stats.batches.len(), MAX_BATCH_LOG);
        let last = stats
            .batches
            .last()
            .map(|b| b.first_sequence_number.clone());
        assert_eq!(last, Some((2 * MAX_BATCH_LOG).to_string()));
    }
}
