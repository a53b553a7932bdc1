//! One run: which windows to compute, the sides read once for all of them, one
//! reconciliation object and one metric line per hop for each.
//!
//! A scheduled run computes every window that is settled (it ended at least the settle delay
//! ago), lies within the look-back and has no object yet, oldest first, a bounded number per
//! run (a reconciler that was down catches up). A manual run (`{"authtrail":"reconcile",
//! "from":"...","to":"..."}`) computes the windows of a range again, object or not.

use std::sync::Arc;

use authtrail_core::envelope::format_timestamp;
use authtrail_core::metrics::Emf;
use authtrail_core::tally::object::{HopStatus, Reconciliation, WindowStatus, object_key};
use authtrail_core::tally::{HOP_DIMENSION, METRIC_NAMESPACE, UNACCOUNTED_METRIC, UNKNOWN_METRIC};
use serde::Serialize;
use serde_json::Value;

use crate::ReconcileError;
use crate::archive::ArchiveReader;
use crate::compare::{ForwarderInput, WindowInputs, reconcile};
use crate::config::Settings;
use crate::forwarder::{ForwarderView, TallySource};
use crate::producer::ProducerTallies;
use crate::store::{ObjectStore, RequestCounts, Requests};

/// Windows a manual run computes at most.
const MAX_MANUAL_WINDOWS: usize = 288;

/// What a run was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The schedule: the settled windows without an object.
    Scheduled,
    /// The windows starting in `[from_ms, to_ms)`, computed again.
    Range {
        /// Start, epoch milliseconds.
        from_ms: i64,
        /// End, epoch milliseconds.
        to_ms: i64,
    },
}

impl Request {
    /// From the invocation's payload: `{"authtrail":"reconcile","from":ISO,"to":ISO}` is a
    /// manual run; anything without an `authtrail` member (an EventBridge scheduled event,
    /// `{}`) a scheduled one.
    pub fn from_payload(v: &Value) -> Result<Self, ReconcileError> {
        let Some(kind) = v.get("authtrail") else {
            return Ok(Request::Scheduled);
        };
        if kind.as_str() != Some("reconcile") {
            return Err(ReconcileError::Payload(format!(
                "\"authtrail\" must be \"reconcile\" (got {kind})"
            )));
        }
        let time = |name: &str| -> Result<i64, ReconcileError> {
            v.get(name)
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| {
                    ReconcileError::Payload(format!("\"{name}\" must be an RFC 3339 time"))
                })
        };
        let (from_ms, to_ms) = (time("from")?, time("to")?);
        if to_ms <= from_ms {
            return Err(ReconcileError::Payload(
                "\"to\" must be after \"from\"".into(),
            ));
        }
        Ok(Request::Range { from_ms, to_ms })
    }
}

/// One window computed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowOutcome {
    /// Its start, ISO-8601.
    pub window_start: String,
    /// Its status.
    pub status: WindowStatus,
    /// Records unaccounted for.
    pub unaccounted: u64,
    /// Where its object is.
    pub key: String,
}

/// What a run did (the function's response and its summary log line).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The windows computed, oldest first.
    pub windows: Vec<WindowOutcome>,
    /// Archive objects read in the run's span (from the cache or S3).
    pub archive_objects: usize,
    /// Forwarder tally lines read.
    pub tally_lines: u64,
    /// Requests made by the run.
    pub requests: RequestCounts,
}

/// The reconciler: its settings and the places it reads and writes.
pub struct Reconciler<S, L> {
    /// The settings.
    pub settings: Settings,
    store: S,
    tallies: Option<L>,
    archive: ArchiveReader,
    requests: Arc<Requests>,
}

