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

use std::sync::Arc;

use authtrail_core::redact::Redactor;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::filter::FieldFilter;

/// Where a record came from (for the dead-letter trail and `batchItemFailures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub stream: String,
    pub shard: String,
    pub sequence_number: String,
    /// Kinesis approximate arrival time, epoch milliseconds.
    pub arrival_ms: i64,
}

/// The classification of a parsed record, independent of any transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The record's names for `include` / `exclude`; `names[0]` is the kind
    /// (`user-event`, `admin-event`, `other`), `names[1]` the primary event type.
    pub names: Vec<String>,
    /// Event time, epoch milliseconds (falls back to the arrival time).
    pub time_ms: i64,
    /// The event's own id, when it has one (`event.id`, or a top-level `id`).
    pub id: Option<String>,
}

impl Classified {
    pub fn kind(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or("other")
    }

    /// The primary event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`, ...).
    pub fn event_type(&self) -> &str {
        self.names.get(1).map(String::as_str).unwrap_or("unknown")
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.names.iter().map(String::as_str)
    }
}

/// A record ready for emitters: transformed value and its compact JSON text.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Position of the record in the invocation's batch.
    pub index: usize,
    pub class: Arc<Classified>,
    /// The filtered and redacted record.
    pub value: Value,
    /// `value` as compact JSON (no trailing newline).
    pub json: String,
    /// Stable document id: the event id, else a SHA-256 of `json`.
    pub doc_id: String,
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
    let mut names = Vec::with_capacity(3);
    let (id, time) = match (kind, event) {
        (Some("user-event"), Some(e)) => {
            names.push("user-event".to_string());
            names.push(str_at(e, "type").unwrap_or("UNKNOWN").to_string());
            (
                str_at(e, "id"),
                time_of(v.get("timestamp")).or_else(|| time_of(e.get("time"))),
            )
        }
        (Some("admin-event"), Some(e)) => {
            names.push("admin-event".to_string());
            let op = str_at(e, "operationType").unwrap_or("UNKNOWN");
            match str_at(e, "resourceType") {
                Some(res) => {
                    names.push(format!("{res}:{op}"));
                    names.push(op.to_string());
                }
                None => names.push(op.to_string()),
            }
            (
                str_at(e, "id"),
                time_of(v.get("timestamp")).or_else(|| time_of(e.get("time"))),
            )
        }
        _ => {
            names.push("other".to_string());
            match (str_at(v, "service"), str_at(v, "method")) {
                (Some(service), Some(method)) => {
                    names.push(format!("{service}:{method}"));
                    names.push(service.to_string());
                }
                _ => {
                    let t = ["type", "eventType", "eventName", "event_type"]
                        .iter()
                        .find_map(|k| str_at(v, k))
                        .unwrap_or("unknown");
                    names.push(t.to_string());
                }
            }
            (
                str_at(v, "id"),
                ["timestamp", "time", "@timestamp"]
                    .iter()
                    .find_map(|k| time_of(v.get(*k))),
            )
        }
    };
    Classified {
        names,
        time_ms: time.unwrap_or(arrival_ms),
        id: id
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string),
    }
}

/// Field filter then redaction: what every record goes through before it leaves the function.
#[derive(Debug, Clone)]
pub struct Transform {
    pub filter: FieldFilter,
    pub redactor: Option<Redactor>,
}

impl Transform {
    pub fn identity() -> Self {
        Self {
            filter: FieldFilter::default(),
            redactor: None,
        }
    }

    pub fn is_identity(&self) -> bool {
        self.filter.is_empty() && self.redactor.as_ref().is_none_or(Redactor::is_empty)
    }

    pub fn apply(&self, value: &mut Value) {
        self.filter.apply(value);
        if let Some(r) = &self.redactor {
            r.apply(value);
        }
    }

