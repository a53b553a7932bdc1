//! One stream record: parsed once, classified (its event type names for `include`/`exclude`),
//! then transformed (field filter, redaction) into a [`Prepared`] record that emitters format.
//!
//! Event type names of a record (all of them are matched by `include` / `exclude`):
//! - Contract 1 envelope, `eventType: user-event`: `user-event` and `event.type` (`LOGIN_ERROR`).
//! - Contract 1 envelope, `eventType: admin-event`: `admin-event`, `event.operationType`
//!   (`CREATE`) and `event.resourceType:event.operationType` (`USER:CREATE`).
//! - Foxpass-style records (string `service` and `method`): `other`, `service:method`
//!   (`ldap:bind`, `radius:authorize`) and `service` (`ldap`).
//! - Any other JSON object: `other` and the first string among its top-level `type`,
//!   `eventType`, `eventName`, `event_type`, or `unknown`.

use std::borrow::Cow;
use std::sync::Arc;

use authtrail_core::redact::{HASH_PREFIX, MASK, RedactionMode, Redactor};
use hmac::{Hmac, Mac};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::filter::{FieldFilter, Pointer};
use crate::scan;

/// Where a record came from (for the dead-letter trail and `batchItemFailures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The stream name; one copy shared by the records of a batch.
    pub stream: Arc<str>,
    /// The shard id; one copy shared by the records of a batch.
    pub shard: Arc<str>,
    pub sequence_number: String,
    /// Kinesis approximate arrival time, epoch milliseconds.
    pub arrival_ms: i64,
}

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

const USER_EVENT: &str = "user-event";
const ADMIN_EVENT: &str = "admin-event";
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

/// A record ready for emitters: transformed value and its compact JSON text.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Position of the record in the invocation's batch.
    pub index: usize,
    pub class: Arc<Classified>,
    /// The filtered and redacted record as one line of JSON (no trailing newline).
    pub json: String,
    /// Stable document id: the event id, else a SHA-256 of `json`.
    pub doc_id: String,
}

impl Prepared {
    /// The transformed record as a `serde_json::Value` (dead letters, tests).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.json).ok()
    }

    /// The value at `pointer` as text: a string's contents, any other value's compact JSON;
    /// `None` when absent or `null` (what syslog severity mappings match on).
    pub fn field_text(&self, pointer: &Pointer) -> Option<String> {
        let root = scan::first_value(&self.json);
        let text = match scan::locate(&self.json, root, pointer.tokens()) {
            Ok(None) => return None,
            Ok(Some(l)) => self.json.get(l.entry.value_start..l.entry.end)?,
            Err(scan::Unsupported) => {
                return match pointer.get(&self.value()?)? {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                };
            }
        };
        if text.starts_with('"') {
            match text.get(1..text.len() - 1) {
                Some(inner) if !inner.contains('\\') => Some(inner.to_string()),
                _ => serde_json::from_str::<String>(text).ok(),
            }
        } else if text == "null" {
            None
        } else {
            Some(serde_json::from_str::<Value>(text).ok()?.to_string())
        }
    }
}

