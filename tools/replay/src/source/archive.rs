//! The archive (Contract 2): `{prefix}yyyy/MM/dd/HH/{stream}-{shardId}-{firstSequenceNumber}.jsonl[.gz]`,
//! the records of a batch byte for byte, one per line.
//!
//! Choosing the records of `[--from, --to)`:
//! - objects are read when their key hour overlaps `[from, to + late)`: an object's hour is the
//!   arrival hour of its first record, and a record reaches the stream after its event happened,
//!   so records of the range sit in the hours from `from`'s on, and late arrivals (events that
//!   reached the stream up to `--late-arrival` after their timestamp) in the hours after `to`;
//! - a record is chosen when its envelope `timestamp` (or a top-level `timestamp` in epoch
//!   milliseconds) lies in `[from, to)`;
//! - a record without a readable `timestamp` is chosen by its object's hour: when the hour
//!   starts within `[from, to)`. Consecutive hour-aligned ranges thus take each such record
//!   once.

use std::sync::Arc;

use super::{Item, Unit, input, lines};
use crate::time::{TimeRange, key_hour, record_time};

/// Whether the object at `key` can hold records of `range` (see the module documentation).
/// Keys without an hour are read (their records are chosen by timestamp alone).
pub fn wants_key(key: &str, range: &TimeRange, late_ms: i64) -> bool {
    key_hour(key).is_none_or(|h| range.wants_hour(h, late_ms))
}

/// The records of `range` in the object `bucket`/`key` whose (decompressed) body is `text`.
pub fn select(bucket: &str, key: &str, text: &[u8], range: &TimeRange) -> Unit {
    let hour = key_hour(key);
    let id = format!("s3://{bucket}/{key}");
    let stream: Arc<str> = Arc::from("archive");
    let shard: Arc<str> = Arc::from(key);
    let mut unit = Unit {
        id,
        ..Unit::default()
    };
    for (n, line) in lines(text) {
        let time = record_time(line);
        let chosen = match (time, hour) {
            (Some(t), _) => range.contains(t),
            (None, Some(h)) => range.contains(h),
            (None, None) => false,
        };
        if !chosen {
            unit.out_of_range += 1;
            continue;
        }
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line);
        data.push(b'\n');
        let arrival = time.or(hour).unwrap_or_default();
        unit.items.push(Item {
            id: n.to_string(),
            record: input(&stream, &shard, &n.to_string(), arrival, data),
        });
    }
    unit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::time::HOUR_MS;

    const FEB1: i64 = 1_738_368_000_000; // 2025-02-01T00:00:00Z

    fn rec(ts: &str, id: &str) -> String {
        format!(r#"{{"timestamp":"{ts}","eventType":"user-event","event":{{"id":"{id}"}}}}"#)
    }

    #[test]
    fn records_are_chosen_by_their_envelope_timestamp_in_the_half_open_range() {
        let range = TimeRange::new(FEB1, FEB1 + HOUR_MS).unwrap();
        let body = [
            rec("2025-01-31T23:59:59.999Z", "before"),
            rec("2025-02-01T00:00:00.000Z", "first"),
            rec("2025-02-01T00:59:59.999Z", "last"),
            rec("2025-02-01T01:00:00.000Z", "after"),
        ]
        .join("\n");
        let unit = select(
            "b",
            "raw/2025/02/01/00/s-shardId-0-1.jsonl",
            body.as_bytes(),
            &range,
        );
        assert_eq!(unit.id, "s3://b/raw/2025/02/01/00/s-shardId-0-1.jsonl");
        let ids: Vec<&str> = unit.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["1", "2"]);
        assert_eq!(unit.out_of_range, 2);
        let data = &unit.items[0].record.data;
        assert_eq!(
            data,
            &format!("{}\n", rec("2025-02-01T00:00:00.000Z", "first")).into_bytes()
        );
        assert_eq!(unit.items[0].record.source.arrival_ms, FEB1);
    }

    #[test]
    fn records_without_a_timestamp_are_chosen_by_their_object_hour() {
        let range = TimeRange::new(FEB1, FEB1 + HOUR_MS).unwrap();
        let body = br#"{"service":"ldap","method":"bind"}"#;
        let inside = select("b", "raw/2025/02/01/00/k.jsonl", body, &range);
        assert_eq!(inside.items.len(), 1);
        let after = select("b", "raw/2025/02/01/01/k.jsonl", body, &range);
        assert_eq!((after.items.len(), after.out_of_range), (0, 1));
        let no_hour = select("b", "elsewhere/k.jsonl", body, &range);
        assert_eq!(no_hour.items.len(), 0);
    }

    #[test]
    fn objects_are_read_for_the_range_hours_and_the_late_arrival_window() {
        let range = TimeRange::new(FEB1, FEB1 + HOUR_MS).unwrap();
        assert!(!wants_key("raw/2025/01/31/23/k.jsonl.gz", &range, HOUR_MS));
        assert!(wants_key("raw/2025/02/01/00/k.jsonl.gz", &range, HOUR_MS));
        assert!(wants_key("raw/2025/02/01/01/k.jsonl.gz", &range, HOUR_MS));
        assert!(!wants_key("raw/2025/02/01/01/k.jsonl.gz", &range, 0));
        assert!(!wants_key("raw/2025/02/01/02/k.jsonl.gz", &range, HOUR_MS));
        assert!(wants_key("raw/other.jsonl", &range, 0));
    }
}
