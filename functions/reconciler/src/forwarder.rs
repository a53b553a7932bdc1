//! The forwarder's side: its tally lines (core's [`ForwarderTally`], one per Kinesis
//! invocation) read back from its CloudWatch Logs group for a span of time ([`LogsSource`];
//! [`MemoryTallies`] in tests), then merged per minute ([`ForwarderView`]).
//!
//! A line repeated exactly (same shard, first and last sequence number: an invocation whose
//! response Lambda never got, retried with the same batch) counts once. A line that overlaps
//! another in part would count some records twice: the minutes it touches are marked, and the
//! forwarder's figures for windows containing them are unknown rather than wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use authtrail_core::seqnum;
use authtrail_core::tally::line::{ForwarderMinute, ForwarderTally, TALLY_LINE_MARKER};

use crate::ReconcileError;
use crate::store::Requests;

/// Where the forwarder's tally lines are read from.
pub trait TallySource: Send + Sync {
    /// The lines logged in `[from_ms, to_ms]`.
    fn read(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<ForwarderTally>, ReconcileError>> + Send;
}

/// The forwarder's CloudWatch Logs group (`FilterLogEvents` with the term `authtrailTally`).
pub struct LogsSource {
    client: aws_sdk_cloudwatchlogs::Client,
    group: String,
    requests: Arc<Requests>,
}

impl LogsSource {
    /// Reads `group` with `client`, counting requests into `requests`.
    pub fn new(
        client: aws_sdk_cloudwatchlogs::Client,
        group: &str,
        requests: Arc<Requests>,
    ) -> Self {
        Self {
            client,
            group: group.to_string(),
            requests,
        }
    }
}

impl TallySource for LogsSource {
    async fn read(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ForwarderTally>, ReconcileError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            Requests::count(&self.requests.logs_filter);
            let page = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .start_time(from_ms)
                .end_time(to_ms)
                .filter_pattern(TALLY_LINE_MARKER)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| ReconcileError::Logs {
                    group: self.group.clone(),
                    detail: aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string(),
                })?;
            out.extend(
                page.events()
                    .iter()
                    .filter_map(|e| e.message())
                    .filter_map(ForwarderTally::from_log_message),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

/// Log messages in memory with their timestamps, for tests.
#[derive(Debug, Default)]
pub struct MemoryTallies {
    /// `(timestamp ms, message)`.
    pub messages: Mutex<Vec<(i64, String)>>,
}

impl MemoryTallies {
    /// Logs `message` at `at_ms`.
    pub fn log(&self, at_ms: i64, message: impl Into<String>) {
        if let Ok(mut m) = self.messages.lock() {
            m.push((at_ms, message.into()));
        }
    }
}

impl TallySource for MemoryTallies {
    async fn read(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ForwarderTally>, ReconcileError> {
        let m = self.messages.lock().map_err(|_| ReconcileError::Logs {
            group: "memory".into(),
            detail: "poisoned".into(),
        })?;
        Ok(m.iter()
            .filter(|(t, _)| (from_ms..=to_ms).contains(t))
            .filter_map(|(_, msg)| ForwarderTally::from_log_message(msg))
            .collect())
    }
}

/// The forwarder's tallies of a span, merged per minute.
#[derive(Debug, Default)]
pub struct ForwarderView {
    /// Per minute.
    pub minutes: BTreeMap<i64, ForwarderMinute>,
    /// Lines merged.
    pub lines: u64,
    /// Lines dropped as exact repeats.
    pub repeated: u64,
    /// Lines that overlapped another in part.
    pub overlapping: u64,
    /// Shards seen.
    pub shards: u64,
    /// Minutes touched by overlapping lines.
    pub overlap_minutes: BTreeSet<i64>,
}

impl ForwarderView {
    /// Merges `lines`, shard by shard in sequence order.
    pub fn build(lines: Vec<ForwarderTally>) -> Self {
        let mut by_shard: BTreeMap<(String, String), Vec<ForwarderTally>> = BTreeMap::new();
        for l in lines {
            by_shard
                .entry((l.stream.clone(), l.shard.clone()))
                .or_default()
                .push(l);
        }
        let mut view = ForwarderView {
            shards: by_shard.len() as u64,
            ..ForwarderView::default()
        };
        for (_, mut shard_lines) in by_shard {
            shard_lines.sort_by(|a, b| {
                seqnum::compare(&a.first_seq, &b.first_seq)
                    .then_with(|| seqnum::compare(&a.last_seq, &b.last_seq))
            });
            let mut prev: Option<(String, String)> = None;
            let mut max_last: Option<String> = None;
            for l in shard_lines {
                if prev.as_ref() == Some(&(l.first_seq.clone(), l.last_seq.clone())) {
                    view.repeated += 1;
                    continue;
                }
                let overlaps = max_last
                    .as_ref()
                    .is_some_and(|m| seqnum::compare(&l.first_seq, m).is_le());
                if overlaps {
                    view.overlapping += 1;
                    view.overlap_minutes.extend(l.minutes.keys().copied());
                }
                if max_last
                    .as_ref()
                    .is_none_or(|m| seqnum::compare(&l.last_seq, m).is_gt())
                {
                    max_last = Some(l.last_seq.clone());
                }
                prev = Some((l.first_seq.clone(), l.last_seq.clone()));
                view.lines += 1;
                for (m, minute) in &l.minutes {
                    view.minutes.entry(*m).or_default().merge(minute);
                }
            }
        }
        view
    }

    /// The minutes `[from, to)` merged.
    pub fn window(&self, from: i64, to: i64) -> ForwarderMinute {
        let mut out = ForwarderMinute::default();
        for (_, m) in self.minutes.range(from..to) {
            out.merge(m);
        }
        out
    }

    /// Whether an overlapping line touched a minute of `[from, to)`.
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.overlap_minutes.range(from..to).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::tally::line::TALLY_VERSION;

    fn line(shard: &str, first: &str, last: &str, minute: i64, hash: u64) -> ForwarderTally {
        let mut m = ForwarderMinute::default();
        m.seen.add(hash);
        m.emitters
            .entry("siem".into())
            .or_default()
            .delivered
            .add(hash);
        ForwarderTally {
            version: TALLY_VERSION,
            stream: "s".into(),
            shard: shard.into(),
            first_seq: first.into(),
            last_seq: last.into(),
            records: 1,
            undated: 0,
            minutes: BTreeMap::from([(minute, m)]),
        }
    }

    #[test]
    fn lines_merge_per_minute_across_shards_and_exact_repeats_count_once() {
        let v = ForwarderView::build(vec![
            line("a", "1", "5", 10, 1),
            line("a", "6", "9", 11, 2),
            line("a", "1", "5", 10, 1),
            line("b", "1", "3", 10, 4),
        ]);
        assert_eq!((v.lines, v.repeated, v.overlapping, v.shards), (3, 1, 0, 2));
        let w = v.window(10, 12);
        assert_eq!(w.seen.count, 3);
        assert_eq!(w.emitters["siem"].delivered.sum, 7);
        assert!(!v.overlaps(0, 100));
    }

    #[test]
    fn a_line_overlapping_another_in_part_marks_its_minutes() {
        let v = ForwarderView::build(vec![
            line("a", "1", "5", 10, 1),
            line("a", "4", "9", 12, 2),
            line("a", "100", "120", 13, 3),
        ]);
        assert_eq!(v.overlapping, 1);
        assert!(v.overlaps(12, 13));
        assert!(!v.overlaps(10, 12));
        assert!(!v.overlaps(13, 14));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers_not_text() {
        let v = ForwarderView::build(vec![line("a", "10", "19", 1, 1), line("a", "9", "9", 1, 2)]);
        assert_eq!(v.overlapping, 0);
    }

    #[tokio::test]
    async fn memory_tallies_are_read_by_log_time_and_other_lines_are_ignored() {
        let t = MemoryTallies::default();
        t.log(5, line("a", "1", "1", 1, 1).to_line());
        t.log(6, "forwarder invocation summary");
        t.log(50, line("a", "2", "2", 1, 1).to_line());
        assert_eq!(t.read(0, 10).await.unwrap().len(), 1);
    }
}
