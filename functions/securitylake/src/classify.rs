//! What the OCSF mapping needs to know about a record before it maps it: its kind, primary event
//! type, event time and id. The names follow the forwarder's classification (its README lists
//! them), read here from the parsed record:
//!
//! - Contract 1 envelope, `eventType: user-event`: the event's `type` (`LOGIN_ERROR`).
//! - Contract 1 envelope, `eventType: admin-event`: `resourceType:operationType` (`USER:CREATE`),
//!   or the operation alone.
//! - Foxpass-style records (string `service` and `method`): `service:method` (`ldap:bind`).
//! - Any other JSON object: the first string among its top-level `type`, `eventType`,
//!   `eventName`, `event_type`, or `unknown`.
//!
//! Time: the envelope's `timestamp`, else the event's `time`; for other records `timestamp`,
//! `time` or `@timestamp`; numbers are epoch seconds or milliseconds (past 10^11 they cannot be
//! seconds), strings RFC 3339; the arrival time when none of them reads.

use authtrail_normalize::Classification;
pub use authtrail_normalize::Kind;
use serde_json::Value;

/// The classification of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Its kind.
    pub kind: Kind,
    /// Its primary event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`, `unknown`).
    pub event_type: String,
    /// Event time, epoch milliseconds.
    pub time_ms: i64,
    /// The event's own id (`event.id`, or a top-level `id`), when it has a short one.
    pub id: Option<String>,
}

impl Classified {
    /// The classification as the OCSF mapping takes it.
    pub fn as_classification(&self) -> Classification<'_> {
        Classification {
            kind: self.kind,
            event_type: &self.event_type,
            time_ms: self.time_ms,
            id: self.id.as_deref(),
        }
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// Epoch milliseconds of a time value: a number of seconds or milliseconds, or an RFC 3339
/// string.
pub fn time_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            let ms = if f.abs() >= 1e11 { f } else { f * 1000.0 };
            (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

fn first_time(v: &Value, keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| v.get(*k).and_then(time_of))
}

fn short_id(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_string)
}

/// Classifies a record (a JSON object); `arrival_ms` is the time used when the record has none.
pub fn classify(record: &Value, arrival_ms: i64) -> Classified {
    let event = record.get("event").filter(|e| e.is_object());
    match (str_of(record, "eventType"), event) {
        (Some("user-event"), Some(e)) => Classified {
            kind: Kind::UserEvent,
            event_type: str_of(e, "type").unwrap_or("UNKNOWN").to_string(),
            time_ms: first_time(record, &["timestamp"])
                .or_else(|| first_time(e, &["time"]))
                .unwrap_or(arrival_ms),
            id: short_id(e.get("id")),
        },
        (Some("admin-event"), Some(e)) => {
            let op = str_of(e, "operationType").unwrap_or("UNKNOWN");
            Classified {
                kind: Kind::AdminEvent,
                event_type: match str_of(e, "resourceType") {
                    Some(resource) => format!("{resource}:{op}"),
                    None => op.to_string(),
                },
                time_ms: first_time(record, &["timestamp"])
                    .or_else(|| first_time(e, &["time"]))
                    .unwrap_or(arrival_ms),
                id: short_id(e.get("id")),
            }
        }
        _ => {
            let event_type = match (str_of(record, "service"), str_of(record, "method")) {
                (Some(service), Some(method)) => format!("{service}:{method}"),
                _ => ["type", "eventType", "eventName", "event_type"]
                    .iter()
                    .find_map(|k| str_of(record, k))
                    .unwrap_or("unknown")
                    .to_string(),
            };
            Classified {
                kind: Kind::Other,
                event_type,
                time_ms: first_time(record, &["timestamp", "time", "@timestamp"])
                    .unwrap_or(arrival_ms),
                id: short_id(record.get("id")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_are_classified_by_their_event_type_and_timestamp() {
        let user = json!({"timestamp": "2025-02-12T19:27:50.156Z", "eventType": "user-event",
            "event": {"id": "e1", "time": 1, "type": "LOGIN_ERROR"}});
        let c = classify(&user, 7);
        assert_eq!(c.kind, Kind::UserEvent);
        assert_eq!(c.event_type, "LOGIN_ERROR");
        assert_eq!(c.time_ms, 1739388470156);
        assert_eq!(c.id.as_deref(), Some("e1"));
        let admin = json!({"eventType": "admin-event",
            "event": {"time": 1739388470156i64, "operationType": "CREATE", "resourceType": "USER"}});
        let c = classify(&admin, 7);
        assert_eq!(
            (c.kind, c.event_type.as_str()),
            (Kind::AdminEvent, "USER:CREATE")
        );
        assert_eq!(c.time_ms, 1739388470156);
        assert_eq!(c.id, None);
    }

    #[test]
    fn other_records_use_service_and_method_or_a_type_and_fall_back_to_arrival_time() {
        let foxpass = json!({"service": "ldap", "method": "bind", "timestamp": 1739388470});
        let c = classify(&foxpass, 7);
        assert_eq!((c.kind, c.event_type.as_str()), (Kind::Other, "ldap:bind"));
        assert_eq!(c.time_ms, 1739388470000);
        let blitz = json!({"type": "login_failed", "id": "b1"});
        let c = classify(&blitz, 7);
        assert_eq!(c.event_type, "login_failed");
        assert_eq!(c.time_ms, 7);
        assert_eq!(classify(&json!({"x": 1}), 7).event_type, "unknown");
    }
}
