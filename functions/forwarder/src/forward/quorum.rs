//! Step 4: the quorum. A record is done when every emitter of `emitToAllOf` and at least one of
//! `emitAtLeastOneOf` took it; a malformed record is done once it is dead-lettered.

use std::sync::Arc;

use super::Status;
use crate::record::Classified;

/// Per record: whether it is done. `statuses` is per slot, per record; `classes` is `None` for
/// malformed records.
pub(super) fn done(
    all_of: &[usize],
    at_least_one_of: &[usize],
    statuses: &[Vec<Status>],
    classes: &[Option<Arc<Classified>>],
) -> Vec<bool> {
    let took = |k: usize, i: usize| {
        statuses
            .get(k)
            .and_then(|s| s.get(i))
            .is_some_and(Status::took)
    };
    (0..classes.len())
        .map(|i| {
            if classes[i].is_none() {
                return true; // malformed: done once dead-lettered
            }
            let all_ok = all_of.iter().all(|&k| took(k, i));
            let one_ok = at_least_one_of.is_empty() || at_least_one_of.iter().any(|&k| took(k, i));
            all_ok && one_ok
        })
        .collect()
}
