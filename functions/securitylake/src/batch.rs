//! The records of one shard turned into sinks: one per (OCSF class, event day), each a run of
//! mapped rows in sequence order, plus the poison records (not JSON objects). Pure and
//! synchronous: no I/O here.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use authtrail_core::kinesis::EventRecord;
use authtrail_core::seqnum;
use bytes::Bytes;
use chrono::{DateTime, Datelike};
use serde::Serialize;
use serde_json::Value;

use crate::error::SecurityLakeError;
use crate::ocsf::map_record;
use crate::schema::OcsfClass;

/// Where a run of items is stored: the Parquet objects of one class and event day, or the
/// error objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SinkId {
    /// Rows of `class` whose event day (UTC) is `day` (`YYYYMMDD` as a number).
    Data {
        /// The OCSF class.
        class: OcsfClass,
        /// The event day, `YYYYMMDD`.
        day: u32,
    },
    /// Records that are not JSON objects.
    Errors,
}

impl fmt::Display for SinkId {
    /// The sink's name in the per-shard state object: `3002/20250212` or `errors`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkId::Data { class, day } => write!(f, "{}/{day}", class.uid()),
            SinkId::Errors => f.write_str("errors"),
        }
    }
}

/// One mapped record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// Its sequence number.
    pub seq: Cow<'a, str>,
    /// Its OCSF `time` (epoch ms).
    pub time_ms: i64,
    /// The row, fitted to its class's schema, as compact JSON text (what `arrow-json` decodes;
    /// far smaller than the parsed tree while the batch waits to be encoded).
    pub json: String,
}

/// A record that is not a UTF-8 JSON object: it goes to the error prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison<'a> {
    /// Its sequence number.
    pub seq: Cow<'a, str>,
    /// Its arrival time, epoch seconds.
    pub arrival: i64,
    /// Its partition key.
    pub partition_key: Cow<'a, str>,
    /// Why it is poison.
    pub reason: String,
    /// The raw data, still base64 as it came in the event.
    pub data_base64: Cow<'a, str>,
}

/// Something with a sequence number (what keys and marks are made of).
pub trait Sequenced {
    /// The sequence number.
    fn seq(&self) -> &str;
}

impl Sequenced for Row<'_> {
    fn seq(&self) -> &str {
        &self.seq
    }
}

impl Sequenced for Poison<'_> {
    fn seq(&self) -> &str {
        &self.seq
    }
}

/// The records of one shard, in sequence order, split into sinks.
#[derive(Debug, Default)]
pub struct ShardBatch<'a> {
    /// The stream's name.
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// Sequence numbers of all records in order.
    pub all_seqs: Vec<Cow<'a, str>>,
    /// Arrival time (epoch seconds) of the batch's first record.
    pub first_arrival: i64,
    /// The mapped rows by sink, each in sequence order.
    pub data: BTreeMap<SinkId, Vec<Row<'a>>>,
    /// The poison records in sequence order.
    pub poison: Vec<Poison<'a>>,
    /// Record bytes in (decoded).
    pub bytes_in: usize,
    /// OCSF attributes moved to `unmapped.ocsf_overflow` (see [`crate::ocsf::Mapped`]).
    pub overflow: usize,
}

