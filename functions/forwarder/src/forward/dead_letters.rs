//! Step 5: the dead-letter trail. One dead letter per malformed record, per permanent refusal,
//! per retryable failure past the record age limit, and per emitter that still failed on a
//! record whose quorum was met without it. A record whose dead letter cannot be written is not
//! done.

use serde_json::Value;
use tokio::task::JoinSet;

use super::prepare::PreparedBatch;
use super::{EmitterStats, Forwarder, InputRecord, Status};
use crate::dlq::DeadLetter;

/// Dead letters written at once.
const CONCURRENT_WRITES: usize = 16;

/// One dead letter to write.
pub(super) struct DlqItem {
    /// The record's position in the batch.
    record: usize,
    /// The slot of the emitter (`None` for a malformed record).
    slot: Option<usize>,
    emitter: String,
    status: String,
    response: String,
    reason: &'static str,
}

/// The dead letters of the batch; counts each emitter's dead letters and pending records into
/// `stats`.
pub(super) fn collect(
    fwd: &Forwarder,
    batch: &PreparedBatch,
    statuses: &[Vec<Status>],
    done: &[bool],
    stats: &mut [EmitterStats],
) -> Vec<DlqItem> {
    let mut items = Vec::new();
    for (i, reason) in &batch.malformed {
        items.push(DlqItem {
            record: *i,
            slot: None,
            emitter: "malformed".into(),
            status: "malformed".into(),
            response: reason.to_string(),
            reason: "malformed record (not a UTF-8 JSON object)",
        });
    }
    for (k, (slot, st)) in fwd.slots.iter().zip(statuses).enumerate() {
        for (i, s) in st.iter().enumerate() {
            let (f, response, reason) = match s {
                Status::Expired(f) => (
                    f,
                    format!("retries exhausted past maxRecordAgeInSec: {}", f.text),
                    "retries exhausted past the record age limit",
                ),
                Status::Permanent(f) => (f, f.text.clone(), "rejected permanently by the emitter"),
                Status::Pending(f) if done.get(i).copied().unwrap_or(false) => (
                    f,
                    f.text.clone(),
                    "not delivered by this emitter; the record's quorum was met without it",
                ),
                _ => continue,
            };
            if let Some(s) = stats.get_mut(k) {
                s.dead_lettered += 1;
            }
            items.push(DlqItem {
                record: i,
                slot: Some(k),
                emitter: slot.emitter.name().to_string(),
                status: f.status.clone(),
                response,
                reason,
            });
        }
        if let Some(s) = stats.get_mut(k) {
            s.pending = st
                .iter()
                .filter(|s| matches!(s, Status::Pending(_)))
                .count();
        }
    }
    items
}

/// Writes the dead letters, [`CONCURRENT_WRITES`] at a time; a record whose dead letter could
/// not be written is no longer done. Returns the number of failed writes.
pub(super) async fn write(
    fwd: &Forwarder,
    records: &[InputRecord],
    batch: &PreparedBatch,
    items: Vec<DlqItem>,
    done: &mut [bool],
) -> usize {
    let mut errors = 0;
    let mut writes = JoinSet::new();
    let mut iter = items.into_iter();
    loop {
        while writes.len() < CONCURRENT_WRITES {
            let Some(item) = iter.next() else { break };
            let Some(r) = records.get(item.record) else {
                continue;
            };
            let (key, body) = letter(fwd, r, batch, &item);
            let sink = fwd.dlq.clone();
            let idx = item.record;
            writes.spawn(async move { (idx, key.clone(), sink.put(key, body).await) });
        }
        let Some(joined) = writes.join_next().await else {
            break;
        };
        match joined {
            Ok((_, key, Ok(()))) => tracing::info!(key, "dead letter written"),
            Ok((i, key, Err(e))) => {
                errors += 1;
                if let Some(d) = done.get_mut(i) {
                    *d = false;
                }
                tracing::error!(key, error = %e, "dead letter could not be written; the record will be retried");
            }
            Err(e) => {
                errors += 1;
                tracing::error!(error = %e, "dead letter task failed");
                // The record index is unknown: fail safe by retrying the whole batch.
                done.iter_mut().for_each(|d| *d = false);
            }
        }
    }
    errors
}

/// The key and body of one dead letter: the record as the emitter would have received it
/// (transformed), or its bytes when it is malformed.
fn letter(
    fwd: &Forwarder,
    r: &InputRecord,
    batch: &PreparedBatch,
    item: &DlqItem,
) -> (String, Vec<u8>) {
    let profile = item
        .slot
        .and_then(|k| fwd.slots.get(k))
        .map_or(0, |s| s.profile);
    let value: Option<Value> = batch
        .prepared
        .get(profile)
        .and_then(|p| p.get(item.record))
        .and_then(|p| p.as_ref())
        .and_then(|p| p.value());
    let letter = DeadLetter {
        emitter: &item.emitter,
        status: &item.status,
        response: &item.response,
        reason: item.reason,
        source: &r.source,
        event_type: batch
            .classes
            .get(item.record)
            .and_then(|c| c.as_ref())
            .map(|c| c.event_type()),
        record: value.as_ref(),
        raw: if value.is_none() { Some(&r.data) } else { None },
    };
    (letter.key(&fwd.dlq_prefix), letter.body())
}
