//! One emitter's redrive: under the emitter's lease, its spool objects are read oldest first
//! and their records sent again until the emitter fails, the budget ends or the spool is empty.
//!
//! Progress is durable per object: an object whose records were all delivered (or expired to
//! dead letters) is deleted; an object delivered in part is written again, with the records
//! left only, under a new key (which sorts where the old one did, its oldest record being no
//! older), and only then is the old one deleted. A crash between the two leaves both: the
//! records left are sent twice at worst, a delivered record is never sent from a deleted
//! object again. While the breaker is open, the first request is a probe of one record with
//! `spool.probeTimeoutInSec`. Records older than `spool.maxAgeInSec` become dead letters
//! (`spool retention exceeded`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::layout::{self, SpoolLine};
use super::{PutOutcome, Spool};
use crate::ForwarderError;
use crate::config::{Buffering, RetryPolicy};
use crate::dlq::{DeadLetter, DeadLetterSink, LetterLine, write_batched};
use crate::emit::Emitter;
use crate::forward::{Delivery, Status};
use crate::record::{self, Prepared, Source, Transform};

/// The emitter a redrive sends to, with its settings.
#[derive(Clone)]
pub struct RedriveTarget {
    /// The emitter's slot (position in the configuration).
    pub slot: usize,
    /// The emitter.
    pub emitter: Arc<dyn Emitter>,
    /// Its `buffering`.
    pub buffering: Buffering,
    /// Its `emitTimeoutInSec`.
    pub timeout: Duration,
}

/// What every redrive of one invocation shares.
pub struct RedriveContext {
    /// The spool.
    pub spool: Arc<Spool>,
    /// Where expired records go.
    pub dlq: Arc<dyn DeadLetterSink>,
    /// The dead-letter prefix.
    pub dlq_prefix: String,
    /// The invocation's request id (keys of rewritten objects and dead letters).
    pub tag: String,
    /// The retry policy (its backoff; a redrive makes one attempt per record).
    pub retry: RetryPolicy,
    /// No request starts after this (the redrive budget).
    pub end: Instant,
    /// The invocation's hard limit for the writes that record progress.
    pub deadline: Instant,
    /// In a Kinesis invocation: the emitters still delivering the batch. Once none is, a
    /// redrive that has taken [`MIN_OBJECTS`] objects starts no further one, so that it does not
    /// make the invocation (and every other emitter's next batch) wait. `None`: no such limit
    /// (scheduled redrives, or no emitter delivering).
    pub delivering: Option<Arc<AtomicUsize>>,
}

/// Objects a redrive in a Kinesis invocation takes before it yields to the other emitters'
/// delivery: two, so that the spool shrinks even while each invocation spools one object
/// behind it.
pub const MIN_OBJECTS: usize = 2;

impl RedriveContext {
    /// Whether a redrive that has taken `objects` objects should stop starting new ones.
    fn should_yield(&self, objects: usize) -> bool {
        objects >= MIN_OBJECTS
            && self
                .delivering
                .as_ref()
                .is_some_and(|d| d.load(Ordering::SeqCst) == 0)
    }
}

/// What one redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    /// Whether it ran (it holds the lease).
    pub ran: bool,
    /// Records delivered.
    pub redriven: usize,
    /// Records past the retention, dead-lettered.
    pub expired: usize,
    /// Records refused for good by the emitter, dead-lettered.
    pub dead_lettered: usize,
    /// Failed requests to the emitter and failed store operations.
    pub failures: usize,
    /// Whether the spool is empty at the end.
    pub drained: bool,
}

/// Owners of the letters of expired lines start here (live lines are `0..`; an unreadable
/// line is `usize::MAX`).
const EXPIRED: usize = usize::MAX / 2;

/// Where one object stands after its redrive.
struct ObjectResult {
    left: usize,
    oldest: Option<i64>,
    emitter_failed: bool,
}

