//! The `authtrail-replay` command line: its arguments ([`Args`]), checked into a [`Plan`]
//! ([`Args::plan`]: usage and configuration errors before anything is read or sent), and
//! [`run`]: build the emitter, warn about duplicates, replay, print the summary, exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use authtrail_forwarder::config::ForwarderConfig;
use authtrail_forwarder::replay::{self, Replayer, Shape};
use clap::Parser;

use crate::ReplayError;
use crate::progress::Progress;
use crate::run::{self, Summary};
use crate::source::parse_s3;
use crate::time::{TimeRange, parse_time};

/// Exit status: every chosen record was delivered (or is not meant for the emitter).
pub const EXIT_COMPLETE: u8 = 0;
/// Exit status: some records were not delivered (refused, still failing, or a source failed).
pub const EXIT_INCOMPLETE: u8 = 1;
/// Exit status: usage or configuration error; nothing was sent.
pub const EXIT_USAGE: u8 = 2;

/// Re-delivers records to ONE emitter of a forwarder configuration, with the forwarder's own
/// include/exclude, field filter, redaction and format: from the archive by time range, from a
/// Kinesis shard by sequence range, or from the dead-letter prefix after a fix. Backfilling a new
/// SIEM is the same command. Exit status: 0 all delivered, 1 some not, 2 usage or configuration
/// error.
#[derive(Parser, Debug, Default)]
#[command(name = "authtrail-replay", version)]
pub struct Args {
    /// The forwarder configuration file (the JSON of FORWARDER_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The forwarder configuration itself, as JSON.
    #[arg(long, value_name = "JSON")]
    pub config_json: Option<String>,
    /// The emitter (its `name` in the configuration) to deliver to.
    #[arg(long, value_name = "NAME")]
    pub emitter: String,
    /// Source: the archive, s3://BUCKET/PREFIX (Contract 2 objects); needs --from and --to.
    #[arg(long, value_name = "S3URL")]
    pub archive: Option<String>,
    /// Source: a Kinesis stream; needs --shard and --from-seq.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Source: dead letters, s3://BUCKET/PREFIX; --from and --to are optional.
    #[arg(long, value_name = "S3URL")]
    pub dlq: Option<String>,
    /// Start of the time range (inclusive): RFC 3339, a date (UTC midnight) or epoch ms.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the time range (exclusive): RFC 3339, a date (UTC midnight) or epoch ms.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Also read objects of the hours up to this many seconds after --to, for records that
    /// reached the stream late.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub late_arrival: u64,
    /// --stream: the shard id.
    #[arg(long, value_name = "ID")]
    pub shard: Option<String>,
    /// --stream: first sequence number (inclusive).
    #[arg(long, value_name = "N")]
    pub from_seq: Option<String>,
    /// --stream: last sequence number (inclusive; default: up to the shard's current end).
    #[arg(long, value_name = "M")]
    pub to_seq: Option<String>,
    /// --dlq: take the letters of this emitter (default: --emitter).
    #[arg(long, value_name = "NAME")]
    pub letters_of: Option<String>,
    /// Keep progress in FILE; running again with it skips what is done.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Count what would be sent; send nothing, write no state.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Records handed to the emitter at a time (it cuts its own requests from them).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub batch_size: usize,
}

/// Where the records come from, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePlan {
    /// The archive.
    Archive {
        /// Its bucket.
        bucket: String,
        /// Its key prefix.
        prefix: String,
        /// The records' time range.
        range: TimeRange,
        /// The late-arrival window, milliseconds.
        late_ms: i64,
    },
    /// A shard of a stream.
    Stream {
        /// The stream name.
        stream: String,
        /// The shard id.
        shard: String,
        /// First sequence number.
        from_seq: String,
        /// Last sequence number.
        to_seq: Option<String>,
    },
    /// Dead letters.
    Dlq {
        /// Their bucket.
        bucket: String,
        /// Their key prefix.
        prefix: String,
        /// The records' time range, if any.
        range: Option<TimeRange>,
        /// The late-arrival window, milliseconds.
        late_ms: i64,
        /// Whose letters.
        letters_of: String,
    },
}

impl SourcePlan {
    /// What a dead letter or archive record is, for the emitter.
    pub fn shape(&self) -> Shape {
        match self {
            SourcePlan::Dlq { .. } => Shape::AsStored,
            _ => Shape::Raw,
        }
    }

