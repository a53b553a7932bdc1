//! One invocation: parse and classify every record once, transform it (field filter, redaction)
//! once per transform profile, deliver to every emitter concurrently (chunks cut to each
//! emitter's `buffering`, retries with exponential backoff and full jitter, `Retry-After`
//! honoured, none past the retry deadline), then apply the quorum and write the dead-letter
//! trail.
//!
//! A record is **done** when every emitter of `emitToAllOf` and at least one of
//! `emitAtLeastOneOf` took it (delivered it, were not selected for it by `include`/`exclude`, or
//! dead-lettered it after a permanent refusal). Records that are not done are returned as
//! `batchItemFailures`, so Lambda retries them (from the lowest one: records after it can be
//! delivered again to emitters that already took them; Elasticsearch's `_id` makes that
//! idempotent, the other receivers see an at-least-once stream).
//!
//! Nothing is silently dropped: a malformed record, a permanent refusal, a retryable failure that
//! outlived `retry.maxRecordAgeInSec`, and an emitter that still failed on a record the quorum
//! completed without it all leave a dead letter. If a dead letter cannot be written, the record
//! is not done.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Buffering, RetryPolicy};
use crate::dlq::{DeadLetter, DeadLetterSink};
use crate::emit::{Emitter, Failure, Outcome, all};
use crate::filter::Selector;
use crate::record::{self, Classified, Prepared, Source, Transform};

/// One emitter with its per-emitter settings.
pub struct Slot {
    pub emitter: Arc<dyn Emitter>,
    pub selector: Selector,
    pub buffering: Buffering,
    pub timeout: Duration,
    /// Index into [`Forwarder::profiles`] (0 = the top-level transform).
    pub profile: usize,
}

/// The forwarder, built once at cold start.
pub struct Forwarder {
    pub slots: Vec<Slot>,
    pub profiles: Vec<Transform>,
    /// Slot indices that must all take a record.
    pub all_of: Vec<usize>,
    /// Slot indices of which one must take a record (empty: no such condition).
    pub at_least_one_of: Vec<usize>,
    pub retry: RetryPolicy,
    pub dlq: Arc<dyn DeadLetterSink>,
    pub dlq_prefix: String,
}

/// A record of the batch.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub source: Source,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmitterStats {
    pub delivered: usize,
    /// Record deliveries attempted again after a retryable failure.
    pub retried: usize,
    pub dead_lettered: usize,
    /// Records still failing at the end (reported for Lambda to retry, or dead-lettered when
    /// the quorum completed the record without this emitter).
    pub pending: usize,
    /// Records not selected by `include` / `exclude`.
    pub skipped: usize,
    pub requests: usize,
    pub latency_ms: u64,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// Sequence numbers of the records that are not done, in batch order.
    pub failures: Vec<String>,
    pub records: usize,
    pub malformed: usize,
    pub dead_letters: usize,
    pub dead_letter_errors: usize,
    pub emitters: Vec<(String, EmitterStats)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Skipped,
    Delivered,
    Permanent(Failure),
    Pending(Failure),
}

impl Status {
    /// Whether the emitter took the record (quorum-wise).
    fn took(&self) -> bool {
        !matches!(self, Status::Pending(_))
    }
}