/// Redrives one emitter's spool (oldest first, under its lease), probing first when `probe`.
/// A breaker that opens or closes is recorded in the store; a failed probe makes the next one
/// wait longer.
pub async fn redrive(t: RedriveTarget, cx: Arc<RedriveContext>, probe: bool) -> RedriveReport {
    let mut rep = RedriveReport::default();
    let name = t.emitter.name().to_string();
    let lease = layout::lease_key(&cx.spool.prefix, &name);
    match acquire(&cx, &lease).await {
        Ok(true) => rep.ran = true,
        Ok(false) => {
            tracing::info!(emitter = name, "spool lease held elsewhere; not redriving");
            return rep;
        }
        Err(e) => {
            rep.failures += 1;
            tracing::error!(emitter = name, error = %e, "spool lease not taken");
            return rep;
        }
    }
    let was_open = cx.spool.state(t.slot).breaker_open;
    if let Err(e) = drain(&t, &cx, probe, &mut rep).await {
        rep.failures += 1;
        tracing::error!(emitter = name, error = %e, "redrive stopped");
    }
    if let Err(e) = cx.spool.store.delete(&lease).await {
        tracing::warn!(emitter = name, error = %e, "spool lease not released; it expires");
    }
    let open = cx.spool.state(t.slot).breaker_open;
    if probe && open {
        cx.spool.probe_failed(t.slot);
    }
    if open != was_open {
        cx.spool.persist_breaker(&name, open).await;
    }
    rep
}

/// Takes the lease: created if absent, taken over when the one there has expired.
async fn acquire(cx: &RedriveContext, key: &str) -> Result<bool, ForwarderError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let hold = cx.deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
    let body = serde_json::json!({"holder": cx.tag, "expiresMs": now_ms + hold.as_millis() as i64})
        .to_string()
        .into_bytes();
    let store = &cx.spool.store;
    if store.put_new(key, body.clone()).await? == PutOutcome::Created {
        return Ok(true);
    }
    let expires = store
        .get(key)
        .await?
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("expiresMs").and_then(Value::as_i64));
    if expires.is_some_and(|e| e >= now_ms) {
        return Ok(false);
    }
    store.delete(key).await?;
    Ok(store.put_new(key, body).await? == PutOutcome::Created)
}

/// The objects oldest first, until the emitter fails or the budget ends; updates what the
/// instance knows of the spool.
async fn drain(
    t: &RedriveTarget,
    cx: &RedriveContext,
    mut probe: bool,
    rep: &mut RedriveReport,
) -> Result<(), ForwarderError> {
    let prefix = layout::emitter_prefix(&cx.spool.prefix, t.emitter.name());
    let keys: Vec<String> = cx
        .spool
        .store
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|k| layout::is_object(k))
        .collect();
    let (mut depth, mut oldest, mut stopped) = (0usize, None::<i64>, false);
    let mut taken = 0usize;
    for key in &keys {
        if stopped || Instant::now() >= cx.end || cx.should_yield(taken) {
            // Not read: at least one record.
            depth += 1;
            oldest = oldest.or(layout::oldest_ms_of_key(key));
            continue;
        }
        let Some(body) = cx.spool.store.get(key).await? else {
            continue;
        };
        taken += 1;
        let r = object(t, cx, key, &body, &mut probe, rep).await?;
        depth += r.left;
        if r.left > 0 {
            oldest = Some(oldest.map_or(r.oldest.unwrap_or(i64::MAX), |o| {
                o.min(r.oldest.unwrap_or(i64::MAX))
            }));
        }
        stopped |= r.emitter_failed;
    }
    rep.drained = depth == 0;
    cx.spool.update(t.slot, |s| {
        s.depth = depth;
        s.oldest_ms = oldest;
    });
    if stopped {
        cx.spool.open_breaker(t.slot);
    } else {
        cx.spool.close_breaker(t.slot);
    }
    Ok(())
}

