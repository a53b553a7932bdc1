//! Classification: a record's kind and event type names, read in the same pass that validates
//! it as one JSON object (a borrowed serde parse that keeps only the fields classification
//! reads, with no `serde_json::Value`). The names are listed in the
//! [module documentation](crate::record).

use std::borrow::Cow;

use authtrail_core::envelope::{EventKind, fields};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::scan;
use crate::ForwarderError;

/// The classification of a parsed record, independent of any transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `user-event`, `admin-event` or `other`.
    kind: &'static str,
    /// The primary event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`, `unknown`).
    event_type: Cow<'static, str>,
    /// The third name, a part of `event_type`: the operation of `USER:CREATE`, the service of
    /// `ldap:bind`.
    part: Option<(usize, usize)>,
    /// Event time, epoch milliseconds (falls back to the arrival time).
    pub time_ms: i64,
    /// The event's own id, when it has one (`event.id`, or a top-level `id`).
    pub id: Option<String>,
}

impl Classified {
    /// The record's kind: `user-event`, `admin-event` or `other`.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The primary event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`, ...).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The record's names for `include` / `exclude`: the kind, the primary event type, and for
    /// admin events with a resource type the operation, for Foxpass-style records the service.
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        let part = self
            .part
            .and_then(|(start, end)| self.event_type.get(start..end));
        [Some(self.kind), Some(self.event_type()), part]
            .into_iter()
            .flatten()
    }

    /// A user event of type `ty`.
    fn user(ty: &str) -> (&'static str, Cow<'static, str>, Option<(usize, usize)>) {
        (USER_EVENT, known_name(ty), None)
    }

    /// An admin event: `RESOURCE:OPERATION` and `OPERATION`, or only `OPERATION`.
    fn admin(
        resource: Option<&str>,
        op: &str,
    ) -> (&'static str, Cow<'static, str>, Option<(usize, usize)>) {
        match resource {
            Some(res) => {
                let ty = format!("{res}:{op}");
                let part = (res.len() + 1, ty.len());
                (ADMIN_EVENT, Cow::Owned(ty), Some(part))
            }
            None => (ADMIN_EVENT, known_name(op), None),
        }
    }

    /// Any other record: `service:method` and `service`, or its type.
    fn other(
        service_method: Option<(&str, &str)>,
        ty: &str,
    ) -> (&'static str, Cow<'static, str>, Option<(usize, usize)>) {
        match service_method {
            Some((service, method)) => (
                OTHER,
                Cow::Owned(format!("{service}:{method}")),
                Some((0, service.len())),
            ),
            None => (OTHER, known_name(ty), None),
        }
    }
}

/// The envelope's `eventType` of user events (core's [`EventKind`]).
const USER_EVENT: &str = EventKind::USER_EVENT;
/// The envelope's `eventType` of admin events.
const ADMIN_EVENT: &str = EventKind::ADMIN_EVENT;
const OTHER: &str = "other";

/// Frequent Keycloak event types and admin operations, sorted (binary search).
const KNOWN_NAMES: &[&str] = &[
    "ACTION",
    "CLIENT_LOGIN",
    "CLIENT_LOGIN_ERROR",
    "CODE_TO_TOKEN",
    "CODE_TO_TOKEN_ERROR",
    "CREATE",
    "DELETE",
    "IDENTITY_PROVIDER_LOGIN",
    "INTROSPECT_TOKEN",
    "LOGIN",
    "LOGIN_ERROR",
    "LOGOUT",
    "LOGOUT_ERROR",
    "REFRESH_TOKEN",
    "REFRESH_TOKEN_ERROR",
    "REGISTER",
    "REGISTER_ERROR",
    "SEND_RESET_PASSWORD",
    "TOKEN_EXCHANGE",
    "UNKNOWN",
    "UPDATE",
    "UPDATE_PASSWORD",
    "UPDATE_PROFILE",
    "USER_INFO_REQUEST",
    "unknown",
];

/// A name without an allocation when it is one of the frequent Keycloak event types or admin
/// operations.
fn known_name(name: &str) -> Cow<'static, str> {
    match KNOWN_NAMES.binary_search(&name) {
        Ok(i) => KNOWN_NAMES
            .get(i)
            .map_or_else(|| Cow::Owned(name.to_string()), |k| Cow::Borrowed(*k)),
        Err(_) => Cow::Owned(name.to_string()),
    }
}

// The borrowed parse: validates a record exactly as `serde_json::Value` would (same parser,
// numbers and strings fully read) but keeps only the fields classification reads, without
// allocating a map per object.

