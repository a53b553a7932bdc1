//! Preflight of the HTTP emitters: a request that delivers nothing (an empty body, a health or
//! authentication endpoint) sent with the emitter's own client, trust and credentials, and the
//! reading of its answer into a [`Check`]. Texts name the URL without userinfo or query and
//! never a header value.

use std::time::Duration;

use authtrail_core::error_chain;
use authtrail_core::preflight::Check;
use reqwest::header::CONTENT_ENCODING;

use super::{HttpTransport, Response, read_capped};

/// How long one probe request may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a probe request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    /// `tls` (the certificate was not trusted or the handshake failed), `connect`, `timeout`
    /// or `transport`.
    pub kind: &'static str,
    /// The error text (names the URL, never a header).
    pub text: String,
}

impl NoAnswer {
    /// The failed check `name` for a request to `url` that got no answer, with what to fix.
    pub fn check(&self, name: &str, url: &reqwest::Url) -> Check {
        let at = shown(url);
        let fix = match self.kind {
            "tls" => {
                "trust the receiver's certificate: give its CA as caBundle (PEM), and make the url's host name the one the certificate names"
            }
            "timeout" => {
                "nothing answered in time: check the route from where this runs (VPC subnets, security groups, NAT, proxy)"
            }
            _ => {
                "check the url's host and port and that the receiver listens there (firewall, security group)"
            }
        };
        let what = match self.kind {
            "tls" => "TLS not verified",
            "timeout" => "no answer",
            _ => "not reachable",
        };
        Check::failed(name, format!("{at}: {what}: {}", self.text), fix)
    }
}

impl HttpTransport {
    /// The emitter's URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// A preflight request: `method` to `url` with the emitter's headers (its credentials
    /// included, without `Content-Encoding`) and `body` as it is. No redirect is followed.
    pub async fn probe_request(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Vec<u8>,
    ) -> Result<Response, NoAnswer> {
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_ENCODING);
        let sent = self
            .client
            .request(method, url)
            .headers(headers)
            .body(body)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await;
        let resp = sent.map_err(|e| {
            let text = error_chain(&e);
            let kind = if e.is_timeout() {
                "timeout"
            } else if is_tls(&text) {
                "tls"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            NoAnswer { kind, text }
        })?;
        let status = resp.status().as_u16();
        let text = read_capped(resp, 64 * 1024)
            .await
            .unwrap_or_else(|why| why.into_bytes());
        Ok(Response {
            status,
            retry_after: None,
            text: String::from_utf8_lossy(&text).into_owned(),
        })
    }
}

/// Whether an error text is about the TLS handshake or the certificate.
fn is_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "handshake",
        "tls",
        "invalid peer",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// `url` without userinfo, query or fragment (which may hold credentials).
pub fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The check `name` for the answer `status`/`text` of `url` to `what` (a request that delivers
/// nothing): 2xx, or a refusal of the content (400, 413, 422), means reachable, TLS verified
/// and the credentials accepted; 401, 403 and 407 are the credentials refused; other statuses
/// name what is wrong.
pub fn answer_check(name: &str, url: &reqwest::Url, status: u16, text: &str, what: &str) -> Check {
    let at = shown(url);
    let text = crate::emit::truncate(text.trim().to_string(), 200);
    match status {
        200..=299 => Check::ok(
            name,
            format!("{at} answered {status} to {what}: reachable, credentials accepted"),
        ),
        400 | 413 | 422 => Check::ok(
            name,
            format!(
                "{at} refused {what} for its content ({status}), as expected: reachable, credentials accepted"
            ),
        ),
        401 | 403 | 407 => Check::failed(
            name,
            format!("{at} refused the credentials: HTTP {status}: {text}"),
            "check the emitter's token / tokenSecretArn (or username and password / passwordSecretArn) and the permissions the receiver gives them",
        ),
        300..=399 => Check::failed(
            name,
            format!("{at} answered a redirect ({status}); emitters never follow redirects"),
            "use the final URL",
        ),
        404 | 405 => Check::failed(
            name,
            format!("{at}: no such endpoint (HTTP {status}: {text})"),
            "correct the emitter's url",
        ),
        _ => Check::failed(
            name,
            format!("{at} answered HTTP {status}: {text}"),
            "the receiver is reachable but not accepting: look at its health (429 and 5xx are its own trouble)",
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::preflight::Status;

    fn url() -> reqwest::Url {
        reqwest::Url::parse("https://user:pw@siem.example/ingest?token=abc").unwrap()
    }

    #[test]
    fn answers_to_a_request_that_delivers_nothing_are_read_as_credentials_accepted_or_refused() {
        for status in [200, 204, 400, 413, 422] {
            assert_eq!(
                answer_check("e", &url(), status, "", "x").status,
                Status::Ok,
                "{status}"
            );
        }
        for status in [401, 403, 407, 404, 405, 301, 429, 500, 503] {
            assert_eq!(
                answer_check("e", &url(), status, "", "x").status,
                Status::Failed,
                "{status}"
            );
        }
        let refused = answer_check("e", &url(), 403, "Invalid token", "x");
        assert!(
            refused.detail.contains("refused the credentials"),
            "{refused:?}"
        );
    }

    #[test]
    fn urls_in_preflight_texts_lose_userinfo_and_query() {
        let c = answer_check("e", &url(), 401, "", "x");
        assert!(
            c.detail.starts_with("https://siem.example/ingest "),
            "{}",
            c.detail
        );
        assert!(
            !c.detail.contains("pw") && !c.detail.contains("abc"),
            "{}",
            c.detail
        );
        let n = NoAnswer {
            kind: "tls",
            text: "invalid peer certificate: UnknownIssuer".into(),
        };
        let c = n.check("e", &url());
        assert!(c.detail.contains("TLS not verified"), "{}", c.detail);
        assert!(c.fix.unwrap().contains("caBundle"));
        assert!(is_tls(
            "error sending request: invalid peer certificate: UnknownIssuer"
        ));
        assert!(!is_tls(
            "error sending request: Connection refused (os error 111)"
        ));
    }
}
