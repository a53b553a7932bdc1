//! Strict checks of the wire formats the receiver accepts, answering the way the real products
//! do. Each check returns the accepted events or a rejection (status, body, reason).

use serde_json::{Value, json};

/// A refused request: HTTP status, response body, and a short reason for the test log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
    pub reason: String,
}

pub(crate) fn refuse(status: u16, body: Value, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        body,
        reason: reason.into(),
    }
}

fn splunk(status: u16, code: u32, text: &str) -> Refusal {
    refuse(status, json!({"text": text, "code": code}), text)
}

/// Splunk HEC `/services/collector/event`: `Authorization: Splunk <token>`; the body is one or
/// more JSON event objects (concatenated, whitespace between them allowed), each with `time`
/// (epoch seconds, number), `host`, `source`, `sourcetype` (strings) and a non-empty `event`.
pub fn check_splunk(
    authorization: Option<&str>,
    token: &str,
    body: &[u8],
) -> Result<Vec<Value>, Refusal> {
    let Some(auth) = authorization else {
        return Err(splunk(401, 2, "Token is required"));
    };
    let Some(given) = auth.strip_prefix("Splunk ") else {
        return Err(splunk(401, 3, "Invalid authorization"));
    };
    if given != token {
        return Err(splunk(403, 4, "Invalid token"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(splunk(400, 5, "No data"));
    }
    let mut events = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        let bad = |code: u32, text: &str| {
            refuse(
                400,
                json!({"text": text, "code": code, "invalid-event-number": n}),
                format!("event {n}: {text}"),
            )
        };
        let v = item.map_err(|_| bad(6, "Invalid data format"))?;
        let Some(obj) = v.as_object() else {
            return Err(bad(6, "Invalid data format"));
        };
        match obj.get("event") {
            None | Some(Value::Null) => return Err(bad(12, "Event field is required")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(bad(13, "Event field cannot be blank"));
            }
            _ => {}
        }
        if !obj.get("time").is_some_and(Value::is_number) {
            return Err(bad(6, "Invalid data format"));
        }
        for key in ["host", "source", "sourcetype"] {
            if !obj.get(key).is_some_and(Value::is_string) {
                return Err(bad(6, "Invalid data format"));
            }
        }
        events.push(v);
    }
    Ok(events)
}

/// How `/ingest` authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IngestAuth {
    #[default]
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
}

/// Generic JSON endpoint: NDJSON (`application/x-ndjson`) or a JSON array (`application/json`)
/// of objects, with bearer or basic authentication when configured.
pub fn check_ingest(
    auth: &IngestAuth,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, Refusal> {
    let unauthorized = || {
        refuse(
            401,
            json!({"error": "unauthorized"}),
            "bad or missing credentials",
        )
    };
    match auth {
        IngestAuth::None => {}
        IngestAuth::Bearer(token) => {
            if authorization.and_then(|a| a.strip_prefix("Bearer ")) != Some(token.as_str()) {
                return Err(unauthorized());
            }
        }
        IngestAuth::Basic { username, password } => {
            use base64::Engine;
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            if authorization.and_then(|a| a.strip_prefix("Basic ")) != Some(expected.as_str()) {
                return Err(unauthorized());
            }
        }
    }
    let ct = content_type.unwrap_or_default();
    let bad = |reason: String| refuse(400, json!({"error": reason.clone()}), reason);
    let events: Vec<Value> = if ct.starts_with("application/x-ndjson") {
        let text = std::str::from_utf8(body).map_err(|_| bad("body is not UTF-8".into()))?;
        text.split('\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str::<Value>(l).map_err(|e| bad(format!("line {i}: {e}")))
            })
            .collect::<Result<_, _>>()?
    } else if ct.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body).map_err(|e| bad(format!("body: {e}")))? {
            Value::Array(items) => items,
            _ => return Err(bad("a JSON body must be an array of events".into())),
        }
    } else {
        return Err(refuse(
            415,
            json!({"error": "unsupported media type"}),
            format!("Content-Type {ct:?}"),
        ));
    };
    if let Some(i) = events.iter().position(|e| !e.is_object()) {
        return Err(bad(format!("event {i} is not a JSON object")));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"{"time":1739388470.156,"host":"h","source":"s","sourcetype":"_json","event":{"a":1}}
{"time":1739388471,"host":"h","source":"s","sourcetype":"_json","event":{"a":2}}"#;

    #[test]
    fn splunk_accepts_concatenated_event_objects_with_the_right_token() {
        assert_eq!(
            check_splunk(Some("Splunk t"), "t", GOOD.as_bytes())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn splunk_answers_with_its_own_codes_for_auth_and_format_errors() {
        assert_eq!(
            check_splunk(None, "t", GOOD.as_bytes()).unwrap_err().body["code"],
            2
        );
        assert_eq!(
            check_splunk(Some("Bearer t"), "t", GOOD.as_bytes())
                .unwrap_err()
                .status,
            401
        );
        let e = check_splunk(Some("Splunk x"), "t", GOOD.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.body["code"].as_u64()), (403, Some(4)));
        let e = check_splunk(
            Some("Splunk t"),
            "t",
            br#"{"time":1,"host":"h","source":"s","sourcetype":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.body["code"], 12);
        let e = check_splunk(
            Some("Splunk t"),
            "t",
            br#"{"host":"h","source":"s","sourcetype":"x","event":1}"#,
        )
        .unwrap_err();
        assert_eq!(
            (
                e.body["code"].as_u64(),
                e.body["invalid-event-number"].as_u64()
            ),
            (Some(6), Some(0))
        );
    }

    #[test]
    fn ingest_checks_auth_and_accepts_ndjson_or_arrays() {
        let bearer = IngestAuth::Bearer("tok".into());
        assert_eq!(
            check_ingest(
                &bearer,
                Some("Bearer tok"),
                Some("application/x-ndjson"),
                b"{\"a\":1}\n{\"b\":2}\n"
            )
            .unwrap()
            .len(),
            2
        );
        assert_eq!(
            check_ingest(&bearer, Some("Bearer no"), Some("application/json"), b"[]")
                .unwrap_err()
                .status,
            401
        );
        let basic = IngestAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(
            check_ingest(
                &basic,
                Some("Basic dTpw"),
                Some("application/json"),
                b"[{\"a\":1}]"
            )
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            check_ingest(&IngestAuth::None, None, Some("text/plain"), b"x")
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_ingest(
                &IngestAuth::None,
                None,
                Some("application/json"),
                b"{\"a\":1}"
            )
            .unwrap_err()
            .status,
            400
        );
    }
}
