//! `redaction`: values replaced by `<redacted>` (`mask`) or a keyed pseudonym (`hash`), at the
//! top level or per emitter.

use serde::Deserialize;

use super::err;
use super::filter::validate_pointer;
use super::secret::{SecretRef, secret_ref};
use crate::ForwarderError;

/// `redaction` as written in the configuration.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRedaction {
    /// `mask` (default) or `hash`.
    mode: Option<String>,
    /// JSON pointers of the values to redact.
    #[serde(default)]
    fields: Vec<String>,
    /// The HMAC key of `hash` mode (local runs only).
    hmac_key: Option<String>,
    /// Secrets Manager ARN of the HMAC key of `hash` mode.
    hmac_key_secret_arn: Option<String>,
}

impl std::fmt::Debug for RawRedaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRedaction")
            .field("mode", &self.mode)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// Redaction settings (resolved into an `authtrail_core::redact::Redactor` at cold start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactionConfig {
    /// Values become `<redacted>`.
    Mask {
        /// JSON pointers of the values.
        fields: Vec<String>,
    },
    /// Values become `hmac-sha256:<64 hex>`, keyed by `key`.
    Hash {
        /// JSON pointers of the values.
        fields: Vec<String>,
        /// The HMAC key.
        key: SecretRef,
    },
}

impl RedactionConfig {
    /// The JSON pointers of the redacted values.
    pub fn fields(&self) -> &[String] {
        match self {
            RedactionConfig::Mask { fields } | RedactionConfig::Hash { fields, .. } => fields,
        }
    }
}

/// Validates the redaction at `path` (`redaction` or an emitter's).
pub(crate) fn validate_redaction(
    path: &str,
    raw: Option<&RawRedaction>,
) -> Result<Option<RedactionConfig>, ForwarderError> {
    let Some(r) = raw else { return Ok(None) };
    for (i, p) in r.fields.iter().enumerate() {
        validate_pointer(&format!("{path}.fields[{i}]"), p)?;
    }
    let key = secret_ref(
        path,
        "hmacKey",
        "hmacKeySecretArn",
        r.hmac_key.as_ref(),
        r.hmac_key_secret_arn.as_ref(),
    )?;
    match r.mode.as_deref().unwrap_or("mask") {
        "mask" => {
            if key.is_some() {
                return Err(err(
                    format!("{path}.hmacKey"),
                    "is only valid with mode \"hash\"",
                ));
            }
            Ok(Some(RedactionConfig::Mask {
                fields: r.fields.clone(),
            }))
        }
        "hash" => match key {
            Some(key) => Ok(Some(RedactionConfig::Hash {
                fields: r.fields.clone(),
                key,
            })),
            None => Err(err(
                format!("{path}.hmacKeySecretArn"),
                "mode \"hash\" needs hmacKeySecretArn (or hmacKey for local runs)",
            )),
        },
        other => Err(err(
            format!("{path}.mode"),
            format!("must be one of mask, hash (got {other:?})"),
        )),
    }
}
