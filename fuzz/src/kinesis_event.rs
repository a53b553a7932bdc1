//! Core's lean Kinesis event reader: `authtrail_core::kinesis::parse` (the borrowed
//! `KinesisEvent`) and `KinesisRecords<R>` (records built as they are read; the forwarder's
//! `KinesisBatch`).
//!
//! Differential: the two readers must agree. When the streaming `KinesisBatch` accepts an
//! event, `parse` accepts it too and gives the same records (sequence numbers, arrival times,
//! decoded data, stream and shard names); when `parse` accepts an object and every record's
//! data and arrival time are usable, `KinesisBatch` accepts it.

use authtrail_core::kinesis::{self, EventRecord};
use authtrail_forwarder::KinesisBatch;

/// One record as both readers give it.
#[derive(Debug, PartialEq)]
struct Seen {
    stream: String,
    shard: String,
    sequence_number: String,
    arrival_ms: i64,
    data: Vec<u8>,
}

/// One input: the event payload.
pub fn run(data: &[u8]) {
    let reference = kinesis::parse(data);
    let lean = KinesisBatch::parse(data);
    let reference_records: Option<Vec<Option<Seen>>> = reference
        .as_ref()
        .ok()
        .map(|event| event.records.iter().map(seen).collect());
    match (&lean, &reference_records) {
        (Ok(batch), Some(records)) => {
            let lean_seen: Vec<Option<Seen>> = batch
                .records
                .iter()
                .map(|r| {
                    Some(Seen {
                        stream: r.source.stream.to_string(),
                        shard: r.source.shard.to_string(),
                        sequence_number: r.source.sequence_number.clone(),
                        arrival_ms: r.source.arrival_ms,
                        data: r.data.clone(),
                    })
                })
                .collect();
            assert_eq!(
                &lean_seen, records,
                "the two readers disagree on the records"
            );
        }
        (Ok(batch), None) => panic!(
            "KinesisBatch accepted an event ({} records) that kinesis::parse refuses: {:?}",
            batch.records.len(),
            reference.err()
        ),
        (Err(e), Some(records)) => {
            let is_object = data
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'{');
            let all_usable = records.iter().all(Option::is_some);
            assert!(
                !(is_object && all_usable),
                "KinesisBatch refused an event that kinesis::parse reads whole: {e}"
            );
        }
        (Err(_), None) => {}
    }
}

/// What the reference reader gives for one record; `None` when its arrival time or its data
/// is unusable (the lean reader refuses the whole event then).
fn seen(r: &EventRecord<'_>) -> Option<Seen> {
    // The accessors every consumer calls: none may panic.
    let _ = (
        r.partition_key(),
        r.arrival_seconds(),
        r.arrival_epoch_seconds(),
    );
    let arrival_ms = r.arrival_millis().ok()?;
    let data = r.decode_data().ok()?;
    Some(Seen {
        stream: r.stream_name().to_string(),
        shard: r.shard_id().to_string(),
        sequence_number: r.sequence_number().to_string(),
        arrival_ms,
        data,
    })
}
