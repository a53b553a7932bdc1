//! Redaction of chosen fields, addressed by RFC 6901 JSON pointers: `mask` replaces a value with
//! `<redacted>`; `hash` replaces it with a keyed pseudonym (HMAC-SHA256), so one user or address
//! maps to the same token everywhere without revealing it.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::json_pointer::Pointer;
use crate::secret::Secret;

/// The replacement written by `mask` mode.
pub const MASK: &str = "<redacted>";
/// The prefix of a pseudonym written by `hash` mode.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// How a redacted value is replaced.
#[derive(Clone, Debug)]
pub enum RedactionMode {
    /// By [`MASK`].
    Mask,
    /// Keyed pseudonyms; the key never appears in Debug output.
    Hash(Secret),
}

/// A redaction setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    #[error(
        "redaction field {0:?} is not a JSON pointer (it must start with '/', e.g. /event/ipAddress)"
    )]
    NotAPointer(String),
    #[error("redaction field {0:?} has an invalid escape (only ~0 and ~1 are allowed)")]
    BadEscape(String),
    #[error("hash redaction needs a non-empty key")]
    EmptyKey,
}

/// A compiled set of fields to redact.
#[derive(Clone, Debug)]
pub struct Redactor {
    paths: Vec<Pointer>,
    pointers: Vec<String>,
    mode: RedactionMode,
}

impl Redactor {
    pub fn new(fields: &[String], mode: RedactionMode) -> Result<Self, RedactError> {
        if let RedactionMode::Hash(key) = &mode
            && key.is_empty()
        {
            return Err(RedactError::EmptyKey);
        }
        let mut paths = Vec::with_capacity(fields.len());
        for field in fields {
            paths.push(Pointer::parse(field).map_err(|e| pointer_error(field, e))?);
        }
        Ok(Self {
            paths,
            pointers: fields.to_vec(),
            mode,
        })
    }

    /// A redactor that changes nothing.
    pub fn none() -> Self {
        Self {
            paths: Vec::new(),
            pointers: Vec::new(),
            mode: RedactionMode::Mask,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The configured JSON pointers.
    pub fn fields(&self) -> &[String] {
        &self.pointers
    }

    pub fn mode(&self) -> &RedactionMode {
        &self.mode
    }

    /// Redacts `value` in place; returns how many fields were replaced. Absent fields are
    /// skipped and `null` values stay `null` (there is nothing to hide).
    pub fn apply(&self, value: &mut Value) -> usize {
        let mut n = 0;
        for path in &self.paths {
            if let Some(target) = path.get_mut(value) {
                if target.is_null() {
                    continue;
                }
                *target = Value::String(self.replacement(target));
                n += 1;
            }
        }
        n
    }

    fn replacement(&self, value: &Value) -> String {
        match &self.mode {
            RedactionMode::Mask => MASK.to_string(),
            RedactionMode::Hash(key) => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                pseudonym(key, &text)
            }
        }
    }
}

/// The keyed pseudonym of `text`: `hmac-sha256:` + 64 hex digits.
pub fn pseudonym(key: &Secret, text: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to a fixed marker anyway
    // rather than panicking.
    match Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            format!("{HASH_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => MASK.to_string(),
    }
}

/// The redaction error for a field that is not a usable JSON pointer.
fn pointer_error(field: &str, e: crate::error::Error) -> RedactError {
    match e {
        crate::error::Error::NotAPointer(_) => RedactError::NotAPointer(field.to_string()),
        _ => RedactError::BadEscape(field.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mask_replaces_present_fields_and_skips_absent_ones() {
        let r = Redactor::new(
            &fields(&[
                "/event/ipAddress",
                "/event/details/username",
                "/event/missing",
            ]),
            RedactionMode::Mask,
        )
        .unwrap();
        let mut v = json!({"event": {"ipAddress": "192.0.2.1", "details": {"username": "alice", "auth_method": "openid-connect"}}});
        assert_eq!(r.apply(&mut v), 2);
        assert_eq!(v["event"]["ipAddress"], "<redacted>");
        assert_eq!(v["event"]["details"]["username"], "<redacted>");
        assert_eq!(v["event"]["details"]["auth_method"], "openid-connect");
    }

    #[test]
    fn hash_gives_the_same_pseudonym_for_the_same_value_and_hides_it() {
        let key = Secret::new("k1");
        let r = Redactor::new(&fields(&["/a", "/b"]), RedactionMode::Hash(key.clone())).unwrap();
        let mut v = json!({"a": "alice", "b": "alice"});
        r.apply(&mut v);
        let a = v["a"].as_str().unwrap();
        assert!(a.starts_with(HASH_PREFIX) && a.len() == HASH_PREFIX.len() + 64);
        assert_eq!(v["a"], v["b"]);
        assert!(!a.contains("alice"));
        // A different key gives a different pseudonym.
        let other = pseudonym(&Secret::new("k2"), "alice");
        assert_ne!(a, other);
    }

    #[test]
    fn hash_of_non_string_values_uses_their_json_text() {
        let key = Secret::new("k");
        let r = Redactor::new(&fields(&["/n"]), RedactionMode::Hash(key.clone())).unwrap();
        let mut v = json!({"n": {"x": 1}});
        r.apply(&mut v);
        assert_eq!(v["n"], pseudonym(&key, r#"{"x":1}"#));
    }

    #[test]
    fn null_values_stay_null() {
        let r = Redactor::new(&fields(&["/a"]), RedactionMode::Mask).unwrap();
        let mut v = json!({"a": null});
        assert_eq!(r.apply(&mut v), 0);
        assert!(v["a"].is_null());
    }

    #[test]
    fn pointer_escapes_and_array_indices_are_understood() {
        let r = Redactor::new(&fields(&["/a~1b/c~0d", "/list/1"]), RedactionMode::Mask).unwrap();
        let mut v = json!({"a/b": {"c~d": "x"}, "list": ["keep", "hide"]});
        assert_eq!(r.apply(&mut v), 2);
        assert_eq!(v["a/b"]["c~d"], "<redacted>");
        assert_eq!(v["list"], json!(["keep", "<redacted>"]));
    }

    #[test]
    fn fields_that_are_not_pointers_are_rejected_with_their_name() {
        let e = Redactor::new(&fields(&["event.ipAddress"]), RedactionMode::Mask).unwrap_err();
        assert!(e.to_string().contains("event.ipAddress"));
        assert!(Redactor::new(&fields(&["/a~2"]), RedactionMode::Mask).is_err());
    }

    #[test]
    fn empty_hash_key_is_rejected_and_key_never_shows_in_debug() {
        assert_eq!(
            Redactor::new(&[], RedactionMode::Hash(Secret::new(""))).unwrap_err(),
            RedactError::EmptyKey
        );
        let r = Redactor::new(&[], RedactionMode::Hash(Secret::new("topsecret"))).unwrap();
        assert!(!format!("{r:?}").contains("topsecret"));
    }
}
