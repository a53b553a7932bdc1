//! Turning one MPAS event into one stream record: Contract 1 envelope, redaction, and the
//! documented behaviour for events too large for one record.
//!
//! Oversized events (the envelope line plus partition key over the sink's per-record limit) are
//! never dropped: the largest parts are replaced by the marker `"<truncated: N bytes>"` (N = the
//! original size of that value in bytes), in this order until the record fits: the admin
//! event's `representation`; then `details` values, largest first; then any other event field,
//! largest first. The envelope then carries `"truncated": true` after `event`, so consumers can
//! tell. Identity fields (`id`, `time`, `type`, `realmId`, ...) are small and survive.

use authtrail_core::envelope::{Envelope, EventKind, fields, format_timestamp};
use authtrail_core::redact::Redactor;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The line written for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRecord {
    pub data: Vec<u8>,
    pub truncated: bool,
    pub redacted_fields: usize,
}

/// The envelope line (core's [`Envelope`]), `truncated` flag included when set.
fn render(timestamp: &str, kind: EventKind, event: &Value, truncated: bool) -> Vec<u8> {
    Envelope::with_timestamp(timestamp, kind, event)
        .truncated(truncated)
        .to_line()
}

/// Builds the envelope line for `event` (the event's `time` must be an integer: checked by the
/// caller), redacts with `redactor` (pointers address the envelope), and truncates to fit
/// `max_bytes` (the record data limit, partition key already subtracted).
pub fn build_record(
    kind: EventKind,
    event: Value,
    redactor: &Redactor,
    max_bytes: usize,
) -> BuiltRecord {
    let time = event.get("time").and_then(Value::as_i64).unwrap_or(0);
    let timestamp = format_timestamp(time);
    let mut event = event;
    let mut redacted_fields = 0;
    if !redactor.is_empty() {
        let mut env = Map::with_capacity(3);
        env.insert(fields::TIMESTAMP.into(), Value::String(timestamp.clone()));
        env.insert(
            fields::EVENT_TYPE.into(),
            Value::String(kind.as_str().into()),
        );
        env.insert(fields::EVENT.into(), event);
        let mut env = Value::Object(env);
        redacted_fields = redactor.apply(&mut env);
        event = match env {
            Value::Object(mut m) => m.remove(fields::EVENT).unwrap_or(Value::Null),
            other => other,
        };
    }
    let data = render(&timestamp, kind, &event, false);
    if data.len() <= max_bytes {
        return BuiltRecord {
            data,
            truncated: false,
            redacted_fields,
        };
    }
    let data = truncate_to_fit(&timestamp, kind, &mut event, data.len(), max_bytes);
    BuiltRecord {
        data,
        truncated: true,
        redacted_fields,
    }
}

fn marker(bytes: usize) -> Value {
    Value::String(format!("<truncated: {bytes} bytes>"))
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// Fields that identify an event: small, and never replaced by a marker.
const PROTECTED: &[&str] = &[
    "id",
    "time",
    "type",
    "realmId",
    "clientId",
    "userId",
    "sessionId",
    "operationType",
    "resourceType",
    "error",
];

/// Fields kept by the last resort, when only protected fields are left and still too big.
const STUB_FIELDS: &[&str] = &[
    "id",
    "time",
    "type",
    "operationType",
    "resourceType",
    "realmId",
];

/// One value that may be replaced by a marker: `parent` (`details`) or the event itself holds
/// it under `key`; `len` is its JSON size.
struct Step {
    parent: Option<&'static str>,
    key: String,
    len: usize,
}

/// The values to replace, in order: `representation`, `details` values (largest first), the
/// other unprotected fields (largest first).
fn truncation_steps(event: &Value) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let Some(obj) = event.as_object() else {
        return steps;
    };
    if let Some(v) = obj.get("representation") {
        steps.push(Step {
            parent: None,
            key: "representation".into(),
            len: json_len(v),
        });
    }
    if let Some(details) = obj.get("details").and_then(Value::as_object) {
        let mut d: Vec<_> = details
            .iter()
            .map(|(k, v)| Step {
                parent: Some("details"),
                key: k.clone(),
                len: json_len(v),
            })
            .collect();
        d.sort_by_key(|s| std::cmp::Reverse(s.len));
        steps.extend(d);
    }
    let mut rest: Vec<_> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "representation" && !PROTECTED.contains(&k.as_str()))
        .map(|(k, v)| Step {
            parent: None,
            key: k.clone(),
            len: json_len(v),
        })
        .collect();
    rest.sort_by_key(|s| std::cmp::Reverse(s.len));
    steps.extend(rest);
    steps
}

