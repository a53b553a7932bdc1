//! The settings of type `elasticsearch` (alias `opensearch`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::ElasticsearchEmitter;
use crate::ForwarderError;
use crate::config::err;
use crate::emit::transport::config::{RawCredentials, credentials, required_url, RawTarget, http_target};
use crate::emit::transport::{HttpAuth, HttpTarget};
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `elasticsearch` / `opensearch` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawElasticsearch {
    /// The cluster URL (required); `/_bulk` is appended.
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
    /// API key, sent as `Authorization: ApiKey <base64 id:key>` (local runs; `tokenSecretArn`
    /// in production).
    token: Option<String>,
    /// Secrets Manager ARN of the API key.
    token_secret_arn: Option<String>,
    /// User name of basic authentication (not with a token).
    username: Option<String>,
    /// Password of basic authentication (local runs; `passwordSecretArn` in production).
    password: Option<String>,
    /// Secrets Manager ARN of the password.
    password_secret_arn: Option<String>,
    /// Compress bodies with gzip (default `true`).
    gzip: Option<bool>,
    /// Target index (default `authtrail`; lowercase, a valid index name).
    index: Option<String>,
}

/// The validated settings of type `elasticsearch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchConfig {
    /// `{url}/_bulk`, headers, TLS trust, authentication (`ApiKey` or `Basic`), gzip.
    pub target: HttpTarget,
    /// The target index.
    pub index: String,
}

impl EmitterSpec for ElasticsearchConfig {
    type Raw = RawElasticsearch;

    fn validate(label: &str, raw: RawElasticsearch) -> Result<Self, ForwarderError> {
        let mut url = required_url(label, "elasticsearch", raw.url.as_deref())?;
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
        let index = raw.index.unwrap_or_else(|| "authtrail".into());
        if index.is_empty()
            || index.starts_with(['_', '-', '+'])
            || index.contains(['/', ' ', '"', '*', '\\', '<', '>', '|', ',', '#', '?'])
            || index != index.to_lowercase()
        {
            return Err(err(
                format!("{label}.index"),
                format!("must be a valid lowercase Elasticsearch index name (got {index:?})"),
            ));
        }
        // `url` is the cluster's base URL; requests go to {url}/_bulk.
        let path = url.path().trim_end_matches('/').to_string();
        if !path.ends_with("/_bulk") {
            url.set_path(&format!("{path}/_bulk"));
        }
        Ok(ElasticsearchConfig {
            target: http_target(
                label,
                url,
                RawTarget {
                    headers: raw.headers.as_ref(),
                    headers_from_secrets: raw.headers_from_secrets.as_ref(),
                    ca_bundle: raw.ca_bundle.as_ref(),
                    ca_bundle_only: raw.ca_bundle_only,
                },
                creds.auth(HttpAuth::ApiKey),
                raw.gzip.unwrap_or(true),
            )?,
            index,
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
        Ok(Arc::new(ElasticsearchEmitter::new(name, &config, &auth)?))
    }
}
