//! The HTTP transport of the `http`, `splunk-hec` and `elasticsearch` emitters: one
//! `reqwest::Client` per emitter, built at cold start and reused across warm invocations
//! (connection pooling), trusting the system roots plus the emitter's `caBundle` (or only the
//! `caBundle` with `caBundleOnly`); one `POST` per request (gzip level 1 when configured); and
//! the reading of an answer into outcomes.
//!
//! No redirect is ever followed: a 3xx is a failure naming its status and its `Location`
//! (without userinfo, query or fragment). Answer bodies are read chunk by chunk up to a cap per
//! emitter type (after gzip decoding, so a compressed bomb stops at the cap); a 2xx answer whose
//! body cannot be read in full is a retryable failure (its outcome is unknown). [`probe`]: the
//! preflight requests, which deliver nothing.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};

use authtrail_core::error_chain;
use authtrail_core::retry::{is_retryable_status, parse_retry_after};

use super::{Failure, Outcome, all};
use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::SecretRef;

pub mod auth;
pub mod config;
pub mod probe;

pub use auth::{HttpAuth, ResolvedAuth};
pub use config::HttpTarget;

/// Default cap of an answer body (after decoding): 1 MiB (`http`, `splunk-hec`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// One emitter's HTTP client, endpoint and fixed headers.
pub struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    gzip: bool,
    max_response_bytes: usize,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, when given and readable.
    pub retry_after: Option<Duration>,
    /// The body as text.
    pub text: String,
}

impl HttpTransport {
    /// The client of emitter `name` for `target`, with `auth` (secrets read) and the bodies'
    /// `content_type`.
    pub fn new(
        name: &str,
        target: &HttpTarget,
        auth: &ResolvedAuth,
        content_type: &'static str,
    ) -> Result<Self, ForwarderError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("authtrail-forwarder/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &target.ca_bundle {
            let certs = crate::config::tls::read_pem_bundle(name, path)?;
            let certs = certs
                .iter()
                .map(|c| reqwest::Certificate::from_der(c.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ForwarderError::Tls(format!("emitter {name:?} caBundle: {e}")))?;
            builder = if target.ca_bundle_only {
                builder.tls_certs_only(certs)
            } else {
                builder.tls_certs_merge(certs)
            };
        }
        let client = builder
            .build()
            .map_err(|e| ForwarderError::Tls(format!("emitter {name:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &target.headers {
            let header = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                err(
                    format!("emitter {name:?} headers"),
                    format!("{k:?} is not a header name"),
                )
            })?;
            let SecretRef::Plain(v) = v else {
                return Err(err(
                    format!("emitter {name:?} headersFromSecrets.{k}"),
                    "the secret was not read before the client was built",
                ));
            };
            let mut value = HeaderValue::from_str(v.expose()).map_err(|_| {
                ForwarderError::SecretNotAHeaderValue {
                    emitter: name.to_string(),
                }
            })?;
            // Every header value may be a credential: never shown in Debug output.
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        if let Some(value) = auth.header(name)? {
            headers.insert(AUTHORIZATION, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if target.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(Self {
            client,
            url: target.url.clone(),
            headers,
            gzip: target.gzip,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// The same transport with answer bodies capped at `bytes` (after decoding).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// One `POST` of `body` (compressed when configured) for `n` records. `Err` is the outcome
    /// of every record when no answer came (retryable) or the body could not be compressed.
    pub async fn post(&self, body: Vec<u8>, n: usize) -> Result<Response, Vec<Outcome>> {
        let body = if self.gzip { gzip(&body, n)? } else { body };
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let status = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                // reqwest's error text names the URL, never header values.
                return Err(all(
                    n,
                    Outcome::Retryable(Failure::new(status, error_chain(&e))),
                ));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if (300..400).contains(&status) {
            let text = redirect_text(status, &self.url, resp.headers());
            return Ok(Response {
                status,
                retry_after,
                text,
            });
        }
        let text = match read_capped(resp, self.max_response_bytes).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            // A 2xx whose body is unknown: what the receiver took is unknown, try again.
            Err(why) if (200..300).contains(&status) => {
                return Err(all(
                    n,
                    Outcome::Retryable(Failure::new("response", format!("{status}: {why}"))),
                ));
            }
            // Other statuses are decided by their status; the text says why it is missing.
            Err(why) => why,
        };
        Ok(Response {
            status,
            retry_after,
            text,
        })
    }
}

/// Reads an answer body chunk by chunk (decoded when it came compressed), at most `cap` bytes;
/// `Err` says why it could not be read in full.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("answer body over the cap of {cap} bytes (not read)");
    if resp.content_length().is_some_and(|l| l > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(format!(
                    "answer body could not be read: {}",
                    error_chain(&e)
                ));
            }
        }
    }
}

/// The text of a 3xx answer: its status and where it points (resolved against `base`, without
/// userinfo, query or fragment, which may hold credentials).
fn redirect_text(status: u16, base: &reqwest::Url, headers: &HeaderMap) -> String {
    let location = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| base.join(v).ok())
        .map(|mut u| {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        });
    match location {
        Some(l) => format!(
            "redirect {status} to {l} not followed (emitters never follow redirects: fix the url)"
        ),
        None => format!(
            "redirect {status} without a readable Location not followed (emitters never follow redirects)"
        ),
    }
}

/// `body` compressed with gzip level 1; `Err` is a permanent failure of its `n` records.
fn gzip(body: &[u8], n: usize) -> Result<Vec<u8>, Vec<Outcome>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    if enc.write_all(body).is_err() {
        return Err(all(
            n,
            Outcome::Permanent(Failure::new("gzip", "could not compress the body")),
        ));
    }
    enc.finish()
        .map_err(|e| all(n, Outcome::Permanent(Failure::new("gzip", e.to_string()))))
}

