//! Reading MPAS answers: bodies read incrementally under a cap (counted after gzip decoding, so
//! a compression bomb stops at the cap), redirects reported instead of followed, the token of a
//! token answer (its lifetime capped), a page of events, and Keycloak's error summaries.

use std::time::{Duration, Instant};

use authtrail_core::retry::{is_retryable_status, parse_retry_after};
use authtrail_core::secret::Secret;
use serde_json::Value;

use crate::config::without_userinfo;
use crate::error::{MpasEndpoint, SourceError};

/// Largest token answer read (512 KiB): a Keycloak token answer with a large JWT is tens of KB.
pub const TOKEN_BODY_LIMIT: usize = 512 * 1024;
/// Bytes of an error answer (400/401) read for its summary; the rest is dropped unread.
const ERROR_BODY_PREFIX: usize = 64 * 1024;
/// Renew this long before the token expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the token answer has no usable `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest token lifetime believed (24 h); a larger `expires_in` is capped to it.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token and when to renew it.
pub(super) struct CachedToken {
    pub(super) value: Secret,
    pub(super) renew_at: Instant,
}

/// One request's outcome: done, or worth another attempt after at least `wait`.
pub(super) enum Attempt<T, F> {
    Done(T),
    Retry { wait: Duration, failure: F },
}

/// A body read under a cap.
enum Capped {
    /// The whole body, at most the cap.
    Complete(Vec<u8>),
    /// The body is larger than the cap (reading stopped there).
    TooLarge,
    /// The body broke off.
    Failed(reqwest::Error),
}

/// Reads `resp`'s (decoded) body chunk by chunk, stopping as soon as it exceeds `limit`.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Capped {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Capped::TooLarge;
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if chunk.len() > limit.saturating_sub(body.len()) {
                    return Capped::TooLarge;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Capped::Complete(body),
            Err(e) => return Capped::Failed(e),
        }
    }
}

/// At most the first `ERROR_BODY_PREFIX` bytes of an error answer, as text.
async fn read_error_text(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_PREFIX {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_PREFIX - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The error for a 3xx answer (redirects are never followed): its status and `Location`,
/// resolved against the request URL, without userinfo or query.
pub(super) fn redirected(endpoint: MpasEndpoint, resp: &reqwest::Response) -> SourceError {
    let location = match resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    {
        None => "(no Location header)".to_string(),
        Some(raw) => match resp.url().join(raw) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                let had_query = url.query().is_some();
                url.set_query(None);
                url.set_fragment(None);
                let mut shown = url.to_string();
                if had_query {
                    shown.push_str("?…");
                }
                shown
            }
            Err(_) => without_userinfo(raw).chars().take(200).collect(),
        },
    };
    SourceError::Redirected {
        endpoint,
        status: resp.status().as_u16(),
        location,
    }
}

/// Reads a token endpoint answer that is not a redirect: a token, a retryable failure, or
/// the credentials refused.
pub(super) async fn read_token_answer(
    resp: reqwest::Response,
    started: Instant,
) -> Result<Attempt<CachedToken, ()>, SourceError> {
    let retry = |wait| Ok(Attempt::Retry { wait, failure: () });
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return match read_capped(resp, TOKEN_BODY_LIMIT).await {
            Capped::Complete(body) => match parse_token(&body, started) {
                Some(token) => Ok(Attempt::Done(token)),
                None => retry(Duration::ZERO),
            },
            Capped::TooLarge => Err(SourceError::TooLarge {
                endpoint: MpasEndpoint::Token,
                limit: TOKEN_BODY_LIMIT,
            }),
            Capped::Failed(_) => retry(Duration::ZERO),
        };
    }
    if status == 401 || status == 400 {
        // Keycloak's error body names the problem; it never echoes credentials.
        let text = read_error_text(resp).await;
        return Err(SourceError::TokenRejected {
            status,
            reason: error_summary(&text),
        });
    }
    if is_retryable_status(status) {
        return retry(retry_after(&resp).unwrap_or(Duration::ZERO));
    }
    Err(SourceError::TokenStatus { status })
}