/// Replaces the step's value with `"<truncated: N bytes>"` (N: its original size).
fn replace_with_marker(event: &mut Value, step: &Step) {
    let slot = match (step.parent, event.as_object_mut()) {
        (Some(p), Some(obj)) => obj
            .get_mut(p)
            .and_then(Value::as_object_mut)
            .and_then(|d| d.get_mut(step.key.as_str())),
        (None, Some(obj)) => obj.get_mut(step.key.as_str()),
        _ => None,
    };
    if let Some(slot) = slot {
        let original = match &*slot {
            Value::String(s) => s.len(),
            other => json_len(other),
        };
        *slot = marker(original);
    }
}

/// The last resort: the event's identity fields (those under 1 KiB) and `truncatedEvent` with
/// the original size.
fn identity_stub(event: &Value, size: usize) -> Value {
    let mut stub = Map::new();
    if let Some(obj) = event.as_object() {
        for &k in STUB_FIELDS {
            if let Some(v) = obj.get(k)
                && json_len(v) < 1024
            {
                stub.insert(k.into(), v.clone());
            }
        }
    }
    stub.insert("truncatedEvent".into(), marker(size));
    Value::Object(stub)
}

fn truncate_to_fit(
    timestamp: &str,
    kind: EventKind,
    event: &mut Value,
    size: usize,
    max_bytes: usize,
) -> Vec<u8> {
    let steps = truncation_steps(event);
    let mut data = render(timestamp, kind, event, true);
    let size = size.max(data.len());
    for step in steps {
        if data.len() <= max_bytes {
            break;
        }
        if step.len < 32 {
            continue;
        }
        replace_with_marker(event, &step);
        data = render(timestamp, kind, event, true);
    }
    if data.len() > max_bytes {
        // Only protected fields are left and they are still too big (absurd values): keep the
        // identity of the event and say how big it was.
        *event = identity_stub(event, size);
        data = render(timestamp, kind, event, true);
    }
    data
}

