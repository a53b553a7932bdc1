//! The spool's part of an invocation: each emitter's [`Plan`] (decided without a request from
//! what this warm instance knows), then, after delivery, the spool writes of what each emitter
//! did not take.
//!
//! - Breaker closed, nothing known spooled: the batch is delivered ([`Mode::Deliver`]); no S3
//!   request.
//! - Breaker open: the batch is spooled at once ([`Mode::SpoolDirect`], one S3 PUT), and the
//!   emitter is not waited for. At most once per probe interval (`spool.probeIntervalInSec`,
//!   doubled after each failed probe up to `spool.probeMaxIntervalInSec`) the instance probes
//!   it, with one spooled record and `spool.probeTimeoutInSec`, concurrently with the other
//!   emitters' delivery.
//! - Breaker closed with records spooled (or a probe that passed): the spool is redriven
//!   oldest first, concurrently with the others' delivery; once they are done it starts no
//!   further object after [`MIN_OBJECTS`](crate::spool::redrive::MIN_OBJECTS); the batch is delivered if the spool drained, else
//!   spooled behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use serde_json::value::RawValue;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::deliver::Plan;
use super::prepare::PreparedBatch;
use super::{EmitterStats, Forwarder, InputRecord, Mode, Status};
use crate::spool::layout::{self, SpoolLine};
use crate::spool::redrive::{RedriveContext, RedriveReport, RedriveTarget, redrive};
use crate::spool::{PutOutcome, Spool};

/// An 8-character tag for keys when no request id is given (tests, benchmarks).
pub(super) fn local_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}", nanos.wrapping_add(n.wrapping_mul(2_654_435_761)))
}

/// The redrive context of one invocation, or `None` without a spool.
fn context(
    fwd: &Forwarder,
    end: Instant,
    deadline: Instant,
    tag: &str,
    delivering: Option<Arc<AtomicUsize>>,
) -> Option<Arc<RedriveContext>> {
    let spool = fwd.spool.clone()?;
    Some(Arc::new(RedriveContext {
        spool,
        dlq: fwd.dlq.clone(),
        dlq_prefix: fwd.dlq_prefix.clone(),
        tag: tag.to_string(),
        retry: fwd.retry,
        end,
        deadline,
        delivering,
    }))
}

/// The redrive target of slot `k`.
fn target(fwd: &Forwarder, k: usize) -> Option<RedriveTarget> {
    let slot = fwd.slots.get(k)?;
    Some(RedriveTarget {
        slot: k,
        emitter: slot.emitter.clone(),
        buffering: slot.buffering,
        timeout: slot.timeout,
    })
}

