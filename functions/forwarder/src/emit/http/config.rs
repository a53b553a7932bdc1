//! The settings of type `http` (generic webhook).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::HttpEmitter;
use crate::ForwarderError;
use crate::config::err;
use crate::emit::transport::config::{RawCredentials, credentials, required_url, RawTarget, http_target};
use crate::emit::transport::{HttpAuth, HttpTarget};
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `http` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHttp {
    /// Endpoint receiving the `POST`s (required; `https://`, or `http://` to a loopback host).
    url: Option<String>,
    /// Extra headers, e.g. `{"X-Source": "authtrail"}` (not `Authorization`).
    headers: Option<BTreeMap<String, String>>,
    /// Headers whose values are Secrets Manager secrets, read at cold start: header name to
    /// secret ARN (a secret holding a JSON object gives its field named like the header).
    headers_from_secrets: Option<BTreeMap<String, String>>,
    /// Path of a PEM file whose CAs are trusted in addition to the system's (or alone, with
    /// `caBundleOnly`).
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of `caBundle`, not the system's (default `false`).
    ca_bundle_only: Option<bool>,
    /// Sent as `Authorization: Bearer <token>` (local runs; `tokenSecretArn` in production).
    token: Option<String>,
    /// Secrets Manager ARN of the bearer token.
    token_secret_arn: Option<String>,
    /// User name of basic authentication (not with a token).
    username: Option<String>,
    /// Password of basic authentication (local runs; `passwordSecretArn` in production).
    password: Option<String>,
    /// Secrets Manager ARN of the password.
    password_secret_arn: Option<String>,
    /// `ndjson` (default, one record per line) or `json-array`.
    format: Option<String>,
    /// Compress bodies with gzip (default `false`: only if the receiver accepts it).
    gzip: Option<bool>,
}

/// The body format of a generic webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// `application/x-ndjson`: one record per line.
    Ndjson,
    /// `application/json`: one JSON array of the records.
    JsonArray,
}

/// The validated settings of type `http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Endpoint, headers, TLS trust, authentication (`Bearer` or `Basic`), gzip.
    pub target: HttpTarget,
    /// The body format.
    pub format: HttpFormat,
}

impl EmitterSpec for HttpConfig {
    type Raw = RawHttp;

    fn validate(label: &str, raw: RawHttp) -> Result<Self, ForwarderError> {
        let url = required_url(label, "http", raw.url.as_deref())?;
        let creds = credentials(
            label,
            RawCredentials {
                token: raw.token.as_ref(),
                token_secret_arn: raw.token_secret_arn.as_ref(),
                username: raw.username.as_ref(),
                password: raw.password.as_ref(),
                password_secret_arn: raw.password_secret_arn.as_ref(),
            },
        )?;
        let format = match raw.format.as_deref().unwrap_or("ndjson") {
            "ndjson" => HttpFormat::Ndjson,
            "json-array" | "json" => HttpFormat::JsonArray,
            other => {
                return Err(err(
                    format!("{label}.format"),
                    format!("must be one of ndjson, json-array (got {other:?})"),
                ));
            }
        };
        Ok(HttpConfig {
            target: http_target(
                label,
                url,
                RawTarget {
                    headers: raw.headers.as_ref(),
                    headers_from_secrets: raw.headers_from_secrets.as_ref(),
                    ca_bundle: raw.ca_bundle.as_ref(),
                    ca_bundle_only: raw.ca_bundle_only,
                },
                creds.auth(HttpAuth::Bearer),
                raw.gzip.unwrap_or(false),
            )?,
            format,
        })
    }

    async fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        let auth = self.target.auth.resolve(sdk).await?;
        let mut config = self.clone();
        config.target = self.target.resolve_headers(sdk).await?;
        Ok(Arc::new(HttpEmitter::new(name, &config, &auth)?))
    }
}
