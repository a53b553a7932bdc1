//! The `authtrail-verify` command line: its arguments ([`Args`]), checked into what to verify
//! ([`Args::plan`]: usage errors before anything is read), and [`run`]: keys, verification,
//! output, exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use authtrail_archiver::S3Store;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clap::Parser;

use crate::VerifyError;
use crate::keyring::KeyRing;
use crate::progress::Progress;
use crate::verify::{self, Prefixes, Scope};

/// Exit status: the range is intact.
pub const EXIT_INTACT: u8 = 0;
/// Exit status: something was found (deleted, modified, added, altered, a gap).
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: the verification could not be made.
pub const EXIT_ERROR: u8 = 2;

/// Proves the archive intact for a range of hours: every digest's signature (with the key you
/// name) and chain, every listed object's presence and SHA-256, no object that no digest lists,
/// no gap in a shard's chain of objects. Exit status: 0 intact, 1 findings, 2 could not run.
#[derive(Parser, Debug, Default)]
#[command(name = "authtrail-verify", version)]
pub struct Args {
    /// The archive bucket, s3://BUCKET.
    #[arg(long, value_name = "S3URL")]
    pub archive: String,
    /// Only this stream (default: every stream in the bucket).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// First key hour to verify (inclusive, rounded down to the hour): RFC 3339, a date or
    /// epoch milliseconds.
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the range (exclusive, rounded up to the hour; default: now, so the newest
    /// digests are checked too).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// A KMS key whose public key (kms:GetPublicKey) checks the signatures (repeatable).
    #[arg(long = "key-id", value_name = "KEY")]
    pub key_ids: Vec<String>,
    /// A public key file, PEM (BEGIN PUBLIC KEY) or DER (repeatable).
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// ARCHIVE_PREFIX of the archiver.
    #[arg(long, value_name = "PREFIX", default_value = "raw/")]
    pub prefix: String,
    /// ARCHIVE_ERROR_PREFIX of the archiver.
    #[arg(long, value_name = "PREFIX", default_value = "errors/")]
    pub error_prefix: String,
    /// ARCHIVE_DIGEST_PREFIX of the archiver.
    #[arg(long, value_name = "PREFIX", default_value = "digests/")]
    pub digest_prefix: String,
    /// ARCHIVE_STATE_PREFIX of the archiver.
    #[arg(long, value_name = "PREFIX", default_value = "archiver-state/")]
    pub state_prefix: String,
    /// Seconds after an hour ends by which the archiver's hourly close has written its digests
    /// (a heartbeat for an hour without objects); older hours without a digest are
    /// `digest-missing`. The templates close at :15 with a 600 s settle time.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub close_delay: u32,
    /// The time the check is made as of (default: now): which hours are old enough to need a
    /// digest. RFC 3339, a date or epoch milliseconds.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Read and hash every object instead of using the SHA-256 checksum S3 keeps for it.
    #[arg(long)]
    pub read_objects: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// How many findings the text report lists.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_findings: usize,
}

/// The checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The prefixes.
    pub prefixes: Prefixes,
    /// The range and options.
    pub scope: Scope,
}

impl Args {
    /// Checks the arguments (no I/O).
    pub fn plan(&self, now: DateTime<Utc>) -> Result<Plan, VerifyError> {
        let bucket = self
            .archive
            .strip_prefix("s3://")
            .map(|b| b.trim_end_matches('/'))
            .filter(|b| !b.is_empty() && !b.contains('/'))
            .ok_or_else(|| VerifyError::ArchiveUrl(self.archive.clone()))?;
        let from = parse_time("--from", &self.from)?.div_euclid(3_600_000) * 3600;
        let to_ms = match &self.to {
            Some(t) => parse_time("--to", t)?,
            None => now.timestamp_millis(),
        };
        let to = (to_ms + 3_599_999).div_euclid(3_600_000) * 3600;
        let as_of = match &self.now {
            Some(t) => parse_time("--now", t)?.div_euclid(1000),
            None => now.timestamp(),
        };
        if from >= to {
            return Err(VerifyError::EmptyRange);
        }
        if self.key_ids.is_empty() && self.public_keys.is_empty() {
            return Err(VerifyError::NoKey);
        }
        let prefix = |arg: &'static str, value: &str| {
            if value.ends_with('/') && !value.starts_with('/') {
                Ok(value.to_string())
            } else {
                Err(VerifyError::Prefix {
                    arg,
                    value: value.to_string(),
                })
            }
        };
        Ok(Plan {
            prefixes: Prefixes {
                archive: prefix("--prefix", &self.prefix)?,
                errors: prefix("--error-prefix", &self.error_prefix)?,
                digests: prefix("--digest-prefix", &self.digest_prefix)?,
                state: prefix("--state-prefix", &self.state_prefix)?,
            },
            scope: Scope {
                bucket: bucket.to_string(),
                stream: self.stream.clone(),
                from,
                to,
                read_objects: self.read_objects,
                now: as_of,
                close_delay: i64::from(self.close_delay),
            },
        })
    }
}

