//! Contract 1: the stream record envelope
//! `{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{...}}` + `\n`.
//!
//! The producer writes it with [`Envelope`]; readers find its members by the names in
//! [`fields`] and its event kinds by [`EventKind`].

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

/// The member names of an envelope, in the order they are written.
pub mod fields {
    /// The event's time, UTC ISO-8601 with milliseconds and `Z`.
    pub const TIMESTAMP: &str = "timestamp";
    /// `user-event` or `admin-event`.
    pub const EVENT_TYPE: &str = "eventType";
    /// The (redacted) Keycloak event.
    pub const EVENT: &str = "event";
    /// `true` when parts of an oversized event were replaced by truncation markers; absent
    /// otherwise.
    pub const TRUNCATED: &str = "truncated";
}

/// The kind of MPAS event an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// A Keycloak user event (`GET .../events`): `user-event`.
    #[serde(rename = "user-event")]
    User,
    /// A Keycloak admin event (`GET .../admin-events`): `admin-event`.
    #[serde(rename = "admin-event")]
    Admin,
}

impl EventKind {
    /// The `eventType` of user events.
    pub const USER_EVENT: &'static str = "user-event";
    /// The `eventType` of admin events.
    pub const ADMIN_EVENT: &'static str = "admin-event";

    /// The `eventType` name of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::User => Self::USER_EVENT,
            EventKind::Admin => Self::ADMIN_EVENT,
        }
    }

    /// The kind named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            Self::USER_EVENT => Some(EventKind::User),
            Self::ADMIN_EVENT => Some(EventKind::Admin),
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

/// One envelope, borrowing the (already redacted) event. Serializes its members in the
/// documented order: `timestamp`, `eventType`, `event`, then `truncated` only when set.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a> {
    /// The event's time as [`format_timestamp`] writes it.
    pub timestamp: Cow<'a, str>,
    /// The event's kind.
    #[serde(rename = "eventType")]
    pub event_type: EventKind,
    /// The event itself.
    pub event: &'a Value,
    /// Whether parts of the event were replaced to fit a record (written only when `true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl<'a> Envelope<'a> {
    /// Builds the envelope of an event, taking `timestamp` from its `time` field (epoch ms;
    /// the epoch when absent).
    pub fn new(event_type: EventKind, event: &'a Value) -> Self {
        let time = event.get("time").and_then(Value::as_i64).unwrap_or(0);
        Self::with_timestamp(format_timestamp(time), event_type, event)
    }

    /// Builds an envelope with a timestamp already formatted by [`format_timestamp`].
    pub fn with_timestamp(
        timestamp: impl Into<Cow<'a, str>>,
        event_type: EventKind,
        event: &'a Value,
    ) -> Self {
        Self {
            timestamp: timestamp.into(),
            event_type,
            event,
            truncated: false,
        }
    }

    /// The same envelope, marked as truncated or not.
    pub fn truncated(mut self, truncated: bool) -> Self {
        self.truncated = truncated;
        self
    }

    /// Appends the record bytes (compact JSON and `\n`) to `out`. Serializing strings and a
    /// `Value` cannot fail; if it ever did, `out` is left as it was (an empty record is caught
    /// downstream as a poison record).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        } else {
            out.truncate(start);
        }
    }

    /// The record bytes: compact JSON terminated by `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_line(&mut out);
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
        assert_eq!(EventKind::User.as_str(), EventKind::USER_EVENT);
        assert_eq!(EventKind::Admin.as_str(), "admin-event");
    }

    #[test]
    fn truncated_envelope_ends_with_the_flag_and_an_untruncated_one_omits_it() {
        let event = json!({"id": "a1", "time": 1_739_388_470_156_i64, "representation": "<truncated: 9 bytes>"});
        let ts = format_timestamp(1_739_388_470_156);
        let line = Envelope::with_timestamp(ts.as_str(), EventKind::Admin, &event)
            .truncated(true)
            .to_line();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"admin-event\",\"event\":{\"id\":\"a1\",\"time\":1739388470156,\"representation\":\"<truncated: 9 bytes>\"},\"truncated\":true}\n"
        );
        let plain = Envelope::with_timestamp(ts, EventKind::Admin, &event).to_line();
        assert!(!String::from_utf8(plain).unwrap().contains("truncated\""));
    }

    #[test]
    fn write_line_appends_after_what_is_already_there() {
        let event = json!({"time": 0});
        let mut out = b"x".to_vec();
        Envelope::new(EventKind::User, &event).write_line(&mut out);
        assert_eq!(
            out,
            b"x{\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"eventType\":\"user-event\",\"event\":{\"time\":0}}\n"
        );
    }

    #[test]
    fn field_names_are_the_documented_ones_in_order() {
        let event = json!({});
        let v =
            serde_json::to_value(Envelope::new(EventKind::User, &event).truncated(true)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                fields::TIMESTAMP,
                fields::EVENT_TYPE,
                fields::EVENT,
                fields::TRUNCATED
            ]
        );
    }
}
