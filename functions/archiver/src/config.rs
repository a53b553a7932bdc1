//! Configuration of the archiver, read and validated once at cold start (Contract 4).

use authtrail_core::config::{ConfigError, env_choice, env_opt, env_parse, env_required};

use crate::digest::SigningAlgorithm;

/// How archive objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at the given level (0-9); objects end in `.jsonl.gz`.
    Gzip { level: u32 },
    /// Zstandard at the given level ([`ZSTD_LEVEL`] from the configuration); objects end in
    /// `.jsonl.zst`.
    Zstd { level: i32 },
    /// Plain JSON lines; objects end in `.jsonl`.
    None,
}

impl Compression {
    /// File name extension of archive objects, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "jsonl.gz",
            Compression::Zstd { .. } => "jsonl.zst",
            Compression::None => "jsonl",
        }
    }

    /// `Content-Type` of archive objects.
    pub fn content_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/gzip",
            Compression::Zstd { .. } => "application/zstd",
            Compression::None => "application/x-ndjson",
        }
    }
}

/// Default gzip level: level 1 keeps a full 6 MB batch within the 40 ms CPU budget; level 6
/// makes objects about a third smaller for about twice the CPU (see README).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// Zstandard level of `ARCHIVE_COMPRESSION=zstd`: zstd's own default, which compresses better
/// than gzip level 6 in about the time of gzip level 1 (see README).
pub const ZSTD_LEVEL: i32 = 3;

/// Default of `ARCHIVE_DIGEST_SETTLE_SECONDS`: the scheduled close writes an hour's digests
/// ten minutes after the hour ends, when batches of that hour still in flight have landed.
pub const DEFAULT_DIGEST_SETTLE_SECS: i64 = 600;

/// Digest settings (README, "Digests"); present when `ARCHIVE_DIGEST_KEY_ID` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// `ARCHIVE_DIGEST_KEY_ID`: the asymmetric KMS key that signs (id, ARN or alias).
    pub key_id: String,
    /// `ARCHIVE_DIGEST_PREFIX` (default `digests/`).
    pub prefix: String,
    /// `ARCHIVE_DIGEST_SIGNING_ALGORITHM` (default `ECDSA_SHA_256`).
    pub algorithm: SigningAlgorithm,
    /// `ARCHIVE_DIGEST_SETTLE_SECONDS` (default 600): how long after an hour ends the
    /// scheduled close writes its digests.
    pub settle_secs: i64,
}

impl DigestConfig {
    /// Digests signed by `key_id` with the defaults.
    pub fn new(key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            prefix: "digests/".into(),
            algorithm: SigningAlgorithm::EcdsaSha256,
            settle_secs: DEFAULT_DIGEST_SETTLE_SECS,
        }
    }

    fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(key_id) = env_opt("ARCHIVE_DIGEST_KEY_ID") else {
            return Ok(None);
        };
        let mut d = DigestConfig::new(key_id);
        if let Some(p) = env_opt("ARCHIVE_DIGEST_PREFIX") {
            d.prefix = checked_prefix("ARCHIVE_DIGEST_PREFIX", &p)?;
        }
        if let Some(v) = env_opt("ARCHIVE_DIGEST_SIGNING_ALGORITHM") {
            let names: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            d.algorithm =
                SigningAlgorithm::from_name(&v.trim().to_ascii_uppercase()).ok_or_else(|| {
                    ConfigError::new(
                        "ARCHIVE_DIGEST_SIGNING_ALGORITHM",
                        format!("one of {}", names.join(", ")),
                        Some(&v),
                    )
                })?;
        }
        d.settle_secs = env_parse(
            "ARCHIVE_DIGEST_SETTLE_SECONDS",
            DEFAULT_DIGEST_SETTLE_SECS,
            "a number of seconds from 0 to 3600",
        )?;
        if !(0..=3600).contains(&d.settle_secs) {
            return Err(ConfigError::new(
                "ARCHIVE_DIGEST_SETTLE_SECONDS",
                "a number of seconds from 0 to 3600",
                Some(&d.settle_secs.to_string()),
            ));
        }
        Ok(Some(d))
    }
}

