//! Time ranges and the times they are compared with: the `--from` / `--to` arguments, the hour
//! of an archive or dead-letter key, and a record's envelope `timestamp`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::ReplayError;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// A half-open time range `[from, to)`, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First millisecond in the range.
    pub from_ms: i64,
    /// First millisecond after the range.
    pub to_ms: i64,
}

impl TimeRange {
    /// The range `[from, to)`; `from` must be before `to`.
    pub fn new(from_ms: i64, to_ms: i64) -> Result<Self, ReplayError> {
        if from_ms >= to_ms {
            return Err(ReplayError::EmptyRange);
        }
        Ok(Self { from_ms, to_ms })
    }

    /// Whether `t` lies in the range.
    pub fn contains(&self, t: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&t)
    }

    /// Whether objects of the key hour starting at `hour_ms` can hold records of the range,
    /// counting records that reached the stream up to `late_ms` after their timestamp: the hour
    /// overlaps `[from, to + late)`.
    pub fn wants_hour(&self, hour_ms: i64, late_ms: i64) -> bool {
        hour_ms.saturating_add(HOUR_MS) > self.from_ms
            && hour_ms < self.to_ms.saturating_add(late_ms)
    }

    /// The range as RFC 3339, for messages and the state file.
    pub fn describe(&self) -> String {
        format!("{}..{}", format_ms(self.from_ms), format_ms(self.to_ms))
    }
}

/// Epoch milliseconds as RFC 3339 with milliseconds (UTC).
pub fn format_ms(ms: i64) -> String {
    authtrail_core::envelope::format_timestamp(ms)
}

/// Reads a time argument: RFC 3339 (`2025-02-01T00:00:00Z`, any offset), a date and time
/// without offset (UTC), a date (`2025-02-01`, midnight UTC) or epoch milliseconds.
pub fn parse_time(arg: &'static str, value: &str) -> Result<i64, ReplayError> {
    let bad = || ReplayError::Time {
        arg,
        value: value.to_string(),
    };
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map_err(|_| bad());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t).timestamp_millis())
        .ok_or_else(bad)
}

/// The start of the hour of an hour-partitioned key (`.../yyyy/MM/dd/HH/name`: the four
/// folders holding the object), epoch milliseconds; `None` when the key has no such folders.
pub fn key_hour(key: &str) -> Option<i64> {
    let mut parts = key.rsplit('/').skip(1);
    let hour: u32 = number(parts.next()?, 2)?;
    let day: u32 = number(parts.next()?, 2)?;
    let month: u32 = number(parts.next()?, 2)?;
    let year: i32 = number(parts.next()?, 4)?;
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, 0, 0)?;
    Some(Utc.from_utc_datetime(&t).timestamp_millis())
}

fn number<T: std::str::FromStr>(s: &str, digits: usize) -> Option<T> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A record's top-level `timestamp`, epoch milliseconds: the Contract 1 envelope's RFC 3339
/// string, or a number of epoch milliseconds (other producers). `None` when the record is not
/// a JSON object or has no readable `timestamp`.
pub fn record_time(data: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Stamped {
        timestamp: Option<Value>,
    }
    let stamped: Stamped = serde_json::from_slice(data).ok()?;
    value_time(stamped.timestamp.as_ref()?)
}

/// A time given as an RFC 3339 string or as epoch milliseconds.
pub fn value_time(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const FEB1: i64 = 1_738_368_000_000; // 2025-02-01T00:00:00Z

    #[test]
    fn times_are_read_as_rfc3339_dates_or_epoch_milliseconds() {
        assert_eq!(parse_time("--from", "2025-02-01T00:00:00Z").unwrap(), FEB1);
        assert_eq!(
            parse_time("--from", "2025-02-01T01:00:00+01:00").unwrap(),
            FEB1
        );
        assert_eq!(parse_time("--from", "2025-02-01").unwrap(), FEB1);
        assert_eq!(parse_time("--from", "2025-02-01T00:00").unwrap(), FEB1);
        assert_eq!(parse_time("--from", &FEB1.to_string()).unwrap(), FEB1);
        let e = parse_time("--to", "yesterday").unwrap_err().to_string();
        assert!(e.starts_with("--to: \"yesterday\" is not a time"), "{e}");
    }

    #[test]
    fn a_range_must_not_be_empty_and_is_half_open() {
        assert!(TimeRange::new(FEB1, FEB1).is_err());
        let r = TimeRange::new(FEB1, FEB1 + HOUR_MS).unwrap();
        assert!(r.contains(FEB1) && r.contains(FEB1 + HOUR_MS - 1));
        assert!(!r.contains(FEB1 + HOUR_MS) && !r.contains(FEB1 - 1));
    }

    #[test]
    fn key_hours_overlapping_the_range_or_its_late_arrival_window_are_wanted() {
        let r = TimeRange::new(FEB1 + 30 * 60_000, FEB1 + 2 * HOUR_MS).unwrap();
        assert!(!r.wants_hour(FEB1 - HOUR_MS, 0));
        assert!(r.wants_hour(FEB1, 0), "the hour holding --from");
        assert!(r.wants_hour(FEB1 + HOUR_MS, 0));
        assert!(!r.wants_hour(FEB1 + 2 * HOUR_MS, 0), "--to is exclusive");
        assert!(r.wants_hour(FEB1 + 2 * HOUR_MS, HOUR_MS), "late arrivals");
        assert!(!r.wants_hour(FEB1 + 3 * HOUR_MS, HOUR_MS));
    }

    #[test]
    fn the_hour_of_a_key_is_read_from_the_four_folders_holding_it() {
        assert_eq!(
            key_hour("raw/2025/02/01/00/s-shardId-000-49.jsonl.gz"),
            Some(FEB1)
        );
        assert_eq!(
            key_hour("a/b/dlq/2025/02/01/05/x.json"),
            Some(FEB1 + 5 * HOUR_MS)
        );
        assert_eq!(key_hour("raw/2025/02/01/x.jsonl"), None);
        assert_eq!(key_hour("raw/2025/13/01/00/x.jsonl"), None);
        assert_eq!(key_hour("x.jsonl"), None);
    }

    #[test]
    fn a_record_time_is_its_envelope_timestamp_string_or_epoch_number() {
        assert_eq!(
            record_time(br#"{"timestamp":"2025-02-01T00:00:00.000Z","event":{}}"#),
            Some(FEB1)
        );
        assert_eq!(
            record_time(format!(r#"{{"timestamp":{FEB1}}}"#).as_bytes()),
            Some(FEB1)
        );
        assert_eq!(record_time(br#"{"time":1}"#), None);
        assert_eq!(record_time(br#"{"timestamp":"soon"}"#), None);
        assert_eq!(record_time(b"not json"), None);
    }
}
