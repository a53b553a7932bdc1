//! The transform every record goes through before it leaves the function: the field filter,
//! then redaction, then the emitter's format. Filter and redaction are mostly done on the
//! record's text ([`super::splice`]); the `serde_json::Value` path defines the behaviour and
//! takes the cases the text path does not handle. Formats other than `raw` render the
//! transformed record's text with `authtrail_normalize` (which reads it once, borrowing its
//! strings), so redaction always comes before mapping.

use std::sync::Arc;

use authtrail_core::redact::Redactor;
use authtrail_normalize::{Classification, Format, Kind, NormalizeError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::splice::{self, TextRedaction};
use super::{Classified, Prepared, parse};
use crate::ForwarderError;
use crate::filter::FieldFilter;

/// Field filter, redaction, format: what every record goes through before it leaves the
/// function.
#[derive(Debug, Clone)]
pub struct Transform {
    /// The field filter (`filterPolicies.field`).
    pub filter: FieldFilter,
    /// The redaction, keyed.
    pub redactor: Option<Redactor>,
    /// `redactor` compiled for the text path.
    text: Option<TextRedaction>,
    /// The emitter's `format` (`raw` unless set by [`Transform::with_format`]).
    pub format: Format,
}

impl Transform {
    /// The transform of `filter` then `redactor`.
    pub fn new(filter: FieldFilter, redactor: Option<Redactor>) -> Self {
        let text = redactor.as_ref().and_then(TextRedaction::compile);
        Self {
            filter,
            redactor,
            text,
            format: Format::Raw,
        }
    }

    /// The same transform, rendering records in `format`.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The transform that changes nothing.
    pub fn identity() -> Self {
        Self::new(FieldFilter::default(), None)
    }

    /// Whether filter and redaction change nothing (the format aside).
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
    /// JSON object (validated by [`super::parse_classify`]).
    ///
    /// - When the transform changes nothing and the text is one line, it is forwarded as it
    ///   came (key order kept, no re-serialization).
    /// - Else, when the text is one line and the transform has no `includeIf`, removed fields
    ///   are cut out of the text and redacted values spliced into it (the rest stays as it
    ///   came): the same JSON value as the `serde_json::Value` path gives, without building it.
    /// - Else (multi-line text, `includeIf`, duplicate keys on a pointer's path, array elements
    ///   removed, overlapping redactions) the record is parsed into a `serde_json::Value`,
    ///   transformed and re-serialized as compact JSON.
    ///
    /// Then the format: `raw` leaves the JSON as it is; `ocsf` and `ecs` replace it with the
    /// normalised record; `cef` keeps it and adds the CEF line ([`Prepared::cef`]).
    pub fn prepare(
        &self,
        index: usize,
        class: Arc<Classified>,
        raw: &str,
    ) -> Result<Prepared, ForwarderError> {
        let doc_id = doc_id(&class, raw);
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
            serde_json::to_string(&value).map_err(ForwarderError::RecordNotSerializable)?
        };
        let (json, cef) = match self.format {
            Format::Raw => (json, None),
            format => render(format, &class, json)?,
        };
        Ok(Prepared {
            index,
            class,
            json,
            cef,
            doc_id,
            source: None,
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
        splice::splice(&self.filter, raw, redaction)
    }
}

/// The classification `authtrail_normalize` reads, from the forwarder's.
pub(crate) fn classification(class: &Classified) -> Classification<'_> {
    Classification {
        kind: Kind::from_name(class.kind()),
        event_type: class.event_type(),
        time_ms: class.time_ms,
        id: class.id.as_deref(),
    }
}

/// `json` (the transformed record) rendered in `format` (not `raw`): the JSON of the record
/// (the normalised one for OCSF and ECS) and, for CEF, the CEF line.
fn render(
    format: Format,
    class: &Classified,
    json: String,
) -> Result<(String, Option<String>), ForwarderError> {
    let mut out = String::new();
    authtrail_normalize::render_text(format, &json, &classification(class), &mut out).map_err(
        |e| match e {
            NormalizeError::Serialize(e) => ForwarderError::RecordNotSerializable(e),
            NormalizeError::NotJson(e) => ForwarderError::RecordNotJson(e),
        },
    )?;
    Ok(match format {
        Format::Cef => (json, Some(out)),
        _ => (out, None),
    })
}

/// A record's document id (Elasticsearch `_id`, the same for every emitter and every
/// delivery): the event id (the `event.id` of a Contract 1 envelope, the top-level `id` of any
/// other record; non-empty, at most 256 bytes), else the hex SHA-256 of the record's bytes as
/// received from the stream (`raw`, before any transform).
pub fn doc_id(class: &Classified, raw: &str) -> String {
    match &class.id {
        Some(id) => id.clone(),
        None => hex::encode(Sha256::digest(raw.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::fixtures::RECORDS;
    use crate::record::parse_classify;
    use authtrail_core::redact::RedactionMode;

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
        let raw = r#"{"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"198.51.100.3","details":{"code_id":"c"}}}"#;
        let p = prepared(&t, raw);
        assert_eq!(
            p.json,
            r#"{"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"<redacted>","details":{}}}"#
        );
        assert_eq!(p.index, 0);
        // No event id: the id is a hash of the record as received, the same on re-delivery.
        assert_eq!(p.doc_id, prepared(&t, raw).doc_id);
        assert_eq!(p.doc_id.len(), 64);
    }

    #[test]
    fn document_id_is_the_event_id_else_the_sha256_of_the_bytes_as_received() {
        let t = transform(&["/id"], &["/user"], RedactionMode::Mask);
        let envelope =
            r#"{"eventType":"admin-event","event":{"id":"a-1","operationType":"CREATE"}}"#;
        assert_eq!(prepared(&t, envelope).doc_id, "a-1");
        let foxpass = r#"{"service":"ldap","method":"bind","id":"x","user":"u"}"#;
        assert_eq!(prepared(&t, foxpass).doc_id, "x");
        // No id: the hash covers the bytes as they came from the stream (trailing newline
        // included), not the transformed text.
        let anonymous = "{\"service\":\"ldap\",\"method\":\"bind\",\"user\":\"u\"}\n";
        let expected = hex::encode(Sha256::digest(anonymous.as_bytes()));
        assert_eq!(prepared(&t, anonymous).doc_id, expected);
        assert_eq!(prepared(&Transform::identity(), anonymous).doc_id, expected);
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

    const LOGIN_ERROR: &str = r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e-7","time":1739388470156,"type":"LOGIN_ERROR","realmId":"r","clientId":"account-console","userId":"u-1","ipAddress":"192.0.2.1","error":"invalid_user_credentials","details":{"auth_method":"openid-connect","username":"alice","code_id":"c"}}}"#;

    #[test]
    fn formats_render_after_filter_and_redaction_and_keep_the_event_id_as_document_id() {
        let base = transform(
            &["/event/details/code_id"],
            &["/event/ipAddress", "/event/details/username"],
            RedactionMode::Mask,
        );
        let ocsf = prepared(&base.clone().with_format(Format::Ocsf), LOGIN_ERROR);
        let v = ocsf.value().unwrap();
        assert_eq!(v["class_uid"], 3002);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["user"], serde_json::json!({"uid": "u-1"}));
        assert_eq!(v["unmapped"]["ipAddress"], "<redacted>");
        assert!(v["unmapped"]["details"].get("code_id").is_none());
        assert!(!ocsf.json.contains("alice") && !ocsf.json.contains("192.0.2.1"));
        assert_eq!((ocsf.doc_id.as_str(), &ocsf.cef), ("e-7", &None));
        let ecs = prepared(&base.clone().with_format(Format::Ecs), LOGIN_ERROR);
        let d = ecs.value().unwrap();
        assert_eq!(d["event"]["outcome"], "failure");
        let original = d["event"]["original"].as_str().unwrap();
        assert_eq!(original, prepared(&base, LOGIN_ERROR).json);
        assert_eq!(ecs.doc_id, "e-7");
    }

    #[test]
    fn cef_keeps_the_json_record_and_adds_the_line() {
        let t = transform(&[], &["/event/details/username"], RedactionMode::Mask);
        let raw = prepared(&t, LOGIN_ERROR);
        let cef = prepared(&t.clone().with_format(Format::Cef), LOGIN_ERROR);
        assert_eq!(cef.json, raw.json);
        let line = cef.cef.clone().unwrap();
        assert!(
            line.starts_with("CEF:0|authtrail|MPAS|1.0|LOGIN_ERROR|Authentication: Logon|3|"),
            "{line}"
        );
        assert!(
            line.contains(" src=192.0.2.1 ") && !line.contains("alice"),
            "{line}"
        );
        // A record that comes back from the spool has no line yet: the same one is made.
        let mut spooled = cef.clone();
        spooled.cef = None;
        assert_eq!(spooled.cef_line(), line);
    }

    #[test]
    fn raw_format_forwards_the_same_bytes_as_before() {
        let spaced = "{ \"eventType\" : \"user-event\", \"event\": {\"type\": \"LOGIN\"} }";
        let t = Transform::identity().with_format(Format::Raw);
        assert_eq!(prepared(&t, spaced).json, spaced);
        assert_eq!(prepared(&t, spaced).cef, None);
    }
}
