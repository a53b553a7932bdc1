//! The `authtrail-check` command line: its arguments ([`Args`]), the check they describe
//! ([`check`]: read every source into tallies and compare), the output ([`render`]) and the
//! exit status ([`run`]); `authtrail-check reconcile` ([`Command::Reconcile`]) reads the
//! reconciliation objects of a deployed stack instead ([`crate::reconcile`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::reconcile::{ReconcileArgs, check_reconcile};
use crate::sources::{read_path, read_s3_prefix, read_url};
use crate::{CheckError, KeyPolicy, Report, Tally};

/// Exit status: every event arrived, once.
pub const EXIT_COMPLETE: u8 = 0;
/// Exit status: something is missing, duplicated or unexpected.
pub const EXIT_INCOMPLETE: u8 = 1;
/// Exit status: the check could not be made.
pub const EXIT_ERROR: u8 = 2;

/// Compares what the identity provider made (a ledger or export) with what the S3 archive, the
/// SIEMs and the dead-letter prefix hold, window by window and event by event. Without an
/// expected set, the archive is the reference and the SIEM samples are checked against it.
/// Exit status: 0 complete, 1 incomplete, 2 error.
#[derive(Parser, Debug)]
#[command(name = "authtrail-check", version)]
pub struct Args {
    /// Another mode than the event-by-event check.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Expected events: a URL serving JSON lines (the MPAS simulator's /sim/ledger, an export).
    #[arg(long)]
    pub expected_url: Option<String>,
    /// Expected events: a file or directory of JSON lines (ledger entries or envelopes).
    #[arg(long)]
    pub expected_file: Option<PathBuf>,
    /// The archive: s3://BUCKET/PREFIX (Contract 2 objects, gzip or plain JSON lines).
    #[arg(long)]
    pub archive: Option<String>,
    /// A SIEM sample: NAME=PATH of a file or directory of received JSON lines (repeatable).
    #[arg(long = "siem")]
    pub siems: Vec<String>,
    /// Dead-letter objects: s3://BUCKET/PREFIX. Events found there count as accounted for.
    #[arg(long)]
    pub dlq: Option<String>,
    /// Width of the time windows in the per-window counts, in seconds.
    #[arg(long, default_value_t = 60)]
    pub window_secs: i64,
    /// JSON pointers into the event left out of the content hash used for events without `id`
    /// (repeatable; default: the documented redacted fields).
    #[arg(long = "hash-ignore")]
    pub hash_ignore: Vec<String>,
    /// Print the full report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// How many findings to list in the summary.
    #[arg(long, default_value_t = 50)]
    pub max_findings: usize,
}

/// The modes besides the event-by-event check.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Reads the reconciliation objects (one per window of event time) that a deployed
    /// reconciler wrote for a time range and prints them per window and hop. Exit status: 0
    /// every record accounted for at every hop, 1 records unaccounted, a figure unknown or a
    /// window without an object, 2 error.
    Reconcile(ReconcileArgs),
}

impl Args {
    /// The identity policy: the `--hash-ignore` pointers, or the default ones when none given.
    pub fn key_policy(&self) -> KeyPolicy {
        if self.hash_ignore.is_empty() {
            KeyPolicy::default()
        } else {
            KeyPolicy::new(self.hash_ignore.clone())
        }
    }
}

/// Splits `s3://BUCKET/PREFIX` (the prefix may be empty) into bucket and prefix.
pub fn parse_s3(url: &str) -> Result<(String, String), CheckError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| CheckError::NotS3Url(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CheckError::NoBucket(url.to_owned()));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Splits a `--siem` value, `NAME=PATH`, into name and path.
pub fn parse_siem(spec: &str) -> Result<(&str, &Path), CheckError> {
    spec.split_once('=')
        .map(|(name, path)| (name, Path::new(path)))
        .ok_or_else(|| CheckError::SiemSpec(spec.to_owned()))
}

