//! Step 2: deliver to every emitter concurrently (an emitter with a spool to redrive first does
//! that within its own task, concurrently with the others' delivery). Each attempt sends an emitter's pending
//! records in chunks cut to its `buffering`, up to `buffering.maxConcurrentRequests` requests in
//! flight; a request the receiver refused as a whole ([`Outcome::Rejected`]) is split in two and
//! both halves sent again, down to single records, so one bad record does not take its
//! neighbours to the dead-letter trail. Retryable failures are retried after a backoff (or the
//! receiver's `Retry-After`), up to `retry.maxAttempts`, never past the retry deadline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authtrail_core::chunk::ChunkLimits;
use authtrail_core::retry::{Backoff, Jitter};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::prepare::PreparedBatch;
use super::{EmitterStats, Forwarder, Status};
use crate::config::{Buffering, RetryPolicy};
use crate::emit::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::record::Prepared;
use crate::spool::redrive::RedriveReport;

/// The delay before retry `attempt` (1-based): `initialBackoffMs * 2^(attempt - 1)`, capped at
/// `maxBackoffMs`, with equal jitter (a uniform delay in `[d/2, d]`).
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    Backoff::new(policy.initial_backoff, policy.max_backoff, Jitter::Equal)
        .delay(attempt.saturating_sub(1))
}

/// What [`deliver_all`] found, per slot.
pub(super) struct Delivered {
    /// Per slot, per record: where it stands.
    pub(super) statuses: Vec<Vec<Status>>,
    /// Per slot: what the emitter did.
    pub(super) stats: Vec<EmitterStats>,
    /// Per slot: how it took the batch in the end (after its redrive, if it had one).
    pub(super) modes: Vec<Mode>,
    /// Per slot: what its redrive did (default when it had none).
    pub(super) redrives: Vec<RedriveReport>,
}

/// Counts down one emitter delivering the batch when dropped (its delivery ended, or it had
/// nothing to deliver).
struct Countdown(Arc<AtomicUsize>);

