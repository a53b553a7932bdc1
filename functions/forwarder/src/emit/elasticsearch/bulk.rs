//! Reading a `_bulk` answer: per-item results, so that one refused document does not fail its
//! neighbours.

use serde_json::Value;

use authtrail_core::retry::is_retryable_status;

use crate::emit::{Failure, Outcome, all};

/// Per-item results of a 2xx `_bulk` answer for `n` documents. When the answer says
/// `errors: false` (or cannot be read although the status was 2xx) every item was taken.
/// Items answered 429 or 5xx (or without a status) are retried, other item errors are
/// permanent.
pub fn items(text: &str, n: usize) -> Vec<Outcome> {
    /// The answer's `errors` flag alone: the items are only read when it is `true`.
    #[derive(serde::Deserialize)]
    struct Flag {
        errors: Option<Value>,
    }
    match serde_json::from_str::<Flag>(text) {
        Ok(Flag {
            errors: Some(Value::Bool(true)),
        })
        | Err(_) => {}
        Ok(_) => return all(n, Outcome::Delivered),
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return all(n, Outcome::Delivered);
    };
    if v.get("errors").and_then(Value::as_bool) != Some(true) {
        return all(n, Outcome::Delivered);
    }
    let Some(items) = v.get("items").and_then(Value::as_array) else {
        return all(
            n,
            Outcome::Retryable(Failure::new("bulk", "errors: true without items")),
        );
    };
    if items.len() != n {
        return all(
            n,
            Outcome::Retryable(Failure::new(
                "bulk",
                format!("{} items for {n} documents", items.len()),
            )),
        );
    }
    items.iter().map(item_outcome).collect()
}

/// The outcome of one item (`{"index": {"status": 201, ...}}`).
fn item_outcome(item: &Value) -> Outcome {
    let result = item.as_object().and_then(|o| o.values().next());
    let status = result
        .and_then(|r| r.get("status"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as u16;
    if (200..300).contains(&status) {
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
