//! Configuration of the archiver, read and validated once at cold start (Contract 4).

use authtrail_core::config::{ConfigError, env_choice, env_opt, env_parse, env_required};

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
