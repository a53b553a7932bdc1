//! A shard of the Kinesis stream, read directly from `--from-seq` (inclusive) to `--to-seq`
//! (inclusive; else up to the shard's current tip): what the event-source mapping's failure
//! destination gives for a skipped batch. Exact per record: records are chosen by sequence
//! number (compared as big integers), whatever their timestamp.
//!
//! Records past the stream's retention are gone from the stream: replay them from the archive.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use authtrail_core::seqnum;
use aws_sdk_kinesis::types::ShardIteratorType;

use super::{Item, Unit, input};
use crate::ReplayError;

/// Records asked for per `GetRecords` call.
const PAGE: i32 = 1000;
/// Empty pages in a row, while behind the tip, after which the shard counts as read.
const MAX_EMPTY_PAGES: u32 = 100;

/// The unit id of a shard in the resume state.
pub fn unit_id(stream: &str, shard: &str) -> String {
    format!("kinesis://{stream}/{shard}")
}

/// Whether `seq` lies in `[from, to]` (`to` absent: no upper bound).
pub fn in_range(seq: &str, from: &str, to: Option<&str>) -> bool {
    seqnum::compare(seq, from) != Ordering::Less
        && to.is_none_or(|t| seqnum::compare(seq, t) != Ordering::Greater)
}

/// Reads one shard page by page.
pub struct ShardReader {
    client: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    shard: Arc<str>,
    from: String,
    to: Option<String>,
    iterator: Option<String>,
    empty_pages: u32,
}

impl ShardReader {
    /// Starts reading `shard` of `stream` at `from` (or just after `done_through`, the state's
    /// progress, when that is further).
    pub async fn open(
        client: aws_sdk_kinesis::Client,
        stream: &str,
        shard: &str,
        from: &str,
        to: Option<&str>,
        done_through: Option<&str>,
    ) -> Result<Self, ReplayError> {
        let (kind, at) = match done_through {
            Some(t) if seqnum::compare(t, from) != Ordering::Less => {
                (ShardIteratorType::AfterSequenceNumber, t)
            }
            _ => (ShardIteratorType::AtSequenceNumber, from),
        };
        let got = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .starting_sequence_number(at)
            .send()
            .await
            .map_err(|e| ReplayError::Read {
                location: unit_id(stream, shard),
                detail: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(Self {
            client,
            stream: Arc::from(stream),
            shard: Arc::from(shard),
            from: from.to_string(),
            to: to.map(str::to_string),
            iterator: got.shard_iterator().map(str::to_string),
            empty_pages: 0,
        })
    }

    /// The next page of records in the range; `None` once the range (or the shard, or its tip)
    /// is reached.
    pub async fn next_page(&mut self) -> Result<Option<Unit>, ReplayError> {
        loop {
            let Some(iterator) = self.iterator.take() else {
                return Ok(None);
            };
            let got = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(PAGE)
                .send()
                .await
                .map_err(|e| ReplayError::Read {
                    location: unit_id(&self.stream, &self.shard),
                    detail: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
                })?;
            let at_tip = got.millis_behind_latest().is_none_or(|m| m == 0);
            let mut unit = Unit {
                id: unit_id(&self.stream, &self.shard),
                ..Unit::default()
            };
            let mut past_end = false;
            for r in got.records() {
                let seq = r.sequence_number();
                if !in_range(seq, &self.from, self.to.as_deref()) {
                    past_end |= self
                        .to
                        .as_deref()
                        .is_some_and(|t| seqnum::compare(seq, t) == Ordering::Greater);
                    unit.out_of_range += 1;
                    continue;
                }
                let arrival = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or_default();
                unit.items.push(Item {
                    id: seq.to_string(),
                    record: input(
                        &self.stream,
                        &self.shard,
                        seq,
                        arrival,
                        r.data().as_ref().to_vec(),
                    ),
                });
            }
            let empty = got.records().is_empty();
            let finished = past_end || (empty && at_tip);
            if !finished {
                self.iterator = got.next_shard_iterator().map(str::to_string);
            }
            if !empty {
                self.empty_pages = 0;
                return Ok(Some(unit));
            }
            self.empty_pages += 1;
            if self.empty_pages >= MAX_EMPTY_PAGES {
                self.iterator = None;
            }
            // GetRecords allows five calls per second per shard.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_ranges_include_both_ends_and_compare_as_big_integers() {
        let from = "49590338271490256608559692538361571095921575989136588898";
        let to = "49590338271490256608559692540925702759324208523137515618";
        assert!(in_range(from, from, Some(to)));
        assert!(in_range(to, from, Some(to)));
        assert!(!in_range(
            "49590338271490256608559692538361571095921575989136588897",
            from,
            Some(to)
        ));
        assert!(!in_range(
            "49590338271490256608559692540925702759324208523137515619",
            from,
            Some(to)
        ));
        assert!(in_range("100", "99", None), "longer is larger");
        assert!(!in_range("99", "100", None));
    }

    #[test]
    fn a_shard_is_named_by_stream_and_shard_in_the_state() {
        assert_eq!(
            unit_id("audit", "shardId-000000000001"),
            "kinesis://audit/shardId-000000000001"
        );
    }
}
