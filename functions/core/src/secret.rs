//! Secrets: a wrapper that never prints its value, and retrieval from AWS Secrets Manager.

use std::fmt;

/// A secret value. `Debug` and `Display` print `<secret>`; use [`Secret::expose`] where the
/// value itself is needed (a request header, an HMAC key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Failure to read a secret. Names the secret's ARN, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read secret {arn} from Secrets Manager: {detail}")]
    Fetch { arn: String, detail: String },
    #[error("secret {arn} has no string value")]
    NoString { arn: String },
    #[error("secret {arn} is not a JSON object: {detail}")]
    NotJson { arn: String, detail: String },
    #[error("secret {arn} has no string field {field:?}")]
    MissingField { arn: String, field: String },
}

/// Reads a secret's string value from Secrets Manager.
pub async fn fetch_secret_string(
    sdk: &aws_config::SdkConfig,
    arn: &str,
) -> Result<Secret, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.to_string(),
            detail: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    out.secret_string()
        .map(|s| Secret::new(s.to_string()))
        .ok_or_else(|| SecretError::NoString {
            arn: arn.to_string(),
        })
}

/// Reads one string field of a secret whose value is a JSON object, or the whole value when the
/// secret is not JSON and `field` is `None`.
pub fn secret_field(arn: &str, secret: &Secret, field: &str) -> Result<Secret, SecretError> {
    let value: serde_json::Value = serde_json::from_str(secret.expose()).map_err(|e| {
        // The serde error can quote the input: report only its position.
        SecretError::NotJson {
            arn: arn.to_string(),
            detail: format!("line {} column {}", e.line(), e.column()),
        }
    })?;
    value
        .get(field)
        .and_then(|v| v.as_str())
        .map(|s| Secret::new(s.to_string()))
        .ok_or_else(|| SecretError::MissingField {
            arn: arn.to_string(),
            field: field.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{s}"), "<secret>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<secret>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_field_reads_a_json_field_and_errors_never_contain_the_value() {
        let s = Secret::new(r#"{"clientSecret":"hunter2"}"#);
        assert_eq!(
            secret_field("arn:x", &s, "clientSecret").unwrap().expose(),
            "hunter2"
        );
        let e = secret_field("arn:x", &s, "password")
            .unwrap_err()
            .to_string();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        let bad = Secret::new("hunter2-not-json");
        let e = secret_field("arn:x", &bad, "x").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
