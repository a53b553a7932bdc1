//! Step 3: a record that still fails with a retryable error once it is older than
//! `retry.maxRecordAgeInSec` is dead-lettered instead of retried again, so a receiver that is
//! gone for good never blocks the shard.

use std::time::Duration;

use super::{InputRecord, Status};

/// Turns the pending failures of records older than `max_age` (at `now_ms`) into
/// [`Status::Expired`].
pub(super) fn expire(
    statuses: &mut [Vec<Status>],
    records: &[InputRecord],
    max_age: Duration,
    now_ms: i64,
) {
    let max_age_ms = max_age.as_millis() as i64;
    for st in statuses.iter_mut() {
        for (s, r) in st.iter_mut().zip(records) {
            if let Status::Pending(f) = s
                && now_ms - r.source.arrival_ms > max_age_ms
            {
                *s = Status::Expired(f.clone());
            }
        }
    }
}
