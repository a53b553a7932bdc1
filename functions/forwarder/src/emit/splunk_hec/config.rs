//! The settings of type `splunk-hec` (Splunk HTTP Event Collector).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::SplunkHecEmitter;
use crate::ForwarderError;
use crate::config::err;
use crate::emit::transport::config::{
    Credentials, RawCredentials, credentials, required_url, RawTarget, http_target,
};
use crate::emit::transport::{HttpAuth, HttpTarget};
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `splunk-hec` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSplunkHec {
    /// The collector endpoint (required); a URL without a path gets
    /// `/services/collector/event`.
    url: Option<String>,
    /// Extra headers (not `Authorization`).
    headers: Option<BTreeMap<String, String>>,
    /// Headers whose values are Secrets Manager secrets, read at cold start: header name to
    /// secret ARN (a secret holding a JSON object gives its field named like the header).
    headers_from_secrets: Option<BTreeMap<String, String>>,
    /// Path of a PEM file whose CAs are trusted in addition to the system's (or alone, with
    /// `caBundleOnly`).
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of `caBundle`, not the system's (default `false`).
    ca_bundle_only: Option<bool>,
    /// The HEC token (local runs; `tokenSecretArn` in production). One of the two is required.
    token: Option<String>,
    /// Secrets Manager ARN of the HEC token.
    token_secret_arn: Option<String>,
    /// Compress bodies with gzip (default `true`).
    gzip: Option<bool>,
    /// HEC `host` of every event (default `authtrail`).
    host: Option<String>,
    /// HEC `source` of every event (default `authtrail`).
    source: Option<String>,
    /// HEC `sourcetype` of every event (default `_json`).
    sourcetype: Option<String>,
    /// HEC `index` (default: the token's default index).
    index: Option<String>,
}

/// The validated settings of type `splunk-hec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkHecConfig {
    /// Endpoint, headers, TLS trust, `Authorization: Splunk <token>`, gzip.
    pub target: HttpTarget,
    /// HEC `host`.
    pub host: String,
    /// HEC `source`.
    pub source: String,
    /// HEC `sourcetype`.
    pub sourcetype: String,
    /// HEC `index`, when not the token's default.
    pub index: Option<String>,
}

impl EmitterSpec for SplunkHecConfig {
    type Raw = RawSplunkHec;

    fn validate(label: &str, raw: RawSplunkHec) -> Result<Self, ForwarderError> {
        let mut url = required_url(label, "splunk-hec", raw.url.as_deref())?;
        let creds = credentials(
            label,
            RawCredentials {
                token: raw.token.as_ref(),
                token_secret_arn: raw.token_secret_arn.as_ref(),
                ..RawCredentials::default()
            },
        )?;
        let Credentials::Token(token) = creds else {
            return Err(err(
                format!("{label}.tokenSecretArn"),
                "type splunk-hec needs tokenSecretArn (or token for local runs)",
            ));
        };
        if url.path() == "/" || url.path().is_empty() {
            url.set_path("/services/collector/event");
        }
        Ok(SplunkHecConfig {
            target: http_target(
                label,
                url,
                RawTarget {
                    headers: raw.headers.as_ref(),
                    headers_from_secrets: raw.headers_from_secrets.as_ref(),
                    ca_bundle: raw.ca_bundle.as_ref(),
                    ca_bundle_only: raw.ca_bundle_only,
                },
                HttpAuth::Splunk(token),
                raw.gzip.unwrap_or(true),
            )?,
            host: raw.host.unwrap_or_else(|| "authtrail".into()),
            source: raw.source.unwrap_or_else(|| "authtrail".into()),
            sourcetype: raw.sourcetype.unwrap_or_else(|| "_json".into()),
            index: raw.index,
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
        Ok(Arc::new(SplunkHecEmitter::new(name, &config, &auth)?))
    }
}