impl Drop for Countdown {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One slot's delivery: per record its status, and what the emitter did; `Err(selected)`:
/// spooled behind older records, not sent.
type SlotOutcome = Result<(Vec<(usize, Status)>, EmitterStats), Vec<usize>>;

/// What one slot's task reports: its slot, its mode, its redrive's report, its delivery.
type SlotReport = (usize, Mode, RedriveReport, SlotOutcome);

/// Delivers the batch to every emitter at once, each slot by its [`Plan`]: a slot whose plan is
/// a redrive runs it first, concurrently with the others' delivery, and is then sent the batch
/// or not. A slot that is not sent the batch ([`Mode::SpoolDirect`]) keeps its selected records
/// pending, to be spooled behind its older records. `delivering` counts the slots delivering at
/// once ([`Plan::Now`] with [`Mode::Deliver`]) down as they finish.
pub(super) async fn deliver_all(
    fwd: &Forwarder,
    batch: &PreparedBatch,
    retry_deadline: Instant,
    plans: Vec<Plan>,
    delivering: Option<Arc<AtomicUsize>>,
) -> Delivered {
    let n = batch.classes.len();
    let slots = fwd.slots.len();
    let mut d = Delivered {
        statuses: vec![vec![Status::Skipped; n]; slots],
        stats: vec![EmitterStats::default(); slots],
        modes: vec![Mode::Deliver; slots],
        redrives: vec![RedriveReport::default(); slots],
    };
    let mut tasks: JoinSet<SlotReport> = JoinSet::new();
    let mut plans = plans.into_iter();
    for (k, slot) in fwd.slots.iter().enumerate() {
        let plan = plans.next().unwrap_or(Plan::Now(Mode::Deliver));
        let countdown = match (&plan, &delivering) {
            (Plan::Now(Mode::Deliver), Some(c)) => Some(Countdown(c.clone())),
            _ => None,
        };
        let Some(records) = batch.prepared.get(slot.profile).cloned() else {
            continue;
        };
        let selected = selected(slot, batch, &records);
        d.stats[k].skipped = n - batch.malformed.len() - selected.len();
        let gate = match plan {
            Plan::Now(Mode::SpoolDirect) => {
                d.modes[k] = Mode::SpoolDirect;
                spooled_behind(&mut d.statuses[k], &selected);
                continue;
            }
            Plan::Now(Mode::Deliver) => None,
            Plan::After(gate) => Some(gate),
        };
        // Until the task reports, a selected record is not taken (a failed task must not
        // count as delivery).
        for &i in &selected {
            d.statuses[k][i] =
                Status::Pending(Failure::new("internal", "emitter task did not report"));
        }
        let delivery = Delivery {
            emitter: slot.emitter.clone(),
            buffering: slot.buffering,
            timeout: slot.timeout,
            records,
            retry: fwd.retry,
            retry_deadline,
            spooling: fwd.spool.is_some(),
        };
        tasks.spawn(async move {
            let (mode, report) = match gate {
                Some(g) => g.await,
                None => (Mode::Deliver, RedriveReport::default()),
            };
            let out = match mode {
                Mode::Deliver => Ok(delivery.run(selected).await),
                Mode::SpoolDirect => Err(selected),
            };
            drop(countdown);
            (k, mode, report, out)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((k, mode, report, out)) => d.settle(k, mode, report, out),
            // A panicking emitter task: its records stay un-taken (Pending), so they are
            // retried rather than lost.
            Err(e) => tracing::error!(error = %e, "emitter task failed"),
        }
    }
    d
}

impl Delivered {
    /// Takes one slot's report.
    fn settle(&mut self, k: usize, mode: Mode, report: RedriveReport, out: SlotOutcome) {
        if let Some(m) = self.modes.get_mut(k) {
            *m = mode;
        }
        if let Some(r) = self.redrives.get_mut(k) {
            *r = report;
        }
        let (Some(statuses), Some(stats)) = (self.statuses.get_mut(k), self.stats.get_mut(k))
        else {
            return;
        };
        match out {
            Ok((results, s)) => {
                *stats = EmitterStats {
                    skipped: stats.skipped,
                    ..s
                };
                for (i, st) in results {
                    if let Some(x) = statuses.get_mut(i) {
                        *x = st;
                    }
                }
            }
            Err(selected) => spooled_behind(statuses, &selected),
        }
    }
}

/// The records of the batch `slot` takes (well-formed, selected by its `include`/`exclude`).
fn selected(
    slot: &super::Slot,
    batch: &PreparedBatch,
    records: &[Option<Arc<Prepared>>],
) -> Vec<usize> {
    (0..batch.classes.len())
        .filter(|&i| {
            records.get(i).is_some_and(Option::is_some)
                && batch.classes[i]
                    .as_ref()
                    .is_some_and(|c| slot.selector.matches(c.names()))
        })
        .collect()
}

/// Marks `selected` as pending, to be spooled behind the emitter's older records.
fn spooled_behind(statuses: &mut [Status], selected: &[usize]) {
    let f = Failure::new(
        "spooled",
        "spooled behind older records of this emitter (breaker open or spool not empty)",
    );
    for &i in selected {
        if let Some(s) = statuses.get_mut(i) {
            *s = Status::Pending(f.clone());
        }
    }
}

/// One emitter's delivery of its selected records within one invocation (of a batch, or of
/// spooled records by a redrive).
pub(crate) struct Delivery {
    pub(crate) emitter: Arc<dyn Emitter>,
    pub(crate) buffering: Buffering,
    pub(crate) timeout: Duration,
    /// Per record: the record as this emitter's transform made it.
    pub(crate) records: Arc<Vec<Option<Arc<Prepared>>>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) retry_deadline: Instant,
    /// Whether a spool takes what the emitter cannot: then a refusal an operator fixes
    /// ([`Outcome::Unavailable`]) leaves the record pending (spooled), else it is permanent.
    pub(crate) spooling: bool,
}

/// How a slot takes this invocation's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Deliver them, with retries.
    Deliver,
    /// Spool them without sending: the breaker is open or older records are spooled.
    SpoolDirect,
}