/// Parses a record's bytes: it must be one UTF-8 JSON object (a trailing newline is fine).
pub fn parse(data: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("record is not UTF-8: {e}"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("record is JSON but not an object".into()),
        Err(e) => Err(format!("record is not JSON: {e}")),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads a time value: epoch seconds or milliseconds (numbers) or an RFC 3339 string.
fn time_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => {
            let f = n.as_f64()?;
            // Anything past 10^11 cannot be seconds (year 5138): it is milliseconds.
            Some(if f.abs() >= 1e11 {
                f as i64
            } else {
                (f * 1000.0) as i64
            })
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

/// Classifies a parsed record (see the module documentation for the names).
pub fn classify(v: &Value, arrival_ms: i64) -> Classified {
    let event = v.get("event").filter(|e| e.is_object());
    let kind = str_at(v, "eventType");
    let ((kind, event_type, part), id, time) = match (kind, event) {
        (Some("user-event"), Some(e)) => (
            Classified::user(str_at(e, "type").unwrap_or("UNKNOWN")),
            str_at(e, "id"),
            time_of(v.get("timestamp")).or_else(|| time_of(e.get("time"))),
        ),
        (Some("admin-event"), Some(e)) => (
            Classified::admin(
                str_at(e, "resourceType"),
                str_at(e, "operationType").unwrap_or("UNKNOWN"),
            ),
            str_at(e, "id"),
            time_of(v.get("timestamp")).or_else(|| time_of(e.get("time"))),
        ),
        _ => {
            let ty = ["type", "eventType", "eventName", "event_type"]
                .iter()
                .find_map(|k| str_at(v, k))
                .unwrap_or("unknown");
            (
                Classified::other(str_at(v, "service").zip(str_at(v, "method")), ty),
                str_at(v, "id"),
                ["timestamp", "time", "@timestamp"]
                    .iter()
                    .find_map(|k| time_of(v.get(*k))),
            )
        }
    };
    Classified {
        kind,
        event_type,
        part,
        time_ms: time.unwrap_or(arrival_ms),
        id: id
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string),
    }
}

// ---- The borrowed parse: validates a record exactly as `serde_json::Value` would (same
// parser, numbers and strings fully read) but keeps only the fields classification reads, without
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
                        "event" => {
                            t.event = Some(map.next_value::<EventSlot<'de>>()?);
                            continue;
                        }
                        "eventType" => &mut t.event_type,
                        "timestamp" => &mut t.timestamp,
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

/// [`time_of`] for the borrowed parse.
fn scalar_time(v: &Option<Scalar<'_>>) -> Option<i64> {
    match v.as_ref()? {
        Scalar::Num(f) => Some(if f.abs() >= 1e11 {
            *f as i64
        } else {
            (f * 1000.0) as i64
        }),
        Scalar::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        Scalar::Other => None,
    }
}

/// Parses and classifies a record's bytes in one pass without building a `serde_json::Value`:
/// the same verdicts as [`parse`] (UTF-8, valid JSON, an object) and the same classification as
/// [`classify`]. Returns the record's text with the classification.
pub fn parse_classify(data: &[u8], arrival_ms: i64) -> Result<(&str, Classified), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("record is not UTF-8: {e}"))?;
    if text.as_bytes().get(scan::first_value(text)) != Some(&b'{') {
        return Err(match serde_json::from_str::<Any>(text) {
            Ok(_) => "record is JSON but not an object".into(),
            Err(e) => format!("record is not JSON: {e}"),
        });
    }
    let t: TopFields<'_> =
        serde_json::from_str(text).map_err(|e| format!("record is not JSON: {e}"))?;
    let event = match &t.event {
        Some(EventSlot::Object(e)) => Some(e),
        _ => None,
    };
    let ((kind, event_type, part), id, time) = match (scalar_str(&t.event_type), event) {
        (Some("user-event"), Some(e)) => (
            Classified::user(scalar_str(&e.ty).unwrap_or("UNKNOWN")),
            scalar_str(&e.id),
            scalar_time(&t.timestamp).or_else(|| scalar_time(&e.time)),
        ),
        (Some("admin-event"), Some(e)) => (
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

/// Redaction compiled for the text path: pointer tokens and the replacement (the HMAC state keyed
/// once, cloned per value, instead of keying a new HMAC per value).
#[derive(Clone)]
struct TextRedaction {
    pointers: Vec<Vec<String>>,
    /// The mask as a JSON string literal.
    mask: String,
    /// `Some` in hash mode.
    hash: Option<Box<Hmac<Sha256>>>,
}

impl std::fmt::Debug for TextRedaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the HMAC state (it is derived from the key).
        f.debug_struct("TextRedaction")
            .field("fields", &self.pointers.len())
            .finish_non_exhaustive()
    }
}

impl TextRedaction {
    fn compile(r: &Redactor) -> Option<Self> {
        let pointers = r
            .fields()
            .iter()
            .map(|f| Pointer::parse(f).map(|p| p.tokens().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let hash = match r.mode() {
            RedactionMode::Mask => None,
            RedactionMode::Hash(key) => Some(Box::new(
                Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).ok()?,
            )),
        };
        Some(Self {
            pointers,
            mask: serde_json::to_string(MASK).ok()?,
            hash,
        })
    }

    /// What replaces the value `text` (a valid JSON value, not `null`), as
    /// [`Redactor::apply`] would write it.
    fn replacement(&self, text: &str) -> Option<Edit> {
        let Some(mac) = &self.hash else {
            return Some(Edit::Mask);
        };
        let mut mac = (**mac).clone();
        if text.starts_with('"') {
            match text.get(1..text.len() - 1) {
                Some(inner) if !inner.contains('\\') => mac.update(inner.as_bytes()),
                _ => mac.update(serde_json::from_str::<String>(text).ok()?.as_bytes()),
            }
        } else {
            mac.update(
                serde_json::from_str::<Value>(text)
                    .ok()?
                    .to_string()
                    .as_bytes(),
            );
        }
        let digest = mac.finalize().into_bytes();
        let mut hex_digits = [0u8; 64];
        hex::encode_to_slice(digest, &mut hex_digits).ok()?;
        Some(Edit::Hash(hex_digits))
    }
}

/// Field filter then redaction: what every record goes through before it leaves the function.
#[derive(Debug, Clone)]
pub struct Transform {
    pub filter: FieldFilter,
    pub redactor: Option<Redactor>,
    text: Option<TextRedaction>,
}

impl Transform {
    pub fn new(filter: FieldFilter, redactor: Option<Redactor>) -> Self {
        let text = redactor.as_ref().and_then(TextRedaction::compile);
        Self {
            filter,
            redactor,
            text,
        }
    }

    pub fn identity() -> Self {
        Self::new(FieldFilter::default(), None)
    }

    pub fn is_identity(&self) -> bool {
        self.filter.is_empty() && self.redactor.as_ref().is_none_or(Redactor::is_empty)
    }

    /// The transform on a `serde_json::Value` (the reference behaviour).
    pub fn apply(&self, value: &mut Value) {
        self.filter.apply(value);
        if let Some(r) = &self.redactor {
            r.apply(value);
        }
    }

    /// Transforms a record into a [`Prepared`] one. `raw` is the record's original text, a
    /// JSON object (validated by [`parse_classify`]).
    ///
    /// - When the transform changes nothing and the text is one line, it is forwarded as it
    ///   came (key order kept, no re-serialization).
    /// - Else, when the text is one line and the transform has no `includeIf`, removed fields
    ///   are cut out of the text and redacted values spliced into it (the rest stays as it
    ///   came): the same JSON value as the `serde_json::Value` path gives, without building it.
    /// - Else (multi-line text, `includeIf`, duplicate keys on a pointer's path, array elements
    ///   removed, overlapping redactions) the record is parsed into a `serde_json::Value`,
    ///   transformed and re-serialized as compact JSON.
    pub fn prepare(
        &self,
        index: usize,
        class: Arc<Classified>,
        raw: &str,
    ) -> Result<Prepared, String> {
        let raw = raw.trim_end_matches(['\n', '\r']);
        // Byte searches (memchr) rather than a char-set pattern: this runs on every record.
        let one_line = !raw.as_bytes().contains(&b'\n') && !raw.as_bytes().contains(&b'\r');
        let json = if self.is_identity() && one_line {
            raw.to_string()
        } else if let Some(json) = one_line.then(|| self.splice(raw)).flatten() {
            json
        } else {
            let mut value = parse(raw.as_bytes())?;
            self.apply(&mut value);
            serde_json::to_string(&value).map_err(|e| e.to_string())?
        };
        let doc_id = match &class.id {
            Some(id) => id.clone(),
            None => hex::encode(Sha256::digest(json.as_bytes())),
        };
        Ok(Prepared {
            index,
            class,
            json,
            doc_id,
        })
    }

    /// The text path of [`Transform::prepare`]; `None` means "use the `Value` path".
    fn splice(&self, raw: &str) -> Option<String> {
        if !self.filter.include().is_empty() {
            return None;
        }
        let redaction = match &self.redactor {
            Some(r) if !r.is_empty() => Some(self.text.as_ref()?),
            _ => None,
        };
        SCRATCH.with(|cell| {
            let mut scratch = cell.take();
            let out = self.splice_with(raw, redaction, &mut scratch);
            cell.set(scratch);
            out
        })
    }

    fn splice_with(
        &self,
        raw: &str,
        redaction: Option<&TextRedaction>,
        scratch: &mut Scratch,
    ) -> Option<String> {
        let mut loc = scan::Locator::with_storage(raw, std::mem::take(&mut scratch.locator));
        let out = splice_in(&self.filter, raw, redaction, &mut loc, scratch);
        scratch.locator = loc.into_storage();
        out
    }
}

/// Buffers of the text path, kept per thread between records.
#[derive(Default)]
struct Scratch {
    locator: scan::LocatorStorage,
    /// Removed entries: (container, index).
    removed: Vec<(usize, usize)>,
    edits: Vec<(usize, usize, Edit)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// What replaces a span of the text.
#[derive(Clone, Copy)]
enum Edit {
    Cut,
    Mask,
    /// The hex digits of a keyed pseudonym.
    Hash([u8; 64]),
}

fn splice_in(
    filter: &FieldFilter,
    raw: &str,
    redaction: Option<&TextRedaction>,
    loc: &mut scan::Locator<'_>,
    scratch: &mut Scratch,
) -> Option<String> {
    // Removals, by the container holding them.
    let removed = &mut scratch.removed;
    removed.clear();
    for p in filter.exclude() {
        let Some(l) = loc.locate(p.tokens()).ok()? else {
            continue;
        };
        if l.parent_is_array {
            return None; // later indices would shift
        }
        removed.push((l.parent, l.index));
    }
    removed.sort_unstable();
    removed.dedup();
    let edits = &mut scratch.edits;
    edits.clear();
    let mut k = 0;
    while k < removed.len() {
        let (parent, i) = *removed.get(k)?;
        let mut j = i;
        while removed.get(k + 1) == Some(&(parent, j + 1)) {
            k += 1;
            j += 1;
        }
        k += 1;
        let (n, _) = loc.entry(parent, 0).ok()?;
        let at = |loc: &mut scan::Locator<'_>, x: usize| loc.entry(parent, x).ok()?.1;
        let cut = if j + 1 < n {
            (at(loc, i)?.start, at(loc, j + 1)?.start)
        } else if i > 0 {
            (at(loc, i - 1)?.end, at(loc, j)?.end)
        } else {
            (at(loc, 0)?.start, at(loc, j)?.end)
        };
        edits.push((cut.0, cut.1, Edit::Cut));
    }
    let cuts = edits.len();
    // Redactions, on what the filter left.
    if let Some(red) = redaction {
        for tokens in &red.pointers {
            let Some(l) = loc.locate(tokens).ok()? else {
                continue;
            };
            let (s, e) = (l.entry.value_start, l.entry.end);
            let (removals, redactions) = edits.split_at(cuts);
            if removals.iter().any(|&(a, b, _)| a <= s && e <= b) {
                continue; // removed by the filter first
            }
            if removals.iter().any(|&(a, b, _)| s <= a && b <= e) {
                return None; // the redacted value is itself filtered
            }
            if redactions.iter().any(|&(a, b, _)| s < b && a < e) {
                return None; // overlapping redactions apply in order: use the DOM
            }
            let text = raw.get(s..e)?;
            if text == "null" {
                continue;
            }
            edits.push((s, e, red.replacement(text)?));
        }
    }
    // Cuts inside other cuts (a field and its parent both excluded) are dropped.
    edits.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
    let mut out = String::with_capacity(raw.len() + 80 * edits.len());
    let mut pos = 0usize;
    for &(s, e, rep) in edits.iter() {
        if s < pos {
            if e <= pos {
                continue;
            }
            return None;
        }
        out.push_str(raw.get(pos..s)?);
        match rep {
            Edit::Cut => {}
            Edit::Mask => out.push_str(redaction.map(|r| r.mask.as_str())?),
            Edit::Hash(hex_digits) => {
                out.push('"');
                out.push_str(HASH_PREFIX);
                out.push_str(std::str::from_utf8(&hex_digits).ok()?);
                out.push('"');
            }
        }
        pos = e;
    }
    out.push_str(raw.get(pos..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::redact::RedactionMode;
    use serde_json::json;

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
    fn non_objects_and_invalid_utf8_are_malformed() {
        assert!(parse(b"[1,2]").unwrap_err().contains("not an object"));
        assert!(parse(b"{\"a\":").unwrap_err().contains("not JSON"));
        assert!(parse(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        assert!(parse(b"{\"a\":1}\n").is_ok());
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn transform(exclude: &[&str], redact: &[&str], mode: RedactionMode) -> Transform {
        Transform::new(
            FieldFilter::new(&[], &s(exclude)).unwrap(),
            Some(Redactor::new(&s(redact), mode).unwrap()),
        )
    }

    fn prepared(t: &Transform, raw: &str) -> Prepared {
        let (text, class) = parse_classify(raw.as_bytes(), 0).unwrap();
        t.prepare(0, Arc::new(class), text).unwrap()
    }

    /// What the `serde_json::Value` path gives (the reference behaviour).
    fn reference(t: &Transform, raw: &str) -> Value {
        let mut v = parse(raw.as_bytes()).unwrap();
        t.apply(&mut v);
        v
    }

    #[test]
    fn prepare_filters_then_redacts_and_derives_a_stable_document_id() {
        let t = transform(
            &["/event/details/code_id"],
            &["/event/ipAddress"],
            RedactionMode::Mask,
        );
        let raw = r#"{"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"10.1.2.3","details":{"code_id":"c"}}}"#;
        let p = prepared(&t, raw);
        assert_eq!(
            p.json,
            r#"{"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"<redacted>","details":{}}}"#
        );
        assert_eq!(p.index, 0);
        // No event id: the id is a hash of the transformed record, the same on re-delivery.
        assert_eq!(p.doc_id, prepared(&t, raw).doc_id);
        assert_eq!(p.doc_id.len(), 64);
    }

    #[test]
    fn identity_transform_forwards_the_original_text_unless_it_spans_lines() {
        let raw = "{\"z\":1,\"a\":2}\n";
        let p = prepared(&Transform::identity(), raw);
        assert_eq!(p.json, "{\"z\":1,\"a\":2}");
        let pretty = "{\n \"z\": 1,\n \"a\": 2\n}";
        let p = prepared(&Transform::identity(), pretty);
        assert_eq!(p.json, "{\"z\":1,\"a\":2}");
    }

    const RECORDS: &[&str] = &[
        r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e1","time":1739388470156,"type":"LOGIN_ERROR","ipAddress":"10.0.0.1","details":{"username":"al\"ice\\\u00e9","code_id":"c","a/b":"slash","t~x":"tilde"}}}"#,
        r#"{"eventType":"admin-event","event":{"id":"a1","operationType":"CREATE","resourceType":"USER","ipAddress":null,"details":{"code_id":{"n":[1,2]}}}}"#,
        r#"{"service":"ldap","method":"bind","timestamp":1739388470,"event":"not an object","ipAddress":42}"#,
        r#"{ "eventType" : "user-event" , "event" : { "ipAddress" : 1.5e3 , "details" : { "code_id" : true } } , "x" : [ 1 , 2 ] }"#,
        r#"{"event":{"ipAddress":["10.0.0.1","10.0.0.2"],"details":{"code_id":"only"}},"list":[{"ipAddress":"x"}]}"#,
        r#"{"event":{"details":{"username":"u","code_id":"c"},"ipAddress":"i"}}"#,
        r#"{"event":{"details":{"code_id":"c","username":"u"}}}"#,
        r#"{"\u0065vent":{"details":{"username":"escaped key"}}}"#,
        r#"{"event":{"details":{"code_id":"c","code_id":"twice"}}}"#,
        r#"{"other":"nothing to do"}"#,
    ];

    #[test]
    fn the_text_transform_gives_the_same_json_value_as_the_value_path() {
        let key = authtrail_core::secret::Secret::new("k");
        let transforms = [
            transform(
                &["/event/details/code_id"],
                &["/event/ipAddress", "/event/details/username"],
                RedactionMode::Hash(key.clone()),
            ),
            transform(
                &["/event/details/code_id", "/event/details/username"],
                &["/event/details/a~1b", "/event/details/t~0x"],
                RedactionMode::Mask,
            ),
            transform(
                &["/event/details"],
                &[
                    "/event/details/username",
                    "/event/ipAddress",
                    "/list/0/ipAddress",
                ],
                RedactionMode::Hash(key.clone()),
            ),
            transform(
                &["/event/details/code_id", "/event/ipAddress", "/x/0"],
                &[],
                RedactionMode::Mask,
            ),
            transform(
                &[],
                &["/event", "/event/ipAddress"],
                RedactionMode::Hash(key.clone()),
            ),
            transform(
                &["/event/details/code_id"],
                &["/event/details"],
                RedactionMode::Hash(key),
            ),
        ];
        for (k, t) in transforms.iter().enumerate() {
            for raw in RECORDS {
                let p = prepared(t, raw);
                assert_eq!(
                    serde_json::from_str::<Value>(&p.json).unwrap(),
                    reference(t, raw),
                    "transform {k} on {raw}"
                );
                assert!(!p.json.contains('\n'));
            }
        }
    }

    #[test]
    fn the_text_transform_keeps_the_original_text_around_the_changes() {
        let t = transform(
            &["/event/details/code_id"],
            &["/event/details/username"],
            RedactionMode::Mask,
        );
        let p = prepared(
            &t,
            r#"{"event":{"details":{"username":"a\"b","code_id":"c"}, "n": 1.50}}"#,
        );
        assert_eq!(
            p.json,
            r#"{"event":{"details":{"username":"<redacted>"}, "n": 1.50}}"#
        );
        let p = prepared(&t, r#"{"event":{"details":{"code_id":"c"}}}"#);
        assert_eq!(p.json, r#"{"event":{"details":{}}}"#);
    }

    #[test]
    fn hash_redaction_on_text_matches_the_core_pseudonym_for_escaped_and_non_string_values() {
        let key = authtrail_core::secret::Secret::new("secret-key");
        let t = transform(&[], &["/a", "/b", "/c"], RedactionMode::Hash(key.clone()));
        let p = prepared(&t, r#"{"a":"al\u0069ce\n","b":{"x": 1,"y":[true]},"c":10}"#);
        let v = p.value().unwrap();
        assert_eq!(v["a"], authtrail_core::redact::pseudonym(&key, "alice\n"));
        assert_eq!(
            v["b"],
            authtrail_core::redact::pseudonym(&key, r#"{"x":1,"y":[true]}"#)
        );
        assert_eq!(v["c"], authtrail_core::redact::pseudonym(&key, "10"));
        assert!(!p.json.contains("al\\u0069ce"));
    }

    #[test]
    fn parse_classify_agrees_with_parse_and_classify() {
        let more = [
            r#"{"eventType":"admin-event","event":{"operationType":"DELETE"},"time":5}"#,
            r#"{"eventType":"user-event","event":[1]}"#,
            r#"{"eventType":"user-event","eventType":"admin-event","event":{"operationType":"UPDATE","resourceType":"GROUP","id":"g"}}"#,
            r#"{"eventName":7,"event_type":"snake","@timestamp":"2025-02-12T19:27:50Z","id":""}"#,
            r#"{"type":"t\u00e9","timestamp":1739388470156.5,"service":"ldap"}"#,
            r#"{"service":"radius","method":"authorize","id":"x","time":{"a":1}}"#,
        ];
        for raw in RECORDS.iter().chain(more.iter()) {
            let (text, class) = parse_classify(raw.as_bytes(), 77).unwrap();
            assert_eq!(text, *raw);
            assert_eq!(
                class,
                classify(&parse(raw.as_bytes()).unwrap(), 77),
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
                parse_classify(data, 0).map(|_| ()),
                parse(data).map(|_| ()),
                "{}",
                String::from_utf8_lossy(data)
            );
            assert!(parse_classify(data, 0).is_err());
        }
        assert!(parse_classify(b"{\"a\":1}\n", 0).is_ok());
    }

    #[test]
    fn field_text_reads_strings_numbers_and_skips_null_like_the_value_lookup() {
        let p = prepared(
            &Transform::identity(),
            r#"{"event":{"type":"LOGIN\u005fERROR","n":1,"z":null,"o":{"a":1},"k":"a"},"event ":{"k":"b"}}"#,
        );
        let ptr = |x: &str| Pointer::parse(x).unwrap();
        assert_eq!(
            p.field_text(&ptr("/event/type")).as_deref(),
            Some("LOGIN_ERROR")
        );
        assert_eq!(p.field_text(&ptr("/event/n")).as_deref(), Some("1"));
        assert_eq!(
            p.field_text(&ptr("/event/o")).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(p.field_text(&ptr("/event/z")), None);
        assert_eq!(p.field_text(&ptr("/event/none")), None);
        assert_eq!(p.field_text(&ptr("/event /k")).as_deref(), Some("b"));
        let dup = prepared(&Transform::identity(), r#"{"a":"first","a":"last"}"#);
        assert_eq!(dup.field_text(&ptr("/a")).as_deref(), Some("last"));
    }
}
