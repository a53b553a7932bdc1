//! The MPAS (Keycloak Admin REST API) client: token handling and one page of events.
//!
//! [`EventSource`] is the capability the pull algorithm needs; [`HttpEventSource`] implements it
//! over HTTPS with a token cached across warm invocations, renewed 30 s before it expires, one
//! renewal and retry on a 401, and bounded retries on 5xx, 429 (honouring `Retry-After`),
//! transport errors and truncated or garbage bodies.

use std::future::Future;
use std::time::{Duration, Instant};

use authtrail_core::envelope::EventKind;
use authtrail_core::retry::{Backoff, Jitter, is_retryable_status, parse_retry_after};
use authtrail_core::secret::Secret;
use chrono::NaiveDate;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::Credentials;
use crate::error::SourceError;

/// A date filter value: epoch milliseconds (modern servers) or a whole UTC day (legacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateParam {
    /// Epoch milliseconds (Keycloak 26.2+).
    EpochMs(i64),
    /// A whole UTC day, `yyyy-MM-dd`.
    Day(NaiveDate),
}

impl DateParam {
    fn render(self) -> String {
        match self {
            DateParam::EpochMs(ms) => ms.to_string(),
            DateParam::Day(d) => d.format("%Y-%m-%d").to_string(),
        }
    }
}

/// One page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// `dateFrom` (inclusive).
    pub date_from: Option<DateParam>,
    /// `dateTo` (inclusive).
    pub date_to: Option<DateParam>,
    /// `first`: 0-based offset.
    pub first: u32,
    /// `max`: page size.
    pub max: u32,
    /// `Some(true)` sends `direction=asc`; `None` sends no direction (legacy servers).
    pub ascending: Option<bool>,
}

impl PageQuery {
    /// The query string parameters.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut params: Vec<(&str, String)> = Vec::with_capacity(5);
        if let Some(d) = self.date_from {
            params.push(("dateFrom", d.render()));
        }
        if let Some(d) = self.date_to {
            params.push(("dateTo", d.render()));
        }
        params.push(("first", self.first.to_string()));
        params.push(("max", self.max.to_string()));
        if let Some(asc) = self.ascending {
            params.push(("direction", if asc { "asc" } else { "desc" }.to_string()));
        }
        params
    }
}

/// Fetches pages of events of one kind.
pub trait EventSource: Send + Sync {
    /// One page of events of `kind` (after the client's own retries).
    fn fetch_page(
        &self,
        kind: EventKind,
        query: &PageQuery,
    ) -> impl Future<Output = Result<Vec<Value>, SourceError>> + Send;
}

struct CachedToken {
    value: Secret,
    renew_at: Instant,
}

/// One request's outcome: done, or worth another attempt after at least `wait`.
enum Attempt<T, F> {
    Done(T),
    Retry { wait: Duration, failure: F },
}

/// The HTTPS client for MPAS.
pub struct HttpEventSource {
    http: reqwest::Client,
    base_url: String,
    realm: String,
    credentials: Credentials,
    max_retries: u32,
    token: Mutex<Option<CachedToken>>,
}

/// Renew this long before the token expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(30);
/// Longest wait honoured from a `Retry-After` header or backoff.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// Backoff between attempts: full jitter below `50 ms * 2^attempt`, at most 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), MAX_RETRY_WAIT, Jitter::Full);