/// How a slot's mode is decided in one invocation.
pub(crate) enum Plan {
    /// At once, without any request.
    Now(Mode),
    /// By a redrive of the emitter's spool (a probe first while its breaker is open) that runs
    /// concurrently with the other emitters' delivery and gives the mode when it ends.
    After(BoxFuture<'static, (Mode, RedriveReport)>),
}

/// What one attempt (one round of requests) left to do.
#[derive(Default)]
struct Round {
    /// Records that failed with a retryable failure (or found no time left), with why.
    failed: Vec<(usize, Failure)>,
    /// The longest `Retry-After` a receiver asked for.
    retry_after: Option<Duration>,
}

impl Delivery {
    /// Attempts until every record is delivered or refused for good, the attempts are used up,
    /// or the next one would end past the retry deadline.
    pub(crate) async fn run(&self, selected: Vec<usize>) -> (Vec<(usize, Status)>, EmitterStats) {
        let started = Instant::now();
        let mut stats = EmitterStats::default();
        let mut results = Vec::with_capacity(selected.len());
        let mut pending = selected;
        let mut attempt_no = 0u32;
        while !pending.is_empty() {
            attempt_no += 1;
            let Round {
                mut failed,
                retry_after,
            } = self.round(&pending, &mut stats, &mut results).await;
            // Batch order for the next attempt (requests finish in any order).
            failed.sort_by_key(|(i, _)| *i);
            let Some((_, first)) = failed.first() else {
                break;
            };
            let name = self.emitter.name();
            let wait = backoff(&self.retry, attempt_no).max(retry_after.unwrap_or_default());
            if attempt_no >= self.retry.max_attempts || Instant::now() + wait >= self.retry_deadline
            {
                tracing::warn!(emitter = name, records = failed.len(), attempts = attempt_no, status = %first.status, response = %first.text, "delivery not completed in this invocation");
                results.extend(failed.into_iter().map(|(i, f)| (i, Status::Pending(f))));
                break;
            }
            tracing::warn!(emitter = name, records = failed.len(), attempt = attempt_no, wait_ms = wait.as_millis() as u64, status = %first.status, response = %first.text, "delivery failed; retrying");
            stats.retried += failed.len();
            tokio::time::sleep(wait).await;
            pending = failed.into_iter().map(|(i, _)| i).collect();
        }
        stats.latency_ms = started.elapsed().as_millis() as u64;
        (results, stats)
    }

