//! `authtrail-check reconcile`: the reconciliation objects a deployed reconciler wrote for a
//! time range, read back and printed per window and hop ([`ReconcileReport`]); the same report
//! the demo prints. Exit status 0 when every window of the range has an object and every hop of
//! every window accounted for every record, 1 otherwise (records unaccounted, a hop unknown, a
//! window without an object), 2 when the objects cannot be read.

use std::collections::BTreeSet;

use authtrail_core::envelope::format_timestamp;
use authtrail_core::tally::object::{HopStatus, Reconciliation, WindowStatus, object_key};
use serde::Serialize;

use crate::CheckError;

/// Arguments of `authtrail-check reconcile`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// The reconciler's stack: its outputs name the bucket and prefix (instead of --bucket).
    #[arg(long)]
    pub stack: Option<String>,
    /// The bucket of the reconciliation objects (RECONCILE_BUCKET).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Their key prefix (RECONCILE_PREFIX).
    #[arg(long, default_value = "reconciliation/")]
    pub prefix: String,
    /// Start of the range (RFC 3339); windows starting at or after it are read.
    #[arg(long)]
    pub from: String,
    /// End of the range (RFC 3339, exclusive).
    #[arg(long)]
    pub to: String,
    /// Window length the reconciler uses (RECONCILE_WINDOW_SECS).
    #[arg(long, default_value_t = 300)]
    pub window_secs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the objects of a range say.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Where the objects are.
    pub location: String,
    /// The windows' objects, in time order.
    pub windows: Vec<Reconciliation>,
    /// Starts of the windows of the range without an object.
    pub missing: Vec<String>,
    /// Records unaccounted for, over every window and hop.
    pub unaccounted: u64,
    /// Hops whose figure is unknown, over every window.
    pub unknown: u64,
    /// Every window has an object and every hop accounted for every record.
    pub complete: bool,
}

impl ReconcileReport {
    /// The report of `windows` (objects read) for the windows starting at `starts`.
    pub fn new(location: String, mut windows: Vec<Reconciliation>, starts: &[String]) -> Self {
        windows.sort_by(|a, b| a.window_start.cmp(&b.window_start));
        let have: BTreeSet<&str> = windows.iter().map(|w| w.window_start.as_str()).collect();
        let missing: Vec<String> = starts
            .iter()
            .filter(|s| !have.contains(s.as_str()))
            .cloned()
            .collect();
        let unaccounted = windows.iter().map(|w| w.unaccounted).sum();
        let unknown = windows
            .iter()
            .flat_map(|w| &w.hops)
            .filter(|h| h.status == HopStatus::Unknown)
            .count() as u64;
        let complete =
            missing.is_empty() && windows.iter().all(|w| w.status == WindowStatus::Complete);
        Self {
            location,
            windows,
            missing,
            unaccounted,
            unknown,
            complete,
        }
    }

    /// The report as text: one line per window with each hop's records unaccounted (`?` when
    /// unknown, `+n` when more came out, `!` when the digests differ), then every hop that is
    /// not ok with its reason, then the result.
    pub fn render(&self) -> String {
        let mut hops: Vec<String> = Vec::new();
        for w in &self.windows {
            for h in &w.hops {
                if !hops.contains(&h.hop) {
                    hops.push(h.hop.clone());
                }
            }
        }
        let mut out = format!(
            "reconciliation {}: {} windows\n",
            self.location,
            self.windows.len() + self.missing.len()
        );
        out.push_str(&format!("  {:<26} {:<12}", "window", "status"));
        for h in &hops {
            out.push_str(&format!(" {:>w$}", h, w = h.len().max(6)));
        }
        out.push('\n');
        for w in &self.windows {
            out.push_str(&format!(
                "  {:<26} {:<12}",
                w.window_start,
                status_word(w.status)
            ));
            for name in &hops {
                let cell = w
                    .hops
                    .iter()
                    .find(|h| &h.hop == name)
                    .map_or("-".into(), cell);
                out.push_str(&format!(" {:>w$}", cell, w = name.len().max(6)));
            }
            out.push('\n');
        }
        for m in &self.missing {
            out.push_str(&format!(
                "  {m:<26} no object (not computed yet, or the reconciler did not run)\n"
            ));
        }
        let notes: Vec<String> = self
            .windows
            .iter()
            .flat_map(|w| {
                w.hops
                    .iter()
                    .filter(|h| h.status != HopStatus::Ok)
                    .map(move |h| {
                        format!(
                            "  {} {:<28} {:<12} {}\n",
                            w.window_start,
                            h.hop,
                            status_word_hop(h.status),
                            h.reason.as_deref().unwrap_or("")
                        )
                    })
            })
            .collect();
        if !notes.is_empty() {
            out.push_str("hops not accounted for:\n");
            notes.iter().for_each(|n| out.push_str(n));
        }
        if self.complete {
            out.push_str("result: complete (every window accounted for at every hop)\n");
        } else {
            out.push_str(&format!(
                "result: INCOMPLETE ({} records unaccounted, {} hop figures unknown, {} windows without an object)\n",
                self.unaccounted,
                self.unknown,
                self.missing.len()
            ));
        }
        out
    }
}

