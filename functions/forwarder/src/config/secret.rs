//! Secrets in the configuration (`token` / `tokenSecretArn`, `password` / `passwordSecretArn`,
//! `hmacKey` / `hmacKeySecretArn`): given directly for local runs, or by Secrets Manager ARN.
//! A [`SecretRef`] is resolved once, at cold start; its value never appears in errors, logs or
//! `Debug` output.

use authtrail_core::secret::Secret;

use super::err;
use crate::ForwarderError;

/// Where a secret comes from: given directly (local runs) or by Secrets Manager ARN.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value itself (`token`, `password`, `hmacKey`).
    Plain(Secret),
    /// A Secrets Manager ARN (`tokenSecretArn`, ...), read at cold start.
    Arn(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Plain(_) => f.write_str("Plain(<secret>)"),
            SecretRef::Arn(arn) => write!(f, "Arn({arn})"),
        }
    }
}

impl SecretRef {
    /// Reads the secret: plain, or from Secrets Manager (`sdk` is needed for an ARN). A secret
    /// whose value is a JSON object with the field `field` (`token`, `password`, `hmacKey`)
    /// yields that field; any other value is used whole.
    pub async fn resolve(
        &self,
        sdk: Option<&aws_config::SdkConfig>,
        field: &str,
    ) -> Result<Secret, ForwarderError> {
        match self {
            SecretRef::Plain(s) => Ok(s.clone()),
            SecretRef::Arn(arn) => {
                let Some(sdk) = sdk else {
                    return Err(err(arn.clone(), "Secrets Manager is not available here"));
                };
                let s = authtrail_core::secret::fetch_secret_string(sdk, arn).await?;
                if s.expose().trim_start().starts_with('{')
                    && let Ok(f) = authtrail_core::secret::secret_field(arn, &s, field)
                {
                    return Ok(f);
                }
                Ok(s)
            }
        }
    }
}

/// The secret given by a pair of keys (`plain_key` such as `token`, `arn_key` such as
/// `tokenSecretArn`) at `path`: at most one of them, not empty, an ARN that looks like one.
pub fn secret_ref(
    path: &str,
    plain_key: &str,
    arn_key: &str,
    plain: Option<&String>,
    arn: Option<&String>,
) -> Result<Option<SecretRef>, ForwarderError> {
    match (plain, arn) {
        (Some(_), Some(_)) => Err(err(
            format!("{path}.{plain_key}"),
            format!("give either {plain_key} or {arn_key}, not both"),
        )),
        (Some(p), None) if p.is_empty() => {
            Err(err(format!("{path}.{plain_key}"), "must not be empty"))
        }
        (Some(p), None) => Ok(Some(SecretRef::Plain(Secret::new(p.clone())))),
        (None, Some(a)) if !a.starts_with("arn:") => Err(err(
            format!("{path}.{arn_key}"),
            format!("must be a Secrets Manager ARN (arn:...) (got {a:?})"),
        )),
        (None, Some(a)) => Ok(Some(SecretRef::Arn(a.clone()))),
        (None, None) => Ok(None),
    }
}
