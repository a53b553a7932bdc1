//! One stream record: parsed once and classified ([`classify`]: its event type names for
//! `include` / `exclude`), then transformed ([`transform`]: field filter, redaction, mostly by
//! splicing the original text, [`splice`] over the byte scanner [`scan`]; then the emitter's
//! `format`, OCSF / ECS / CEF by `authtrail_normalize`) into a [`Prepared`] record that
//! emitters send.
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

use serde_json::Value;

use crate::ForwarderError;
use crate::filter::Pointer;

pub mod classify;
pub mod scan;
mod splice;
pub mod transform;

pub use classify::{Classified, parse_classify};
pub use transform::Transform;

/// Where a record came from (for the dead-letter trail and `batchItemFailures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The stream name; one copy shared by the records of a batch.
    pub stream: Arc<str>,
    /// The shard id; one copy shared by the records of a batch.
    pub shard: Arc<str>,
    /// The record's sequence number.
    pub sequence_number: String,
    /// Kinesis approximate arrival time, epoch milliseconds.
    pub arrival_ms: i64,
}

/// A record ready for emitters: transformed value and its compact JSON text.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Position of the record in the invocation's batch.
    pub index: usize,
    /// Its classification.
    pub class: Arc<Classified>,
    /// The filtered and redacted record as one line of JSON (no trailing newline): as it came
    /// (format `raw`), or its OCSF event or ECS document (formats `ocsf`, `ecs`). With format
    /// `cef` the JSON record, which the spool and dead letters keep.
    pub json: String,
    /// With format `cef`: the record's CEF line, which the syslog emitter sends.
    pub cef: Option<String>,
    /// Stable document id ([`transform::doc_id`]): the event id (`event.id` of a Contract 1
    /// envelope, a top-level `id` otherwise), else the hex SHA-256 of the record's bytes as
    /// received.
    pub doc_id: String,
    /// Where the record came from (stream, shard, sequence number), when known: set for
    /// records of a Kinesis batch and for spooled records; `None` in unit tests' records.
    pub source: Option<Arc<Source>>,
}

impl Prepared {
    /// The record's CEF line: the one the transform made, else made now from the JSON record
    /// (spooled and replayed records keep their JSON).
    pub fn cef_line(&self) -> String {
        if let Some(line) = &self.cef {
            return line.clone();
        }
        let mut out = String::new();
        let class = transform::classification(&self.class);
        match authtrail_normalize::render_text(
            authtrail_normalize::Format::Cef,
            &self.json,
            &class,
            &mut out,
        ) {
            Ok(()) => out,
            Err(_) => self.json.clone(),
        }
    }

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

/// Parses a record's bytes into a `serde_json::Value` (the general path of the transform): it
/// must be one UTF-8 JSON object (a trailing newline is fine).
pub fn parse(data: &[u8]) -> Result<Value, ForwarderError> {
    let text = std::str::from_utf8(data).map_err(ForwarderError::RecordNotUtf8)?;
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ForwarderError::RecordNotAnObject),
        Err(e) => Err(ForwarderError::RecordNotJson(e)),
    }
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn prepared(t: &Transform, raw: &str) -> Prepared {
        let (text, class) = parse_classify(raw.as_bytes(), 0).unwrap();
        t.prepare(0, Arc::new(class), text).unwrap()
    }

    #[test]
    fn non_objects_and_invalid_utf8_are_malformed() {
        assert!(
            parse(b"[1,2]")
                .unwrap_err()
                .to_string()
                .contains("not an object")
        );
        assert!(
            parse(b"{\"a\":")
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        assert!(
            parse(&[0xff, 0xfe])
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        assert!(parse(b"{\"a\":1}\n").is_ok());
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
