//! The reconciler in the demo: its stack (`cloudformation/reconciler.yaml`) next to the
//! pipeline's, the forwarder's log lines shipped into the emulator's CloudWatch Logs as Lambda
//! ships a function's output (so the reconciler reads its tallies the deployed way), scheduled
//! runs during the traffic, and at the end a run over every window of the traffic once the
//! producer's tally is final, read back with `authtrail-check reconcile`'s reader. With
//! `tamper_archive`, a few events are then deleted from one archive object and the windows
//! are computed again: the report shows exactly those, in their windows, at `stream>archive`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_check::reconcile::{ReconcileReport, read_objects};
use authtrail_check::sources::maybe_gunzip;
use authtrail_core::envelope::format_timestamp;
use authtrail_core::tally::record_facts;
use authtrail_runner::{LambdaFunction, invoke_scheduled};
use serde_json::{Value, json};

use crate::{DemoError, step};

/// The reconciler stack's name.
pub const RECONCILER_STACK: &str = "authtrail-demo-reconciler";
/// The EventBridge rule name the demo's scheduled reconciler invocations carry.
pub const RECONCILE_RULE: &str = "authtrail-demo-reconciler";
/// The log stream the shipped forwarder lines go to.
const LOG_STREAM: &str = "2025/01/01/[$LATEST]authtrail-demo";

/// The reconciler's metric for one hop of one window, as read from its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopMetric {
    /// The window's start (ISO-8601).
    pub window_start: String,
    /// The hop (`all` for the window's sums).
    pub hop: String,
    /// `Unaccounted`, when the hop's figure is known.
    pub unaccounted: Option<u64>,
    /// `ReconcileUnknown`.
    pub unknown: u64,
}

/// Requests the reconciler's runs made (from their responses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// Runs.
    pub runs: u64,
    /// Windows computed.
    pub windows: u64,
    /// S3 `ListObjectsV2` pages.
    pub s3_list: u64,
    /// S3 `GetObject`.
    pub s3_get: u64,
    /// S3 `PutObject`.
    pub s3_put: u64,
    /// CloudWatch Logs `FilterLogEvents` pages.
    pub logs_filter: u64,
}

impl RequestTotals {
    /// Adds the response of one run.
    fn add(&mut self, response: &Value) {
        let n = |k: &str| response["requests"][k].as_u64().unwrap_or(0);
        self.runs += 1;
        self.windows += response["windows"].as_array().map_or(0, |w| w.len() as u64);
        self.s3_list += n("s3List");
        self.s3_get += n("s3Get");
        self.s3_put += n("s3Put");
        self.logs_filter += n("logsFilter");
    }
}

/// Events deleted from the archive, and the report and metrics after that.
#[derive(Debug)]
pub struct Tampered {
    /// Per window start: events deleted.
    pub deleted: BTreeMap<String, u64>,
    /// The archive object they were deleted from.
    pub object: String,
    /// The report after the windows were computed again.
    pub report: ReconcileReport,
    /// The metrics of that run.
    pub metrics: Vec<HopMetric>,
}

/// What the reconciliation of the demo found.
#[derive(Debug)]
pub struct Reconciled {
    /// The windows of the traffic, as the reconciler computed them at the end.
    pub report: ReconcileReport,
    /// The metrics of that run.
    pub metrics: Vec<HopMetric>,
    /// The run after a few events were deleted from the archive (`tamper_archive`).
    pub tampered: Option<Tampered>,
    /// Requests of every reconciler run of the demo.
    pub requests: RequestTotals,
    /// The range: start (ISO-8601).
    pub from: String,
    /// The range: end (ISO-8601).
    pub to: String,
    /// Window length, seconds.
    pub window_secs: u64,
    /// Bucket of the reconciliation objects.
    pub bucket: String,
    /// Their prefix.
    pub prefix: String,
    /// Forwarder log lines shipped to CloudWatch Logs.
    pub shipped_lines: u64,
}