/// Groups the event's records by (stream, shard), keeping the order in which groups first
/// appear. Lambda sends one shard per batch; this keeps a mixed event correct anyway.
pub fn group_by_shard<'e, 'a>(records: &'e [EventRecord<'a>]) -> Vec<Vec<&'e EventRecord<'a>>> {
    let mut groups: Vec<Vec<&EventRecord<'a>>> = Vec::new();
    for r in records {
        let found = groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|f| f.stream_name() == r.stream_name() && f.shard_id() == r.shard_id())
        });
        match found {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// `YYYYMMDD` (UTC) of an epoch millisecond, `None` out of range.
pub fn event_day(time_ms: i64) -> Option<u32> {
    let t = DateTime::from_timestamp_millis(time_ms)?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    Some(year * 10_000 + t.month() * 100 + t.day())
}

/// A record's JSON object, or why it is poison.
pub fn parse_record(data: &[u8]) -> Result<Value, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err("empty record: not a JSON object".into());
    }
    let text = std::str::from_utf8(data).map_err(|e| {
        format!(
            "not valid UTF-8: invalid byte at offset {}",
            e.valid_up_to()
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn sort_by_sequence(records: &mut [&EventRecord<'_>]) {
    let sorted = records.windows(2).all(|w| {
        seqnum::compare(
            w[0].kinesis.sequence_number.as_str(),
            w[1].kinesis.sequence_number.as_str(),
        ) != Ordering::Greater
    });
    if !sorted {
        records.sort_by(|a, b| {
            seqnum::compare(
                a.kinesis.sequence_number.as_str(),
                b.kinesis.sequence_number.as_str(),
            )
        });
    }
}

/// Builds the batch of one shard: sorts by sequence number (Lambda already delivers them in
/// order), decodes, maps and groups each record, and moves poison records aside.
pub fn build<'a>(mut records: Vec<&EventRecord<'a>>) -> Result<ShardBatch<'a>, SecurityLakeError> {
    if let Some(r) = records
        .iter()
        .find(|r| !seqnum::is_valid(r.kinesis.sequence_number.as_str()))
    {
        return Err(SecurityLakeError::InvalidSequenceNumber(
            r.kinesis.sequence_number.as_str().to_string(),
        ));
    }
    sort_by_sequence(&mut records);
    let mut batch = ShardBatch::default();
    if let Some(r) = records.first() {
        batch.stream = r.stream_name().to_string();
        batch.shard = r.shard_id().to_string();
        batch.first_arrival = r.arrival_epoch_seconds();
    }
    let mut buf = Vec::new();
    for r in records {
        let k = &r.kinesis;
        let seq = k.sequence_number.0.clone();
        batch.all_seqs.push(seq.clone());
        buf.clear();
        let parsed = match r.decode_data_into(&mut buf) {
            Ok(()) => {
                batch.bytes_in += buf.len();
                parse_record(&buf)
            }
            Err(_) => Err("data is not valid base64".to_string()),
        };
        match parsed {
            Ok(record) => {
                let arrival_ms = r.arrival_epoch_seconds().saturating_mul(1000);
                let mapped = map_record(&record, arrival_ms);
                batch.overflow += mapped.overflow;
                let day = event_day(mapped.time_ms)
                    .or_else(|| event_day(arrival_ms))
                    .unwrap_or(19_700_101);
                let sink = SinkId::Data {
                    class: mapped.class,
                    day,
                };
                batch.data.entry(sink).or_default().push(Row {
                    seq,
                    time_ms: mapped.time_ms,
                    json: Value::Object(mapped.row).to_string(),
                });
            }
            Err(reason) => batch.poison.push(Poison {
                seq,
                arrival: r.arrival_epoch_seconds(),
                partition_key: k.partition_key.0.clone(),
                reason,
                data_base64: k.data.0.clone(),
            }),
        }
    }
    Ok(batch)
}

/// The rows of `rows[range]` ordered by time (Security Lake asks for time order within an
/// object); rows of the same millisecond stay in sequence order.
pub fn time_ordered<'r>(rows: &'r [Row<'_>], range: Range<usize>) -> Vec<&'r str> {
    let mut slice: Vec<&Row<'_>> = rows.get(range).unwrap_or_default().iter().collect();
    slice.sort_by_key(|r| r.time_ms);
    slice.into_iter().map(|r| r.json.as_str()).collect()
}

/// One line of an error object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'b> {
    stream: &'b str,
    shard_id: &'b str,
    sequence_number: &'b str,
    partition_key: &'b str,
    approximate_arrival_timestamp: i64,
    reason: &'b str,
    /// The record's bytes, base64 (standard alphabet).
    data: &'b str,
}

/// The body of an error object holding `poison[range]`: one JSON line per record with the
/// reason and the raw data (the archiver's error format).
pub fn error_body(batch: &ShardBatch<'_>, range: Range<usize>) -> Result<Bytes, SecurityLakeError> {
    let mut out = Vec::new();
    for p in batch.poison.get(range).unwrap_or_default() {
        let line = ErrorLine {
            stream: &batch.stream,
            shard_id: &batch.shard,
            sequence_number: &p.seq,
            partition_key: &p.partition_key,
            approximate_arrival_timestamp: p.arrival,
            reason: &p.reason,
            data: &p.data_base64,
        };
        serde_json::to_writer(&mut out, &line).map_err(SecurityLakeError::Encode)?;
        out.push(b'\n');
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn event_days_are_utc_dates_as_numbers() {
        assert_eq!(event_day(1739388470156), Some(20250212));
        assert_eq!(event_day(0), Some(19700101));
        assert_eq!(event_day(i64::MAX), None);
    }

    #[test]
    fn records_that_are_not_json_objects_are_poison_with_a_reason() {
        assert!(parse_record(b"{\"a\":1}\n").is_ok());
        assert!(
            parse_record(b"{\n\"a\": 1\n}").is_ok(),
            "pretty JSON is a record here"
        );
        assert_eq!(
            parse_record(b"  ").unwrap_err(),
            "empty record: not a JSON object"
        );
        assert!(
            parse_record(b"{\"a\":\"\xff\"}")
                .unwrap_err()
                .contains("UTF-8")
        );
        assert_eq!(parse_record(b"[1]").unwrap_err(), "not a JSON object");
        assert!(
            parse_record(b"{\"a\":")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
    }

    #[test]
    fn sinks_are_named_by_class_uid_and_day_in_the_state_object() {
        let s = SinkId::Data {
            class: OcsfClass::Authentication,
            day: 20250212,
        };
        assert_eq!(s.to_string(), "3002/20250212");
        assert_eq!(SinkId::Errors.to_string(), "errors");
    }
}
