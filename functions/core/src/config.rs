//! Reading and validating environment variables at cold start. Every error names the variable
//! and the expected form, and never echoes a value that could be a secret (callers pass
//! `got: None` for secret variables).

use std::fmt;
use std::str::FromStr;

/// A bad or missing configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub var: String,
    pub expected: String,
    pub got: Option<String>,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, expected: impl Into<String>, got: Option<&str>) -> Self {
        Self {
            var: var.into(),
            expected: expected.into(),
            got: got.map(|g| truncate(g, 80)),
        }
    }

    /// A required variable that is not set.
    pub fn missing(var: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            expected: expected.into(),
            got: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.got {
            Some(got) => write!(
                f,
                "invalid configuration: {} must be {} (got {:?})",
                self.var, self.expected, got
            ),
            None => write!(
                f,
                "invalid configuration: {} must be {}",
                self.var, self.expected
            ),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// The variable's value, or `None` when it is unset or empty (an empty value means "unset",
/// as CloudFormation parameters often pass empty strings).
pub fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required variable.
pub fn env_required(name: &str, expected: &str) -> Result<String, ConfigError> {
    env_opt(name).ok_or_else(|| ConfigError::missing(name, format!("set to {expected}")))
}

/// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (case-insensitive).
pub fn env_bool(name: &str, default: bool) -> Result<bool, ConfigError> {
    match env_opt(name) {
        None => Ok(default),
        Some(v) => parse_bool(&v).ok_or_else(|| ConfigError::new(name, "true or false", Some(&v))),
    }
}

/// Parses the usual spellings of a boolean.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A value parsed with `FromStr`, or `default` when unset.
pub fn env_parse<T: FromStr>(name: &str, default: T, expected: &str) -> Result<T, ConfigError> {
    match env_opt(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, expected, Some(&v))),
    }
}

/// One of a fixed set of (case-insensitive) choices, returned lower-cased.
pub fn env_choice(name: &str, choices: &[&str], default: &str) -> Result<String, ConfigError> {
    let Some(v) = env_opt(name) else {
        return Ok(default.to_string());
    };
    let lower = v.trim().to_ascii_lowercase();
    if choices.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(ConfigError::new(
            name,
            format!("one of {}", choices.join(", ")),
            Some(&v),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_names_the_variable_expected_form_and_value() {
        let e = ConfigError::new("ARCHIVE_COMPRESSION", "one of gzip, none", Some("zip"));
        assert_eq!(
            e.to_string(),
            "invalid configuration: ARCHIVE_COMPRESSION must be one of gzip, none (got \"zip\")"
        );
    }

    #[test]
    fn missing_variable_message_says_what_to_set() {
        let e = ConfigError::missing("ARCHIVE_BUCKET", "set to the archive bucket name");
        assert_eq!(
            e.to_string(),
            "invalid configuration: ARCHIVE_BUCKET must be set to the archive bucket name"
        );
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let long = "x".repeat(500);
        let e = ConfigError::new("V", "short", Some(&long));
        assert!(e.to_string().len() < 200);
    }

    #[test]
    fn booleans_accept_common_spellings_and_reject_others() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool(" off "), Some(false));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }
}
