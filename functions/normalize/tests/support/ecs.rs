//! A checker of ECS 8.x documents: the fields every document must have, the allowed values of
//! the categorization fields (ECS's `event.kind`, `event.category`, `event.type` with the types
//! each category expects, `event.outcome`), IP-typed fields holding IP addresses, and the
//! field sets this crate writes (a short list, not the whole of ECS).

use std::net::IpAddr;

use serde_json::Value;

/// ECS `event.kind` values.
const KINDS: &[&str] = &[
    "alert",
    "asset",
    "enrichment",
    "event",
    "metric",
    "state",
    "pipeline_error",
    "signal",
];

/// ECS `event.category` values with the `event.type` values each expects.
const CATEGORIES: &[(&str, &[&str])] = &[
    ("authentication", &["start", "end", "info"]),
    (
        "configuration",
        &["access", "change", "creation", "deletion", "info"],
    ),
    (
        "iam",
        &[
            "admin", "change", "creation", "deletion", "group", "info", "user",
        ],
    ),
    ("session", &["start", "end", "info"]),
    (
        "network",
        &[
            "access",
            "allowed",
            "connection",
            "denied",
            "end",
            "info",
            "protocol",
            "start",
        ],
    ),
    ("web", &["access", "error", "info"]),
];

/// ECS `event.outcome` values.
const OUTCOMES: &[&str] = &["failure", "success", "unknown"];

/// Top-level fields this crate writes, all ECS field sets (`labels`, `tags` included).
const TOP_LEVEL: &[&str] = &[
    "@timestamp",
    "ecs",
    "event",
    "observer",
    "message",
    "user",
    "group",
    "source",
    "user_agent",
    "related",
    "labels",
    "tags",
];

/// ECS fields of the `user` field set this crate writes (`target` is the reused `user`).
const USER_FIELDS: &[&str] = &[
    "id",
    "name",
    "domain",
    "target",
    "email",
    "full_name",
    "roles",
];

/// ECS fields of `event` this crate writes.
const EVENT_FIELDS: &[&str] = &[
    "kind", "category", "type", "action", "outcome", "id", "reason", "provider", "original",
];

/// The tag of documents the mapping does not know.
pub const UNMAPPED_TAG: &str = "authtrail-unmapped";

fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    v?.as_array()?.iter().map(Value::as_str).collect()
}

fn is_ip(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok())
}

fn is_rfc3339_utc_ms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Every way `doc` departs from ECS as this crate writes it (empty: it follows it).
pub fn check(doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(obj) = doc.as_object() else {
        return vec!["the document is not a JSON object".into()];
    };
    for k in obj.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) {
            errors.push(format!("{k}: not a field set this crate writes"));
        }
    }
    let text = |p: &str| doc.pointer(p).and_then(Value::as_str);
    if !text("/@timestamp").is_some_and(is_rfc3339_utc_ms) {
        errors.push(format!(
            "@timestamp: {:?} is not RFC 3339 UTC",
            doc.get("@timestamp")
        ));
    }
    if !text("/ecs/version").is_some_and(|v| v.starts_with("8.")) {
        errors.push("ecs.version: must be 8.x".into());
    }
    if !text("/event/kind").is_some_and(|k| KINDS.contains(&k)) {
        errors.push(format!(
            "event.kind: {:?} not allowed",
            doc.pointer("/event/kind")
        ));
    }
    if !text("/event/outcome").is_some_and(|o| OUTCOMES.contains(&o)) {
        errors.push(format!(
            "event.outcome: {:?} not allowed",
            doc.pointer("/event/outcome")
        ));
    }
    if text("/event/action").is_none_or(str::is_empty) {
        errors.push("event.action: required".into());
    }
    if text("/event/original").is_none() {
        errors.push("event.original: required (the record as text)".into());
    }
    for k in doc
        .get("event")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if !EVENT_FIELDS.contains(&k.as_str()) {
            errors.push(format!("event.{k}: not an event field this crate writes"));
        }
    }
    let unmapped = strings(doc.get("tags")).is_some_and(|t| t.contains(&UNMAPPED_TAG));
    let categories = strings(doc.pointer("/event/category"));
    let types = strings(doc.pointer("/event/type"));
    match (categories, types) {
        (Some(cats), Some(types)) if !cats.is_empty() && !types.is_empty() => {
            let mut expected: Vec<&str> = Vec::new();
            for c in &cats {
                match CATEGORIES.iter().find(|(name, _)| name == c) {
                    Some((_, t)) => expected.extend_from_slice(t),
                    None => errors.push(format!("event.category: {c:?} not allowed")),
                }
            }
            for t in &types {
                if !expected.contains(t) {
                    errors.push(format!(
                        "event.type: {t:?} not expected for categories {cats:?}"
                    ));
                }
            }
        }
        (None, None) if unmapped => {}
        other => errors.push(format!(
            "event.category / event.type: must be non-empty arrays of strings (got {other:?})"
        )),
    }
    for base in ["/user", "/user/target"] {
        if let Some(u) = doc.pointer(base).and_then(Value::as_object) {
            for (k, v) in u {
                if !USER_FIELDS.contains(&k.as_str()) || (k != "target" && !v.is_string()) {
                    errors.push(format!("{base}/{k}: not a user field of type keyword"));
                }
            }
        }
    }
    if let Some(ip) = doc.pointer("/source/ip")
        && !is_ip(ip)
    {
        errors.push(format!("source.ip: {ip} is not an IP address"));
    }
    for ip in doc
        .pointer("/related/ip")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !is_ip(ip) {
            errors.push(format!("related.ip: {ip} is not an IP address"));
        }
    }
    for (k, v) in doc
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !v.is_string() {
            errors.push(format!("labels.{k}: labels are keywords (strings)"));
        }
    }
    errors
}