/// The reconciliation as the demo prints it: the report, after tampering the report again,
/// and the requests the reconciler made.
pub fn summary(r: &Reconciled) -> String {
    let mut out = r.report.render();
    if let Some(t) = &r.tampered {
        out.push_str(&format!(
            "after deleting {} events from {} (per window: {:?}):\n",
            t.deleted.values().sum::<u64>(),
            t.object,
            t.deleted
        ));
        out.push_str(&t.report.render());
    }
    let q = &r.requests;
    out.push_str(&format!(
        "  reconciler runs {}, windows computed {}: S3 list {}, get {}, put {}; FilterLogEvents {}; forwarder log lines shipped {}",
        q.runs, q.windows, q.s3_list, q.s3_get, q.s3_put, q.logs_filter, r.shipped_lines
    ));
    out
}

/// Ships the lines `function` prints into log group `group` once a second, as Lambda does with
/// a function's output, until `stop` turns true (then once more); returns the lines shipped.
pub async fn ship_logs(
    logs: aws_sdk_cloudwatchlogs::Client,
    function: Arc<LambdaFunction>,
    group: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let _ = logs.create_log_group().log_group_name(&group).send().await;
    let _ = logs
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name(LOG_STREAM)
        .send()
        .await;
    let mut mark = 0;
    let mut shipped = 0u64;
    loop {
        let last = *stop.borrow();
        let lines = function.log_lines_since(mark);
        mark += lines.len();
        let now = chrono::Utc::now().timestamp_millis();
        for chunk in lines.chunks(5_000) {
            let events: Vec<_> = chunk
                .iter()
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .timestamp(now)
                        .message(l)
                        .build()
                        .ok()
                })
                .collect();
            if events.is_empty() {
                continue;
            }
            let n = events.len() as u64;
            let sent = logs
                .put_log_events()
                .log_group_name(&group)
                .log_stream_name(LOG_STREAM)
                .set_log_events(Some(events))
                .send()
                .await;
            if sent.is_ok() {
                shipped += n;
            }
        }
        if last {
            return shipped;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stop.changed()).await;
    }
}

