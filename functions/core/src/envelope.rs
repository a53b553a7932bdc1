//! Contract 1: the stream record envelope
//! `{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{...}}` + `\n`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

/// The kind of MPAS event an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    #[serde(rename = "user-event")]
    User,
    #[serde(rename = "admin-event")]
    Admin,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::User => "user-event",
            EventKind::Admin => "admin-event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user-event" => Some(EventKind::User),
            "admin-event" => Some(EventKind::Admin),
            _ => None,
        }
    }
}

/// Epoch milliseconds as UTC ISO-8601 with milliseconds and `Z`. Out-of-range values (which no
/// real event has) are clamped to the epoch rather than panicking.
pub fn format_timestamp(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One envelope, borrowing the (already redacted) event.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub timestamp: String,
    #[serde(rename = "eventType")]
    pub event_type: EventKind,
    pub event: &'a Value,
}

impl<'a> Envelope<'a> {
    /// Builds the envelope of an event, taking `timestamp` from its `time` field (epoch ms).
    pub fn new(event_type: EventKind, event: &'a Value) -> Self {
        let time = event.get("time").and_then(Value::as_i64).unwrap_or(0);
        Self {
            timestamp: format_timestamp(time),
            event_type,
            event,
        }
    }

    /// The record bytes: compact JSON terminated by `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        // Serializing a struct of strings and a Value cannot fail; an empty line would be
        // caught downstream as a poison record.
        if serde_json::to_writer(&mut out, self).is_ok() {
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamp_is_utc_iso8601_with_milliseconds_and_z() {
        assert_eq!(
            format_timestamp(1_739_388_470_156),
            "2025-02-12T19:27:50.156Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn envelope_line_matches_the_documented_shape_and_keeps_field_order() {
        let event =
            json!({"id": "e1", "time": 1_739_388_470_156_i64, "type": "LOGIN", "newField": 1});
        let line = Envelope::new(EventKind::User, &event).to_line();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"user-event\",\"event\":{\"id\":\"e1\",\"time\":1739388470156,\"type\":\"LOGIN\",\"newField\":1}}\n"
        );
    }

    #[test]
    fn event_kinds_round_trip_their_names() {
        for k in [EventKind::User, EventKind::Admin] {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("other"), None);
    }
}