    /// One attempt: the `pending` records in chunks, up to the concurrency limit in flight;
    /// final outcomes go to `results`.
    async fn round(
        &self,
        pending: &[usize],
        stats: &mut EmitterStats,
        results: &mut Vec<(usize, Status)>,
    ) -> Round {
        let limit = self
            .buffering
            .max_concurrent_requests
            .min(self.emitter.max_concurrent_requests())
            .max(1);
        let mut round = Round::default();
        let mut queue: VecDeque<Vec<Arc<Prepared>>> = chunks(
            self.emitter.as_ref(),
            &self.records,
            pending,
            self.buffering,
        )
        .into();
        let mut running = JoinSet::new();
        let mut in_flight: Vec<(tokio::task::Id, Vec<usize>)> = Vec::new();
        loop {
            while running.len() < limit {
                let Some(batch) = queue.pop_front() else {
                    break;
                };
                let now = Instant::now();
                if now >= self.retry_deadline {
                    let f = Failure::new("deadline", "no time left before the invocation deadline");
                    round
                        .failed
                        .extend(batch.iter().map(|p| (p.index, f.clone())));
                    continue;
                }
                stats.requests += 1;
                let indices = batch.iter().map(|p| p.index).collect();
                let budget = self.timeout.min(self.retry_deadline - now);
                let handle = running.spawn(attempt(self.emitter.clone(), batch, budget));
                in_flight.push((handle.id(), indices));
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            match joined {
                Ok((id, (batch, outcomes))) => {
                    in_flight.retain(|(x, _)| *x != id);
                    self.settle(batch, outcomes, &mut queue, &mut round, stats, results);
                }
                Err(e) => {
                    // A panicking emitter: its records failed this attempt (retryable).
                    tracing::error!(emitter = self.emitter.name(), error = %e, "emitter request task failed");
                    let f = Failure::new("internal", "emitter request task failed");
                    if let Some(pos) = in_flight.iter().position(|(x, _)| *x == e.id()) {
                        let (_, indices) = in_flight.swap_remove(pos);
                        round
                            .failed
                            .extend(indices.into_iter().map(|i| (i, f.clone())));
                    }
                }
            }
        }
        round
    }

    /// Takes one request's outcomes: a request refused as a whole is split and its halves
    /// queued again; otherwise each record's outcome is recorded.
    fn settle(
        &self,
        batch: Vec<Arc<Prepared>>,
        outcomes: Vec<Outcome>,
        queue: &mut VecDeque<Vec<Arc<Prepared>>>,
        round: &mut Round,
        stats: &mut EmitterStats,
        results: &mut Vec<(usize, Status)>,
    ) {
        if batch.len() > 1 && outcomes.iter().all(|o| matches!(o, Outcome::Rejected(_))) {
            let first = outcomes.first().and_then(|o| match o {
                Outcome::Rejected(f) => Some(f),
                _ => None,
            });
            tracing::info!(
                emitter = self.emitter.name(),
                records = batch.len(),
                status = first.map(|f| f.status.as_str()),
                "request refused as a whole; splitting it to find the records it refuses"
            );
            let mut left = batch;
            let right = left.split_off(left.len() / 2);
            queue.push_front(right);
            queue.push_front(left);
            return;
        }
        for (p, o) in batch.iter().zip(outcomes) {
            match o {
                Outcome::Delivered => {
                    stats.delivered += 1;
                    results.push((p.index, Status::Delivered));
                }
                Outcome::Permanent(f) | Outcome::Rejected(f) => {
                    results.push((p.index, Status::Permanent(f)))
                }
                // Not retried: a token or a permission does not come back within seconds.
                Outcome::Unavailable(f) if self.spooling => {
                    results.push((p.index, Status::Pending(f)))
                }
                Outcome::Unavailable(f) => results.push((p.index, Status::Permanent(f))),
                Outcome::Retryable(f) => {
                    if let Some(ra) = f.retry_after {
                        round.retry_after = Some(round.retry_after.map_or(ra, |x| x.max(ra)));
                    }
                    round.failed.push((p.index, f));
                }
            }
        }
    }
}

/// Splits `pending` into chunks that respect the emitter's `buffering` limits (a record larger
/// than `maxSize` travels alone).
fn chunks(
    emitter: &dyn Emitter,
    records: &[Option<Arc<Prepared>>],
    pending: &[usize],
    b: Buffering,
) -> Vec<Vec<Arc<Prepared>>> {
    authtrail_core::chunk::chunks(
        pending
            .iter()
            .filter_map(|&i| records.get(i).and_then(Option::as_ref).cloned()),
        ChunkLimits {
            max_items: b.max_batched_events,
            max_bytes: b.max_size,
        },
        |p| emitter.size_hint(p),
    )
}

/// One request's outcomes, as the delivery sees them (timeouts and miscounts already mapped).
async fn attempt(
    emitter: Arc<dyn Emitter>,
    batch: Vec<Arc<Prepared>>,
    budget: Duration,
) -> (Vec<Arc<Prepared>>, Vec<Outcome>) {
    let outcomes = match tokio::time::timeout(budget, emitter.emit(&batch)).await {
        Ok(o) if o.len() == batch.len() => o,
        Ok(o) => all(
            batch.len(),
            Outcome::Retryable(Failure::new(
                "internal",
                format!("{} outcomes for {} records", o.len(), batch.len()),
            )),
        ),
        Err(_) => all(
            batch.len(),
            Outcome::Retryable(Failure::new(
                "timeout",
                format!("no answer within {} ms", budget.as_millis()),
            )),
        ),
    };
    (batch, outcomes)
}