/// Any JSON value, validated and dropped.
struct Any;

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_str<E>(self, _: &str) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_unit<E>(self) -> Result<Any, E> {
        Ok(Any)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
        while seq.next_element::<Any>()?.is_some() {}
        Ok(Any)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any, A::Error> {
        while map.next_key::<Any>()?.is_some() {
            map.next_value::<Any>()?;
        }
        Ok(Any)
    }
}

/// A string borrowed from the record when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field value as classification reads it.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Other,
}

impl<'a> Scalar<'a> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        AnyVisitor.visit_seq(seq).map(|_| Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        AnyVisitor.visit_map(map).map(|_| Scalar::Other)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The fields of the envelope's `event` object that classification reads (last key wins, as in
/// a `serde_json::Value`).
#[derive(Default)]
struct EventFields<'a> {
    ty: Option<Scalar<'a>>,
    id: Option<Scalar<'a>>,
    time: Option<Scalar<'a>>,
    operation_type: Option<Scalar<'a>>,
    resource_type: Option<Scalar<'a>>,
}

/// `event`: an object (its fields) or any other value.
enum EventSlot<'a> {
    Object(EventFields<'a>),
    NotObject,
}

impl<'de> Deserialize<'de> for EventSlot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventSlot<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventSlot<'de>, A::Error> {
                let mut e = EventFields::default();
                while let Some(k) = map.next_key::<Text<'de>>()? {
                    let slot = match k.0.as_ref() {
                        "type" => &mut e.ty,
                        "id" => &mut e.id,
                        "time" => &mut e.time,
                        "operationType" => &mut e.operation_type,
                        "resourceType" => &mut e.resource_type,
                        _ => {
                            map.next_value::<Any>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Scalar<'de>>()?);
                }
                Ok(EventSlot::Object(e))
            }
            fn visit_bool<E>(self, _: bool) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_unit<E>(self) -> Result<EventSlot<'de>, E> {
                Ok(EventSlot::NotObject)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EventSlot<'de>, A::Error> {
                AnyVisitor.visit_seq(seq).map(|_| EventSlot::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// The top-level fields classification reads.
#[derive(Default)]
struct TopFields<'a> {
    event_type: Option<Scalar<'a>>,
    event: Option<EventSlot<'a>>,
    timestamp: Option<Scalar<'a>>,
    time: Option<Scalar<'a>>,
    at_timestamp: Option<Scalar<'a>>,
    service: Option<Scalar<'a>>,
    method: Option<Scalar<'a>>,
    ty: Option<Scalar<'a>>,
    event_name: Option<Scalar<'a>>,
    event_type_snake: Option<Scalar<'a>>,
    id: Option<Scalar<'a>>,
}

impl<'de> Deserialize<'de> for TopFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopFields<'de>, A::Error> {
                let mut t = TopFields::default();
                while let Some(k) = map.next_key::<Text<'de>>()? {
                    let slot = match k.0.as_ref() {
                        fields::EVENT => {
                            t.event = Some(map.next_value::<EventSlot<'de>>()?);
                            continue;
                        }
                        fields::EVENT_TYPE => &mut t.event_type,
                        fields::TIMESTAMP => &mut t.timestamp,
                        "time" => &mut t.time,
                        "@timestamp" => &mut t.at_timestamp,
                        "service" => &mut t.service,
                        "method" => &mut t.method,
                        "type" => &mut t.ty,
                        "eventName" => &mut t.event_name,
                        "event_type" => &mut t.event_type_snake,
                        "id" => &mut t.id,
                        _ => {
                            map.next_value::<Any>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Scalar<'de>>()?);
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

fn scalar_str<'s>(v: &'s Option<Scalar<'_>>) -> Option<&'s str> {
    v.as_ref().and_then(Scalar::as_str)
}

/// Reads a time value: epoch seconds or milliseconds (numbers; anything past 10^11 cannot be
/// seconds, year 5138) or an RFC 3339 string.
fn scalar_time(v: &Option<Scalar<'_>>) -> Option<i64> {
    match v.as_ref()? {
        Scalar::Num(f) => Some(if f.abs() >= 1e11 {
            *f as i64
        } else {
            (f * 1000.0) as i64
        }),
        Scalar::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
            // Foxpass documents its `timestamp` as `YYYY-MM-DD HH:MM:SS.sss` (UTC).
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc().timestamp_millis())
            }),
        Scalar::Other => None,
    }
}

