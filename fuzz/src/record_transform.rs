//! The forwarder's record scanner and text splicer, differential.
//!
//! Input: six control bytes, then the record's bytes. The control bytes choose the transform
//! from [`POINTERS`]: bytes 0-1 a mask of `excludeIf` pointers, bytes 2-3 a mask of redacted
//! fields, byte 4 a mask of `includeIf` pointers (among the first eight), byte 5 bit 0 the
//! redaction mode (mask or keyed hash).
//!
//! Properties:
//! - `parse_classify` (the byte scanner) gives the same verdict as `record::parse` (serde).
//! - `Transform::prepare` (mostly the text splice) gives the same JSON value as the reference
//!   path: parse into a `serde_json::Value`, `Transform::apply`, serialize; on one line.
//! - The identity transform forwards a one-line record as it came.
//! - `Prepared::field_text` (the scanner's pointer lookup) agrees with the `Value` lookup on
//!   the prepared record.

use std::sync::Arc;

use authtrail_core::redact::{RedactionMode, Redactor};
use authtrail_core::secret::Secret;
use authtrail_forwarder::filter::{FieldFilter, Pointer};
use authtrail_forwarder::record::{self, Transform, parse_classify};
use serde_json::Value;

/// The pointers the control bytes choose from: the fields the real configurations name, the
/// escapes (`~0`, `~1`), array indexes, the root's members and whole objects.
pub const POINTERS: [&str; 16] = [
    "/event/details/code_id",
    "/event/ipAddress",
    "/event/details/username",
    "/event/details",
    "/event/type",
    "/list/0/ipAddress",
    "/a",
    "/event",
    "/x/0",
    "/event/details/a~1b",
    "/event/details/t~0x",
    "/b",
    "/c",
    "/a/b",
    "/0",
    "/event/representation",
];

/// Number of control bytes before the record.
pub const CONTROL: usize = 6;

/// One input: control bytes, then the record.
pub fn run(data: &[u8]) {
    let Some((control, raw)) = data.split_at_checked(CONTROL) else {
        return;
    };
    let reference = record::parse(raw);
    let (text, class) = match parse_classify(raw, 0) {
        Ok(ok) => ok,
        Err(e) => {
            assert!(
                reference.is_err(),
                "the scanner refuses a record that serde reads: {e}"
            );
            return;
        }
    };
    let Ok(reference) = reference else {
        panic!("the scanner accepts a record that serde refuses");
    };
    let Some(transform) = transform(control) else {
        return;
    };
    let prepared = match transform.prepare(0, Arc::new(class), text) {
        Ok(p) => p,
        Err(e) => panic!("prepare refused a record that parse_classify accepted: {e}"),
    };
    let mut expected = reference;
    transform.apply(&mut expected);
    let got: Value = match serde_json::from_str(&prepared.json) {
        Ok(v) => v,
        Err(e) => panic!("prepare wrote invalid JSON ({e}): {}", prepared.json),
    };
    if got != expected {
        // serde_json (without `float_roundtrip`) may read a float it wrote one ULP off: the
        // reference path's own output, read back, is the other acceptable answer.
        let reread = serde_json::to_string(&expected)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        assert_eq!(Some(got), reread, "text path and Value path disagree");
    }
    assert!(
        !prepared.json.contains(['\n', '\r']),
        "a prepared record spans lines"
    );
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if transform.is_identity() && !trimmed.contains(['\n', '\r']) {
        assert_eq!(prepared.json, trimmed, "identity changed the text");
    }
    // The lookup on the prepared text's own value: the reference path may order an object's
    // keys differently (a removal moves the last key into the gap), which `field_text` of an
    // object would show.
    let Some(own) = prepared.value() else {
        panic!("prepared JSON unreadable: {}", prepared.json);
    };
    for p in POINTERS {
        let Ok(pointer) = Pointer::parse(p) else {
            continue;
        };
        let by_value = match pointer.get(&own) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        assert_eq!(
            prepared.field_text(&pointer),
            by_value,
            "field_text disagrees with the Value lookup at {p}"
        );
    }
}

/// The transform the control bytes choose; `None` when its settings are refused.
fn transform(control: &[u8]) -> Option<Transform> {
    let [e0, e1, r0, r1, inc, mode, ..] = *control else {
        return None;
    };
    let pick = |mask: u16| -> Vec<String> {
        (0..16)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| POINTERS[i].to_string())
            .collect()
    };
    let exclude = pick(u16::from_le_bytes([e0, e1]));
    let redact = pick(u16::from_le_bytes([r0, r1]));
    let include = pick(u16::from(inc));
    let filter = FieldFilter::new(&include, &exclude).ok()?;
    let mode = if mode & 1 == 0 {
        RedactionMode::Mask
    } else {
        RedactionMode::Hash(Secret::new("fuzz-key"))
    };
    let redactor = if redact.is_empty() {
        None
    } else {
        Some(Redactor::new(&redact, mode).ok()?)
    };
    Some(Transform::new(filter, redactor))
}
