//! The MPAS (Keycloak Admin REST API) client: token handling and one page of events.
//!
//! [`EventSource`] is the capability the pull algorithm needs; [`HttpEventSource`] implements it
//! over HTTPS with a token cached across warm invocations, renewed 30 s before it expires, one
//! renewal and retry on a 401, and bounded retries on 5xx, 429 (honouring `Retry-After`),
//! transport errors and truncated or garbage bodies.

use std::future::Future;
use std::time::{Duration, Instant};

use authtrail_core::envelope::EventKind;
use authtrail_core::secret::Secret;
use chrono::NaiveDate;
use rand::Rng;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::Credentials;

/// A date filter value: epoch milliseconds (modern servers) or a whole UTC day (legacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateParam {
    EpochMs(i64),
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
    pub date_from: Option<DateParam>,
    pub date_to: Option<DateParam>,
    pub first: u32,
    pub max: u32,
    /// `Some(true)` sends `direction=asc`; `None` sends no direction (legacy servers).
    pub ascending: Option<bool>,
}

/// Why a page could not be fetched (after the client's own retries).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// 400: the server rejected the query (a legacy server rejects epoch dates).
    #[error("MPAS rejected the query with HTTP 400: {0}")]
    BadRequest(String),
    #[error("MPAS authentication failed: {0}")]
    Auth(String),
    #[error("MPAS answered HTTP {status} after {attempts} attempts")]
    Status { status: u16, attempts: u32 },
    #[error(
        "MPAS returned a body that is not a JSON array of events after {attempts} attempts: {detail}"
    )]
    Garbage { detail: String, attempts: u32 },
    #[error("MPAS request failed after {attempts} attempts: {detail}")]
    Transport { detail: String, attempts: u32 },
    #[error("MPAS client set-up failed: {0}")]
    Setup(String),
}

/// Fetches pages of events of one kind.
pub trait EventSource: Send + Sync {
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
            return Err(SourceError::Setup(
                "credentials from a secret must be resolved before building the client".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("authtrail-producer/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SourceError::Setup(format!("MPAS_CA_BUNDLE is not PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| SourceError::Setup(e.to_string()))?;
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

    async fn request_token(&self) -> Result<CachedToken, SourceError> {
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base_url, self.realm
        );
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
            Credentials::SecretArn(_) => {
                return Err(SourceError::Setup("unresolved credentials".into()));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.http.post(&url).form(&form).send().await;
            let retry_wait = match result {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let body = resp.bytes().await.map_err(|e| SourceError::Transport {
                            detail: describe(e),
                            attempts: attempt,
                        });
                        match body.map(|b| serde_json::from_slice::<Value>(&b)) {
                            Ok(Ok(v)) => {
                                if let Some(token) = v.get("access_token").and_then(Value::as_str) {
                                    let lifetime = Duration::from_secs(
                                        v.get("expires_in").and_then(Value::as_u64).unwrap_or(60),
                                    );
                                    // Renew 30 s early, or at half-life for very short tokens.
                                    let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
                                    return Ok(CachedToken {
                                        value: Secret::new(token.to_string()),
                                        renew_at: started + lifetime - margin,
                                    });
                                }
                                None
                            }
                            _ => None,
                        }
                        .unwrap_or(Duration::ZERO)
                    } else if status.as_u16() == 401 || status.as_u16() == 400 {
                        // Keycloak's error body names the problem; it never echoes credentials.
                        let text = resp.text().await.unwrap_or_default();
                        return Err(SourceError::Auth(format!(
                            "token endpoint answered HTTP {}: {}",
                            status.as_u16(),
                            error_summary(&text)
                        )));
                    } else if is_retryable(status.as_u16()) {
                        retry_after(&resp).unwrap_or(Duration::ZERO)
                    } else {
                        return Err(SourceError::Auth(format!(
                            "token endpoint answered HTTP {}",
                            status.as_u16()
                        )));
                    }
                }
                Err(_) => Duration::ZERO,
            };
            if attempt > self.max_retries {
                return Err(SourceError::Auth(format!(
                    "no token after {attempt} attempts"
                )));
            }
            tokio::time::sleep(backoff(attempt, retry_wait)).await;
        }
    }

    fn events_url(&self, kind: EventKind) -> String {
        let path = match kind {
            EventKind::User => "events",
            EventKind::Admin => "admin-events",
        };
        format!("{}/admin/realms/{}/{}", self.base_url, self.realm, path)
    }
}

fn is_retryable(status: u16) -> bool {
    status == 429 || status == 408 || (500..=599).contains(&status)
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Exponential backoff with full jitter (50 ms base), at least `floor`, at most 5 s.
fn backoff(attempt: u32, floor: Duration) -> Duration {
    let cap = Duration::from_millis(50u64.saturating_mul(1 << attempt.min(10)));
    let jitter = rand::rng().random_range(0..=cap.as_millis() as u64);
    Duration::from_millis(jitter).max(floor).min(MAX_RETRY_WAIT)
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

impl EventSource for HttpEventSource {
    async fn fetch_page(
        &self,
        kind: EventKind,
        query: &PageQuery,
    ) -> Result<Vec<Value>, SourceError> {
        let url = self.events_url(kind);
        let mut params: Vec<(&str, String)> = Vec::with_capacity(5);
        if let Some(d) = query.date_from {
            params.push(("dateFrom", d.render()));
        }
        if let Some(d) = query.date_to {
            params.push(("dateTo", d.render()));
        }
        params.push(("first", query.first.to_string()));
        params.push(("max", query.max.to_string()));
        if let Some(asc) = query.ascending {
            params.push(("direction", if asc { "asc" } else { "desc" }.to_string()));
        }
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
            let (wait, failure) = match result {
                Err(e) => (
                    Duration::ZERO,
                    SourceError::Transport {
                        detail: describe(e),
                        attempts: attempt,
                    },
                ),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && !renewed {
                        // The token expired or was revoked mid-pull: renew once and retry.
                        tracing::info!(kind = kind.as_str(), "MPAS answered 401; renewing token");
                        renewed = true;
                        force_renew = true;
                        attempt -= 1;
                        continue;
                    }
                    if status == 401 || status == 403 {
                        return Err(SourceError::Auth(format!(
                            "events endpoint answered HTTP {status} (the client needs the view-events role)"
                        )));
                    }
                    if status == 400 {
                        let text = resp.text().await.unwrap_or_default();
                        return Err(SourceError::BadRequest(error_summary(&text)));
                    }
                    if resp.status().is_success() {
                        match resp.bytes().await {
                            Ok(body) => match serde_json::from_slice::<Vec<Value>>(&body) {
                                Ok(events) => return Ok(events),
                                Err(e) => (
                                    Duration::ZERO,
                                    SourceError::Garbage {
                                        detail: format!(
                                            "{} bytes, parse error at line {} column {}",
                                            body.len(),
                                            e.line(),
                                            e.column()
                                        ),
                                        attempts: attempt,
                                    },
                                ),
                            },
                            Err(e) => (
                                Duration::ZERO,
                                SourceError::Transport {
                                    detail: describe(e),
                                    attempts: attempt,
                                },
                            ),
                        }
                    } else if is_retryable(status) {
                        (
                            retry_after(&resp).unwrap_or(Duration::ZERO),
                            SourceError::Status {
                                status,
                                attempts: attempt,
                            },
                        )
                    } else {
                        return Err(SourceError::Status {
                            status,
                            attempts: attempt,
                        });
                    }
                }
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
