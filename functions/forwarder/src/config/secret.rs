//! Secrets in the configuration (`token` / `tokenSecretArn`, `password` / `passwordSecretArn`,
//! `hmacKey` / `hmacKeySecretArn`, `headersFromSecrets`): by Secrets Manager ARN, or given
//! directly for local runs only. A [`SecretRef`] is resolved once, at cold start; its value
//! never appears in errors, logs or `Debug` output.
//!
//! A plain `token`, `password` or `hmacKey` would sit in the stack's parameters and the
//! function's environment: it is refused unless the environment variable
//! [`ALLOW_PLAINTEXT_SECRETS_ENV`] is `true` (local runs, tests, the demo).

use authtrail_core::secret::Secret;
use serde_json::{Map, Value};

use super::err;
use crate::ForwarderError;

/// The environment variable that allows plain secrets in the configuration (`true`; local
/// runs only).
pub const ALLOW_PLAINTEXT_SECRETS_ENV: &str = "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS";

/// Where a secret comes from: given directly (local runs) or by Secrets Manager ARN.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value itself (`token`, `password`, `hmacKey`, a header value).
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
    /// whose value is a JSON object must have the string field `field` (`token`, `password`,
    /// `hmacKey`, a header's name), which is used; any other value is used whole.
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
                secret_value(arn, s, field)
            }
        }
    }
}

/// The value to use of secret `arn` holding `s`: field `field` of a JSON object (an object
/// without it is an error naming the fields it has, never their values), else `s` whole.
pub fn secret_value(arn: &str, s: Secret, field: &str) -> Result<Secret, ForwarderError> {
    if !s.expose().trim_start().starts_with('{') {
        return Ok(s);
    }
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(s.expose()) else {
        return Ok(s);
    };
    match object.get(field) {
        Some(Value::String(v)) => Ok(Secret::new(v.clone())),
        _ => Err(ForwarderError::SecretFieldMissing {
            arn: arn.to_string(),
            field: field.to_string(),
            has: object.keys().cloned().collect(),
        }),
    }
}

/// Whether plain secrets are allowed: [`ALLOW_PLAINTEXT_SECRETS_ENV`] is `true`.
#[cfg(not(test))]
fn plaintext_secrets_allowed() -> bool {
    std::env::var(ALLOW_PLAINTEXT_SECRETS_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
thread_local! {
    /// Unit tests allow plain secrets unless a test turns them off (per test thread).
    pub(crate) static ALLOW_PLAINTEXT_IN_TESTS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Whether plain secrets are allowed (unit tests: per test thread).
#[cfg(test)]
fn plaintext_secrets_allowed() -> bool {
    ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.get())
}

/// The secret given by a pair of keys (`plain_key` such as `token`, `arn_key` such as
/// `tokenSecretArn`) at `path`: at most one of them, not empty, an ARN that looks like one, a
/// plain value only when [`ALLOW_PLAINTEXT_SECRETS_ENV`] allows it.
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
        (Some(_), None) if !plaintext_secrets_allowed() => Err(err(
            format!("{path}.{plain_key}"),
            format!(
                "a plain secret is for local runs only: use {arn_key} (or set \
                 {ALLOW_PLAINTEXT_SECRETS_ENV}=true for a local run)"
            ),
        )),
        (Some(p), None) => Ok(Some(SecretRef::Plain(Secret::new(p.clone())))),
        (None, Some(a)) => Ok(Some(SecretRef::Arn(secret_arn(
            &format!("{path}.{arn_key}"),
            a,
        )?))),
        (None, None) => Ok(None),
    }
}

/// Checks a Secrets Manager ARN at `path` (it names the secret, it is not one).
pub fn secret_arn(path: &str, arn: &str) -> Result<String, ForwarderError> {
    if !arn.starts_with("arn:") {
        return Err(err(
            path,
            format!("must be a Secrets Manager ARN (arn:...) (got {arn:?})"),
        ));
    }
    Ok(arn.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_plain_secret_is_refused_unless_local_runs_allow_it() {
        let token = "hunter2".to_string();
        ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(false));
        let e = secret_ref(
            "emitters[0] (\"w\")",
            "token",
            "tokenSecretArn",
            Some(&token),
            None,
        )
        .unwrap_err()
        .to_string();
        ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(true));
        assert!(e.contains("emitters[0] (\"w\").token"), "{e}");
        assert!(
            e.contains("tokenSecretArn") && e.contains(ALLOW_PLAINTEXT_SECRETS_ENV),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(
            secret_ref("p", "token", "tokenSecretArn", Some(&token), None)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_json_secret_without_the_field_is_an_error_naming_its_fields_not_their_values() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:s";
        let s = Secret::new(r#"{"hec_token":"hunter2","note":"x"}"#);
        let e = secret_value(arn, s, "token").unwrap_err();
        assert_eq!(e.error_type(), "SecretUnavailable");
        let text = e.to_string();
        assert!(
            text.contains("hec_token") && text.contains("note") && text.contains("\"token\""),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let ok = secret_value(arn, Secret::new(r#"{"token":"t1"}"#), "token").unwrap();
        assert_eq!(ok.expose(), "t1");
        let whole = secret_value(arn, Secret::new("plain-token"), "token").unwrap();
        assert_eq!(whole.expose(), "plain-token");
    }
}