/// The record of a spool line as the emitter takes it (its text as spooled).
fn prepared(i: usize, line: &SpoolLine) -> Option<Arc<Prepared>> {
    let (raw, class) =
        record::parse_classify(line.record.get().as_bytes(), line.arrival_ms).ok()?;
    let mut p = Transform::identity()
        .prepare(i, Arc::new(class), raw)
        .ok()?;
    if let Some(id) = &line.doc_id {
        p.doc_id = id.clone();
    }
    p.source = Some(Arc::new(Source {
        stream: Arc::from(line.stream.as_str()),
        shard: Arc::from(line.shard.as_str()),
        sequence_number: line.sequence_number.clone(),
        arrival_ms: line.arrival_ms,
    }));
    Some(Arc::new(p))
}

/// One letter about a spooled line (`raw` for a line that cannot be read).
fn letter(
    owner: usize,
    emitter: &str,
    line: Option<&SpoolLine>,
    raw: &[u8],
    reason: &str,
) -> LetterLine {
    let source = Source {
        stream: Arc::from(line.map_or("unknown", |l| l.stream.as_str())),
        shard: Arc::from(line.map_or("unknown", |l| l.shard.as_str())),
        sequence_number: line.map_or_else(String::new, |l| l.sequence_number.clone()),
        arrival_ms: line.map_or(0, |l| l.arrival_ms),
    };
    let value = line.and_then(|l| serde_json::from_str::<Value>(l.record.get()).ok());
    let text = DeadLetter {
        emitter,
        status: line.map_or("unreadable", |l| l.status.as_str()),
        response: line.map_or("", |l| l.reason.as_str()),
        reason,
        source: &source,
        event_type: line.and_then(|l| l.event_type.as_deref()),
        record: value.as_ref(),
        raw: if value.is_none() { Some(raw) } else { None },
    }
    .line();
    LetterLine {
        owner,
        source,
        line: text,
    }
}

/// Sends one object's live records (a probe of one first when asked), dead-letters its expired
/// and refused ones, and records the progress durably.
async fn object(
    t: &RedriveTarget,
    cx: &RedriveContext,
    key: &str,
    body: &[u8],
    probe: &mut bool,
    rep: &mut RedriveReport,
) -> Result<ObjectResult, ForwarderError> {
    let name = t.emitter.name();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let max_age_ms = cx.spool.config.max_age.as_millis() as i64;
    let decoded = layout::decode(body);
    let total = decoded.len();
    let (mut lines, mut letters, mut raw_left) = (Vec::new(), Vec::new(), Vec::new());
    for l in decoded {
        match l {
            Ok(line) if now_ms.saturating_sub(line.arrival_ms) > max_age_ms => {
                rep.expired += 1;
                let owner = EXPIRED + raw_left.len();
                letters.push(letter(
                    owner,
                    name,
                    Some(&line),
                    &[],
                    "spool retention exceeded",
                ));
                raw_left.push(line);
            }
            Ok(line) => lines.push(line),
            Err(raw) => {
                letters.push(letter(
                    usize::MAX,
                    name,
                    None,
                    &raw,
                    "unreadable spool line",
                ));
            }
        }
    }
    // `raw_left` holds the expired lines, kept when their letter cannot be written.
    let records: Vec<Option<Arc<Prepared>>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| prepared(i, l))
        .collect();
    let mut status: Vec<Option<Status>> = vec![None; lines.len()];
    let order: Vec<usize> = (0..lines.len()).filter(|&i| records[i].is_some()).collect();
    for (i, r) in records.iter().enumerate() {
        if r.is_none() {
            status[i] = Some(Status::Permanent(crate::emit::Failure::new(
                "unreadable",
                "spooled record is not a JSON object",
            )));
        }
    }
    let emitter_failed = send(t, cx, Arc::new(records), order, probe, &mut status, rep).await;
    let mut left: Vec<SpoolLine> = Vec::new();
    let mut refused = Vec::new();
    for (i, (line, st)) in lines.iter().zip(&status).enumerate() {
        match st {
            Some(Status::Delivered) => rep.redriven += 1,
            Some(Status::Permanent(f)) => {
                rep.dead_lettered += 1;
                let mut l = line.clone();
                l.status = f.status.clone();
                l.reason = f.text.clone();
                refused.push(letter(
                    i,
                    name,
                    Some(&l),
                    &[],
                    "rejected permanently by the emitter",
                ));
            }
            _ => left.push(line.clone()),
        }
    }
    refused.extend(letters);
    let failed = if refused.is_empty() {
        Vec::new()
    } else {
        write_batched(&cx.dlq, &cx.dlq_prefix, &cx.tag, refused, cx.deadline).await
    };
    for owner in failed {
        if owner == usize::MAX {
            // An unreadable line (or an unknown one) has no letter: keep the object as it is.
            return Ok(ObjectResult {
                left: total,
                oldest: layout::oldest_ms_of_key(key),
                emitter_failed,
            });
        }
        let line = match owner.checked_sub(EXPIRED) {
            Some(n) => raw_left.get(n),
            None => lines.get(owner),
        };
        if let Some(line) = line {
            left.push(line.clone());
        }
    }
    record_progress(cx, name, key, total, left, emitter_failed).await
}

