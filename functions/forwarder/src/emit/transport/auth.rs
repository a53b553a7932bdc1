//! Authentication of the HTTP emitters: `token` / `tokenSecretArn` (sent as `Bearer`, `Splunk`
//! or `ApiKey` by type) or `username` + `password` / `passwordSecretArn` (`Basic`).

use authtrail_core::secret::Secret;
use reqwest::header::HeaderValue;

use crate::ForwarderError;
use crate::config::SecretRef;

/// How an HTTP emitter authenticates, with its secrets not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretRef),
    /// `Authorization: Basic <base64 username:password>`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretRef,
    },
    /// `Authorization: Splunk <token>`.
    Splunk(SecretRef),
    /// `Authorization: ApiKey <key>` (Elasticsearch / OpenSearch API keys).
    ApiKey(SecretRef),
}

/// [`HttpAuth`] with its secrets read.
pub enum ResolvedAuth {
    /// No `Authorization` header.
    None,
    /// `Bearer <token>`.
    Bearer(Secret),
    /// `Basic <base64 username:password>`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Splunk <token>`.
    Splunk(Secret),
    /// `ApiKey <key>`.
    ApiKey(Secret),
}

impl HttpAuth {
    /// Reads the secrets (Secrets Manager ARNs need `sdk`).
    pub async fn resolve(
        &self,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<ResolvedAuth, ForwarderError> {
        Ok(match self {
            HttpAuth::None => ResolvedAuth::None,
            HttpAuth::Bearer(t) => ResolvedAuth::Bearer(t.resolve(sdk, "token").await?),
            HttpAuth::Splunk(t) => ResolvedAuth::Splunk(t.resolve(sdk, "token").await?),
            HttpAuth::ApiKey(t) => ResolvedAuth::ApiKey(t.resolve(sdk, "token").await?),
            HttpAuth::Basic { username, password } => ResolvedAuth::Basic {
                username: username.clone(),
                password: password.resolve(sdk, "password").await?,
            },
        })
    }
}

impl ResolvedAuth {
    /// The `Authorization` header value (marked sensitive), if any; `emitter` names the
    /// emitter when the secret cannot be a header value.
    pub fn header(&self, emitter: &str) -> Result<Option<HeaderValue>, ForwarderError> {
        let value = match self {
            ResolvedAuth::None => return Ok(None),
            ResolvedAuth::Bearer(t) => format!("Bearer {}", t.expose()),
            ResolvedAuth::Splunk(t) => format!("Splunk {}", t.expose()),
            ResolvedAuth::ApiKey(t) => format!("ApiKey {}", t.expose()),
            ResolvedAuth::Basic { username, password } => {
                use base64::Engine;
                let raw = format!("{username}:{}", password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                format!("Basic {enc}")
            }
        };
        let mut v =
            HeaderValue::from_str(&value).map_err(|_| ForwarderError::SecretNotAHeaderValue {
                emitter: emitter.to_string(),
            })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}
