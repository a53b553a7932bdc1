//! The MPAS (Keycloak Admin REST API) client: token handling and one page of events.
//!
//! [`EventSource`] is the capability the pull algorithm needs; [`HttpEventSource`] implements it
//! over HTTPS with a token cached across warm invocations, renewed 30 s before it expires, one
//! renewal and retry on a 401, and bounded retries on 5xx, 429 (honouring `Retry-After`),
//! transport errors and truncated or garbage bodies. It follows no redirect (a 3xx is a
//! [`SourceError::Redirected`]) and reads every answer under a cap counted after gzip decoding
//! ([`SourceError::TooLarge`]); [`response`] reads the answers.

use std::future::Future;
use std::time::{Duration, Instant};

use authtrail_core::envelope::EventKind;
use authtrail_core::retry::{Backoff, Jitter};
use authtrail_core::secret::Secret;
use chrono::NaiveDate;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::Credentials;
use crate::error::{MpasEndpoint, SourceError};

pub mod response;

use response::{Attempt, CachedToken, describe};
pub use response::{MAX_TOKEN_LIFETIME, TOKEN_BODY_LIMIT};

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

/// How the MPAS client connects and how much it reads.
#[derive(Clone, Copy)]
pub struct ClientOptions<'a> {
    /// Connect and whole-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt (5xx, 429, transport errors, garbage bodies).
    pub max_retries: u32,
    /// PEM CAs to trust (`MPAS_CA_BUNDLE`'s content), if any.
    pub ca_bundle_pem: Option<&'a [u8]>,
    /// Trust only `ca_bundle_pem`, not the system's roots (`MPAS_CA_BUNDLE_ONLY`).
    pub ca_bundle_only: bool,
    /// Largest events page read, in bytes after decoding (`Settings::max_page_bytes`).
    pub max_page_bytes: usize,
}

impl ClientOptions<'_> {
    /// Options with the system's roots and the default page cap of 1000-event pages.
    pub fn new(timeout: Duration, max_retries: u32) -> Self {
        Self {
            timeout,
            max_retries,
            ca_bundle_pem: None,
            ca_bundle_only: false,
            max_page_bytes: crate::config::default_max_page_bytes(1000),
        }
    }
}

/// The HTTPS client for MPAS. It follows no redirect (a 3xx is an error naming the status and
/// `Location`, so the token form is never sent anywhere else), and reads every answer under a
/// cap counted after decoding.
pub struct HttpEventSource {
    http: reqwest::Client,
    base_url: String,
    realm: String,
    credentials: Credentials,
    max_retries: u32,
    max_page_bytes: usize,
    token: Mutex<Option<CachedToken>>,
}

/// Longest wait honoured from a `Retry-After` header or backoff.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// Backoff between attempts: full jitter below `50 ms * 2^attempt`, at most 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), MAX_RETRY_WAIT, Jitter::Full);

impl HttpEventSource {
    /// `credentials` must be resolved (not `SecretArn`). A CA bundle adds trusted CAs to the
    /// system's, or replaces them with `ca_bundle_only`; verification is never turned off.
    pub fn new(
        base_url: &str,
        realm: &str,
        credentials: Credentials,
        options: &ClientOptions<'_>,
    ) -> Result<Self, SourceError> {
        if matches!(credentials, Credentials::SecretArn(_)) {
            return Err(SourceError::UnresolvedCredentials);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authtrail-producer/", env!("CARGO_PKG_VERSION")));
        match options.ca_bundle_pem {
            Some(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| SourceError::CaBundle(e.to_string()))?;
                if certs.is_empty() {
                    return Err(SourceError::CaBundle("no certificate in the file".into()));
                }
                builder = if options.ca_bundle_only {
                    builder.tls_certs_only(certs)
                } else {
                    builder.tls_certs_merge(certs)
                };
            }
            None if options.ca_bundle_only => {
                return Err(SourceError::CaBundle(
                    "MPAS_CA_BUNDLE_ONLY needs a CA bundle".into(),
                ));
            }
            None => {}
        }
        let http = builder
            .build()
            .map_err(|e| SourceError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            realm: realm.to_string(),
            credentials,
            max_retries: options.max_retries,
            max_page_bytes: options.max_page_bytes,
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
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
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

    /// One token request: a token, a retryable failure, or the credentials refused (a
    /// redirect is refused too: the form holds the secret and is never re-sent elsewhere).
    async fn token_attempt(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Attempt<CachedToken, ()>, SourceError> {
        let started = Instant::now();
        let Ok(resp) = self.http.post(url).form(form).send().await else {
            return Ok(Attempt::Retry {
                wait: Duration::ZERO,
                failure: (),
            });
        };
        if resp.status().is_redirection() {
            return Err(response::redirected(MpasEndpoint::Token, &resp));
        }
        response::read_token_answer(resp, started).await
    }

    fn events_url(&self, kind: EventKind) -> String {
        let path = match kind {
            EventKind::User => "events",
            EventKind::Admin => "admin-events",
        };
        format!("{}/admin/realms/{}/{}", self.base_url, self.realm, path)
    }
}

/// The wait before the next attempt: the jittered backoff, at least `floor` (a `Retry-After`),
/// at most 5 s.
fn backoff(attempt: u32, floor: Duration) -> Duration {
    BACKOFF.delay(attempt).max(floor).min(MAX_RETRY_WAIT)
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
                Ok(resp) => response::read_page(resp, attempt, self.max_page_bytes).await?,
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
}