fn status_word(s: WindowStatus) -> &'static str {
    match s {
        WindowStatus::Complete => "complete",
        WindowStatus::Unaccounted => "UNACCOUNTED",
        WindowStatus::Unknown => "UNKNOWN",
    }
}

fn status_word_hop(s: HopStatus) -> &'static str {
    match s {
        HopStatus::Ok => "ok",
        HopStatus::Unaccounted => "unaccounted",
        HopStatus::Extra => "extra",
        HopStatus::Mismatch => "mismatch",
        HopStatus::Unknown => "unknown",
    }
}

fn cell(h: &authtrail_core::tally::object::HopResult) -> String {
    match h.status {
        HopStatus::Ok => "0".into(),
        HopStatus::Unaccounted => h.unaccounted.to_string(),
        HopStatus::Extra => format!("+{}", h.extra),
        HopStatus::Mismatch => "!".into(),
        HopStatus::Unknown => "?".into(),
    }
}

/// The starts (ISO-8601) of the windows of `window_secs` starting in `[from_ms, to_ms)`.
pub fn window_starts(from_ms: i64, to_ms: i64, window_secs: u64) -> Vec<i64> {
    let w = i64::try_from(window_secs.max(60)).unwrap_or(300) * 1000;
    let first = from_ms.div_euclid(w) * w;
    let first = if first < from_ms { first + w } else { first };
    (0..)
        .map(|i| first + i * w)
        .take_while(|s| *s < to_ms)
        .take(100_000)
        .collect()
}