    /// The source in words (the summary, and the state file's replay name).
    pub fn describe(&self) -> String {
        match self {
            SourcePlan::Archive {
                bucket,
                prefix,
                range,
                ..
            } => {
                format!("archive s3://{bucket}/{prefix} {}", range.describe())
            }
            SourcePlan::Stream {
                stream,
                shard,
                from_seq,
                to_seq,
            } => format!(
                "stream {stream} shard {shard} sequence {from_seq}..={}",
                to_seq.as_deref().unwrap_or("end")
            ),
            SourcePlan::Dlq {
                bucket,
                prefix,
                range,
                letters_of,
                ..
            } => format!(
                "dead letters of {letters_of} s3://{bucket}/{prefix}{}",
                range
                    .map(|r| format!(" {}", r.describe()))
                    .unwrap_or_default()
            ),
        }
    }
}

/// A replay, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The forwarder configuration.
    pub config: ForwarderConfig,
    /// The emitter's name.
    pub emitter: String,
    /// The source.
    pub source: SourcePlan,
    /// The state file.
    pub state: Option<PathBuf>,
    /// Count only.
    pub dry_run: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Records per hand-over to the emitter.
    pub batch_size: usize,
}

impl Plan {
    /// The replay's name in the state file: emitter and source.
    pub fn describe(&self) -> String {
        format!("emitter {} from {}", self.emitter, self.source.describe())
    }
}

impl Args {
    /// Checks the arguments and reads the configuration; every usage and configuration error is
    /// found here, before anything is read or sent.
    pub fn plan(&self) -> Result<Plan, ReplayError> {
        let config = self.read_config()?;
        replay::reduce(&config, &self.emitter)?;
        if self.batch_size == 0 {
            return Err(ReplayError::Value {
                arg: "--batch-size",
                message: "must be at least 1",
            });
        }
        Ok(Plan {
            config,
            emitter: self.emitter.clone(),
            source: self.source()?,
            state: self.state.clone(),
            dry_run: self.dry_run,
            quiet: self.quiet,
            batch_size: self.batch_size,
        })
    }

