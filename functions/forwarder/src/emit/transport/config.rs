//! The settings the HTTP emitters share (`url`, `headers`, `headersFromSecrets`, `caBundle`,
//! `caBundleOnly`, credentials, `gzip`) and their checks. Each HTTP type lists the keys it
//! accepts in its own raw form and builds an [`HttpTarget`] with these helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::auth::HttpAuth;
use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::{SecretRef, secret_arn, secret_ref};

/// Where and how an HTTP emitter sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The endpoint receiving the `POST`s.
    pub url: reqwest::Url,
    /// Extra headers (never `Authorization`): `headers` as plain values, `headersFromSecrets`
    /// as ARNs until [`HttpTarget::resolve_headers`]. Every value is hidden in `Debug` output.
    pub headers: Vec<(String, SecretRef)>,
    /// A PEM file of CAs trusted in addition to the system's (or alone, see `ca_bundle_only`).
    pub ca_bundle: Option<PathBuf>,
    /// Trust only `ca_bundle`, not the system's roots (`caBundleOnly`: pinning a private CA).
    pub ca_bundle_only: bool,
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

/// Checks an emitter URL: `https`, or `http` to a loopback host only (local receivers); no
/// credentials in it (`user:pass@`). TLS verification itself is never optional. Messages never
/// echo the URL's userinfo.
pub(crate) fn validate_url(path: &str, url: &str) -> Result<reqwest::Url, ForwarderError> {
    let shown = without_userinfo(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        err(
            path,
            format!("must be an absolute URL ({e}) (got {shown:?})"),
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(err(
            path,
            format!(
                "must not hold credentials (user:pass@): use username and passwordSecretArn \
                 or tokenSecretArn (got {shown:?})"
            ),
        ));
    }
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
                        "must use https (http is allowed for loopback hosts only) (got {shown:?})"
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
        return Err(err(path, format!("must name a host (got {shown:?})")));
    }
    Ok(parsed)
}

/// `url` as it may be shown in a message: any userinfo (`user:pass@`) of its authority
/// replaced by `***@`.
pub fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &rest[at..]),
        None => url.to_string(),
    }
}

/// The transport keys of an HTTP emitter as written (besides `url`, credentials and `gzip`).
#[derive(Default)]
pub(crate) struct RawTarget<'a> {
    /// `headers`.
    pub headers: Option<&'a BTreeMap<String, String>>,
    /// `headersFromSecrets`: header name to Secrets Manager ARN.
    pub headers_from_secrets: Option<&'a BTreeMap<String, String>>,
    /// `caBundle`.
    pub ca_bundle: Option<&'a PathBuf>,
    /// `caBundleOnly`.
    pub ca_bundle_only: Option<bool>,
}

/// The checked [`HttpTarget`] at `label` for `url`, `auth` and `gzip`.
pub(crate) fn http_target(
    label: &str,
    url: reqwest::Url,
    raw: RawTarget<'_>,
    auth: HttpAuth,
    gzip: bool,
) -> Result<HttpTarget, ForwarderError> {
    let mut headers = validate_headers(label, "headers", raw.headers)?;
    for (name, arn) in validate_headers(label, "headersFromSecrets", raw.headers_from_secrets)? {
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(err(
                format!("{label}.headersFromSecrets.{name}"),
                "is also in headers (give each header once)",
            ));
        }
        let SecretRef::Plain(arn) = arn else { continue };
        let path = format!("{label}.headersFromSecrets.{name}");
        headers.push((name, SecretRef::Arn(secret_arn(&path, arn.expose())?)));
    }
    let ca_bundle_only = raw.ca_bundle_only.unwrap_or(false);
    if ca_bundle_only && raw.ca_bundle.is_none() {
        return Err(err(
            format!("{label}.caBundleOnly"),
            "needs caBundle (the CAs to trust instead of the system's)",
        ));
    }
    Ok(HttpTarget {
        url,
        headers,
        ca_bundle: raw.ca_bundle.cloned(),
        ca_bundle_only,
        auth,
        gzip,
    })
}

impl HttpTarget {
    /// The same target with the values of `headersFromSecrets` read (a secret holding a JSON
    /// object gives its field named like the header).
    pub async fn resolve_headers(
        &self,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<HttpTarget, ForwarderError> {
        let mut out = self.clone();
        for (name, value) in &mut out.headers {
            if let SecretRef::Arn(_) = value {
                *value = SecretRef::Plain(value.resolve(sdk, name).await?);
            }
        }
        Ok(out)
    }
}

/// `headers` / `headersFromSecrets` (`key`): valid names and values, no `Authorization`
/// (credentials have keys of their own). The values are kept as [`SecretRef::Plain`], hidden
/// in `Debug` output.
fn validate_headers(
    label: &str,
    key: &str,
    headers: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, SecretRef)>, ForwarderError> {
    let mut out = Vec::new();
    for (k, v) in headers.into_iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(err(
                format!("{label}.{key}"),
                format!("{k:?} is not a valid header name"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(v).is_err() {
            return Err(err(
                format!("{label}.{key}.{k}"),
                "is not a valid header value",
            ));
        }
        if k.eq_ignore_ascii_case("authorization") {
            return Err(err(
                format!("{label}.{key}.{k}"),
                "use token/tokenSecretArn or username/password instead (credentials have keys of their own)",
            ));
        }
        out.push((
            k.clone(),
            SecretRef::Plain(authtrail_core::secret::Secret::new(v.clone())),
        ));
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