/// Validated archiver configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ARCHIVE_BUCKET` (required).
    pub bucket: String,
    /// `ARCHIVE_PREFIX` (default `raw/`).
    pub prefix: String,
    /// `ARCHIVE_ERROR_PREFIX` (default `errors/`).
    pub error_prefix: String,
    /// `ARCHIVE_STATE_PREFIX` (default `archiver-state/`): where the per-shard high-water marks
    /// live (only written when a retried batch was shorter than an object already stored).
    pub state_prefix: String,
    /// `ARCHIVE_COMPRESSION` (`gzip` default, `zstd`, `none`) and `ARCHIVE_GZIP_LEVEL` (0-9, default 1).
    pub compression: Compression,
    /// Signed digests of what was written; off unless `ARCHIVE_DIGEST_KEY_ID` is set.
    pub digests: Option<DigestConfig>,
}

impl Config {
    /// A configuration with the defaults and the given bucket.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: "raw/".into(),
            error_prefix: "errors/".into(),
            state_prefix: "archiver-state/".into(),
            compression: Compression::Gzip {
                level: DEFAULT_GZIP_LEVEL,
            },
            digests: None,
        }
    }

    /// Reads the configuration from the environment; errors name the variable and the
    /// expected form.
    pub fn from_env() -> Result<Self, ConfigError> {
        let bucket = env_required("ARCHIVE_BUCKET", "the name of the archive S3 bucket")?;
        let mut config = Config::new(bucket);
        if let Some(p) = env_opt("ARCHIVE_PREFIX") {
            config.prefix = checked_prefix("ARCHIVE_PREFIX", &p)?;
        }
        if let Some(p) = env_opt("ARCHIVE_ERROR_PREFIX") {
            config.error_prefix = checked_prefix("ARCHIVE_ERROR_PREFIX", &p)?;
        }
        if let Some(p) = env_opt("ARCHIVE_STATE_PREFIX") {
            config.state_prefix = checked_prefix("ARCHIVE_STATE_PREFIX", &p)?;
        }
        let compression = env_choice("ARCHIVE_COMPRESSION", &["gzip", "none", "zstd"], "gzip")?;
        let level: u32 = env_parse(
            "ARCHIVE_GZIP_LEVEL",
            DEFAULT_GZIP_LEVEL,
            "an integer from 0 to 9",
        )?;
        if level > 9 {
            return Err(ConfigError::new(
                "ARCHIVE_GZIP_LEVEL",
                "an integer from 0 to 9",
                Some(&level.to_string()),
            ));
        }
        config.compression = match compression.as_str() {
            "none" => Compression::None,
            "zstd" => Compression::Zstd { level: ZSTD_LEVEL },
            _ => Compression::Gzip { level },
        };
        if config.prefix == config.error_prefix {
            return Err(ConfigError::new(
                "ARCHIVE_ERROR_PREFIX",
                "different from ARCHIVE_PREFIX",
                Some(&config.error_prefix),
            ));
        }
        config.digests = DigestConfig::from_env()?;
        if let Some(d) = &config.digests {
            let others = [&config.prefix, &config.error_prefix, &config.state_prefix];
            if others.iter().any(|p| **p == d.prefix) {
                return Err(ConfigError::new(
                    "ARCHIVE_DIGEST_PREFIX",
                    "a prefix different from ARCHIVE_PREFIX, ARCHIVE_ERROR_PREFIX and ARCHIVE_STATE_PREFIX",
                    Some(&d.prefix),
                ));
            }
        }
        Ok(config)
    }
}

/// A key prefix: no leading `/`; a trailing `/` is added when missing so that prefixes are
/// folders (`raw` becomes `raw/`).
fn checked_prefix(var: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.starts_with('/') || v.contains("//") {
        return Err(ConfigError::new(
            var,
            "an S3 key prefix without a leading '/' or empty folders, such as raw/",
            Some(value),
        ));
    }
    if v.ends_with('/') {
        Ok(v.to_string())
    } else {
        Ok(format!("{v}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_without_trailing_slash_becomes_a_folder() {
        assert_eq!(checked_prefix("ARCHIVE_PREFIX", "raw").unwrap(), "raw/");
        assert_eq!(checked_prefix("ARCHIVE_PREFIX", "a/b/").unwrap(), "a/b/");
    }

    #[test]
    fn prefix_with_leading_slash_is_rejected_naming_the_variable() {
        let e = checked_prefix("ARCHIVE_PREFIX", "/raw/").unwrap_err();
        assert!(e.to_string().contains("ARCHIVE_PREFIX"), "{e}");
    }

    #[test]
    fn compression_extension_follows_the_contract() {
        assert_eq!(Compression::Gzip { level: 6 }.extension(), "jsonl.gz");
        assert_eq!(Compression::None.extension(), "jsonl");
        assert_eq!(
            Compression::Zstd { level: ZSTD_LEVEL }.extension(),
            "jsonl.zst"
        );
    }
}
