//! Dead letters, replayed after a fix (a token renewed, a mapping corrected).
//!
//! Objects under the prefix are read whole: an object that is one JSON object is one letter
//! (the forwarder's dead-letter format: `emitter`, `status`, `reason`, `stream`, `shardId`,
//! `sequenceNumber`, `approximateArrivalTimestamp`, `record`), any other object is JSON lines of
//! letters (the same fields, or the spool's `shard` and `arrivalMs`). A letter holds the record
//! as the emitter would have received it (filtered and redacted): it is sent as stored, only
//! formatted for the emitter, never transformed twice.
//!
//! Letters chosen: those of the emitter named by `--letters-of` (default `--emitter`; letters
//! that name no emitter are taken too). Letters of malformed records (`dataBase64`, no
//! `record`) cannot be replayed and are counted as unusable. With `--from` / `--to`, objects
//! are read when their key hour overlaps the range (plus the late-arrival window), and a letter
//! is chosen by its record's `timestamp`, else by the record's arrival in the stream.

use std::sync::Arc;

use serde_json::Value;

use super::{Item, Unit, input, lines};
use crate::time::{TimeRange, key_hour, record_time, value_time};

/// Whether the object at `key` can hold letters of `range` (every object without a range).
pub fn wants_key(key: &str, range: Option<&TimeRange>, late_ms: i64) -> bool {
    match (range, key_hour(key)) {
        (Some(r), Some(h)) => r.wants_hour(h, late_ms),
        _ => true,
    }
}

/// The letters of `text` (one letter, or JSON lines of letters).
fn letters(text: &[u8]) -> Vec<(usize, Option<Value>)> {
    match serde_json::from_slice::<Value>(text) {
        Ok(v @ Value::Object(_)) => vec![(0, Some(v))],
        _ => lines(text)
            .map(|(n, line)| {
                let v = serde_json::from_slice::<Value>(line)
                    .ok()
                    .filter(Value::is_object);
                (n, v)
            })
            .collect(),
    }
}

/// The letters of `letters_of` (and of `range`, when given) in the object `bucket`/`key` whose
/// body is `text`.
pub fn select(
    bucket: &str,
    key: &str,
    text: &[u8],
    letters_of: &str,
    range: Option<&TimeRange>,
) -> Unit {
    let mut unit = Unit {
        id: format!("s3://{bucket}/{key}"),
        ..Unit::default()
    };
    for (n, letter) in letters(text) {
        let Some(letter) = letter else {
            unit.unusable += 1;
            continue;
        };
        let str_of = |k: &str| letter.get(k).and_then(Value::as_str);
        let emitter_ok = str_of("emitter").is_none_or(|e| e == letters_of);
        let Some(record) = letter.get("record").filter(|_| emitter_ok) else {
            unit.unusable += 1;
            continue;
        };
        let Ok(mut data) = serde_json::to_vec(record) else {
            unit.unusable += 1;
            continue;
        };
        data.push(b'\n');
        let arrival = letter
            .get("arrivalMs")
            .or_else(|| letter.get("approximateArrivalTimestamp"))
            .and_then(value_time);
        if let Some(r) = range {
            let time = record_time(&data).or(arrival).or_else(|| key_hour(key));
            if !time.is_some_and(|t| r.contains(t)) {
                unit.out_of_range += 1;
                continue;
            }
        }
        let stream: Arc<str> = Arc::from(str_of("stream").unwrap_or("dlq"));
        let shard: Arc<str> = Arc::from(str_of("shardId").or(str_of("shard")).unwrap_or(key));
        let seq = str_of("sequenceNumber").unwrap_or_default();
        unit.items.push(Item {
            id: n.to_string(),
            record: input(&stream, &shard, seq, arrival.unwrap_or_default(), data),
        });
    }
    unit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::time::HOUR_MS;
    use serde_json::json;

    const FEB1: i64 = 1_738_368_000_000; // 2025-02-01T00:00:00Z

    fn letter(emitter: &str, id: &str, ts: &str) -> Value {
        json!({"emitter": emitter, "status": "401", "response": "", "reason": "rejected permanently by the emitter",
               "stream": "s", "shardId": "shardId-000", "sequenceNumber": "4901",
               "approximateArrivalTimestamp": "2025-02-01T00:10:00.000Z",
               "record": {"timestamp": ts, "eventType": "user-event", "event": {"id": id, "ipAddress": "<redacted>"}}})
    }

    #[test]
    fn a_one_letter_object_gives_its_record_as_stored() {
        let body =
            serde_json::to_vec_pretty(&letter("splunk", "e1", "2025-02-01T00:05:00.000Z")).unwrap();
        let unit = select(
            "b",
            "dlq/2025/02/01/00/s-shardId-000-4901-splunk.json",
            &body,
            "splunk",
            None,
        );
        assert_eq!(unit.items.len(), 1);
        let item = &unit.items[0];
        assert_eq!(item.id, "0");
        assert_eq!(
            item.record.data,
            b"{\"timestamp\":\"2025-02-01T00:05:00.000Z\",\"eventType\":\"user-event\",\"event\":{\"id\":\"e1\",\"ipAddress\":\"<redacted>\"}}\n"
        );
        assert_eq!(&*item.record.source.shard, "shardId-000");
        assert_eq!(item.record.source.sequence_number, "4901");
        assert_eq!(item.record.source.arrival_ms, FEB1 + 600_000);
    }

    #[test]
    fn json_lines_of_letters_are_read_line_by_line_and_other_emitters_letters_left_out() {
        let spool_line = json!({"sequenceNumber": "7", "shard": "shardId-001", "stream": "s", "arrivalMs": FEB1,
                                "eventType": "LOGIN", "status": "503", "reason": "spool retention exceeded",
                                "record": {"event": {"id": "e3"}}});
        let body = [
            letter("splunk", "e1", "2025-02-01T00:05:00.000Z").to_string(),
            letter("webhook", "e2", "2025-02-01T00:05:00.000Z").to_string(),
            spool_line.to_string(),
            json!({"emitter": "malformed", "dataBase64": "eA=="}).to_string(),
            "not a letter".to_string(),
        ]
        .join("\n");
        let unit = select("b", "dlq/x.jsonl", body.as_bytes(), "splunk", None);
        let ids: Vec<&str> = unit.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["0", "2"]);
        assert_eq!(unit.unusable, 3);
        assert_eq!(&*unit.items[1].record.source.shard, "shardId-001");
        assert_eq!(unit.items[1].record.source.arrival_ms, FEB1);
    }

    #[test]
    fn with_a_range_letters_are_chosen_by_record_timestamp_else_arrival() {
        let range = TimeRange::new(FEB1, FEB1 + HOUR_MS).unwrap();
        let mut no_ts = letter("splunk", "e4", "x");
        no_ts["record"] = json!({"service": "ldap"});
        let body = [
            letter("splunk", "in", "2025-02-01T00:05:00.000Z").to_string(),
            letter("splunk", "out", "2025-02-01T03:00:00.000Z").to_string(),
            no_ts.to_string(),
        ]
        .join("\n");
        let unit = select("b", "dlq/x.jsonl", body.as_bytes(), "splunk", Some(&range));
        let ids: Vec<&str> = unit.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["0", "2"], "the third by its arrival at 00:10");
        assert_eq!(unit.out_of_range, 1);
        assert!(wants_key("dlq/2025/02/01/00/k.json", Some(&range), 0));
        assert!(!wants_key("dlq/2025/02/01/01/k.json", Some(&range), 0));
        assert!(wants_key("dlq/2025/02/01/09/k.json", None, 0));
    }
}