    /// Transforms a parsed record into a [`Prepared`] one. `value` is consumed (pass a clone
    /// when more than one transform runs on the same record).
    /// `raw` is the record's original text: when the transform changes nothing and the text is
    /// one line, it is forwarded as it came (key order kept, no re-serialization).
    pub fn prepare(
        &self,
        index: usize,
        class: Arc<Classified>,
        mut value: Value,
        raw: &str,
    ) -> Prepared {
        let raw = raw.trim_end_matches(['\n', '\r']);
        let json = if self.is_identity() && !raw.contains(['\n', '\r']) {
            raw.to_string()
        } else {
            self.apply(&mut value);
            // Serializing a `Value` cannot fail (string keys only).
            serde_json::to_string(&value).unwrap_or_default()
        };
        let doc_id = match &class.id {
            Some(id) => id.clone(),
            None => hex::encode(Sha256::digest(json.as_bytes())),
        };
        Prepared {
            index,
            class,
            value,
            json,
            doc_id,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::redact::RedactionMode;
    use serde_json::json;

    #[test]
    fn user_event_envelopes_are_named_by_kind_and_type() {
        let v = json!({"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e1","time":1739388470156_i64,"type":"LOGIN_ERROR"}});
        let c = classify(&v, 0);
        assert_eq!(c.names, vec!["user-event", "LOGIN_ERROR"]);
        assert_eq!(c.time_ms, 1739388470156);
        assert_eq!(c.id.as_deref(), Some("e1"));
    }

    #[test]
    fn admin_event_envelopes_are_named_by_operation_and_resource() {
        let v = json!({"timestamp":"2025-02-12T19:27:50.156Z","eventType":"admin-event","event":{"id":"a1","operationType":"CREATE","resourceType":"USER"}});
        let c = classify(&v, 0);
        assert_eq!(c.names, vec!["admin-event", "USER:CREATE", "CREATE"]);
        assert_eq!(c.event_type(), "USER:CREATE");
    }

    #[test]
    fn foxpass_records_are_named_service_colon_method() {
        let v = json!({"service":"ldap","method":"bind","message":"ok","timestamp":1739388470,"success":true});
        let c = classify(&v, 5);
        assert_eq!(c.names, vec!["other", "ldap:bind", "ldap"]);
        assert_eq!(c.time_ms, 1739388470000);
        assert_eq!(c.id, None);
    }

    #[test]
    fn other_objects_fall_back_to_their_type_field_or_unknown_and_arrival_time() {
        let c = classify(&json!({"eventName":"SessionStart","id":"x"}), 42);
        assert_eq!(c.names, vec!["other", "SessionStart"]);
        assert_eq!((c.time_ms, c.id.as_deref()), (42, Some("x")));
        assert_eq!(classify(&json!({"a":1}), 0).names, vec!["other", "unknown"]);
    }

    #[test]
    fn non_objects_and_invalid_utf8_are_malformed() {
        assert!(parse(b"[1,2]").unwrap_err().contains("not an object"));
        assert!(parse(b"{\"a\":").unwrap_err().contains("not JSON"));
        assert!(parse(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        assert!(parse(b"{\"a\":1}\n").is_ok());
    }

    #[test]
    fn prepare_filters_then_redacts_and_derives_a_stable_document_id() {
        let t = Transform {
            filter: FieldFilter::new(&[], &["/event/details/code_id".to_string()]).unwrap(),
            redactor: Some(
                Redactor::new(&["/event/ipAddress".to_string()], RedactionMode::Mask).unwrap(),
            ),
        };
        let v = json!({"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"10.1.2.3","details":{"code_id":"c"}}});
        let class = Arc::new(classify(&v, 0));
        let p = t.prepare(3, class.clone(), v.clone(), &v.to_string());
        let got: Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(
            got,
            json!({"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"<redacted>","details":{}}})
        );
        assert!(!p.json.contains("10.1.2.3"));
        assert_eq!(p.index, 3);
        // No event id: the id is a hash of the transformed record, the same on re-delivery.
        assert_eq!(p.doc_id, t.prepare(0, class, v.clone(), "").doc_id);
        assert_eq!(p.doc_id.len(), 64);
    }

    #[test]
    fn identity_transform_forwards_the_original_text_unless_it_spans_lines() {
        let raw = "{\"z\":1,\"a\":2}\n";
        let v = parse(raw.as_bytes()).unwrap();
        let class = Arc::new(classify(&v, 0));
        let p = Transform::identity().prepare(0, class.clone(), v.clone(), raw);
        assert_eq!(p.json, "{\"z\":1,\"a\":2}");
        let pretty = "{\n \"z\": 1,\n \"a\": 2\n}";
        let p = Transform::identity().prepare(0, class, v, pretty);
        assert!(!p.json.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&p.json).unwrap(),
            json!({"z":1,"a":2})
        );
    }
}