/// The dedupe key of an event on servers without `id`: SHA-256 of the event's canonical JSON
/// (object keys sorted, no whitespace), first 128 bits as hex.
pub fn content_hash(event: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(event, &mut hasher);
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

fn write_canonical(v: &Value, h: &mut Sha256) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                h.update(Value::String(k.clone()).to_string().as_bytes());
                h.update(b":");
                if let Some(child) = m.get(k) {
                    write_canonical(child, h);
                }
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for (i, child) in a.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                write_canonical(child, h);
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::redact::RedactionMode;
    use authtrail_core::secret::Secret;
    use serde_json::json;

    fn user_redactor() -> Redactor {
        Redactor::new(
            &["/event/ipAddress".into(), "/event/details/username".into()],
            RedactionMode::Mask,
        )
        .unwrap()
    }

    #[test]
    fn user_event_envelope_matches_contract_one_with_default_redaction() {
        let event = json!({"id":"e1","time":1739388470156i64,"type":"LOGIN","realmId":"r","clientId":"admin-cli","userId":"u","sessionId":"s","ipAddress":"192.0.2.1","details":{"auth_method":"openid-connect","username":"alice"}});
        let rec = build_record(EventKind::User, event, &user_redactor(), 1 << 20);
        let line = String::from_utf8(rec.data).unwrap();
        assert_eq!(
            line,
            "{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"user-event\",\"event\":{\"id\":\"e1\",\"time\":1739388470156,\"type\":\"LOGIN\",\"realmId\":\"r\",\"clientId\":\"admin-cli\",\"userId\":\"u\",\"sessionId\":\"s\",\"ipAddress\":\"<redacted>\",\"details\":{\"auth_method\":\"openid-connect\",\"username\":\"<redacted>\"}}}\n"
        );
        assert_eq!(rec.redacted_fields, 2);
        assert!(!rec.truncated);
    }

    #[test]
    fn hash_mode_gives_the_same_pseudonym_for_the_same_value() {
        let r = Redactor::new(
            &["/event/ipAddress".into()],
            RedactionMode::Hash(Secret::new("k")),
        )
        .unwrap();
        let a = build_record(
            EventKind::User,
            json!({"time":1,"ipAddress":"192.0.2.1"}),
            &r,
            1 << 20,
        );
        let b = build_record(
            EventKind::User,
            json!({"time":2,"ipAddress":"192.0.2.1"}),
            &r,
            1 << 20,
        );
        let pa: Value = serde_json::from_slice(&a.data).unwrap();
        let pb: Value = serde_json::from_slice(&b.data).unwrap();
        let ip = pa["event"]["ipAddress"].as_str().unwrap();
        assert!(ip.starts_with("hmac-sha256:") && !ip.contains("192.0.2.1"));
        assert_eq!(pa["event"]["ipAddress"], pb["event"]["ipAddress"]);
    }

    #[test]
    fn oversized_admin_event_has_its_representation_truncated_with_a_marker_and_flag() {
        let big = "x".repeat(2 * 1024 * 1024);
        let event = json!({"id":"a1","time":5,"operationType":"UPDATE","resourcePath":"users/1","representation":big});
        let rec = build_record(EventKind::Admin, event, &Redactor::none(), 1024 * 1024 - 32);
        assert!(rec.truncated);
        assert!(rec.data.len() <= 1024 * 1024 - 32);
        let v: Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["event"]["representation"], "<truncated: 2097152 bytes>");
        assert_eq!(v["event"]["id"], "a1");
        assert_eq!(v["event"]["resourcePath"], "users/1");
    }

    #[test]
    fn oversized_details_are_truncated_largest_first_keeping_small_ones() {
        let event = json!({"id":"e","time":5,"type":"LOGIN","details":{"big":"y".repeat(600_000),"bigger":"z".repeat(700_000),"small":"keep"}});
        let rec = build_record(EventKind::User, event, &Redactor::none(), 1_000_000);
        let v: Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["event"]["details"]["bigger"], "<truncated: 700000 bytes>");
        assert_eq!(
            v["event"]["details"]["big"].as_str().unwrap().len(),
            600_000
        );
        assert_eq!(v["event"]["details"]["small"], "keep");
    }

    #[test]
    fn an_event_whose_identity_fields_are_huge_still_yields_a_record() {
        let event = json!({"id":"e","time":5,"type":"T".repeat(3_000_000)});
        let rec = build_record(EventKind::User, event, &Redactor::none(), 1_000_000);
        let v: Value = serde_json::from_slice(&rec.data).unwrap();
        assert!(rec.truncated && rec.data.len() <= 1_000_000);
        assert_eq!(v["event"]["id"], "e");
        assert!(
            v["event"]["truncatedEvent"]
                .as_str()
                .unwrap()
                .starts_with("<truncated: ")
        );
    }

    #[test]
    fn content_hash_ignores_key_order_and_differs_on_content() {
        let a = json!({"time":1,"type":"LOGIN","details":{"a":"1","b":"2"}});
        let b = json!({"details":{"b":"2","a":"1"},"type":"LOGIN","time":1});
        let c = json!({"time":1,"type":"LOGOUT","details":{"a":"1","b":"2"}});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
        assert_eq!(content_hash(&a).len(), 32);
    }
}