    fn read_config(&self) -> Result<ForwarderConfig, ReplayError> {
        let text = match (&self.config, &self.config_json) {
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|e| ReplayError::ConfigFile {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })?
            }
            (None, Some(json)) => json.clone(),
            _ => return Err(ReplayError::ConfigSource),
        };
        Ok(ForwarderConfig::parse(&text)?)
    }

    fn source(&self) -> Result<SourcePlan, ReplayError> {
        let given = [
            self.archive.is_some(),
            self.stream.is_some(),
            self.dlq.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ReplayError::Source);
        }
        let late_ms = i64::try_from(self.late_arrival.saturating_mul(1000)).unwrap_or(i64::MAX);
        if let Some(url) = &self.archive {
            self.not_for(
                "--archive",
                &[
                    ("--shard", self.shard.is_some()),
                    ("--from-seq", self.from_seq.is_some()),
                    ("--to-seq", self.to_seq.is_some()),
                    ("--letters-of", self.letters_of.is_some()),
                ],
            )?;
            let (bucket, prefix) = parse_s3("--archive", url)?;
            let range = self.range()?.ok_or(ReplayError::Missing {
                source_arg: "--archive",
                needed: "--from and --to",
            })?;
            return Ok(SourcePlan::Archive {
                bucket,
                prefix,
                range,
                late_ms,
            });
        }
        if let Some(url) = &self.dlq {
            self.not_for(
                "--dlq",
                &[
                    ("--shard", self.shard.is_some()),
                    ("--from-seq", self.from_seq.is_some()),
                    ("--to-seq", self.to_seq.is_some()),
                ],
            )?;
            let (bucket, prefix) = parse_s3("--dlq", url)?;
            return Ok(SourcePlan::Dlq {
                bucket,
                prefix,
                range: self.range()?,
                late_ms,
                letters_of: self
                    .letters_of
                    .clone()
                    .unwrap_or_else(|| self.emitter.clone()),
            });
        }
        self.stream_source()
    }

    fn stream_source(&self) -> Result<SourcePlan, ReplayError> {
        self.not_for(
            "--stream",
            &[
                ("--from", self.from.is_some()),
                ("--to", self.to.is_some()),
                ("--letters-of", self.letters_of.is_some()),
            ],
        )?;
        let missing = |needed| ReplayError::Missing {
            source_arg: "--stream",
            needed,
        };
        let stream = self.stream.clone().ok_or(ReplayError::Source)?;
        let shard = self.shard.clone().ok_or(missing("--shard"))?;
        let from_seq = self.from_seq.clone().ok_or(missing("--from-seq"))?;
        let seq_ok = |arg, v: &str| {
            if authtrail_core::seqnum::is_valid(v) {
                Ok(())
            } else {
                Err(ReplayError::Sequence {
                    arg,
                    value: v.to_string(),
                })
            }
        };
        seq_ok("--from-seq", &from_seq)?;
        if let Some(to) = &self.to_seq {
            seq_ok("--to-seq", to)?;
            if authtrail_core::seqnum::compare(&from_seq, to) == std::cmp::Ordering::Greater {
                return Err(ReplayError::SequenceRange);
            }
        }
        Ok(SourcePlan::Stream {
            stream,
            shard,
            from_seq,
            to_seq: self.to_seq.clone(),
        })
    }

    /// `--from` / `--to`: both or neither.
    fn range(&self) -> Result<Option<TimeRange>, ReplayError> {
        match (&self.from, &self.to) {
            (None, None) => Ok(None),
            (Some(f), Some(t)) => Ok(Some(TimeRange::new(
                parse_time("--from", f)?,
                parse_time("--to", t)?,
            )?)),
            (Some(_), None) => Err(ReplayError::Missing {
                source_arg: "--from",
                needed: "--to",
            }),
            (None, Some(_)) => Err(ReplayError::Missing {
                source_arg: "--to",
                needed: "--from",
            }),
        }
    }

    fn not_for(
        &self,
        source_arg: &'static str,
        args: &[(&'static str, bool)],
    ) -> Result<(), ReplayError> {
        match args.iter().find(|(_, given)| *given) {
            Some((arg, _)) => Err(ReplayError::NotApplicable { arg, source_arg }),
            None => Ok(()),
        }
    }
}

/// The warning printed once before sending to an emitter that is not idempotent.
pub fn duplicate_warning(replayer: &Replayer) -> Option<String> {
    (!replayer.is_idempotent()).then(|| {
        format!(
            "authtrail-replay: warning: emitter {:?} ({}) is not idempotent: records it already holds are stored again. \
             Replay only what it lacks, and keep a --state file so that a second run skips what is done.",
            replayer.name(),
            replayer.kind().as_str()
        )
    })
}

/// Runs the replay: checks the arguments, builds the emitter, warns once about duplicates,
/// replays, prints the summary on stdout (errors on stderr) and returns the exit status.
pub async fn run(args: Args) -> ExitCode {
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let replayer =
        match Replayer::build(&plan.config, &plan.emitter, plan.source.shape(), Some(&sdk)).await {
            Ok(r) => r,
            Err(e) => return fail(&ReplayError::Forwarder(e)),
        };
    if !plan.dry_run
        && let Some(w) = duplicate_warning(&replayer)
    {
        eprintln!("{w}");
    }
    let mut progress = Progress::new(plan.quiet);
    let mut summary = Summary::default();
    let outcome = run::replay(&plan, &replayer, &sdk, &mut progress, &mut summary).await;
    progress.finish();
    print!("{}", summary.render(&plan));
    match outcome {
        Ok(()) => ExitCode::from(summary.exit_status()),
        Err(e) => fail(&e),
    }
}

fn fail(e: &ReplayError) -> ExitCode {
    eprintln!("authtrail-replay: {e}");
    ExitCode::from(e.exit_status())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const CONFIG: &str =
        r#"{"emitters": [{"name": "siem", "type": "stdout"}, {"name": "es", "type": "stdout"}]}"#;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "authtrail-replay",
            "--config-json",
            CONFIG,
            "--emitter",
            "siem",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    fn err(extra: &[&str]) -> String {
        args(extra).plan().unwrap_err().to_string()
    }

    #[test]
    fn an_archive_replay_needs_a_time_range_and_reads_both_ends() {
        let plan = args(&[
            "--archive",
            "s3://b/raw/",
            "--from",
            "2025-02-01",
            "--to",
            "2025-03-01",
        ])
        .plan()
        .unwrap();
        match &plan.source {
            SourcePlan::Archive {
                bucket,
                prefix,
                range,
                late_ms,
            } => {
                assert_eq!((bucket.as_str(), prefix.as_str()), ("b", "raw/"));
                assert_eq!(range.from_ms, 1_738_368_000_000);
                assert_eq!(range.to_ms, 1_740_787_200_000);
                assert_eq!(*late_ms, 3_600_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.source.shape(), Shape::Raw);
        assert_eq!(
            plan.describe(),
            "emitter siem from archive s3://b/raw/ 2025-02-01T00:00:00.000Z..2025-03-01T00:00:00.000Z"
        );
        assert_eq!(
            err(&["--archive", "s3://b/raw/"]),
            "--archive needs --from and --to"
        );
        assert_eq!(
            err(&["--archive", "s3://b/raw/", "--from", "2025-02-01"]),
            "--from needs --to"
        );
        assert_eq!(
            err(&[
                "--archive",
                "s3://b/raw/",
                "--from",
                "2025-02-02",
                "--to",
                "2025-02-01"
            ]),
            "--from must be before --to"
        );
    }

    #[test]
    fn exactly_one_source_is_accepted() {
        let none = err(&[]);
        assert_eq!(
            none,
            "give exactly one source: --archive, --stream or --dlq"
        );
        let two = err(&["--archive", "s3://b/raw/", "--dlq", "s3://b/dlq/"]);
        assert_eq!(two, none);
    }

    #[test]
    fn arguments_of_another_source_are_refused() {
        assert_eq!(
            err(&[
                "--archive",
                "s3://b/raw/",
                "--from",
                "2025-02-01",
                "--to",
                "2025-02-02",
                "--shard",
                "s"
            ]),
            "--shard does not apply to --archive"
        );
        assert_eq!(
            err(&[
                "--stream",
                "s",
                "--shard",
                "x",
                "--from-seq",
                "1",
                "--from",
                "2025-02-01"
            ]),
            "--from does not apply to --stream"
        );
        assert_eq!(
            err(&["--dlq", "s3://b/dlq/", "--from-seq", "1"]),
            "--from-seq does not apply to --dlq"
        );
    }

    #[test]
    fn a_stream_replay_needs_a_shard_and_a_valid_sequence_range() {
        let plan = args(&[
            "--stream",
            "audit",
            "--shard",
            "shardId-000",
            "--from-seq",
            "100",
            "--to-seq",
            "200",
        ])
        .plan()
        .unwrap();
        assert_eq!(
            plan.source,
            SourcePlan::Stream {
                stream: "audit".into(),
                shard: "shardId-000".into(),
                from_seq: "100".into(),
                to_seq: Some("200".into())
            }
        );
        assert_eq!(
            err(&["--stream", "audit", "--from-seq", "1"]),
            "--stream needs --shard"
        );
        assert_eq!(
            err(&["--stream", "audit", "--shard", "x"]),
            "--stream needs --from-seq"
        );
        assert!(
            err(&["--stream", "a", "--shard", "x", "--from-seq", "12a"])
                .starts_with("--from-seq: \"12a\"")
        );
        assert_eq!(
            err(&[
                "--stream",
                "a",
                "--shard",
                "x",
                "--from-seq",
                "300",
                "--to-seq",
                "200"
            ]),
            "--from-seq must not be after --to-seq"
        );
    }

    #[test]
    fn dead_letters_are_sent_as_stored_and_default_to_the_emitters_own() {
        let plan = args(&["--dlq", "s3://b/dlq/"]).plan().unwrap();
        assert_eq!(plan.source.shape(), Shape::AsStored);
        assert!(
            matches!(&plan.source, SourcePlan::Dlq { letters_of, range: None, .. } if letters_of == "siem")
        );
        let other = args(&["--dlq", "s3://b/dlq/", "--letters-of", "old"])
            .plan()
            .unwrap();
        assert!(matches!(&other.source, SourcePlan::Dlq { letters_of, .. } if letters_of == "old"));
    }

    #[test]
    fn configuration_errors_are_usage_errors_naming_the_problem() {
        let mut a = args(&["--dlq", "s3://b/dlq/"]);
        a.emitter = "nope".into();
        let e = a.plan().unwrap_err();
        assert_eq!(e.exit_status(), EXIT_USAGE);
        assert!(
            e.to_string().contains("no enabled emitter named \"nope\""),
            "{e}"
        );
        a.config_json = None;
        assert!(matches!(a.plan().unwrap_err(), ReplayError::ConfigSource));
        a.config = Some("/nonexistent/forwarder.json".into());
        assert!(matches!(
            a.plan().unwrap_err(),
            ReplayError::ConfigFile { .. }
        ));
        let mut bad = args(&["--dlq", "s3://b/dlq/"]);
        bad.config_json = Some(r#"{"emitters": [], "bogus": 1}"#.into());
        assert_eq!(bad.plan().unwrap_err().exit_status(), EXIT_USAGE);
        assert_eq!(
            err(&["--dlq", "b/dlq/"]),
            "--dlq: \"b/dlq/\" is not an S3 location s3://BUCKET/PREFIX"
        );
        assert_eq!(
            err(&["--dlq", "s3://b/dlq/", "--batch-size", "0"]),
            "--batch-size: must be at least 1"
        );
    }

    #[test]
    fn read_failures_mean_incomplete_and_everything_else_usage() {
        let read = ReplayError::Read {
            location: "s3://b/k".into(),
            detail: "timeout".into(),
        };
        assert_eq!(read.exit_status(), EXIT_INCOMPLETE);
        assert_eq!(ReplayError::Source.exit_status(), EXIT_USAGE);
    }
}