/// The delay before retry `attempt` (1-based): exponential, capped, with full jitter in
/// `[d/2, d]`.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(policy.max_backoff);
    let ms = d.as_millis() as u64;
    if ms < 2 {
        return d;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// Splits `pending` into chunks that respect the emitter's `buffering` limits (a record larger
/// than `maxSize` travels alone).
fn chunks(
    emitter: &dyn Emitter,
    records: &[Option<Arc<Prepared>>],
    pending: &[usize],
    b: Buffering,
) -> Vec<Vec<Arc<Prepared>>> {
    let mut out = Vec::new();
    let mut cur: Vec<Arc<Prepared>> = Vec::new();
    let mut size = 0usize;
    for &i in pending {
        let Some(p) = records.get(i).and_then(Option::as_ref) else {
            continue;
        };
        let s = emitter.size_hint(p);
        if !cur.is_empty() && (cur.len() >= b.max_batched_events || size + s > b.max_size) {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += s;
        cur.push(p.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One request's outcomes, as `deliver` sees them (timeouts and miscounts already mapped).
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

/// Delivers the selected records to one emitter: each attempt sends the pending records in
/// chunks, up to `buffering.maxConcurrentRequests` requests in flight; a request the receiver
/// refused as a whole ([`Outcome::Rejected`]) is split in two and both halves sent again, down
/// to single records, so one bad record does not take its neighbours to the dead-letter trail.
async fn deliver(
    emitter: Arc<dyn Emitter>,
    buffering: Buffering,
    timeout: Duration,
    records: Arc<Vec<Option<Arc<Prepared>>>>,
    selected: Vec<usize>,
    retry: RetryPolicy,
    retry_deadline: Instant,
) -> (Vec<(usize, Status)>, EmitterStats) {
    let started = Instant::now();
    let mut stats = EmitterStats::default();
    let mut results = Vec::with_capacity(selected.len());
    let mut pending = selected;
    let mut attempt_no = 0u32;
    let limit = buffering
        .max_concurrent_requests
        .min(emitter.max_concurrent_requests())
        .max(1);
    while !pending.is_empty() {
        attempt_no += 1;
        let mut failed: Vec<(usize, Failure)> = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut queue: VecDeque<Vec<Arc<Prepared>>> =
            chunks(emitter.as_ref(), &records, &pending, buffering).into();
        let mut running = JoinSet::new();
        let mut in_flight: Vec<(tokio::task::Id, Vec<usize>)> = Vec::new();
        loop {
            while running.len() < limit {
                let Some(batch) = queue.pop_front() else {
                    break;
                };
                let now = Instant::now();
                if now >= retry_deadline {
                    let f = Failure::new("deadline", "no time left before the invocation deadline");
                    failed.extend(batch.iter().map(|p| (p.index, f.clone())));
                    continue;
                }
                stats.requests += 1;
                let indices = batch.iter().map(|p| p.index).collect();
                let handle = running.spawn(attempt(
                    emitter.clone(),
                    batch,
                    timeout.min(retry_deadline - now),
                ));
                in_flight.push((handle.id(), indices));
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (batch, outcomes) = match joined {
                Ok((id, done)) => {
                    in_flight.retain(|(x, _)| *x != id);
                    done
                }
                Err(e) => {
                    // A panicking emitter: its records failed this attempt (retryable).
                    tracing::error!(emitter = emitter.name(), error = %e, "emitter request task failed");
                    let f = Failure::new("internal", "emitter request task failed");
                    if let Some(pos) = in_flight.iter().position(|(x, _)| *x == e.id()) {
                        let (_, indices) = in_flight.swap_remove(pos);
                        failed.extend(indices.into_iter().map(|i| (i, f.clone())));
                    }
                    continue;
                }
            };
            if batch.len() > 1 && outcomes.iter().all(|o| matches!(o, Outcome::Rejected(_))) {
                let first = outcomes.first().and_then(|o| match o {
                    Outcome::Rejected(f) => Some(f),
                    _ => None,
                });
                tracing::info!(
                    emitter = emitter.name(),
                    records = batch.len(),
                    status = first.map(|f| f.status.as_str()),
                    "request refused as a whole; splitting it to find the records it refuses"
                );
                let mut left = batch;
                let right = left.split_off(left.len() / 2);
                queue.push_front(right);
                queue.push_front(left);
                continue;
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
                    Outcome::Retryable(f) => {
                        if let Some(ra) = f.retry_after {
                            retry_after = Some(retry_after.map_or(ra, |x| x.max(ra)));
                        }
                        failed.push((p.index, f));
                    }
                }
            }
        }
        // Batch order for the next attempt (requests finish in any order).
        failed.sort_by_key(|(i, _)| *i);
        let Some((_, first)) = failed.first() else {
            break;
        };
        let wait = backoff(&retry, attempt_no).max(retry_after.unwrap_or_default());
        if attempt_no >= retry.max_attempts || Instant::now() + wait >= retry_deadline {
            tracing::warn!(emitter = emitter.name(), records = failed.len(), attempts = attempt_no, status = %first.status, response = %first.text, "delivery not completed in this invocation");
            results.extend(failed.into_iter().map(|(i, f)| (i, Status::Pending(f))));
            break;
        }
        tracing::warn!(emitter = emitter.name(), records = failed.len(), attempt = attempt_no, wait_ms = wait.as_millis() as u64, status = %first.status, response = %first.text, "delivery failed; retrying");
        stats.retried += failed.len();
        tokio::time::sleep(wait).await;
        pending = failed.into_iter().map(|(i, _)| i).collect();
    }
    stats.latency_ms = started.elapsed().as_millis() as u64;
    (results, stats)
}

struct DlqItem {
    record: usize,
    emitter: String,
    status: String,
    response: String,
    reason: &'static str,
}

/// Leaves this much of the invocation for the dead-letter writes and the response.
fn retry_deadline(deadline: Instant) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let margin = (remaining / 5).clamp(Duration::from_millis(500), Duration::from_secs(5));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

impl Forwarder {
    /// Processes one batch; `deadline` is the invocation's deadline.
    pub async fn process(&self, records: &[InputRecord], deadline: Instant) -> BatchResult {
        let n = records.len();
        let retry_deadline = retry_deadline(deadline);
        let now_ms = chrono::Utc::now().timestamp_millis();

        // Parse, classify and transform once per profile in use.
        let mut used = vec![false; self.profiles.len()];
        for s in &self.slots {
            if let Some(u) = used.get_mut(s.profile) {
                *u = true;
            }
        }
        let used: Vec<usize> = used
            .iter()
            .enumerate()
            .filter(|(_, u)| **u)
            .map(|(i, _)| i)
            .collect();
        let mut prepared: Vec<Vec<Option<Arc<Prepared>>>> =
            vec![vec![None; n]; self.profiles.len()];
        let mut classes: Vec<Option<Arc<Classified>>> = vec![None; n];
        let mut malformed: Vec<(usize, String)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let parsed =
                record::parse_classify(&r.data, r.source.arrival_ms).and_then(|(raw, class)| {
                    let class = Arc::new(class);
                    let mut out = Vec::with_capacity(used.len());
                    for &p in &used {
                        if let Some(t) = self.profiles.get(p) {
                            out.push((p, Arc::new(t.prepare(i, class.clone(), raw)?)));
                        }
                    }
                    Ok((class, out))
                });
            match parsed {
                Ok((class, out)) => {
                    for (p, prep) in out {
                        prepared[p][i] = Some(prep);
                    }
                    classes[i] = Some(class);
                }
                Err(reason) => malformed.push((i, reason)),
            }
        }
        let prepared: Vec<Arc<Vec<Option<Arc<Prepared>>>>> =
            prepared.into_iter().map(Arc::new).collect();

        // Deliver to every emitter concurrently.
        let mut statuses: Vec<Vec<Status>> = vec![vec![Status::Skipped; n]; self.slots.len()];
        let mut stats: Vec<EmitterStats> = vec![EmitterStats::default(); self.slots.len()];
        let mut tasks = JoinSet::new();
        for (k, slot) in self.slots.iter().enumerate() {
            let Some(recs) = prepared.get(slot.profile).cloned() else {
                continue;
            };
            let selected: Vec<usize> = (0..n)
                .filter(|&i| {
                    recs[i].is_some()
                        && classes[i]
                            .as_ref()
                            .is_some_and(|c| slot.selector.matches(c.names()))
                })
                .collect();
            stats[k].skipped = n - malformed.len() - selected.len();
            // Until the task reports, a selected record is not taken (a failed task must not
            // count as delivery).
            for &i in &selected {
                statuses[k][i] =
                    Status::Pending(Failure::new("internal", "emitter task did not report"));
            }
            let fut = deliver(
                slot.emitter.clone(),
                slot.buffering,
                slot.timeout,
                recs,
                selected,
                self.retry,
                retry_deadline,
            );
            tasks.spawn(async move { (k, fut.await) });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((k, (results, s))) => {
                    let skipped = stats[k].skipped;
                    stats[k] = EmitterStats { skipped, ..s };
                    for (i, st) in results {
                        statuses[k][i] = st;
                    }
                }
                Err(e) => {
                    // A panicking emitter task: its records stay un-taken (Pending), so they are
                    // retried rather than lost.
                    tracing::error!(error = %e, "emitter task failed");
                }
            }
        }

        // Retryable failures that outlived the record age limit become permanent.
        let max_age_ms = self.retry.max_record_age.as_millis() as i64;
        for st in statuses.iter_mut() {
            for (i, s) in st.iter_mut().enumerate() {
                if let Status::Pending(f) = s
                    && now_ms - records[i].source.arrival_ms > max_age_ms
                {
                    let mut f = f.clone();
                    f.text = format!("retries exhausted past maxRecordAgeInSec: {}", f.text);
                    *s = Status::Permanent(f);
                }
            }
        }

        // Quorum.
        let mut done = vec![true; n];
        for (i, d) in done.iter_mut().enumerate() {
            if classes[i].is_none() {
                continue; // malformed: done once dead-lettered
            }
            let all_ok = self.all_of.iter().all(|&k| statuses[k][i].took());
            let one_ok = self.at_least_one_of.is_empty()
                || self.at_least_one_of.iter().any(|&k| statuses[k][i].took());
            *d = all_ok && one_ok;
        }

        // The dead-letter trail.
        let mut items = Vec::new();
        for (i, reason) in &malformed {
            items.push(DlqItem {
                record: *i,
                emitter: "malformed".into(),
                status: "malformed".into(),
                response: reason.clone(),
                reason: "malformed record (not a UTF-8 JSON object)",
            });
        }
        for (k, slot) in self.slots.iter().enumerate() {
            for (i, s) in statuses[k].iter().enumerate() {
                let (f, reason) = match s {
                    Status::Permanent(f) if f.text.starts_with("retries exhausted") => {
                        (f, "retries exhausted past the record age limit")
                    }
                    Status::Permanent(f) => (f, "rejected permanently by the emitter"),
                    Status::Pending(f) if done[i] => (
                        f,
                        "not delivered by this emitter; the record's quorum was met without it",
                    ),
                    _ => continue,
                };
                stats[k].dead_lettered += 1;
                items.push(DlqItem {
                    record: i,
                    emitter: slot.emitter.name().to_string(),
                    status: f.status.clone(),
                    response: f.text.clone(),
                    reason,
                });
            }
            stats[k].pending = statuses[k]
                .iter()
                .filter(|s| matches!(s, Status::Pending(_)))
                .count();
        }
        let dead_letters = items.len();
        let mut dlq_errors = 0;
        let mut writes = JoinSet::new();
        let mut iter = items.into_iter();
        loop {
            while writes.len() < 16 {
                let Some(item) = iter.next() else { break };
                let r = &records[item.record];
                let profile = self
                    .slots
                    .iter()
                    .find(|s| s.emitter.name() == item.emitter)
                    .map_or(0, |s| s.profile);
                let value: Option<Value> = prepared
                    .get(profile)
                    .and_then(|p| p[item.record].as_ref())
                    .and_then(|p| p.value());
                let letter = DeadLetter {
                    emitter: &item.emitter,
                    status: &item.status,
                    response: &item.response,
                    reason: item.reason,
                    source: &r.source,
                    event_type: classes[item.record].as_ref().map(|c| c.event_type()),
                    record: value.as_ref(),
                    raw: if value.is_none() { Some(&r.data) } else { None },
                };
                let key = letter.key(&self.dlq_prefix);
                let body = letter.body();
                let sink = self.dlq.clone();
                let idx = item.record;
                writes.spawn(async move { (idx, key.clone(), sink.put(key, body).await) });
            }
            let Some(joined) = writes.join_next().await else {
                break;
            };
            match joined {
                Ok((_, key, Ok(()))) => tracing::info!(key, "dead letter written"),
                Ok((i, key, Err(e))) => {
                    dlq_errors += 1;
                    done[i] = false;
                    tracing::error!(key, error = %e, "dead letter could not be written; the record will be retried");
                }
                Err(e) => {
                    dlq_errors += 1;
                    tracing::error!(error = %e, "dead letter task failed");
                    // The record index is unknown: fail safe by retrying the whole batch.
                    done.iter_mut().for_each(|d| *d = false);
                }
            }
        }

        BatchResult {
            failures: records
                .iter()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|(r, _)| r.source.sequence_number.clone())
                .collect(),
            records: n,
            malformed: malformed.len(),
            dead_letters,
            dead_letter_errors: dlq_errors,
            emitters: self
                .slots
                .iter()
                .zip(stats)
                .map(|(s, st)| (s.emitter.name().to_string(), st))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::EmitterType;
    use crate::emit::BoxFuture;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An emitter that answers from a script: for attempt `k` (0-based) `script[k]`, then the
    /// last entry forever. Records what it received.
    struct Fake {
        name: String,
        script: Vec<Outcome>,
        calls: AtomicUsize,
        got: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(name: &str, script: Vec<Outcome>) -> Arc<Self> {
            Arc::new(Self {
                name: name.into(),
                script,
                calls: AtomicUsize::new(0),
                got: Mutex::new(Vec::new()),
            })
        }
        fn received(&self) -> Vec<String> {
            self.got.lock().unwrap().clone()
        }
    }

    impl Emitter for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> EmitterType {
            EmitterType::Stdout
        }
        fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
            let k = self.calls.fetch_add(1, Ordering::SeqCst);
            let o = self
                .script
                .get(k)
                .or(self.script.last())
                .cloned()
                .unwrap_or(Outcome::Delivered);
            if o == Outcome::Delivered {
                self.got
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|p| p.json.clone()));
            }
            Box::pin(async move { all(batch.len(), o) })
        }
    }

    #[derive(Default)]
    struct MemDlq {
        objects: Mutex<HashMap<String, Value>>,
        fail: bool,
    }

    impl DeadLetterSink for MemDlq {
        fn put<'a>(&'a self, key: String, body: Vec<u8>) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                if self.fail {
                    return Err("s3 down".into());
                }
                self.objects
                    .lock()
                    .unwrap()
                    .insert(key, serde_json::from_slice(&body).unwrap());
                Ok(())
            })
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_record_age: Duration::from_secs(3600),
        }
    }

    fn slot(e: Arc<Fake>, include: &[&str]) -> Slot {
        Slot {
            emitter: e,
            selector: Selector::new(include.iter().map(|s| s.to_string()).collect(), vec![]),
            buffering: Buffering {
                max_batched_events: 2,
                max_size: 1 << 20,
                max_concurrent_requests: 4,
            },
            timeout: Duration::from_secs(5),
            profile: 0,
        }
    }

    fn forwarder(
        slots: Vec<Slot>,
        all_of: Vec<usize>,
        one_of: Vec<usize>,
        dlq: Arc<MemDlq>,
    ) -> Forwarder {
        Forwarder {
            slots,
            profiles: vec![Transform::identity()],
            all_of,
            at_least_one_of: one_of,
            retry: fast_retry(),
            dlq,
            dlq_prefix: "dlq/".into(),
        }
    }

    fn rec(seq: u32, data: &str, age_ms: i64) -> InputRecord {
        InputRecord {
            source: Source {
                stream: "s".into(),
                shard: "shardId-000000000000".into(),
                sequence_number: seq.to_string(),
                arrival_ms: chrono::Utc::now().timestamp_millis() - age_ms,
            },
            data: data.as_bytes().to_vec(),
        }
    }

    fn login(t: &str) -> String {
        format!(
            r#"{{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{{"id":"{t}-id","type":"{t}"}}}}"#
        )
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn retryable() -> Outcome {
        Outcome::Retryable(Failure::new("503", "busy"))
    }

    #[tokio::test]
    async fn all_records_delivered_gives_no_failures_and_chunks_follow_buffering() {
        let a = Fake::new("a", vec![Outcome::Delivered]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
        let recs: Vec<_> = (1..=5).map(|i| rec(i, &login("LOGIN"), 0)).collect();
        let r = f.process(&recs, deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(a.received().len(), 5);
        // maxBatchedEvents 2: 3 requests for 5 records.
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
        assert_eq!(r.emitters[0].1.delivered, 5);
        assert!(dlq.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_and_then_delivered() {
        let a = Fake::new("a", vec![retryable(), retryable(), Outcome::Delivered]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
        let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(r.emitters[0].1.retried, 2);
        assert_eq!(a.received().len(), 1);
    }

    #[tokio::test]
    async fn a_required_emitter_that_stays_down_reports_the_records_for_lambda_to_retry() {
        let up = Fake::new("up", vec![Outcome::Delivered]);
        let down = Fake::new("down", vec![retryable()]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(
            vec![slot(up.clone(), &[]), slot(down.clone(), &[])],
            vec![0, 1],
            vec![],
            dlq.clone(),
        );
        let r = f
            .process(
                &[rec(7, &login("LOGIN"), 0), rec(8, &login("LOGIN"), 0)],
                deadline(),
            )
            .await;
        assert_eq!(r.failures, vec!["7", "8"]);
        assert_eq!(
            down.calls.load(Ordering::SeqCst),
            3,
            "max_attempts per invocation"
        );
        assert!(
            dlq.objects.lock().unwrap().is_empty(),
            "still retryable: no dead letter yet"
        );
    }

    #[tokio::test]
    async fn retryable_failures_past_the_record_age_limit_are_dead_lettered_and_done() {
        let down = Fake::new("down", vec![retryable()]);
        let dlq = Arc::new(MemDlq::default());
        let mut f = forwarder(vec![slot(down, &[])], vec![0], vec![], dlq.clone());
        f.retry.max_record_age = Duration::from_secs(60);
        let r = f
            .process(
                &[rec(1, &login("LOGIN"), 120_000), rec(2, &login("LOGIN"), 0)],
                deadline(),
            )
            .await;
        assert_eq!(r.failures, vec!["2"]);
        let objects = dlq.objects.lock().unwrap();
        assert_eq!(objects.len(), 1);
        let (key, v) = objects.iter().next().unwrap();
        assert!(
            key.starts_with("dlq/") && key.ends_with("/s-shardId-000000000000-1-down.json"),
            "{key}"
        );
        assert_eq!(v["status"], "503");
        assert_eq!(v["emitter"], "down");
        assert!(v["reason"].as_str().unwrap().contains("age limit"));
        assert_eq!(v["record"]["event"]["type"], "LOGIN");
    }

    #[tokio::test]
    async fn permanent_refusals_are_dead_lettered_and_count_as_taken() {
        let bad = Fake::new(
            "bad",
            vec![Outcome::Permanent(Failure::new("400", "invalid event"))],
        );
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(vec![slot(bad.clone(), &[])], vec![0], vec![], dlq.clone());
        let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(
            bad.calls.load(Ordering::SeqCst),
            1,
            "no retry on a permanent refusal"
        );
        let objects = dlq.objects.lock().unwrap();
        let v = objects.values().next().unwrap();
        assert_eq!(
            (v["status"].as_str(), v["response"].as_str()),
            (Some("400"), Some("invalid event"))
        );
    }

    #[tokio::test]
    async fn at_least_one_of_is_met_by_one_emitter_and_the_other_failure_is_dead_lettered() {
        let must = Fake::new("must", vec![Outcome::Delivered]);
        let one = Fake::new("one", vec![Outcome::Delivered]);
        let two = Fake::new("two", vec![retryable()]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(
            vec![slot(must, &[]), slot(one, &[]), slot(two, &[])],
            vec![0],
            vec![1, 2],
            dlq.clone(),
        );
        let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
        assert!(r.failures.is_empty());
        let objects = dlq.objects.lock().unwrap();
        assert_eq!(objects.len(), 1);
        let v = objects.values().next().unwrap();
        assert_eq!(v["emitter"], "two");
        assert!(v["reason"].as_str().unwrap().contains("quorum"));
    }

    #[tokio::test]
    async fn at_least_one_of_with_every_member_down_is_not_done() {
        let must = Fake::new("must", vec![Outcome::Delivered]);
        let one = Fake::new("one", vec![retryable()]);
        let two = Fake::new("two", vec![retryable()]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(
            vec![slot(must, &[]), slot(one, &[]), slot(two, &[])],
            vec![0],
            vec![1, 2],
            dlq.clone(),
        );
        let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
        assert_eq!(r.failures, vec!["1"]);
    }

    #[tokio::test]
    async fn include_lists_select_records_and_unselected_records_count_as_taken() {
        let errors_only = Fake::new("errors", vec![retryable()]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(
            vec![slot(errors_only.clone(), &["LOGIN_ERROR"])],
            vec![0],
            vec![],
            dlq.clone(),
        );
        let r = f
            .process(
                &[rec(1, &login("LOGIN"), 0), rec(2, &login("LOGIN_ERROR"), 0)],
                deadline(),
            )
            .await;
        // Only the LOGIN_ERROR record was sent (and failed); the LOGIN one is done.
        assert_eq!(r.failures, vec!["2"]);
        assert_eq!(r.emitters[0].1.skipped, 1);
    }

    #[tokio::test]
    async fn malformed_records_are_dead_lettered_with_their_bytes_and_never_block() {
        let a = Fake::new("a", vec![Outcome::Delivered]);
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
        let r = f
            .process(
                &[rec(1, "not json", 0), rec(2, &login("LOGIN"), 0)],
                deadline(),
            )
            .await;
        assert!(r.failures.is_empty());
        assert_eq!(r.malformed, 1);
        assert_eq!(a.received().len(), 1);
        let objects = dlq.objects.lock().unwrap();
        let (key, v) = objects.iter().next().unwrap();
        assert!(key.ends_with("-1-malformed.json"), "{key}");
        assert_eq!(v["dataBase64"], "bm90IGpzb24=");
    }

    #[tokio::test]
    async fn a_dead_letter_that_cannot_be_written_leaves_the_record_not_done() {
        let bad = Fake::new("bad", vec![Outcome::Permanent(Failure::new("400", "no"))]);
        let dlq = Arc::new(MemDlq {
            fail: true,
            ..Default::default()
        });
        let f = forwarder(vec![slot(bad, &[])], vec![0], vec![], dlq);
        let r = f
            .process(&[rec(1, &login("LOGIN"), 0), rec(2, "{", 0)], deadline())
            .await;
        assert_eq!(r.failures, vec!["1", "2"]);
        assert_eq!(r.dead_letter_errors, 2);
    }

    #[tokio::test]
    async fn retries_stop_before_the_deadline() {
        let slow = Fake::new(
            "slow",
            vec![Outcome::Retryable(Failure {
                status: "429".into(),
                text: "later".into(),
                retry_after: Some(Duration::from_secs(60)),
            })],
        );
        let dlq = Arc::new(MemDlq::default());
        let f = forwarder(vec![slot(slow.clone(), &[])], vec![0], vec![], dlq);
        let r = f
            .process(
                &[rec(1, &login("LOGIN"), 0)],
                Instant::now() + Duration::from_secs(3),
            )
            .await;
        assert_eq!(r.failures, vec!["1"]);
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            1,
            "a 60 s Retry-After does not fit in the invocation"
        );
    }

    /// Refuses as a whole (400) every request holding a record whose text contains `POISON`;
    /// takes the others. Counts requests and the most requests in flight at once.
    struct Picky {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        got: Mutex<Vec<usize>>,
        outcome: Outcome,
    }

    impl Picky {
        fn new(outcome: Outcome) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                got: Mutex::new(Vec::new()),
                outcome,
            })
        }
    }

    impl Emitter for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        fn kind(&self) -> EmitterType {
            EmitterType::Http
        }
        fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                if batch.iter().any(|p| p.json.contains("POISON")) {
                    return all(batch.len(), self.outcome.clone());
                }
                self.got
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|p| p.index));
                all(batch.len(), Outcome::Delivered)
            })
        }
    }

    fn picky_slot(e: Arc<Picky>, batch: usize, concurrency: usize) -> Slot {
        Slot {
            emitter: e,
            selector: Selector::default(),
            buffering: Buffering {
                max_batched_events: batch,
                max_size: 1 << 20,
                max_concurrent_requests: concurrency,
            },
            timeout: Duration::from_secs(5),
            profile: 0,
        }
    }

    fn picky_forwarder(slot: Slot, dlq: Arc<MemDlq>) -> Forwarder {
        Forwarder {
            slots: vec![slot],
            profiles: vec![Transform::identity()],
            all_of: vec![0],
            at_least_one_of: vec![],
            retry: fast_retry(),
            dlq,
            dlq_prefix: "dlq/".into(),
        }
    }

    #[tokio::test]
    async fn a_request_refused_as_a_whole_is_split_until_only_the_bad_record_is_dead_lettered() {
        let e = Picky::new(Outcome::Rejected(Failure::new("400", "bad event in batch")));
        let dlq = Arc::new(MemDlq::default());
        let f = picky_forwarder(picky_slot(e.clone(), 500, 4), dlq.clone());
        let recs: Vec<_> = (1..=64)
            .map(|i| rec(i, &login(if i == 23 { "POISON" } else { "LOGIN" }), 0))
            .collect();
        let r = f.process(&recs, deadline()).await;
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        let mut got = e.got.lock().unwrap().clone();
        got.sort_unstable();
        let expected: Vec<usize> = (0..64).filter(|&i| i != 22).collect();
        assert_eq!(got, expected, "every other record delivered exactly once");
        assert_eq!(r.emitters[0].1.delivered, 63);
        assert_eq!(r.emitters[0].1.dead_lettered, 1);
        // 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1: one refused request per level, two sent per split.
        assert_eq!(e.calls.load(Ordering::SeqCst), 1 + 2 * 6);
        let objects = dlq.objects.lock().unwrap();
        assert_eq!(objects.len(), 1);
        let (key, v) = objects.iter().next().unwrap();
        assert!(key.ends_with("-23-picky.json"), "{key}");
        assert_eq!(
            (v["status"].as_str(), v["response"].as_str()),
            (Some("400"), Some("bad event in batch"))
        );
    }

    #[tokio::test]
    async fn a_permanent_refusal_that_is_not_about_the_content_is_not_split() {
        let e = Picky::new(Outcome::Permanent(Failure::new("403", "forbidden")));
        let dlq = Arc::new(MemDlq::default());
        let f = picky_forwarder(picky_slot(e.clone(), 500, 4), dlq.clone());
        let recs: Vec<_> = (1..=8)
            .map(|i| rec(i, &login(if i == 3 { "POISON" } else { "LOGIN" }), 0))
            .collect();
        let r = f.process(&recs, deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(e.calls.load(Ordering::SeqCst), 1);
        assert_eq!(dlq.objects.lock().unwrap().len(), 8);
    }

    #[tokio::test]
    async fn requests_of_one_emitter_run_concurrently_up_to_max_concurrent_requests() {
        for limit in [1, 3] {
            let e = Picky::new(Outcome::Delivered);
            let dlq = Arc::new(MemDlq::default());
            let f = picky_forwarder(picky_slot(e.clone(), 2, limit), dlq);
            let recs: Vec<_> = (1..=20).map(|i| rec(i, &login("LOGIN"), 0)).collect();
            let r = f.process(&recs, deadline()).await;
            assert!(r.failures.is_empty());
            assert_eq!(e.calls.load(Ordering::SeqCst), 10);
            assert_eq!(e.max_in_flight.load(Ordering::SeqCst), limit);
            assert_eq!(e.got.lock().unwrap().len(), 20);
        }
    }

    #[tokio::test]
    async fn retryable_failures_of_concurrent_requests_report_the_lowest_sequence_number_first() {
        let e = Picky::new(retryable());
        let dlq = Arc::new(MemDlq::default());
        let f = picky_forwarder(picky_slot(e.clone(), 2, 4), dlq);
        let recs: Vec<_> = (1..=10)
            .map(|i| rec(i, &login(if i % 3 == 0 { "POISON" } else { "LOGIN" }), 0))
            .collect();
        let r = f.process(&recs, deadline()).await;
        // Chunks [1,2] [3,4] [5,6] [7,8] [9,10]: those holding 3, 6 and 9 fail every attempt.
        assert_eq!(r.failures, vec!["3", "4", "5", "6", "9", "10"]);
    }

    /// A real HTTP receiver (axum on loopback) that refuses with 400 any NDJSON body holding a
    /// `POISON` line and records the lines of the bodies it accepts.
    #[tokio::test]
    async fn the_http_emitter_bisects_a_400_from_a_real_receiver() {
        use axum::{Router, http::StatusCode, routing::post};
        let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (acc, reqs) = (accepted.clone(), requests.clone());
        let app = Router::new().route(
            "/ingest",
            post(move |body: String| {
                let (acc, reqs) = (acc.clone(), reqs.clone());
                async move {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    if body.contains("POISON") {
                        return (StatusCode::BAD_REQUEST, "invalid event".to_string());
                    }
                    acc.lock().unwrap().extend(body.lines().map(str::to_string));
                    (StatusCode::OK, String::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let emitter = crate::emit::http::HttpEmitter::new(
            "webhook",
            EmitterType::Http,
            reqwest::Url::parse(&format!("http://{addr}/ingest")).unwrap(),
            &[],
            None,
            crate::emit::http::ResolvedAuth::None,
            false,
            crate::config::HttpFlavor::Generic {
                format: crate::config::HttpFormat::Ndjson,
            },
        )
        .unwrap();
        let dlq = Arc::new(MemDlq::default());
        let f = Forwarder {
            slots: vec![Slot {
                emitter: Arc::new(emitter),
                selector: Selector::default(),
                buffering: Buffering {
                    max_batched_events: 500,
                    max_size: 1 << 20,
                    max_concurrent_requests: 4,
                },
                timeout: Duration::from_secs(10),
                profile: 0,
            }],
            ..picky_forwarder(
                picky_slot(Picky::new(Outcome::Delivered), 1, 1),
                dlq.clone(),
            )
        };
        let recs: Vec<_> = (1..=500)
            .map(|i| rec(i, &login(if i == 250 { "POISON" } else { "LOGIN" }), 0))
            .collect();
        let r = f.process(&recs, deadline()).await;
        assert!(r.failures.is_empty(), "{:?}", r.emitters);
        let accepted = accepted.lock().unwrap();
        assert_eq!(accepted.len(), 499);
        assert!(accepted.iter().all(|l| l.contains("\"LOGIN\"")));
        let objects = dlq.objects.lock().unwrap();
        assert_eq!(objects.len(), 1);
        let v = objects.values().next().unwrap();
        assert_eq!(v["record"]["event"]["type"], "POISON");
        assert_eq!(v["status"], "400");
        // 500 records: 9 levels of halving to one record, two requests per level after the first.
        assert_eq!(requests.load(Ordering::SeqCst), 1 + 2 * 9);
    }

    #[test]
    fn backoff_grows_exponentially_within_the_cap_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_record_age: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = backoff(&p, 1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = backoff(&p, 3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = backoff(&p, 9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
    }
}