impl HttpEventSource {
    /// `credentials` must be resolved (not `SecretArn`). `ca_bundle_pem` adds trusted CAs
    /// (the system's stay trusted; verification is never turned off).
    pub fn new(
        base_url: &str,
        realm: &str,
        credentials: Credentials,
        timeout: Duration,
        max_retries: u32,
        ca_bundle_pem: Option<&[u8]>,
    ) -> Result<Self, SourceError> {
        if matches!(credentials, Credentials::SecretArn(_)) {
            return Err(SourceError::UnresolvedCredentials);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("authtrail-producer/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SourceError::CaBundle(e.to_string()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| SourceError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            realm: realm.to_string(),
            credentials,
            max_retries,
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one when it is about to expire.
    async fn token(&self, force_renew: bool) -> Result<Secret, SourceError> {
        let mut guard = self.token.lock().await;
        if !force_renew
            && let Some(t) = guard.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *guard = Some(fresh);
        Ok(value)
    }

    /// The token request's form fields for the configured grant.
    fn token_form(&self) -> Result<Vec<(&str, &str)>, SourceError> {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match &self.credentials {
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => {
                form.push(("grant_type", "client_credentials"));
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret.expose()));
            }
            Credentials::Password {
                client_id,
                client_secret,
                username,
                password,
            } => {
                form.push(("grant_type", "password"));
                form.push(("client_id", client_id));
                if let Some(s) = client_secret {
                    form.push(("client_secret", s.expose()));
                }
                form.push(("username", username));
                form.push(("password", password.expose()));
            }
            Credentials::SecretArn(_) => return Err(SourceError::UnresolvedCredentials),
        }
        Ok(form)
    }

    async fn request_token(&self) -> Result<CachedToken, SourceError> {
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base_url, self.realm
        );
        let form = self.token_form()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry_wait = match self.token_attempt(&url, &form).await? {
                Attempt::Done(token) => return Ok(token),
                Attempt::Retry { wait, failure: () } => wait,
            };
            if attempt > self.max_retries {
                return Err(SourceError::TokenUnavailable { attempts: attempt });
            }
            tokio::time::sleep(backoff(attempt, retry_wait)).await;
        }
    }

    /// One token request: a token, a retryable failure, or the credentials refused.
    async fn token_attempt(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Attempt<CachedToken, ()>, SourceError> {
        let retry = |wait| Ok(Attempt::Retry { wait, failure: () });
        let started = Instant::now();
        let Ok(resp) = self.http.post(url).form(form).send().await else {
            return retry(Duration::ZERO);
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return match read_token(resp, started).await {
                Some(token) => Ok(Attempt::Done(token)),
                None => retry(Duration::ZERO),
            };
        }
        if status == 401 || status == 400 {
            // Keycloak's error body names the problem; it never echoes credentials.
            let text = resp.text().await.unwrap_or_default();
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

    fn events_url(&self, kind: EventKind) -> String {
        let path = match kind {
            EventKind::User => "events",
            EventKind::Admin => "admin-events",
        };
        format!("{}/admin/realms/{}/{}", self.base_url, self.realm, path)
    }
}

/// The token of a successful token response (`None`: no usable token in the body), due for
/// renewal 30 s before it expires, or at half-life for very short tokens.
async fn read_token(resp: reqwest::Response, started: Instant) -> Option<CachedToken> {
    let body = resp.bytes().await.ok()?;
    let v = serde_json::from_slice::<Value>(&body).ok()?;
    let token = v.get("access_token").and_then(Value::as_str)?;
    let lifetime = Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(60));
    let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
    Some(CachedToken {
        value: Secret::new(token.to_string()),
        renew_at: started + lifetime - margin,
    })
}

/// The response's `Retry-After` (seconds or an HTTP date), if any.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The wait before the next attempt: the jittered backoff, at least `floor` (a `Retry-After`),
/// at most 5 s.
fn backoff(attempt: u32, floor: Duration) -> Duration {
    BACKOFF.delay(attempt).max(floor).min(MAX_RETRY_WAIT)
}

/// Transport errors without the URL's query (no secrets are in URLs, but keep lines short).
fn describe(e: reqwest::Error) -> String {
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
fn error_summary(text: &str) -> String {
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

/// Reads an events answer that is not a 401 to renew for: the events, a failure worth
/// retrying (5xx, 429, truncated or garbage body), or one that is not (400, 401/403, others).
async fn read_page(
    resp: reqwest::Response,
    attempt: u32,
) -> Result<Attempt<Vec<Value>, SourceError>, SourceError> {
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        return Err(SourceError::Forbidden { status });
    }
    if status == 400 {
        let text = resp.text().await.unwrap_or_default();
        return Err(SourceError::BadRequest(error_summary(&text)));
    }
    if resp.status().is_success() {
        let failure = match resp.bytes().await {
            Ok(body) => match serde_json::from_slice::<Vec<Value>>(&body) {
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
            Err(e) => SourceError::Transport {
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

impl EventSource for HttpEventSource {
    async fn fetch_page(
        &self,
        kind: EventKind,
        query: &PageQuery,
    ) -> Result<Vec<Value>, SourceError> {
        let url = self.events_url(kind);
        let params = query.params();
        let mut attempt = 0u32;
        let mut renewed = false;
        let mut force_renew = false;
        loop {
            attempt += 1;
            let token = self.token(force_renew).await?;
            force_renew = false;
            let result = self
                .http
                .get(&url)
                .query(&params)
                .bearer_auth(token.expose())
                .send()
                .await;
            let outcome = match result {
                Err(e) => Attempt::Retry {
                    wait: Duration::ZERO,
                    failure: SourceError::Transport {
                        detail: describe(e),
                        attempts: attempt,
                    },
                },
                Ok(resp) if resp.status().as_u16() == 401 && !renewed => {
                    // The token expired or was revoked mid-pull: renew once and retry.
                    tracing::info!(kind = kind.as_str(), "MPAS answered 401; renewing token");
                    renewed = true;
                    force_renew = true;
                    attempt -= 1;
                    continue;
                }
                Ok(resp) => read_page(resp, attempt).await?,
            };
            let (wait, failure) = match outcome {
                Attempt::Done(events) => return Ok(events),
                Attempt::Retry { wait, failure } => (wait, failure),
            };
            if attempt > self.max_retries {
                return Err(failure);
            }
            tracing::warn!(kind = kind.as_str(), attempt, error = %failure, "MPAS request failed; retrying");
            tokio::time::sleep(backoff(attempt, wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn date_params_render_as_epoch_ms_or_day() {
        assert_eq!(
            DateParam::EpochMs(1_700_000_000_123).render(),
            "1700000000123"
        );
        let d = NaiveDate::from_ymd_opt(2025, 2, 12).unwrap();
        assert_eq!(DateParam::Day(d).render(), "2025-02-12");
    }

    #[test]
    fn backoff_honours_retry_after_floor_and_caps_at_five_seconds() {
        assert_eq!(backoff(1, Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(backoff(1, Duration::from_secs(60)), MAX_RETRY_WAIT);
        assert!(backoff(30, Duration::ZERO) <= MAX_RETRY_WAIT);
    }

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
}