/// Sends `order` (a probe of its first record first when `probe`); `true` when the emitter
/// failed.
async fn send(
    t: &RedriveTarget,
    cx: &RedriveContext,
    records: Arc<Vec<Option<Arc<Prepared>>>>,
    mut order: Vec<usize>,
    probe: &mut bool,
    status: &mut [Option<Status>],
    rep: &mut RedriveReport,
) -> bool {
    let delivery = |timeout: Duration| Delivery {
        emitter: t.emitter.clone(),
        buffering: t.buffering,
        timeout,
        records: records.clone(),
        retry: RetryPolicy {
            max_attempts: 1,
            ..cx.retry
        },
        retry_deadline: cx.end,
        spooling: true,
    };
    let mut apply = |results: Vec<(usize, Status)>| -> bool {
        let mut failed = false;
        for (i, s) in results {
            failed |= matches!(s, Status::Pending(_));
            if let Some(x) = status.get_mut(i) {
                *x = Some(s);
            }
        }
        failed
    };
    if *probe && !order.is_empty() {
        let first = order.remove(0);
        let (results, _) = delivery(cx.spool.config.probe_timeout)
            .run(vec![first])
            .await;
        if apply(results) {
            rep.failures += 1;
            tracing::info!(
                emitter = t.emitter.name(),
                "probe failed; the breaker stays open"
            );
            return true;
        }
        *probe = false;
    }
    if order.is_empty() {
        return false;
    }
    let (results, _) = delivery(t.timeout).run(order).await;
    let failed = apply(results);
    if failed {
        rep.failures += 1;
    }
    failed
}

/// Makes the object's progress durable: deleted when nothing is left, written again with what
/// is left (then deleted) when part of it was done, kept when nothing changed.
async fn record_progress(
    cx: &RedriveContext,
    name: &str,
    key: &str,
    total: usize,
    left: Vec<SpoolLine>,
    emitter_failed: bool,
) -> Result<ObjectResult, ForwarderError> {
    let store = &cx.spool.store;
    let oldest = left.iter().map(|l| l.arrival_ms).min();
    if left.len() < total {
        if let Some(first) = left.first() {
            let body = layout::encode(&left)?;
            let mut written = false;
            for n in 0..4 {
                let tag = if n == 0 {
                    cx.tag.chars().take(8).collect()
                } else {
                    format!("{}.{n}", cx.tag.chars().take(8).collect::<String>())
                };
                let new_key = layout::object_key(
                    &cx.spool.prefix,
                    name,
                    oldest.unwrap_or(first.arrival_ms),
                    (&first.shard, &first.sequence_number),
                    &tag,
                );
                if new_key != key
                    && store.put_new(&new_key, body.clone()).await? == PutOutcome::Created
                {
                    written = true;
                    break;
                }
            }
            if !written {
                return Ok(ObjectResult {
                    left: total,
                    oldest: layout::oldest_ms_of_key(key),
                    emitter_failed,
                });
            }
        }
        store.delete(key).await?;
    }
    Ok(ObjectResult {
        left: left.len(),
        oldest,
        emitter_failed,
    })
}