/// Reads every source the arguments name and compares them: with the expected events when
/// given, else with the archive's distinct events.
pub async fn check(args: &Args) -> Result<Report, CheckError> {
    let policy = args.key_policy();
    let s3 = if args.archive.is_some() || args.dlq.is_some() {
        let sdk = authtrail_core::aws::load_sdk_config().await;
        Some(authtrail_core::aws::s3_client(&sdk))
    } else {
        None
    };
    let expected = read_expected(args, &policy).await?;
    let mut sources = Vec::new();
    if let Some(url) = &args.archive {
        sources.push(read_s3_tally("archive", url, s3.as_ref(), &policy).await?);
    }
    for spec in &args.siems {
        let (name, path) = parse_siem(spec)?;
        let mut t = Tally::new(name);
        read_path(path, &policy, &mut t)?;
        sources.push(t);
    }
    let dlq = match &args.dlq {
        Some(url) => Some(read_s3_tally("dead-letter", url, s3.as_ref(), &policy).await?),
        None => None,
    };
    let expected = match expected {
        Some(expected) => expected,
        // The archive is the reference: every distinct archived event once.
        None => sources
            .iter()
            .find(|s| s.name == "archive")
            .ok_or(CheckError::NoReference)?
            .distinct_copy("expected"),
    };
    let refs: Vec<&Tally> = sources.iter().collect();
    Ok(Report::compare(
        &expected,
        &refs,
        dlq.as_ref(),
        args.window_secs.saturating_mul(1000),
    ))
}

/// The expected events from `--expected-url` and `--expected-file` (`None` when neither).
async fn read_expected(args: &Args, policy: &KeyPolicy) -> Result<Option<Tally>, CheckError> {
    if args.expected_url.is_none() && args.expected_file.is_none() {
        return Ok(None);
    }
    let mut expected = Tally::new("expected");
    if let Some(url) = &args.expected_url {
        read_url(url, policy, &mut expected).await?;
    }
    if let Some(path) = &args.expected_file {
        read_path(path, policy, &mut expected)?;
    }
    Ok(Some(expected))
}

/// A tally called `name` of every object under the S3 URL `url`.
async fn read_s3_tally(
    name: &str,
    url: &str,
    s3: Option<&aws_sdk_s3::Client>,
    policy: &KeyPolicy,
) -> Result<Tally, CheckError> {
    let (bucket, prefix) = parse_s3(url)?;
    let mut tally = Tally::new(name);
    if let Some(client) = s3 {
        read_s3_prefix(client, &bucket, &prefix, policy, &mut tally).await?;
    }
    Ok(tally)
}

/// The report as printed: pretty JSON (with a final newline) or the text summary listing at
/// most `max_findings` findings.
pub fn render(report: &Report, json: bool, max_findings: usize) -> serde_json::Result<String> {
    if json {
        Ok(serde_json::to_string_pretty(report)? + "\n")
    } else {
        Ok(report.render(max_findings))
    }
}

/// The exit status of a report: [`EXIT_COMPLETE`] or [`EXIT_INCOMPLETE`].
pub fn exit_status(report: &Report) -> u8 {
    if report.complete {
        EXIT_COMPLETE
    } else {
        EXIT_INCOMPLETE
    }
}