/// Parses and classifies a record's bytes in one pass without building a `serde_json::Value`
/// (see the [module documentation](crate::record) for the names): the same verdicts as
/// [`super::parse`] (UTF-8, valid JSON, an object). Returns the record's text with the
/// classification.
pub fn parse_classify(data: &[u8], arrival_ms: i64) -> Result<(&str, Classified), ForwarderError> {
    let text = std::str::from_utf8(data).map_err(ForwarderError::RecordNotUtf8)?;
    if text.as_bytes().get(scan::first_value(text)) != Some(&b'{') {
        return Err(match serde_json::from_str::<Any>(text) {
            Ok(_) => ForwarderError::RecordNotAnObject,
            Err(e) => ForwarderError::RecordNotJson(e),
        });
    }
    let t: TopFields<'_> = serde_json::from_str(text).map_err(ForwarderError::RecordNotJson)?;
    let event = match &t.event {
        Some(EventSlot::Object(e)) => Some(e),
        _ => None,
    };
    let ((kind, event_type, part), id, time) = match (scalar_str(&t.event_type), event) {
        (Some(USER_EVENT), Some(e)) => (
            Classified::user(scalar_str(&e.ty).unwrap_or("UNKNOWN")),
            scalar_str(&e.id),
            scalar_time(&t.timestamp).or_else(|| scalar_time(&e.time)),
        ),
        (Some(ADMIN_EVENT), Some(e)) => (
            Classified::admin(
                scalar_str(&e.resource_type),
                scalar_str(&e.operation_type).unwrap_or("UNKNOWN"),
            ),
            scalar_str(&e.id),
            scalar_time(&t.timestamp).or_else(|| scalar_time(&e.time)),
        ),
        _ => {
            let ty = [&t.ty, &t.event_type, &t.event_name, &t.event_type_snake]
                .into_iter()
                .find_map(scalar_str)
                .unwrap_or("unknown");
            (
                Classified::other(scalar_str(&t.service).zip(scalar_str(&t.method)), ty),
                scalar_str(&t.id),
                [&t.timestamp, &t.time, &t.at_timestamp]
                    .into_iter()
                    .find_map(scalar_time),
            )
        }
    };
    let class = Classified {
        kind,
        event_type,
        part,
        time_ms: time.unwrap_or(arrival_ms),
        id: id
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string),
    };
    Ok((text, class))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::fixtures::RECORDS;
    use crate::record::parse;
    use serde_json::{Value, json};

    fn classify(v: &Value, arrival_ms: i64) -> Classified {
        parse_classify(v.to_string().as_bytes(), arrival_ms)
            .unwrap()
            .1
    }

    #[test]
    fn known_event_type_names_are_shared_and_others_are_kept_as_written() {
        assert!(KNOWN_NAMES.is_sorted());
        for name in KNOWN_NAMES {
            assert!(matches!(known_name(name), Cow::Borrowed(n) if n == *name));
        }
        assert!(matches!(known_name("unknown"), Cow::Borrowed("unknown")));
        assert!(
            matches!(known_name("CUSTOM_REQUIRED_ACTION"), Cow::Owned(ref s) if s == "CUSTOM_REQUIRED_ACTION")
        );
        let c = classify(
            &json!({"eventType":"admin-event","event":{"resourceType":"USER","operationType":"CREATE"}}),
            0,
        );
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["admin-event", "USER:CREATE", "CREATE"]
        );
        let c = classify(
            &json!({"eventType":"admin-event","event":{"operationType":"DELETE"}}),
            0,
        );
        assert_eq!(c.names().collect::<Vec<_>>(), ["admin-event", "DELETE"]);
    }

    #[test]
    fn user_event_envelopes_are_named_by_kind_and_type() {
        let v = json!({"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e1","time":1739388470156_i64,"type":"LOGIN_ERROR"}});
        let c = classify(&v, 0);
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            vec!["user-event", "LOGIN_ERROR"]
        );
        assert_eq!(c.time_ms, 1739388470156);
        assert_eq!(c.id.as_deref(), Some("e1"));
    }

    #[test]
    fn admin_event_envelopes_are_named_by_operation_and_resource() {
        let v = json!({"timestamp":"2025-02-12T19:27:50.156Z","eventType":"admin-event","event":{"id":"a1","operationType":"CREATE","resourceType":"USER"}});
        let c = classify(&v, 0);
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            vec!["admin-event", "USER:CREATE", "CREATE"]
        );
        assert_eq!(c.event_type(), "USER:CREATE");
    }

    #[test]
    fn foxpass_records_are_named_service_colon_method() {
        let v = json!({"service":"ldap","method":"bind","message":"ok","timestamp":1739388470,"success":true});
        let c = classify(&v, 5);
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            vec!["other", "ldap:bind", "ldap"]
        );
        assert_eq!(c.time_ms, 1739388470000);
        assert_eq!(c.id, None);
    }

    #[test]
    fn foxpass_timestamps_as_foxpass_documents_them_are_read_as_utc() {
        let c = classify(
            &json!({"service":"radius","method":"authorize","timestamp":"2025-02-12 19:27:50.156"}),
            5,
        );
        assert_eq!(c.time_ms, 1739388470156);
        let c = classify(
            &json!({"service":"ldap","method":"bind","timestamp":"2025-02-12 19:27:50"}),
            5,
        );
        assert_eq!(c.time_ms, 1739388470000);
        let c = classify(
            &json!({"service":"ldap","method":"bind","timestamp":"yesterday"}),
            5,
        );
        assert_eq!(c.time_ms, 5);
    }

    #[test]
    fn other_objects_fall_back_to_their_type_field_or_unknown_and_arrival_time() {
        let c = classify(&json!({"eventName":"SessionStart","id":"x"}), 42);
        assert_eq!(c.names().collect::<Vec<_>>(), vec!["other", "SessionStart"]);
        assert_eq!((c.time_ms, c.id.as_deref()), (42, Some("x")));
        assert_eq!(
            classify(&json!({"a":1}), 0).names().collect::<Vec<_>>(),
            vec!["other", "unknown"]
        );
    }

    #[test]
    fn classification_of_every_kind_of_record_is_as_documented() {
        let more = [
            r#"{"eventType":"admin-event","event":{"operationType":"DELETE"},"time":5}"#,
            r#"{"eventType":"user-event","event":[1]}"#,
            r#"{"eventType":"user-event","eventType":"admin-event","event":{"operationType":"UPDATE","resourceType":"GROUP","id":"g"}}"#,
            r#"{"eventName":7,"event_type":"snake","@timestamp":"2025-02-12T19:27:50Z","id":""}"#,
            r#"{"type":"t\u00e9","timestamp":1739388470156.5,"service":"ldap"}"#,
            r#"{"service":"radius","method":"authorize","id":"x","time":{"a":1}}"#,
        ];
        // (kind, names, time, id), as the `serde_json::Value` classification gave them.
        let expected: [(&str, &[&str], i64, Option<&str>); 16] = [
            (
                "user-event",
                &["user-event", "LOGIN_ERROR"],
                1739388470156,
                Some("e1"),
            ),
            (
                "admin-event",
                &["admin-event", "USER:CREATE", "CREATE"],
                77,
                Some("a1"),
            ),
            (
                "other",
                &["other", "ldap:bind", "ldap"],
                1739388470000,
                None,
            ),
            ("user-event", &["user-event", "UNKNOWN"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("other", &["other", "unknown"], 77, None),
            ("admin-event", &["admin-event", "DELETE"], 77, None),
            ("other", &["other", "user-event"], 77, None),
            (
                "admin-event",
                &["admin-event", "GROUP:UPDATE", "UPDATE"],
                77,
                Some("g"),
            ),
            ("other", &["other", "snake"], 1739388470000, None),
            ("other", &["other", "t\u{e9}"], 1739388470156, None),
            (
                "other",
                &["other", "radius:authorize", "radius"],
                77,
                Some("x"),
            ),
        ];
        for (raw, (kind, names, time, id)) in RECORDS.iter().chain(more.iter()).zip(expected) {
            let (text, class) = parse_classify(raw.as_bytes(), 77).unwrap();
            assert_eq!(text, *raw);
            assert_eq!(
                (
                    class.kind(),
                    class.names().collect::<Vec<_>>(),
                    class.time_ms,
                    class.id.as_deref()
                ),
                (kind, names.to_vec(), time, id),
                "{raw}"
            );
        }
    }

    #[test]
    fn parse_classify_rejects_what_parse_rejects_with_the_same_message() {
        let bad: [&[u8]; 9] = [
            b"[1,2]",
            b"\"text\"",
            b"{\"a\":",
            b"{\"a\":1} x",
            b"{\"a\":1e400}",
            b"{\"a\":\"\\q\"}",
            b"not json",
            &[0xff, 0xfe],
            b"",
        ];
        for data in bad {
            assert_eq!(
                parse_classify(data, 0)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                parse(data).map(|_| ()).map_err(|e| e.to_string()),
                "{}",
                String::from_utf8_lossy(data)
            );
            assert!(parse_classify(data, 0).is_err());
        }
        assert!(parse_classify(b"{\"a\":1}\n", 0).is_ok());
    }
}
