//! Settling the puts that a dead run left pending (the checkpoint's `pending`, see
//! [`crate::pending`]), first thing in a run, under the lease.
//!
//! For each kind with a pending put: the stream is read back from the put's start minus
//! [`CLOCK_SKEW_MS`] until records arrived after its end (`until`, the dead run's deadline) plus
//! [`ARRIVAL_MARGIN_MS`], each shard's tip, or every pending record was found; within at most
//! [`MAX_READ_CALLS`] read calls and [`READ_TIME_BUDGET`]. Each record read is hashed; a pending
//! record whose digest is met counts as written: its key goes into the kind's cursor (so the
//! normal dedupe skips it) and into the tally (once). The others are written as usual.
//!
//! When the stream cannot be read back (Firehose, access denied, outside the retention, the
//! stream changed, a read error) or the bounds end the reading before the window, the pending
//! records not found are written again (at-least-once, never a loss): a WARN line names the
//! reason and the summary counts `pendingUnsettled` and `pendingResent`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use authtrail_core::envelope::EventKind;

use super::{Producer, RunCtx, iso, now_ms, slot};
use crate::checkpoint::CheckpointStore;
use crate::error::ReadBackError;
use crate::mpas::EventSource;
use crate::pending::{Matcher, PendingPut};
use crate::sink::{ReadWindow, Sink};
use crate::summary::RunSummary;

/// Read from this long before the put's recorded start (clocks of the function and of the
/// stream's arrival stamps may disagree).
pub const CLOCK_SKEW_MS: i64 = 10_000;
/// Read until records arrived this long after the put's end (a call sent just before the
/// deadline is stamped when the stream takes it).
pub const ARRIVAL_MARGIN_MS: i64 = 10_000;
/// A call that a dead run sent before its deadline is taken by the stream within this long:
/// tips reached earlier are polled until then (not for a put whose run ended without dying).
pub const IN_FLIGHT_MARGIN_MS: i64 = 3_000;
/// Read calls (GetRecords) of one settling at most.
pub const MAX_READ_CALLS: u32 = 1_000;
/// Time one settling may read at most (less when the run's deadline is nearer).
pub const READ_TIME_BUDGET: Duration = Duration::from_secs(60);

/// What settling one pending put came to.
struct Settled {
    /// Keys of the records in the stream (found now, or by an earlier run).
    found: HashMap<String, i64>,
    /// Of those, found by this reading.
    found_now: usize,
    /// Pending records not found.
    missing: usize,
    /// Why the missing ones may be in the stream after all (`None`: settled, they are not).
    unsettled: Option<String>,
}

impl<S: EventSource, K: Sink, C: CheckpointStore> Producer<S, K, C> {
    /// Settles every pending put of the held checkpoint: the keys found go to
    /// `ctx.recovered`, and the pending slot keeps only them (records emptied), saved with the
    /// run's next checkpoint write together with the tally of the records found.
    pub(super) async fn settle_pending(&self, ctx: &mut RunCtx, summary: &mut RunSummary) {
        for kind in [EventKind::User, EventKind::Admin] {
            let Some(put) = ctx.held.doc.pending.get(kind).cloned() else {
                continue;
            };
            let (target, started_at, until) = (put.target.clone(), put.started_at, put.until);
            let total = put.records.len();
            let settled = self.settle_one(kind, put, ctx.deadline_ms).await;
            summary.pending_found += settled.found_now as u64;
            if let Some(reason) = &settled.unsettled {
                summary.pending_unsettled += 1;
                summary.pending_resent += settled.missing as u64;
                tracing::warn!(
                    kind = kind.as_str(),
                    reason = %reason,
                    pending = total,
                    found = settled.found.len(),
                    resent = settled.missing,
                    "an interrupted put could not be settled: its records not found are written again (at-least-once)"
                );
            } else if total > 0 {
                tracing::info!(
                    kind = kind.as_str(),
                    pending = total,
                    found = settled.found.len(),
                    missing = settled.missing,
                    "an interrupted put was settled: the records found in the stream are not written again"
                );
            }
            ctx.recovered[slot(kind)].extend(settled.found.iter().map(|(k, t)| (k.clone(), *t)));
            ctx.held.doc.pending.set(
                kind,
                Some(PendingPut {
                    target,
                    started_at,
                    until,
                    records: Vec::new(),
                    written: settled.found,
                    closed: false,
                }),
            );
        }
    }

    /// Reads the stream back for one pending put.
    async fn settle_one(&self, kind: EventKind, put: PendingPut, deadline_ms: i64) -> Settled {
        let total = put.records.len();
        let unsettled = |e: ReadBackError| Settled {
            found: HashMap::new(),
            found_now: 0,
            missing: total + put.written.len(),
            unsettled: Some(format!("{}: {e}", e.reason())),
        };
        let Some(target) = self.sink.read_target() else {
            return unsettled(ReadBackError::Unsupported);
        };
        if target != put.target {
            return unsettled(ReadBackError::TargetChanged(put.target.clone()));
        }
        let mut found = put.written.clone();
        if total == 0 {
            return Settled {
                found,
                found_now: 0,
                missing: 0,
                unsettled: None,
            };
        }
        let left = Duration::from_millis(
            (deadline_ms - now_ms() - self.settings.deadline_reserve.as_millis() as i64).max(0)
                as u64,
        );
        let window = ReadWindow {
            from_ms: put.started_at.saturating_sub(CLOCK_SKEW_MS),
            until_ms: put.until.saturating_add(ARRIVAL_MARGIN_MS),
            tip_until_ms: if put.closed {
                i64::MIN
            } else {
                put.until.saturating_add(IN_FLIGHT_MARGIN_MS)
            },
            max_calls: MAX_READ_CALLS,
            deadline: Instant::now() + left.min(READ_TIME_BUDGET),
        };
        let mut matcher = Matcher::new(put.records);
        let recorder = self.store.tally_recorder();
        let result = self
            .sink
            .read_back(&window, &mut |data: &[u8]| {
                if matcher.offer(data)
                    && let Some(r) = recorder
                {
                    r.note(data);
                }
                if matcher.all_found() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await;
        let found_now = total - matcher.remaining();
        found.extend(matcher.found_keys().map(|(k, t)| (k.to_string(), t)));
        let missing = matcher.remaining();
        let unsettled = match &result {
            Ok(stats) => {
                tracing::info!(
                    kind = kind.as_str(),
                    from = %iso(window.from_ms),
                    until = %iso(window.until_ms),
                    shards = stats.shards,
                    calls = stats.calls,
                    records = stats.records,
                    bytes = stats.bytes,
                    oversized = stats.oversized,
                    covered = stats.covered,
                    all_found = matcher.all_found(),
                    "read the stream back for an interrupted put"
                );
                (!stats.covered && !matcher.all_found()).then(|| {
                    format!(
                        "read-budget: {} calls or {} s reached before the window's end",
                        MAX_READ_CALLS,
                        READ_TIME_BUDGET.as_secs()
                    )
                })
            }
            Err(e) => Some(format!("{}: {e}", e.reason())),
        };
        Settled {
            found,
            found_now,
            missing,
            unsettled,
        }
    }
}
