//! Configuration of the Security Lake writer, read and validated once at cold start
//! (Contract 4 of the design: every error names the variable and the expected form).

use authtrail_core::config::{ConfigError, env_opt, env_required};

use crate::schema::OcsfClass;

/// Longest `SECURITY_LAKE_SOURCE_PREFIX`: Security Lake limits a custom source's name to 20
/// characters (its provider role is `AmazonSecurityLake-Provider-{name}-{region}`), and the
/// longest suffix is `-account` (8).
pub const MAX_SOURCE_PREFIX: usize = 12;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `SECURITY_LAKE_BUCKET` (required): the bucket Security Lake created
    /// (`aws-security-data-lake-{region}-{id}`).
    pub bucket: String,
    /// `SECURITY_LAKE_SOURCE_PREFIX` (default `authtrail`): the custom sources are named
    /// `{prefix}-{class}` ([`OcsfClass::source_suffix`]), one per OCSF class.
    pub source_prefix: String,
    /// `SECURITY_LAKE_REGION` (default `AWS_REGION`): the `region=` partition.
    pub region: String,
    /// `SECURITY_LAKE_ACCOUNT_ID` (required): the `accountId=` partition, the 12-digit account
    /// the records pertain to or, for records from outside AWS, `external` /
    /// `external_{id}` as Security Lake recommends.
    pub account_id: String,
    /// `SECURITY_LAKE_STATE_BUCKET` (required): the function's own bucket for per-shard state
    /// and error objects (never the Security Lake bucket, whose `ext/` prefixes are crawled).
    pub state_bucket: String,
    /// `SECURITY_LAKE_STATE_PREFIX` (default `securitylake-state/`).
    pub state_prefix: String,
    /// `SECURITY_LAKE_ERROR_PREFIX` (default `securitylake-errors/`): records that are not JSON
    /// objects.
    pub error_prefix: String,
}

impl Config {
    /// A configuration with the defaults and the given required values.
    pub fn new(
        bucket: impl Into<String>,
        region: impl Into<String>,
        account_id: impl Into<String>,
        state_bucket: impl Into<String>,
    ) -> Self {
        Self {
            bucket: bucket.into(),
            source_prefix: "authtrail".into(),
            region: region.into(),
            account_id: account_id.into(),
            state_bucket: state_bucket.into(),
            state_prefix: "securitylake-state/".into(),
            error_prefix: "securitylake-errors/".into(),
        }
    }

    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let bucket = env_required(
            "SECURITY_LAKE_BUCKET",
            "the name of the Security Lake S3 bucket (aws-security-data-lake-...)",
        )?;
        check_bucket("SECURITY_LAKE_BUCKET", &bucket)?;
        let state_bucket = env_required(
            "SECURITY_LAKE_STATE_BUCKET",
            "the name of the bucket for the writer's state and error objects",
        )?;
        check_bucket("SECURITY_LAKE_STATE_BUCKET", &state_bucket)?;
        let region = env_opt("SECURITY_LAKE_REGION")
            .or_else(|| env_opt("AWS_REGION"))
            .ok_or_else(|| {
                ConfigError::missing(
                    "SECURITY_LAKE_REGION",
                    "an AWS region such as eu-west-1 (or AWS_REGION set)",
                )
            })?;
        check_region(&region)?;
        let account_id = env_required(
            "SECURITY_LAKE_ACCOUNT_ID",
            "a 12-digit AWS account ID, `external` or `external_<id>`",
        )?;
        check_account_id(&account_id)?;
        let mut config = Config::new(bucket, region, account_id, state_bucket);
        if let Some(p) = env_opt("SECURITY_LAKE_SOURCE_PREFIX") {
            check_source_prefix(&p)?;
            config.source_prefix = p;
        }
        if let Some(p) = env_opt("SECURITY_LAKE_STATE_PREFIX") {
            config.state_prefix = checked_prefix("SECURITY_LAKE_STATE_PREFIX", &p)?;
        }
        if let Some(p) = env_opt("SECURITY_LAKE_ERROR_PREFIX") {
            config.error_prefix = checked_prefix("SECURITY_LAKE_ERROR_PREFIX", &p)?;
        }
        if config.state_prefix == config.error_prefix {
            return Err(ConfigError::new(
                "SECURITY_LAKE_ERROR_PREFIX",
                "different from SECURITY_LAKE_STATE_PREFIX",
                Some(&config.error_prefix),
            ));
        }
        Ok(config)
    }

    /// The custom source name of `class`: `{prefix}-{suffix}`.
    pub fn source_name(&self, class: OcsfClass) -> String {
        format!("{}-{}", self.source_prefix, class.source_suffix())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn check_bucket(var: &str, value: &str) -> Result<(), ConfigError> {
    let ok = (3..=63).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            var,
            "an S3 bucket name (3-63 characters of a-z 0-9 . -)",
            Some(value),
        ))
    }
}