/// The token of a token answer's body (`None`: no usable token), due for renewal 30 s before
/// it expires, or at half-life for very short tokens. `expires_in` is believed up to 24 h; a
/// missing, negative or non-integer one counts as 60 s.
pub(super) fn parse_token(body: &[u8], started: Instant) -> Option<CachedToken> {
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let token = v.get("access_token").and_then(Value::as_str)?;
    let lifetime = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
            Duration::from_secs(s).min(MAX_TOKEN_LIFETIME)
        });
    let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
    let renew_at = started
        .checked_add(lifetime - margin)
        .unwrap_or_else(Instant::now);
    Some(CachedToken {
        value: Secret::new(token.to_string()),
        renew_at,
    })
}

/// Reads an events answer that is not a 401 to renew for: the events, a failure worth
/// retrying (5xx, 429, truncated or garbage body), or one that is not (3xx, 400, 401/403,
/// a body over `limit`, others).
pub(super) async fn read_page(
    resp: reqwest::Response,
    attempt: u32,
    limit: usize,
) -> Result<Attempt<Vec<Value>, SourceError>, SourceError> {
    let status = resp.status().as_u16();
    if resp.status().is_redirection() {
        return Err(redirected(MpasEndpoint::Events, &resp));
    }
    if status == 401 || status == 403 {
        return Err(SourceError::Forbidden { status });
    }
    if status == 400 {
        let text = read_error_text(resp).await;
        return Err(SourceError::BadRequest(error_summary(&text)));
    }
    if resp.status().is_success() {
        let failure = match read_capped(resp, limit).await {
            Capped::Complete(body) => match serde_json::from_slice::<Vec<Value>>(&body) {
                Ok(events) => return Ok(Attempt::Done(events)),
                Err(e) => SourceError::Garbage {
                    detail: format!(
                        "{} bytes, parse error at line {} column {}",
                        body.len(),
                        e.line(),
                        e.column()
                    ),
                    attempts: attempt,
                },
            },
            Capped::TooLarge => {
                return Err(SourceError::TooLarge {
                    endpoint: MpasEndpoint::Events,
                    limit,
                });
            }
            Capped::Failed(e) => SourceError::Transport {
                detail: describe(e),
                attempts: attempt,
            },
        };
        return Ok(Attempt::Retry {
            wait: Duration::ZERO,
            failure,
        });
    }
    if is_retryable_status(status) {
        return Ok(Attempt::Retry {
            wait: retry_after(&resp).unwrap_or(Duration::ZERO),
            failure: SourceError::Status {
                status,
                attempts: attempt,
            },
        });
    }
    Err(SourceError::Status {
        status,
        attempts: attempt,
    })
}

/// The response's `Retry-After` (seconds or an HTTP date), if any.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Transport errors without the URL's query (no secrets are in URLs, but keep lines short).
pub(super) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("{kind} error: {}", e.without_url())
}

/// The `error`/`error_description` of a Keycloak error body, or a short prefix of it.
pub(super) fn error_summary(text: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let err = v.get("error").and_then(Value::as_str).unwrap_or("");
        let desc = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !err.is_empty() || !desc.is_empty() {
            return format!("{err} {desc}").trim().to_string();
        }
    }
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keycloak_error_bodies_are_summarised() {
        assert_eq!(
            error_summary(
                r#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#
            ),
            "invalid_client Invalid client credentials"
        );
        assert_eq!(error_summary("plain"), "plain");
    }

    #[test]
    fn an_absurd_expires_in_is_capped_instead_of_overflowing_the_clock() {
        let started = Instant::now();
        for body in [
            r#"{"access_token":"t","expires_in":18446744073709551615}"#,
            r#"{"access_token":"t","expires_in":1e300}"#,
            r#"{"access_token":"t","expires_in":99999999999}"#,
        ] {
            let t = parse_token(body.as_bytes(), started).unwrap();
            assert!(t.renew_at <= started + MAX_TOKEN_LIFETIME, "{body}");
        }
    }

    #[test]
    fn a_negative_or_missing_expires_in_counts_as_sixty_seconds() {
        let started = Instant::now();
        for body in [
            r#"{"access_token":"t","expires_in":-5}"#,
            r#"{"access_token":"t"}"#,
            r#"{"access_token":"t","expires_in":"soon"}"#,
        ] {
            let t = parse_token(body.as_bytes(), started).unwrap();
            assert_eq!(t.renew_at, started + Duration::from_secs(30), "{body}");
        }
        let t = parse_token(br#"{"access_token":"t","expires_in":0}"#, started).unwrap();
        assert_eq!(t.renew_at, started);
    }
}
