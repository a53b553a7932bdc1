//! Strict checks of the wire formats the receiver accepts, answering the way the real products
//! do. Each check returns the accepted events or a rejection (status, body, reason).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A refused request: HTTP status, response body, and a short reason for the test log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
    pub reason: String,
}

fn refuse(status: u16, body: Value, reason: impl Into<String>) -> Refusal {
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

/// One `_bulk` item as the receiver recorded it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BulkItem {
    pub action: String,
    pub index: String,
    pub id: Option<String>,
    pub source: Option<Value>,
}

/// Elasticsearch / OpenSearch `_bulk`: `Content-Type: application/x-ndjson`, newline-terminated
/// NDJSON of action lines (`index`, `create`, `update`, `delete`) each followed by its source
/// (except `delete`); `_index` from the action or the URL.
pub fn parse_bulk(
    content_type: Option<&str>,
    url_index: Option<&str>,
    body: &[u8],
) -> Result<Vec<BulkItem>, Refusal> {
    let es_error = |status: u16, kind: &str, reason: &str| {
        refuse(
            status,
            json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}),
            reason,
        )
    };
    if !content_type.is_some_and(|c| c.starts_with("application/x-ndjson")) {
        return Err(es_error(
            406,
            "media_type_header_exception",
            "Content-Type must be application/x-ndjson for _bulk",
        ));
    }
    if body.is_empty() {
        return Err(es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err(es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| es_error(400, "parse_exception", "body is not UTF-8"))?;
    let mut lines = text.split('\n').filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    while let Some(line) = lines.next() {
        let action: Value = serde_json::from_str(line).map_err(|e| {
            es_error(
                400,
                "x_content_parse_exception",
                &format!("action line: {e}"),
            )
        })?;
        let obj = action.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            es_error(
                400,
                "illegal_argument_exception",
                "Malformed action/metadata line",
            )
        })?;
        let Some((name, meta)) = obj.iter().next() else {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                "Malformed action/metadata line",
            ));
        };
        if !matches!(name.as_str(), "index" | "create" | "update" | "delete") {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("Unknown action [{name}]"),
            ));
        }
        let meta = meta.as_object().ok_or_else(|| {
            es_error(
                400,
                "illegal_argument_exception",
                "action metadata must be an object",
            )
        })?;
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(url_index)
            .ok_or_else(|| {
                es_error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                )
            })?
            .to_string();
        let id = meta.get("_id").and_then(Value::as_str).map(str::to_string);
        let source = if name == "delete" {
            None
        } else {
            let src = lines.next().ok_or_else(|| {
                es_error(
                    400,
                    "illegal_argument_exception",
                    "action without a source line",
                )
            })?;
            let v: Value = serde_json::from_str(src).map_err(|e| {
                es_error(
                    400,
                    "x_content_parse_exception",
                    &format!("source line: {e}"),
                )
            })?;
            if !v.is_object() {
                return Err(es_error(
                    400,
                    "mapper_parsing_exception",
                    "source must be a JSON object",
                ));
            }
            Some(v)
        };
        items.push(BulkItem {
            action: name.clone(),
            index,
            id,
            source,
        });
    }
    Ok(items)
}

/// Applies bulk items to the document store and builds ES's answer. `reject` makes items whose
/// source contains the given text fail with the given status (item-level errors).
pub fn apply_bulk(
    store: &mut BTreeMap<(String, String), Value>,
    items: &[BulkItem],
    reject: Option<&(String, u16)>,
    next_id: &mut u64,
) -> Value {
    let mut results = Vec::new();
    let mut errors = false;
    for item in items {
        let id = item.id.clone().unwrap_or_else(|| {
            *next_id += 1;
            format!("auto-{next_id}")
        });
        let key = (item.index.clone(), id.clone());
        let rejected = reject.filter(|(needle, _)| {
            item.source
                .as_ref()
                .is_some_and(|s| s.to_string().contains(needle.as_str()))
        });
        let result = if let Some((_, status)) = rejected {
            errors = true;
            json!({"_index": item.index, "_id": id, "status": status,
                   "error": {"type": if *status == 429 { "es_rejected_execution_exception" } else { "mapper_parsing_exception" }, "reason": "rejected by the test receiver"}})
        } else {
            match item.action.as_str() {
                "delete" => {
                    let found = store.remove(&key).is_some();
                    json!({"_index": item.index, "_id": id, "result": if found { "deleted" } else { "not_found" }, "status": if found { 200 } else { 404 }})
                }
                "create" if store.contains_key(&key) => {
                    errors = true;
                    json!({"_index": item.index, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}})
                }
                _ => {
                    let existed = store
                        .insert(key, item.source.clone().unwrap_or(Value::Null))
                        .is_some();
                    json!({"_index": item.index, "_id": id, "_version": if existed { 2 } else { 1 }, "result": if existed { "updated" } else { "created" }, "status": if existed { 200 } else { 201 }})
                }
            }
        };
        results.push(json!({ item.action.clone(): result }));
    }
    json!({"took": 1, "errors": errors, "items": results})
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
    fn bulk_requires_ndjson_pairs_and_a_final_newline() {
        let body = "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n{\"delete\":{\"_id\":\"2\"}}\n";
        let items = parse_bulk(Some("application/x-ndjson"), Some("b"), body.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[1].action.as_str(), items[1].index.as_str()),
            ("delete", "b")
        );
        assert_eq!(
            parse_bulk(Some("application/json"), None, body.as_bytes())
                .unwrap_err()
                .status,
            406
        );
        assert!(
            parse_bulk(
                Some("application/x-ndjson"),
                None,
                body.trim_end().as_bytes()
            )
            .unwrap_err()
            .reason
            .contains("newline")
        );
        assert!(
            parse_bulk(
                Some("application/x-ndjson"),
                None,
                b"{\"index\":{}}\n{\"x\":1}\n"
            )
            .unwrap_err()
            .reason
            .contains("index is missing")
        );
    }

    #[test]
    fn bulk_index_with_the_same_id_overwrites_instead_of_duplicating() {
        let mut store = BTreeMap::new();
        let mut next = 0;
        let items = parse_bulk(
            Some("application/x-ndjson"),
            None,
            b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n",
        )
        .unwrap();
        let r1 = apply_bulk(&mut store, &items, None, &mut next);
        let r2 = apply_bulk(&mut store, &items, None, &mut next);
        assert_eq!(r1["items"][0]["index"]["status"], 201);
        assert_eq!(r2["items"][0]["index"]["result"], "updated");
        assert_eq!(store.len(), 1);
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