/// Reads the objects of the windows starting in `[from_ms, to_ms)` under `s3://bucket/prefix`.
pub async fn read_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    from_ms: i64,
    to_ms: i64,
    window_secs: u64,
) -> Result<ReconcileReport, CheckError> {
    let err = |detail: String| CheckError::Read {
        source_name: format!("s3://{bucket}/{prefix}"),
        detail,
    };
    let starts = window_starts(from_ms, to_ms, window_secs);
    let mut windows = Vec::new();
    for start in &starts {
        let key = object_key(prefix, *start, window_secs);
        let got = s3.get_object().bucket(bucket).key(&key).send().await;
        let body = match got {
            Ok(o) => o
                .body
                .collect()
                .await
                .map_err(|e| err(format!("{key}: {e}")))?
                .into_bytes(),
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                ) =>
            {
                continue;
            }
            Err(e) => {
                return Err(err(format!(
                    "{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )));
            }
        };
        let r: Reconciliation =
            serde_json::from_slice(&body).map_err(|e| err(format!("{key}: {e}")))?;
        windows.push(r);
    }
    let iso: Vec<String> = starts.iter().map(|s| format_timestamp(*s)).collect();
    Ok(ReconcileReport::new(
        format!("s3://{bucket}/{prefix}"),
        windows,
        &iso,
    ))
}

/// The bucket and prefix of the reconciliation objects of stack `stack` (its outputs
/// `ReconcileBucket` and `ReconcilePrefix`).
async fn stack_location(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> Result<(String, String), CheckError> {
    let err = |detail: String| CheckError::Read {
        source_name: format!("stack {stack}"),
        detail,
    };
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| err(aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string()))?;
    let outputs: Vec<(String, String)> = out
        .stacks()
        .first()
        .map(|s| {
            s.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| outputs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let bucket = get("ReconcileBucket").ok_or_else(|| err("no ReconcileBucket output".into()))?;
    Ok((
        bucket,
        get("ReconcilePrefix").unwrap_or_else(|| "reconciliation/".into()),
    ))
}

/// Parses an RFC 3339 time argument.
fn time_arg(name: &str, v: &str) -> Result<i64, CheckError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| CheckError::TimeArg {
            name: name.to_string(),
            value: v.to_string(),
        })
}

/// Reads the range the arguments name and returns the report.
pub async fn check_reconcile(args: &ReconcileArgs) -> Result<ReconcileReport, CheckError> {
    let (from, to) = (time_arg("--from", &args.from)?, time_arg("--to", &args.to)?);
    let sdk = authtrail_core::aws::load_sdk_config().await;
    let (bucket, prefix) = match (&args.stack, &args.bucket) {
        (_, Some(b)) => (b.clone(), args.prefix.clone()),
        (Some(stack), None) => stack_location(&sdk, stack).await?,
        (None, None) => return Err(CheckError::NoReconcileLocation),
    };
    let s3 = authtrail_core::aws::s3_client(&sdk);
    read_objects(&s3, &bucket, &prefix, from, to, args.window_secs).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::tally::object::{
        ArchiveSummary, ForwarderSummary, HopResult, ProducerSummary,
    };

    fn hop(name: &str, status: HopStatus, unaccounted: u64) -> HopResult {
        HopResult {
            hop: name.into(),
            status,
            expected: None,
            observed: None,
            unaccounted,
            extra: 0,
            outcomes: None,
            reason: (status != HopStatus::Ok).then(|| "why".to_string()),
        }
    }

    fn window(start: &str, hops: Vec<HopResult>) -> Reconciliation {
        let (status, unaccounted) = Reconciliation::status_of(&hops);
        Reconciliation {
            version: 1,
            window_start: start.into(),
            window_end: "e".into(),
            window_seconds: 300,
            computed_at: "c".into(),
            settle_seconds: 600,
            status,
            unaccounted,
            hops,
            archive: ArchiveSummary::default(),
            forwarder: ForwarderSummary::default(),
            producer: ProducerSummary::default(),
        }
    }

    #[test]
    fn window_starts_are_aligned_and_inside_the_range() {
        assert_eq!(window_starts(0, 900_000, 300), vec![0, 300_000, 600_000]);
        assert_eq!(window_starts(1, 900_000, 300), vec![300_000, 600_000]);
    }

    #[test]
    fn a_range_where_every_window_is_complete_renders_complete() {
        let starts = vec!["a".to_string(), "b".to_string()];
        let r = ReconcileReport::new(
            "s3://b/p/".into(),
            vec![
                window("b", vec![hop("stream>archive", HopStatus::Ok, 0)]),
                window("a", vec![hop("stream>archive", HopStatus::Ok, 0)]),
            ],
            &starts,
        );
        assert!(r.complete);
        assert_eq!(r.windows[0].window_start, "a");
        assert!(r.render().contains("result: complete"), "{}", r.render());
    }

    #[test]
    fn unaccounted_unknown_and_missing_windows_are_each_shown_and_make_it_incomplete() {
        let starts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let r = ReconcileReport::new(
            "s3://b/p/".into(),
            vec![
                window(
                    "a",
                    vec![
                        hop("producer>stream", HopStatus::Unknown, 0),
                        hop("stream>archive", HopStatus::Unaccounted, 3),
                    ],
                ),
                window("b", vec![hop("stream>archive", HopStatus::Ok, 0)]),
            ],
            &starts,
        );
        assert!(!r.complete);
        assert_eq!(
            (r.unaccounted, r.unknown, r.missing.clone()),
            (3, 1, vec!["c".to_string()])
        );
        let text = r.render();
        assert!(text.contains("INCOMPLETE (3 records unaccounted, 1 hop figures unknown, 1 windows without an object)"), "{text}");
        let line_a = text
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert!(line_a.contains('?') && line_a.contains('3'), "{line_a}");
        assert!(
            text.contains("stream>archive") && text.contains("unaccounted"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("c ") && l.contains("no object"))
        );
    }
}
