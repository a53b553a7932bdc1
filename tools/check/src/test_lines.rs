//! Record lines for the unit tests: ledger entries and envelopes.

use serde_json::{Value, json};

/// A ledger entry line (`/sim/ledger`) for `event`.
pub(crate) fn ledger_line(kind: &str, event: Value) -> Vec<u8> {
    json!({"seq": 0, "kind": kind, "id": "x", "time": event["time"], "event": event})
        .to_string()
        .into_bytes()
}

/// An envelope line (Contract 1) for `event`.
pub(crate) fn envelope(kind: &str, event: Value) -> Vec<u8> {
    json!({"timestamp": "t", "eventType": kind, "event": event})
        .to_string()
        .into_bytes()
}