/// Reads a time: RFC 3339 (any offset), a date and time without offset (UTC), a date (midnight
/// UTC) or epoch milliseconds. Returns epoch milliseconds.
pub fn parse_time(arg: &'static str, value: &str) -> Result<i64, VerifyError> {
    let bad = || VerifyError::Time {
        arg,
        value: value.to_string(),
    };
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map_err(|_| bad());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t).timestamp_millis())
        .ok_or_else(bad)
}

/// Runs the command: exit status 0 intact, 1 findings, 2 could not run.
pub async fn run(args: Args) -> ExitCode {
    match verify_with(&args).await {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return fail(&VerifyError::Internal(e.to_string())),
                }
            } else {
                print!("{}", report.render(args.max_findings));
            }
            ExitCode::from(if report.findings.is_empty() {
                EXIT_INTACT
            } else {
                EXIT_FINDINGS
            })
        }
        Err(e) => fail(&e),
    }
}

async fn verify_with(args: &Args) -> Result<crate::Report, VerifyError> {
    let plan = args.plan(Utc::now())?;
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let mut keys = KeyRing::new();
    for path in &args.public_keys {
        keys.add_file(path)?;
    }
    if !args.key_ids.is_empty() {
        let kms = aws_sdk_kms::Client::new(&sdk);
        for key_id in &args.key_ids {
            keys.add_kms(&kms, key_id).await?;
        }
    }
    let store = Arc::new(S3Store::new(
        authtrail_core::aws::s3_client(&sdk),
        plan.scope.bucket.clone(),
    ));
    let mut progress = Progress::new(args.quiet);
    let report = verify::verify(store, &plan.prefixes, &plan.scope, &keys, &mut progress).await;
    progress.finish();
    report
}

fn fail(e: &VerifyError) -> ExitCode {
    eprintln!("authtrail-verify: {e}");
    ExitCode::from(EXIT_ERROR)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["authtrail-verify", "--archive", "s3://archive"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_739_390_000, 0).unwrap() // 2025-02-12T19:53:20Z
    }

    #[test]
    fn the_range_is_widened_to_whole_hours_and_ends_now_by_default() {
        let plan = args(&["--from", "2025-02-12T18:30:00Z", "--key-id", "alias/k"])
            .plan(now())
            .unwrap();
        assert_eq!(plan.scope.bucket, "archive");
        assert_eq!(plan.scope.from, 1_739_383_200, "18:00");
        assert_eq!(
            plan.scope.to, 1_739_390_400,
            "20:00, after the current hour"
        );
        assert_eq!(plan.prefixes, Prefixes::default());
        let plan = args(&[
            "--from",
            "2025-02-12",
            "--to",
            "2025-02-12T19:00:00Z",
            "--public-key",
            "k.pem",
        ])
        .plan(now())
        .unwrap();
        assert_eq!(plan.scope.to - plan.scope.from, 19 * 3600);
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let e = |extra: &[&str]| args(extra).plan(now()).unwrap_err().to_string();
        assert!(e(&["--from", "2025-02-12"]).contains("--key-id"));
        assert!(e(&["--from", "yesterday", "--key-id", "k"]).starts_with("--from:"));
        assert!(
            e(&[
                "--from",
                "2025-02-12",
                "--to",
                "2025-02-11",
                "--key-id",
                "k"
            ])
            .contains("before --to")
        );
        assert!(
            e(&[
                "--from",
                "2025-02-12",
                "--key-id",
                "k",
                "--digest-prefix",
                "d"
            ])
            .starts_with("--digest-prefix")
        );
        let bad_url = Args::try_parse_from([
            "authtrail-verify",
            "--archive",
            "s3://b/raw/",
            "--from",
            "2025-02-12",
            "--key-id",
            "k",
        ])
        .unwrap();
        assert!(
            bad_url
                .plan(now())
                .unwrap_err()
                .to_string()
                .starts_with("--archive")
        );
    }
}