/// Redrives the slots for which `wanted` says so, at once; per slot its report (default for
/// the others).
pub(super) async fn redrive_slots(
    fwd: &Forwarder,
    end: Instant,
    deadline: Instant,
    tag: &str,
    wanted: impl Fn(&Spool, usize) -> bool,
) -> Vec<RedriveReport> {
    let mut reports = vec![RedriveReport::default(); fwd.slots.len()];
    let Some(cx) = context(fwd, end, deadline, tag, None) else {
        return reports;
    };
    let mut tasks = JoinSet::new();
    for k in 0..fwd.slots.len() {
        if !wanted(&cx.spool, k) {
            continue;
        }
        let Some(target) = target(fwd, k) else {
            continue;
        };
        let probe = cx.spool.state(k).breaker_open;
        let cx = cx.clone();
        tasks.spawn(async move { (k, redrive(target, cx, probe).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((k, r)) => {
                if let Some(x) = reports.get_mut(k) {
                    *x = r;
                }
            }
            Err(e) => tracing::error!(error = %e, "redrive task failed"),
        }
    }
    reports
}

/// Before delivery: each slot's [`Plan`], from what this instance knows (no request), and the
/// count of the slots that deliver at once (`None` when none does: a redrive then need not
/// yield). A probe due is claimed here, so that it is made at most once per interval.
pub(super) fn plans(
    fwd: &Forwarder,
    retry_deadline: Instant,
    tag: &str,
) -> (Vec<Plan>, Option<Arc<AtomicUsize>>) {
    let Some(spool) = &fwd.spool else {
        return (
            fwd.slots.iter().map(|_| Plan::Now(Mode::Deliver)).collect(),
            None,
        );
    };
    // `Some(probe)`: redrive first (probing first when `probe`).
    let redrive_first: Vec<Option<bool>> = (0..fwd.slots.len())
        .map(|k| {
            let st = spool.state(k);
            if st.breaker_open {
                spool.claim_probe(k).then_some(true)
            } else {
                (st.depth > 0).then_some(false)
            }
        })
        .collect();
    let direct = (0..fwd.slots.len())
        .filter(|&k| !spool.state(k).breaker_open && redrive_first[k].is_none())
        .count();
    let delivering = (direct > 0).then(|| Arc::new(AtomicUsize::new(direct)));
    let now = Instant::now();
    let budget = spool
        .config
        .redrive_budget
        .min(retry_deadline.saturating_duration_since(now) / 2);
    let cx = context(fwd, now + budget, retry_deadline, tag, delivering.clone());
    let plans = redrive_first
        .iter()
        .enumerate()
        .map(|(k, first)| match (first, &cx, target(fwd, k)) {
            (Some(probe), Some(cx), Some(t)) => gate(t, cx.clone(), *probe),
            _ if spool.state(k).breaker_open => Plan::Now(Mode::SpoolDirect),
            _ => Plan::Now(Mode::Deliver),
        })
        .collect();
    (plans, delivering)
}

/// The plan of a slot that redrives first: the mode is [`Mode::Deliver`] if its spool drained
/// (and its breaker is closed), else [`Mode::SpoolDirect`].
fn gate(t: RedriveTarget, cx: Arc<RedriveContext>, probe: bool) -> Plan {
    Plan::After(Box::pin(async move {
        let (spool, k) = (cx.spool.clone(), t.slot);
        let report = redrive(t, cx, probe).await;
        let mode = if spool.state(k).needs_redrive() {
            Mode::SpoolDirect
        } else {
            Mode::Deliver
        };
        (mode, report)
    }))
}

/// After delivery: every slot's pending records into one spool object; they become
/// [`Status::Spooled`] once it is written. The breaker of an emitter that was sent the batch
/// and failed (`modes`: [`Mode::Deliver`]) opens, and is recorded in the store. Returns the
/// number of failed spool writes.
pub(super) async fn spool_pending(
    fwd: &Forwarder,
    records: &[InputRecord],
    batch: &PreparedBatch,
    statuses: &mut [Vec<Status>],
    stats: &mut [EmitterStats],
    modes: &[Mode],
    tag: &str,
) -> usize {
    let Some(spool) = &fwd.spool else { return 0 };
    let mut writes = JoinSet::new();
    for (k, slot) in fwd.slots.iter().enumerate() {
        let Some(st) = statuses.get(k) else { continue };
        let lines = lines(batch, records, slot.profile, st);
        let (Some(first), Some(oldest)) = (lines.first(), lines.iter().map(|l| l.arrival_ms).min())
        else {
            continue;
        };
        let name = slot.emitter.name();
        let key = layout::object_key(
            &spool.prefix,
            name,
            oldest,
            (&first.shard, &first.sequence_number),
            &tag.chars().take(8).collect::<String>(),
        );
        let indices: Vec<usize> = st
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Status::Pending(_)))
            .map(|(i, _)| i)
            .collect();
        let body = layout::encode(&lines);
        let store = spool.store.clone();
        writes.spawn(async move {
            let put = match body {
                Ok(b) => store.put_new(&key, b).await,
                Err(e) => Err(e),
            };
            (k, key, indices, oldest, put)
        });
    }
    let mut failures = 0;
    while let Some(joined) = writes.join_next().await {
        let Ok((k, key, indices, oldest, put)) = joined else {
            failures += 1;
            continue;
        };
        match put {
            Ok(PutOutcome::Created) => {
                tracing::info!(key, records = indices.len(), "records spooled");
                for &i in &indices {
                    if let Some(s) = statuses.get_mut(k).and_then(|st| st.get_mut(i)) {
                        *s = Status::Spooled;
                    }
                }
                if let Some(s) = stats.get_mut(k) {
                    s.spooled += indices.len();
                }
                spool.update(k, |s| {
                    s.depth += indices.len();
                    s.oldest_ms = Some(s.oldest_ms.map_or(oldest, |o| o.min(oldest)));
                });
                let failed = modes.get(k) == Some(&Mode::Deliver);
                if failed
                    && spool.open_breaker(k)
                    && let Some(slot) = fwd.slots.get(k)
                {
                    spool.persist_breaker(slot.emitter.name(), true).await;
                }
            }
            Ok(PutOutcome::AlreadyExists) | Err(_) => {
                failures += 1;
                let detail = match put {
                    Err(e) => e.to_string(),
                    _ => "an object already has the key".into(),
                };
                tracing::error!(
                    key,
                    error = detail,
                    records = indices.len(),
                    "spool write failed; the records are not done for this emitter"
                );
            }
        }
    }
    failures
}

/// The spool lines of one slot's pending records, in batch order.
fn lines(
    batch: &PreparedBatch,
    records: &[InputRecord],
    profile: usize,
    statuses: &[Status],
) -> Vec<SpoolLine> {
    statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let Status::Pending(f) = s else { return None };
            let p = batch.prepared.get(profile)?.get(i)?.as_ref()?;
            let r = records.get(i)?;
            Some(SpoolLine {
                sequence_number: r.source.sequence_number.clone(),
                shard: r.source.shard.to_string(),
                stream: r.source.stream.to_string(),
                arrival_ms: r.source.arrival_ms,
                event_type: batch
                    .classes
                    .get(i)
                    .and_then(|c| c.as_ref())
                    .map(|c| c.event_type().to_string()),
                status: f.status.clone(),
                reason: f.text.clone(),
                doc_id: Some(p.doc_id.clone()),
                record: RawValue::from_string(p.json.clone()).ok()?,
            })
        })
        .collect()
}