fn check_region(value: &str) -> Result<(), ConfigError> {
    let ok = (1..=32).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "SECURITY_LAKE_REGION",
            "an AWS region such as eu-west-1",
            Some(value),
        ))
    }
}

fn check_account_id(value: &str) -> Result<(), ConfigError> {
    let aws = value.len() == 12 && value.chars().all(|c| c.is_ascii_digit());
    let external = value == "external"
        || value
            .strip_prefix("external_")
            .is_some_and(|id| (1..=64).contains(&id.len()) && id.chars().all(is_name_char));
    if aws || external {
        Ok(())
    } else {
        Err(ConfigError::new(
            "SECURITY_LAKE_ACCOUNT_ID",
            "a 12-digit AWS account ID, `external` or `external_<id>` (<id>: 1-64 of A-Z a-z 0-9 _ -)",
            Some(value),
        ))
    }
}

fn check_source_prefix(value: &str) -> Result<(), ConfigError> {
    let ok = (1..=MAX_SOURCE_PREFIX).contains(&value.len()) && value.chars().all(is_name_char);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "SECURITY_LAKE_SOURCE_PREFIX",
            "1-12 characters of A-Z a-z 0-9 _ - (custom source names are at most 20 characters)",
            Some(value),
        ))
    }
}

/// A key prefix: no leading `/`; a trailing `/` is added when missing.
fn checked_prefix(var: &str, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() || value.starts_with('/') || value.contains("//") {
        return Err(ConfigError::new(
            var,
            "a key prefix such as `securitylake-state/` (not empty, no leading `/`)",
            Some(value),
        ));
    }
    Ok(if value.ends_with('/') {
        value.to_string()
    } else {
        format!("{value}/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits_or_external_forms() {
        assert!(check_account_id("123456789012").is_ok());
        assert!(check_account_id("external").is_ok());
        assert!(check_account_id("external_mpas-prod").is_ok());
        assert!(check_account_id("12345").is_err());
        assert!(check_account_id("external_").is_err());
        assert!(check_account_id("external_a/b").is_err());
    }

    #[test]
    fn source_prefix_keeps_every_source_name_within_twenty_characters() {
        assert!(check_source_prefix("authtrail").is_ok());
        assert!(check_source_prefix("abcdefghijkl").is_ok());
        assert!(check_source_prefix("abcdefghijklm").is_err());
        assert!(check_source_prefix("a b").is_err());
        let mut c = Config::new("lake", "eu-west-1", "external", "state");
        c.source_prefix = "abcdefghijkl".into();
        for class in OcsfClass::ALL {
            assert!(
                c.source_name(*class).len() <= 20,
                "{}",
                c.source_name(*class)
            );
        }
    }

    #[test]
    fn prefixes_become_folders_and_bad_ones_name_the_variable() {
        assert_eq!(checked_prefix("V", "state").unwrap_or_default(), "state/");
        assert_eq!(checked_prefix("V", "a/b/").unwrap_or_default(), "a/b/");
        let e = checked_prefix("SECURITY_LAKE_STATE_PREFIX", "/x").err();
        assert!(e.is_some_and(|e| e.to_string().contains("SECURITY_LAKE_STATE_PREFIX")));
    }

    #[test]
    fn buckets_and_regions_are_checked() {
        assert!(check_bucket("B", "aws-security-data-lake-eu-west-1-abc").is_ok());
        assert!(check_bucket("B", "Bad_Bucket").is_err());
        assert!(check_region("eu-west-1").is_ok());
        assert!(check_region("EU WEST").is_err());
    }
}
