//! The Keycloak endpoints: `token` (the OpenID Connect token endpoint and the bearer tokens it
//! issues) and `events` (user and admin events, with Keycloak's query parameters). This module
//! holds what both answer with: JSON bodies, OAuth errors and the injected faults.

mod events;
mod token;

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::FaultRates;
use crate::state::Fault;

pub(crate) use events::{admin_events, user_events};
pub(crate) use token::token;

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An OAuth error answer: `{"error":…,"error_description":…}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// Keycloak's answer to an unexpected server error.
fn server_error() -> Response {
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unknown_error",
        "For more on this error consult the server log.",
    )
}

/// A 429 with `Retry-After` in seconds.
fn too_many(retry_after_secs: u64) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Applies the "before" half of a fault: an error answer to return, or a delay.
async fn pre_fault(fault: Fault, rates: &FaultRates) -> Option<Response> {
    match fault {
        Fault::Error500 => Some(server_error()),
        Fault::TooMany429 => Some(too_many(rates.retry_after_secs)),
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(rates.slow_ms)).await;
            None
        }
        Fault::Truncate | Fault::None => None,
    }
}
