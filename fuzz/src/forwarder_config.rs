//! The forwarder's JSON configuration (`ForwarderConfig::parse`).
//!
//! Besides "no panic", two properties: the value of a secret field (`token`, `password`,
//! `hmacKey`, ...) never appears in the error of a refused configuration nor in the `Debug`
//! output of an accepted one.

use authtrail_forwarder::config::ForwarderConfig;
use serde_json::Value;

/// Keys whose string values are secrets.
const SECRET_KEYS: &[&str] = &["token", "password", "hmacKey", "apiKey", "secret"];

/// One input: the configuration text.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = ForwarderConfig::parse(text);
    let secrets = secrets_in(text);
    if secrets.is_empty() {
        return;
    }
    let shown = match &result {
        Ok(config) => format!("{config:?}"),
        Err(e) => format!("{e} / {e:?}"),
    };
    for s in secrets {
        assert!(
            !shown.contains(&s),
            "a secret value appears in {}: {shown}",
            if result.is_ok() { "Debug" } else { "the error" }
        );
    }
}

/// String values of secret keys that are distinctive enough to be searched for: at least 12
/// characters, without JSON escapes (their text is their value) and found once in the input.
fn secrets_in(text: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    collect(&value, &mut found);
    found.retain(|s| s.len() >= 12 && text.matches(s.as_str()).count() == 1);
    found
}

fn collect(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) => {
                        if !s.contains(['\\', '"']) {
                            found.push(s.clone());
                        }
                    }
                    _ => collect(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}