impl<S: ObjectStore, L: TallySource> Reconciler<S, L> {
    /// A reconciler over `store` (archive, checkpoints, its own objects) and the forwarder's
    /// `tallies` (when a forwarder is configured), counting requests into `requests` (the
    /// ones `store` and `tallies` count into too).
    pub fn new(settings: Settings, store: S, tallies: Option<L>, requests: Arc<Requests>) -> Self {
        Self {
            settings,
            store,
            tallies,
            archive: ArchiveReader::default(),
            requests,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The start of every window to compute, oldest first.
    async fn windows(&self, now_ms: i64, request: &Request) -> Result<Vec<i64>, ReconcileError> {
        let w = self.settings.window_ms();
        match request {
            Request::Range { from_ms, to_ms } => Ok((0..)
                .map(|i| from_ms.div_euclid(w) * w + i * w)
                .take_while(|s| s < to_ms && *s + w <= now_ms)
                .take(MAX_MANUAL_WINDOWS)
                .collect()),
            Request::Scheduled => {
                let last_end = (now_ms - self.settings.settle_ms()).div_euclid(w) * w;
                let first = (now_ms - self.settings.lookback_ms()).div_euclid(w) * w + w;
                if first >= last_end {
                    return Ok(Vec::new());
                }
                let prefix = &self.settings.reconcile_prefix;
                let before = object_key(prefix, first - w, self.settings.window.as_secs());
                let existing: std::collections::HashSet<String> = self
                    .store
                    .list(&self.settings.reconcile_bucket, prefix, Some(&before))
                    .await?
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                let secs = self.settings.window.as_secs();
                Ok((0..)
                    .map(|i| first + i * w)
                    .take_while(|s| s + w <= last_end)
                    .filter(|s| !existing.contains(&object_key(prefix, *s, secs)))
                    .take(self.settings.max_windows)
                    .collect())
            }
        }
    }

    /// One run at `now_ms`.
    pub async fn run(&self, now_ms: i64, request: &Request) -> Result<RunSummary, ReconcileError> {
        let before = self.requests.snapshot();
        let starts = self.windows(now_ms, request).await?;
        let (Some(first), Some(last)) = (starts.first(), starts.last()) else {
            return Ok(RunSummary {
                requests: self.requests.snapshot().since(&before),
                ..RunSummary::default()
            });
        };
        let s = &self.settings;
        let span = (
            first - s.slack_ms(),
            (last + s.window_ms() + s.settle_ms()).min(now_ms),
        );
        let archive = self
            .archive
            .read_span(
                &self.store,
                &s.archive_bucket,
                &s.archive_prefix,
                span.0,
                span.1,
            )
            .await?;
        let view = match &self.tallies {
            None => None,
            Some(t) => Some(t.read(span.0, span.1).await.map(ForwarderView::build)),
        };
        let producers = ProducerTallies::read(&self.store, &s.producer_checkpoints).await;
        let mut summary = RunSummary {
            archive_objects: archive.objects.len(),
            tally_lines: match &view {
                Some(Ok(v)) => v.lines,
                _ => 0,
            },
            ..RunSummary::default()
        };
        for start in starts {
            let r = reconcile(&WindowInputs {
                start_ms: start,
                seconds: s.window.as_secs(),
                settle_seconds: s.settle.as_secs(),
                now_ms,
                archive: &archive,
                forwarder: forwarder_input(&view),
                producers: &producers,
            });
            let key = object_key(&s.reconcile_prefix, start, s.window.as_secs());
            let body = serde_json::to_vec_pretty(&r).unwrap_or_default();
            self.store.put(&s.reconcile_bucket, &key, body).await?;
            for emf in metrics(&r) {
                emf.emit();
            }
            summary.windows.push(WindowOutcome {
                window_start: r.window_start.clone(),
                status: r.status,
                unaccounted: r.unaccounted,
                key,
            });
        }
        summary.requests = self.requests.snapshot().since(&before);
        Ok(summary)
    }
}

/// The forwarder's side as the comparison takes it.
fn forwarder_input(v: &Option<Result<ForwarderView, ReconcileError>>) -> ForwarderInput<'_> {
    match v {
        None => ForwarderInput::NotConfigured,
        Some(Ok(view)) => ForwarderInput::View(view),
        Some(Err(e)) => ForwarderInput::Unavailable(e.to_string()),
    }
}

/// The `Hop` value of the line that sums a window's hops.
pub const ALL_HOPS: &str = "all";

/// The metric lines of a window: one per hop, `Unaccounted` (and `ReconcileUnknown` 0) when
/// its figure is known, only `ReconcileUnknown` 1 when it is not, so a missing tally never
/// reads as zero records unaccounted; then `Hop=all` with the window's sums (what the alarms
/// watch).
pub fn metrics(r: &Reconciliation) -> Vec<Emf> {
    let unknown = r
        .hops
        .iter()
        .filter(|h| h.status == HopStatus::Unknown)
        .count() as u64;
    let all = Emf::new(METRIC_NAMESPACE)
        .dimension(HOP_DIMENSION, ALL_HOPS)
        .count(UNACCOUNTED_METRIC, r.unaccounted)
        .count(UNKNOWN_METRIC, unknown)
        .property("WindowStart", r.window_start.as_str())
        .property(
            "WindowStatus",
            serde_json::to_value(r.status).unwrap_or_default(),
        );
    r.hops
        .iter()
        .map(|h| {
            let emf = Emf::new(METRIC_NAMESPACE).dimension(HOP_DIMENSION, &h.hop);
            let emf = if h.status == HopStatus::Unknown {
                emf.count(UNKNOWN_METRIC, 1)
            } else {
                emf.count(UNACCOUNTED_METRIC, h.unaccounted)
                    .count(UNKNOWN_METRIC, 0)
            };
            emf.property("WindowStart", r.window_start.as_str())
                .property(
                    "HopStatus",
                    serde_json::to_value(h.status).unwrap_or_default(),
                )
        })
        .chain(std::iter::once(all))
        .collect()
}

/// Logs the one summary line of a run.
pub fn log_summary(s: &RunSummary, request_id: &str) {
    let worst = s.windows.iter().map(|w| w.unaccounted).max().unwrap_or(0);
    tracing::info!(
        request_id,
        windows = s.windows.len(),
        unaccounted_max = worst,
        first_window = s.windows.first().map(|w| w.window_start.as_str()).unwrap_or("-"),
        archive_objects = s.archive_objects,
        tally_lines = s.tally_lines,
        s3_requests = s.requests.s3(),
        logs_requests = s.requests.logs_filter,
        at = %format_timestamp(chrono::Utc::now().timestamp_millis()),
        "reconciler run summary"
    );
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
