//! Step 5: the dead-letter trail. One dead letter per malformed record, per permanent refusal,
//! per retryable failure past the record age limit (without a spool), and per emitter that
//! still failed on a record whose quorum was met without it (with a spool: whose spool write
//! failed). The letters are written in few objects, with a deadline; a record whose dead letter
//! cannot be written is not done.

use serde_json::Value;
use tokio::time::Instant;

use super::prepare::PreparedBatch;
use super::{EmitterStats, Forwarder, InputRecord, Status};
use crate::dlq::{DeadLetter, LetterLine, write_batched};

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

/// Writes the dead letters in few objects ([`crate::dlq::write_batched`]), none past
/// `deadline`; a record whose dead letter could not be written is no longer done. Returns the
/// number of letters not written.
pub(super) async fn write(
    fwd: &Forwarder,
    records: &[InputRecord],
    batch: &PreparedBatch,
    items: Vec<DlqItem>,
    done: &mut [bool],
    deadline: Instant,
    tag: &str,
) -> usize {
    let letters: Vec<LetterLine> = items
        .iter()
        .filter_map(|item| {
            let r = records.get(item.record)?;
            Some(LetterLine {
                owner: item.record,
                source: r.source.clone(),
                line: letter(fwd, r, batch, item),
            })
        })
        .collect();
    let failed = write_batched(&fwd.dlq, &fwd.dlq_prefix, tag, letters, deadline).await;
    for &i in &failed {
        match done.get_mut(i) {
            Some(d) => *d = false,
            // A failed task: the record is unknown, retry the whole batch.
            None => done.iter_mut().for_each(|d| *d = false),
        }
    }
    failed.len()
}

/// One dead letter's line: the record as the emitter would have received it (transformed), or
/// its bytes when it is malformed.
fn letter(fwd: &Forwarder, r: &InputRecord, batch: &PreparedBatch, item: &DlqItem) -> Vec<u8> {
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
    DeadLetter {
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
    }
    .line()
}