/// Invokes the reconciler with `payload`; returns its response and the metric lines it
/// printed.
async fn invoke(
    reconciler: &LambdaFunction,
    payload: &Value,
    totals: &mut RequestTotals,
) -> Result<(Value, Vec<HopMetric>), DemoError> {
    let mark = reconciler.log_mark();
    let inv = reconciler
        .invoke_json(payload)
        .await
        .map_err(step("invoking the reconciler"))?;
    let response: Value = inv.response_json().map_err(|e| DemoError::Step {
        step: "the reconciler's run",
        detail: format!("{e}: {}", reconciler.logs()),
    })?;
    totals.add(&response);
    // Output is read asynchronously: wait for every window's `Hop=all` line (its last).
    let windows = response["windows"].as_array().map_or(0, Vec::len);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = metrics_in(&reconciler.log_lines_since(mark));
        if metrics.iter().filter(|m| m.hop == "all").count() >= windows || Instant::now() > deadline
        {
            return Ok((response, metrics));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reconciler's metric lines (EMF with a `Hop` dimension) among log lines.
pub fn metrics_in(lines: &[String]) -> Vec<HopMetric> {
    lines
        .iter()
        .filter_map(|l| {
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .filter(|v| v.get("_aws").is_some() && v.get("Hop").is_some())
        .map(|v| HopMetric {
            window_start: v["WindowStart"].as_str().unwrap_or_default().to_string(),
            hop: v["Hop"].as_str().unwrap_or_default().to_string(),
            unaccounted: v
                .get("Unaccounted")
                .and_then(Value::as_f64)
                .map(|f| f as u64),
            unknown: v["ReconcileUnknown"].as_f64().unwrap_or(0.0) as u64,
        })
        .collect()
}

/// Scheduled runs of the reconciler every `every` until `stop` turns true; returns the
/// requests they made.
pub async fn run_scheduled(
    reconciler: Arc<LambdaFunction>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> RequestTotals {
    let mut totals = RequestTotals::default();
    loop {
        if tokio::time::timeout(every, stop.wait_for(|v| *v))
            .await
            .is_ok()
        {
            return totals;
        }
        if let Ok(inv) = invoke_scheduled(&reconciler, RECONCILE_RULE).await
            && let Ok(v) = inv.response_json::<Value>()
        {
            totals.add(&v);
        }
    }
}

/// The pieces the final reconciliation needs.
pub struct Finish<'a> {
    /// S3 of the emulator.
    pub s3: &'a aws_sdk_s3::Client,
    /// The reconciler function.
    pub reconciler: &'a LambdaFunction,
    /// The producer function (run until its tally is final past the traffic).
    pub producer: &'a LambdaFunction,
    /// The producer's checkpoint.
    pub checkpoint: (&'a str, &'a str),
    /// The archive bucket.
    pub archive_bucket: &'a str,
    /// Bucket and prefix of the reconciliation objects.
    pub objects: (&'a str, &'a str),
    /// Window length, seconds.
    pub window_secs: u64,
    /// Event times of the traffic: first and last (epoch ms).
    pub event_times: (i64, i64),
    /// Events to delete from the archive afterwards (0: none).
    pub tamper: usize,
    /// Requests of the scheduled runs so far.
    pub scheduled: RequestTotals,
    /// Forwarder lines shipped.
    pub shipped_lines: u64,
}

/// How long the demo waits for the producer's tally to be final past the traffic.
const PRODUCER_FINAL_WAIT: Duration = Duration::from_secs(150);

/// Waits until the producer's tally is final up to `until_ms`, running the producer as its
/// schedule would (it reads a settle window behind its cursor). `false` when it is not after
/// [`PRODUCER_FINAL_WAIT`] (a producer far behind): the windows are computed anyway, and the
/// `producer>stream` hop of those past its tally is unknown, as a deployment would show it.
async fn producer_final(f: &Finish<'_>, until_ms: i64) -> Result<bool, DemoError> {
    let start = Instant::now();
    loop {
        let body =
            f.s3.get_object()
                .bucket(f.checkpoint.0)
                .key(f.checkpoint.1)
                .send()
                .await
                .map_err(|e| DemoError::Step {
                    step: "reading the producer's checkpoint",
                    detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                })?
                .body
                .collect()
                .await
                .map_err(step("reading the producer's checkpoint"))?
                .into_bytes();
        let doc: Value =
            serde_json::from_slice(&body).map_err(step("the producer's checkpoint"))?;
        let final_before = doc["tally"]["finalBefore"].as_i64().unwrap_or(i64::MIN);
        if final_before.saturating_mul(60_000) >= until_ms {
            return Ok(true);
        }
        if start.elapsed() > PRODUCER_FINAL_WAIT {
            eprintln!(
                "authtrail-demo: the producer's tally is not final past {} after {} s (it is behind); its hop stays unknown for the windows after {}",
                format_timestamp(until_ms),
                PRODUCER_FINAL_WAIT.as_secs(),
                format_timestamp(final_before.saturating_mul(60_000))
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        invoke_scheduled(f.producer, "authtrail-demo-producer")
            .await
            .map_err(step("a producer run"))?;
    }
}

/// The final reconciliation: every window of the traffic, then (with `tamper`) again after
/// deleting events from the archive.
pub async fn finish(f: Finish<'_>) -> Result<Reconciled, DemoError> {
    let w = i64::try_from(f.window_secs).unwrap_or(60) * 1000;
    let from = f.event_times.0.div_euclid(w) * w;
    let to = (f.event_times.1.div_euclid(w) + 1) * w;
    let _ = producer_final(&f, to).await?;
    let mut totals = f.scheduled;
    let payload = json!({"authtrail": "reconcile", "from": format_timestamp(from), "to": format_timestamp(to)});
    let (_, metrics) = invoke(f.reconciler, &payload, &mut totals).await?;
    let (bucket, prefix) = f.objects;
    let read = || read_objects(f.s3, bucket, prefix, from, to, f.window_secs);
    let report = read()
        .await
        .map_err(step("reading the reconciliation objects"))?;
    let tampered = if f.tamper > 0 {
        let (object, deleted) = delete_from_archive(f.s3, f.archive_bucket, f.tamper, w).await?;
        let (_, metrics) = invoke(f.reconciler, &payload, &mut totals).await?;
        let report = read()
            .await
            .map_err(step("reading the reconciliation objects"))?;
        Some(Tampered {
            deleted,
            object,
            report,
            metrics,
        })
    } else {
        None
    };
    Ok(Reconciled {
        report,
        metrics,
        tampered,
        requests: totals,
        from: format_timestamp(from),
        to: format_timestamp(to),
        window_secs: f.window_secs,
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        shipped_lines: f.shipped_lines,
    })
}

/// Deletes `n` envelopes from the archive object in the middle of the run (rewritten under
/// its key); returns its key and the events deleted per window start.
async fn delete_from_archive(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    n: usize,
    window_ms: i64,
) -> Result<(String, BTreeMap<String, u64>), DemoError> {
    let err = |detail: String| DemoError::Step {
        step: "deleting events from the archive",
        detail,
    };
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("raw/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
    keys.sort();
    // From the middle outwards: the first object with enough envelopes.
    let mid = keys.len() / 2;
    let order = (0..keys.len()).map(|i| {
        if i % 2 == 0 {
            mid + i / 2
        } else {
            mid.wrapping_sub(i / 2 + 1)
        }
    });
    for i in order {
        let Some(key) = keys.get(i) else { continue };
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?
            .body
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .into_bytes();
        let text = maybe_gunzip(&body).map_err(|e| err(e.to_string()))?;
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let envelopes: Vec<usize> = (0..lines.len())
            .filter(|&j| record_facts(lines[j]).envelope)
            .collect();
        if envelopes.len() < n * 2 {
            continue;
        }
        // Every other envelope from the start: spread, never all the same event.
        let drop: Vec<usize> = envelopes.iter().step_by(2).take(n).copied().collect();
        let mut deleted: BTreeMap<String, u64> = BTreeMap::new();
        let mut kept = Vec::new();
        for (j, line) in lines.iter().enumerate() {
            if drop.contains(&j) {
                let t = record_facts(line).time_ms.unwrap_or(0);
                *deleted
                    .entry(format_timestamp(t.div_euclid(window_ms) * window_ms))
                    .or_default() += 1;
            } else {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&kept).map_err(|e| err(e.to_string()))?;
        let gz = enc.finish().map_err(|e| err(e.to_string()))?;
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(gz.into())
            .send()
            .await
            .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        return Ok((key.clone(), deleted));
    }
    Err(err(format!("no archive object holds {} envelopes", n * 2)))
}

/// The reconciler stack's parameters from the pipeline stack's outputs.
pub fn stack_params(
    code_bucket: &str,
    archive_bucket: &str,
    checkpoint: (&str, &str),
    forwarder_log_group: &str,
    window_secs: u64,
) -> Vec<(String, String)> {
    [
        ("CodeBucket", code_bucket.to_string()),
        ("ArchiveBucketName", archive_bucket.to_string()),
        ("CheckpointBucketName", checkpoint.0.to_string()),
        ("CheckpointKey", checkpoint.1.to_string()),
        ("ForwarderLogGroupName", forwarder_log_group.to_string()),
        ("WindowSeconds", window_secs.to_string()),
        // Sped up like the rest of the demo: windows are computed 20 s after they end
        // during the traffic; the final run computes them all again.
        ("SettleSeconds", "20".to_string()),
        ("LookbackSeconds", "600".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_reconcilers_metric_lines_are_read_from_its_log() {
        let lines = vec![
            r#"{"_aws":{"Timestamp":1},"Hop":"stream>archive","Unaccounted":3.0,"ReconcileUnknown":0.0,"WindowStart":"w"}"#.to_string(),
            r#"{"_aws":{"Timestamp":1},"Hop":"producer>stream","ReconcileUnknown":1.0,"WindowStart":"w"}"#.to_string(),
            r#"{"level":"INFO","message":"reconciler run summary"}"#.to_string(),
        ];
        let m = metrics_in(&lines);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].unaccounted, Some(3));
        assert_eq!((m[1].unaccounted, m[1].unknown), (None, 1));
    }
}