/// Runs `reconcile`: prints the report (text or JSON) and returns the exit status.
async fn run_reconcile(args: &ReconcileArgs) -> ExitCode {
    let report = match check_reconcile(args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authtrail-check: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("authtrail-check: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        }
    } else {
        print!("{}", report.render());
    }
    ExitCode::from(if report.complete {
        EXIT_COMPLETE
    } else {
        EXIT_INCOMPLETE
    })
}

/// Runs the check, prints the report on stdout (errors on stderr) and returns the exit status.
pub async fn run(args: Args) -> ExitCode {
    if let Some(Command::Reconcile(r)) = &args.command {
        return run_reconcile(r).await;
    }
    let report = match check(&args).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("authtrail-check: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match render(&report, args.json, args.max_findings) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("authtrail-check: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    }
    ExitCode::from(exit_status(&report))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("authtrail-check").chain(list.iter().copied()))
            .unwrap()
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "authtrail-check-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, ids: &[&str]) -> String {
            let lines: String = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let event = json!({"id": id, "time": 60_000 * i as i64, "type": "LOGIN"});
                    json!({"timestamp": "t", "eventType": "user-event", "event": event}).to_string()
                        + "\n"
                })
                .collect();
            let path = self.0.join(name);
            std::fs::write(&path, lines).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3("s3://b/raw/").unwrap(),
            ("b".into(), "raw/".into())
        );
        assert_eq!(parse_s3("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(matches!(parse_s3("b/raw"), Err(CheckError::NotS3Url(_))));
        assert!(matches!(
            parse_s3("s3:///raw"),
            Err(CheckError::NoBucket(_))
        ));
    }

    #[test]
    fn argument_errors_read_as_before() {
        let text = |e: CheckError| e.to_string();
        assert_eq!(
            text(parse_s3("b/raw").unwrap_err()),
            r#"invalid argument: "b/raw" is not an s3://BUCKET/PREFIX URL"#
        );
        assert_eq!(
            text(parse_s3("s3:///raw").unwrap_err()),
            r#"invalid argument: "s3:///raw" names no bucket"#
        );
        assert_eq!(
            text(parse_siem("splunk").unwrap_err()),
            r#"invalid argument: --siem "splunk": expected NAME=PATH"#
        );
        assert_eq!(
            text(CheckError::NoReference),
            "invalid argument: give --expected-url/--expected-file or --archive"
        );
    }

    #[test]
    fn siem_samples_are_named_name_equals_path() {
        let (name, path) = parse_siem("splunk=out/splunk=1.jsonl").unwrap();
        assert_eq!(name, "splunk");
        assert_eq!(path, Path::new("out/splunk=1.jsonl"));
    }

    #[test]
    fn hash_ignore_flags_replace_the_default_redacted_fields() {
        let a = json!({"time": 1, "type": "LOGIN", "ipAddress": "192.0.2.1"});
        let b = json!({"time": 1, "type": "LOGIN", "ipAddress": "<redacted>"});
        let default = args(&[]).key_policy();
        assert_eq!(default.key("user-event", &a), default.key("user-event", &b));
        let custom = args(&["--hash-ignore", "/type"]).key_policy();
        assert_ne!(custom.key("user-event", &a), custom.key("user-event", &b));
    }

    #[tokio::test]
    async fn without_expected_events_or_an_archive_there_is_no_reference() {
        let err = check(&args(&[])).await.unwrap_err();
        assert!(matches!(err, CheckError::NoReference), "{err}");
    }

    #[tokio::test]
    async fn a_siem_holding_every_expected_event_once_is_complete() {
        let dir = Scratch::new("complete");
        let expected = dir.file("ledger.jsonl", &["a", "b"]);
        let siem = format!("stdout={}", dir.file("siem.jsonl", &["b", "a"]));
        let report = check(&args(&["--expected-file", &expected, "--siem", &siem]))
            .await
            .unwrap();
        assert!(report.complete);
        assert_eq!(exit_status(&report), EXIT_COMPLETE);
        assert!(
            render(&report, false, 50)
                .unwrap()
                .contains("result: complete")
        );
    }

    #[tokio::test]
    async fn a_siem_missing_or_repeating_events_is_incomplete_and_the_json_says_where() {
        let dir = Scratch::new("incomplete");
        let expected = dir.file("ledger.jsonl", &["a", "b", "c"]);
        let siem = format!("stdout={}", dir.file("siem.jsonl", &["a", "a", "b"]));
        let report = check(&args(&["--expected-file", &expected, "--siem", &siem]))
            .await
            .unwrap();
        assert!(!report.complete);
        assert_eq!(exit_status(&report), EXIT_INCOMPLETE);
        let text = render(&report, true, 50).unwrap();
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let problems: Vec<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["problem"].as_str())
            .collect();
        assert!(
            problems.contains(&"missing") && problems.contains(&"duplicated"),
            "{problems:?}"
        );
    }
}
