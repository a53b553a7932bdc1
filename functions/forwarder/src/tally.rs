//! The forwarder's reconciliation tally: what one Kinesis invocation finished, printed as one
//! JSON line (core's [`ForwarderTally`]) next to the invocation's summary.
//!
//! Only the records before the first one reported for retry are tallied: Lambda checkpoints
//! there and never sends them again, so each record of the stream is tallied once, by the
//! invocation that finished it (the records after it are delivered again by the retry, and
//! tallied then). Per record and emitter, what became of it: delivered, spooled,
//! dead-lettered (a permanent refusal, past the age limit, or the quorum went on without the
//! emitter) or filtered out by `include` / `exclude`.
//!
//! Why a log line and not an S3 object: the line costs no request, and once printed it is in
//! CloudWatch Logs whatever happens to the instance afterwards, whereas counts kept in memory
//! between invocations to save writes are lost with a recycled instance. The reconciler reads
//! the lines back with `FilterLogEvents` (term `authtrailTally`) a few times per window.

use std::collections::BTreeMap;

use authtrail_core::tally::line::{ForwarderMinute, ForwarderTally, Outcomes, TALLY_VERSION};
use authtrail_core::tally::{Digest, record_facts};

use crate::forward::{InputRecord, Slot, Status};

/// The tally of the records before the first one that is not done (`None` when there is none).
pub(crate) fn of_batch(
    slots: &[Slot],
    records: &[InputRecord],
    statuses: &[Vec<Status>],
    done: &[bool],
) -> Option<ForwarderTally> {
    let end = done.iter().position(|d| !d).unwrap_or(records.len());
    let finished = records.get(..end)?;
    let (first, last) = (finished.first()?, finished.last()?);
    let mut minutes: BTreeMap<i64, (Digest, Digest, Vec<Outcomes>)> = BTreeMap::new();
    let mut undated = 0;
    for (i, r) in finished.iter().enumerate() {
        let facts = record_facts(&r.data);
        let Some(minute) = facts.minute() else {
            undated += 1;
            continue;
        };
        let (seen, envelopes, outcomes) = minutes.entry(minute).or_insert_with(|| {
            (
                Digest::default(),
                Digest::default(),
                vec![Outcomes::default(); slots.len()],
            )
        });
        seen.add(facts.hash);
        if facts.envelope {
            envelopes.add(facts.hash);
        }
        for (k, o) in outcomes.iter_mut().enumerate() {
            let Some(status) = statuses.get(k).and_then(|s| s.get(i)) else {
                continue;
            };
            let digest = match status {
                Status::Delivered => &mut o.delivered,
                Status::Spooled => &mut o.spooled,
                Status::Skipped => &mut o.filtered,
                // A record that is done with this emitter still failing has a dead letter.
                Status::Permanent(_) | Status::Expired(_) | Status::Pending(_) => {
                    &mut o.dead_lettered
                }
            };
            digest.add(facts.hash);
        }
    }
    let minutes = minutes
        .into_iter()
        .map(|(m, (seen, envelopes, outcomes))| {
            let emitters = slots
                .iter()
                .zip(outcomes)
                .map(|(s, o)| (s.emitter.name().to_string(), o))
                .collect();
            (
                m,
                ForwarderMinute {
                    seen,
                    envelopes,
                    emitters,
                },
            )
        })
        .collect();
    Some(ForwarderTally {
        version: TALLY_VERSION,
        stream: first.source.stream.to_string(),
        shard: first.source.shard.to_string(),
        first_seq: first.source.sequence_number.clone(),
        last_seq: last.source.sequence_number.clone(),
        records: finished.len() as u64,
        undated,
        minutes,
    })
}

/// Prints the tally line of an invocation on stdout, where Lambda's log capture keeps it.
pub fn emit(tally: &ForwarderTally) {
    println!("{}", tally.to_line());
}

#[cfg(test)]
#[path = "tally_tests.rs"]
mod tests;