/// Whether a refusal is about the request's content, so that smaller requests may pass: 400,
/// 413 (too large) and 422. Other 4xx (401, 403, 404, ...) are about the request itself and
/// would refuse every part of it.
pub fn splittable_status(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// Whether a refusal is one an operator fixes (credentials, permissions, a wrong URL, a proxy
/// that wants credentials): 401, 403, 404 and 407. Such records are spooled, not dead-lettered,
/// when a spool is configured (408 is retryable already).
pub fn operator_fixable_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 407)
}

/// The outcomes of an answer that accepts or refuses a whole request of `n` records: 2xx
/// delivered, retryable statuses retried (with `Retry-After`), refusals an operator fixes
/// unavailable (spooled), content refusals split, other refusals permanent.
pub fn classify_response(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
    n: usize,
) -> Vec<Outcome> {
    if (200..300).contains(&status) {
        return all(n, Outcome::Delivered);
    }
    let mut failure = Failure::new(status.to_string(), text.to_string());
    failure.retry_after = retry_after;
    if is_retryable_status(status) {
        all(n, Outcome::Retryable(failure))
    } else if operator_fixable_status(status) {
        all(n, Outcome::Unavailable(failure))
    } else if splittable_status(status) {
        all(n, Outcome::Rejected(failure))
    } else {
        all(n, Outcome::Permanent(failure))
    }
}

#[cfg(test)]
mod wire_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn responses_429_and_5xx_are_retryable_401_403_404_407_unavailable_and_other_4xx_permanent() {
        let o = classify_response(429, Some(Duration::from_secs(3)), "slow down", 2);
        assert!(
            matches!(&o[0], Outcome::Retryable(x) if x.retry_after == Some(Duration::from_secs(3)) && x.status == "429")
        );
        assert!(matches!(
            &classify_response(503, None, "", 1)[0],
            Outcome::Retryable(_)
        ));
        assert!(
            matches!(&classify_response(400, None, "bad", 1)[0], Outcome::Rejected(x) if x.text == "bad")
        );
        assert!(matches!(
            &classify_response(413, None, "", 1)[0],
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            &classify_response(409, None, "", 1)[0],
            Outcome::Permanent(_)
        ));
        for status in [401, 403, 404, 407] {
            assert!(
                matches!(&classify_response(status, None, "", 1)[0], Outcome::Unavailable(x) if x.status == status.to_string()),
                "{status}"
            );
        }
        assert!(matches!(
            &classify_response(408, None, "", 1)[0],
            Outcome::Retryable(_)
        ));
        assert_eq!(
            classify_response(204, None, "", 3),
            vec![Outcome::Delivered; 3]
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_value_is_its_own_error_not_a_tls_one() {
        let target = HttpTarget {
            url: reqwest::Url::parse("https://x.example/").unwrap(),
            headers: vec![],
            ca_bundle: None,
            ca_bundle_only: false,
            auth: HttpAuth::None,
            gzip: false,
        };
        let auth = ResolvedAuth::Bearer(authtrail_core::secret::Secret::new("a\nb"));
        let e = HttpTransport::new("w", &target, &auth, "application/json")
            .err()
            .unwrap();
        assert!(
            matches!(&e, ForwarderError::SecretNotAHeaderValue { emitter } if emitter == "w"),
            "{e:?}"
        );
        assert!(!e.to_string().contains("a\nb"));
    }
}
