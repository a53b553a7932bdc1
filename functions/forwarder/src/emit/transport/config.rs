//! The settings the HTTP emitters share (`url`, `headers`, `caBundle`, credentials, `gzip`)
//! and their checks. Each HTTP type lists the keys it accepts in its own raw form and builds an
//! [`HttpTarget`] with these helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::auth::HttpAuth;
use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::{SecretRef, secret_ref};

/// Where and how an HTTP emitter sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The endpoint receiving the `POST`s.
    pub url: reqwest::Url,
    /// Extra headers (never `Authorization`).
    pub headers: Vec<(String, String)>,
    /// A PEM file of CAs trusted in addition to the system's.
    pub ca_bundle: Option<PathBuf>,
    /// The `Authorization` header.
    pub auth: HttpAuth,
    /// Whether bodies are gzip-compressed.
    pub gzip: bool,
}

/// The URL at `{label}.url`, required for `type_name`.
pub(crate) fn required_url(
    label: &str,
    type_name: &str,
    url: Option<&str>,
) -> Result<reqwest::Url, ForwarderError> {
    let text = url.ok_or_else(|| {
        err(
            format!("{label}.url"),
            format!("is required for type {type_name}"),
        )
    })?;
    validate_url(&format!("{label}.url"), text)
}

/// Checks an emitter URL: `https`, or `http` to a loopback host only (local receivers); TLS
/// verification itself is never optional.
pub(crate) fn validate_url(path: &str, url: &str) -> Result<reqwest::Url, ForwarderError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| err(path, format!("must be an absolute URL ({e}) (got {url:?})")))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(err(
                    path,
                    format!(
                        "must use https (http is allowed for loopback hosts only) (got {url:?})"
                    ),
                ));
            }
        }
        other => {
            return Err(err(
                path,
                format!("must be an https URL (got scheme {other:?})"),
            ));
        }
    }
    if parsed.host().is_none() {
        return Err(err(path, format!("must name a host (got {url:?})")));
    }
    Ok(parsed)
}

/// `headers`: valid names and values, no `Authorization` (secrets do not belong there).
pub(crate) fn validate_headers(
    label: &str,
    headers: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ForwarderError> {
    let mut out = Vec::new();
    for (k, v) in headers.into_iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(err(
                format!("{label}.headers"),
                format!("{k:?} is not a valid header name"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(v).is_err() {
            return Err(err(
                format!("{label}.headers.{k}"),
                "is not a valid header value",
            ));
        }
        if k.eq_ignore_ascii_case("authorization") {
            return Err(err(
                format!("{label}.headers.{k}"),
                "use token/tokenSecretArn or username/password instead (secrets do not belong in headers)",
            ));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

/// The credential keys of an HTTP emitter as written.
#[derive(Default)]
pub(crate) struct RawCredentials<'a> {
    /// `token`.
    pub token: Option<&'a String>,
    /// `tokenSecretArn`.
    pub token_secret_arn: Option<&'a String>,
    /// `username`.
    pub username: Option<&'a String>,
    /// `password`.
    pub password: Option<&'a String>,
    /// `passwordSecretArn`.
    pub password_secret_arn: Option<&'a String>,
}

/// The checked credentials: a token, or a user name with its password, or neither.
pub(crate) enum Credentials {
    /// No credentials.
    None,
    /// `token` / `tokenSecretArn`.
    Token(SecretRef),
    /// `username` + `password` / `passwordSecretArn`.
    Basic(String, SecretRef),
}

/// Checks the credentials at `label`: one form of each secret, a user name with its password,
/// a token or a user name but not both.
pub(crate) fn credentials(
    label: &str,
    raw: RawCredentials<'_>,
) -> Result<Credentials, ForwarderError> {
    let token = secret_ref(
        label,
        "token",
        "tokenSecretArn",
        raw.token,
        raw.token_secret_arn,
    )?;
    let password = secret_ref(
        label,
        "password",
        "passwordSecretArn",
        raw.password,
        raw.password_secret_arn,
    )?;
    let basic = match (raw.username, password) {
        (Some(u), Some(p)) => Some((u.clone(), p)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                format!("{label}.password"),
                "username needs password or passwordSecretArn",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                format!("{label}.username"),
                "password needs a username",
            ));
        }
    };
    match (token, basic) {
        (Some(_), Some(_)) => Err(err(
            format!("{label}.token"),
            "give either token or username/password, not both",
        )),
        (Some(t), None) => Ok(Credentials::Token(t)),
        (None, Some((u, p))) => Ok(Credentials::Basic(u, p)),
        (None, None) => Ok(Credentials::None),
    }
}

impl Credentials {
    /// The authentication: the token sent with `token_scheme`, or basic auth.
    pub(crate) fn auth(self, token_scheme: fn(SecretRef) -> HttpAuth) -> HttpAuth {
        match self {
            Credentials::None => HttpAuth::None,
            Credentials::Token(t) => token_scheme(t),
            Credentials::Basic(username, password) => HttpAuth::Basic { username, password },
        }
    }
}
