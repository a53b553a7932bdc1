//! `authtrail-check`: did every event arrive, once? See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use authtrail_check::sources::{read_path, read_s3_prefix, read_url};
use authtrail_check::{CheckError, KeyPolicy, Report, Tally};
use clap::Parser;

/// Compares what the identity provider made (a ledger or export) with what the S3 archive, the
/// SIEMs and the dead-letter prefix hold, window by window and event by event. Without an
/// expected set, the archive is the reference and the SIEM samples are checked against it.
/// Exit status: 0 complete, 1 incomplete, 2 error.
#[derive(Parser, Debug)]
#[command(name = "authtrail-check", version)]
struct Args {
    /// Expected events: a URL serving JSON lines (the MPAS simulator's /sim/ledger, an export).
    #[arg(long)]
    expected_url: Option<String>,
    /// Expected events: a file or directory of JSON lines (ledger entries or envelopes).
    #[arg(long)]
    expected_file: Option<PathBuf>,
    /// The archive: s3://BUCKET/PREFIX (Contract 2 objects, gzip or plain JSON lines).
    #[arg(long)]
    archive: Option<String>,
    /// A SIEM sample: NAME=PATH of a file or directory of received JSON lines (repeatable).
    #[arg(long = "siem")]
    siems: Vec<String>,
    /// Dead-letter objects: s3://BUCKET/PREFIX. Events found there count as accounted for.
    #[arg(long)]
    dlq: Option<String>,
    /// Width of the time windows in the per-window counts, in seconds.
    #[arg(long, default_value_t = 60)]
    window_secs: i64,
    /// JSON pointers into the event left out of the content hash used for events without `id`
    /// (repeatable; default: the documented redacted fields).
    #[arg(long = "hash-ignore")]
    hash_ignore: Vec<String>,
    /// Print the full report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// How many findings to list in the summary.
    #[arg(long, default_value_t = 50)]
    max_findings: usize,
}

fn parse_s3(url: &str) -> Result<(String, String), CheckError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| CheckError::Arg(format!("{url:?} is not an s3://BUCKET/PREFIX URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CheckError::Arg(format!("{url:?} names no bucket")));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

async fn run(args: Args) -> Result<Report, CheckError> {
    let policy = if args.hash_ignore.is_empty() {
        KeyPolicy::default()
    } else {
        KeyPolicy::new(args.hash_ignore.clone())
    };
    let s3 = if args.archive.is_some() || args.dlq.is_some() {
        let sdk = authtrail_core::aws::load_sdk_config().await;
        Some(authtrail_core::aws::s3_client(&sdk))
    } else {
        None
    };

    let mut expected = Tally::new("expected");
    let have_expected = args.expected_url.is_some() || args.expected_file.is_some();
    if let Some(url) = &args.expected_url {
        read_url(url, &policy, &mut expected).await?;
    }
    if let Some(path) = &args.expected_file {
        read_path(path, &policy, &mut expected)?;
    }

    let mut sources = Vec::new();
    if let Some(url) = &args.archive {
        let (bucket, prefix) = parse_s3(url)?;
        let mut archive = Tally::new("archive");
        if let Some(client) = &s3 {
            read_s3_prefix(client, &bucket, &prefix, &policy, &mut archive).await?;
        }
        sources.push(archive);
    }
    for spec in &args.siems {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| CheckError::Arg(format!("--siem {spec:?}: expected NAME=PATH")))?;
        let mut t = Tally::new(name);
        read_path(&PathBuf::from(path), &policy, &mut t)?;
        sources.push(t);
    }
    let mut dlq = None;
    if let Some(url) = &args.dlq {
        let (bucket, prefix) = parse_s3(url)?;
        let mut t = Tally::new("dead-letter");
        if let Some(client) = &s3 {
            read_s3_prefix(client, &bucket, &prefix, &policy, &mut t).await?;
        }
        dlq = Some(t);
    }
    if !have_expected {
        // The archive is the reference: every distinct archived event once.
        let archive = sources
            .iter()
            .find(|s| s.name == "archive")
            .ok_or_else(|| {
                CheckError::Arg("give --expected-url/--expected-file or --archive".into())
            })?;
        expected = archive.distinct_copy("expected");
    }
    let refs: Vec<&Tally> = sources.iter().collect();
    Ok(Report::compare(
        &expected,
        &refs,
        dlq.as_ref(),
        args.window_secs.saturating_mul(1000),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let max = args.max_findings;
    match run(args).await {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("authtrail-check: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", report.render(max));
            }
            if report.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("authtrail-check: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3("s3://b/raw/").unwrap(),
            ("b".into(), "raw/".into())
        );
        assert_eq!(parse_s3("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_s3("b/raw").is_err());
        assert!(parse_s3("s3:///raw").is_err());
    }
}
