//! Reading a `_bulk` answer: per-item results, so that one refused document does not fail its
//! neighbours.

use serde_json::Value;

use authtrail_core::retry::is_retryable_status;

use crate::emit::{Failure, Outcome, all};

/// Per-item results of a 2xx `_bulk` answer for `n` documents. `errors: false` means every
/// item was taken. An answer that cannot be read as a `_bulk` response (not JSON, no `errors`
/// flag, `errors: true` without one item per document) says nothing about what was stored: every
/// document is retried. Items answered 409 (a `create` of an id that exists: an earlier delivery
/// stored it) are delivered; 429, 5xx or no status are retried; other item errors are permanent.
pub fn items(text: &str, n: usize) -> Vec<Outcome> {
    /// The answer's `errors` flag alone: the items are only read when it is `true`.
    #[derive(serde::Deserialize)]
    struct Flag {
        errors: Option<bool>,
    }
    let unknown = |why: String| all(n, Outcome::Retryable(Failure::new("bulk", why)));
    match serde_json::from_str::<Flag>(text) {
        Ok(Flag {
            errors: Some(false),
        }) => return all(n, Outcome::Delivered),
        Ok(Flag { errors: Some(true) }) => {}
        Ok(Flag { errors: None }) => {
            return unknown("answer without an errors flag: outcome unknown".into());
        }
        Err(e) => {
            return unknown(format!(
                "answer is not a _bulk response (line {} column {}): outcome unknown",
                e.line(),
                e.column()
            ));
        }
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return unknown("answer is not JSON: outcome unknown".into());
    };
    let Some(items) = v.get("items").and_then(Value::as_array) else {
        return unknown("errors: true without items".into());
    };
    if items.len() != n {
        return unknown(format!("{} items for {n} documents", items.len()));
    }
    items.iter().map(item_outcome).collect()
}

/// The outcome of one item (`{"create": {"status": 201, ...}}`).
fn item_outcome(item: &Value) -> Outcome {
    let result = item.as_object().and_then(|o| o.values().next());
    let status = result
        .and_then(|r| r.get("status"))
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    // 409 on `create`: the document with this id exists, stored by an earlier delivery.
    if (200..300).contains(&status) || status == 409 {
        return Outcome::Delivered;
    }
    let error = result
        .and_then(|r| r.get("error"))
        .map(|e| e.to_string())
        .unwrap_or_default();
    let failure = Failure::new(status.to_string(), error);
    if is_retryable_status(status) || status == 0 {
        Outcome::Retryable(failure)
    } else {
        Outcome::Permanent(failure)
    }
}
