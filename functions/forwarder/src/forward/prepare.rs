//! Step 1: parse and classify every record once, and transform it once per transform profile
//! that an emitter uses.

use std::sync::Arc;

use super::{InputRecord, Slot};
use crate::ForwarderError;
use crate::record::{self, Classified, Prepared, Transform};

/// The batch after step 1.
pub(super) struct PreparedBatch {
    /// Per profile, per record: the transformed record (`None` when malformed, or when no
    /// emitter uses the profile).
    pub prepared: Vec<Arc<Vec<Option<Arc<Prepared>>>>>,
    /// Per record: its classification (`None` when malformed).
    pub classes: Vec<Option<Arc<Classified>>>,
    /// The malformed records: position and why.
    pub malformed: Vec<(usize, ForwarderError)>,
}

/// Parses, classifies and transforms `records` for the profiles the `slots` use.
pub(super) fn prepare(
    profiles: &[Transform],
    slots: &[Slot],
    records: &[InputRecord],
) -> PreparedBatch {
    let n = records.len();
    let mut used = vec![false; profiles.len()];
    for s in slots {
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
    let mut prepared: Vec<Vec<Option<Arc<Prepared>>>> = vec![vec![None; n]; profiles.len()];
    let mut classes: Vec<Option<Arc<Classified>>> = vec![None; n];
    let mut malformed = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let parsed =
            record::parse_classify(&r.data, r.source.arrival_ms).and_then(|(raw, class)| {
                let class = Arc::new(class);
                let source = Arc::new(r.source.clone());
                let mut out = Vec::with_capacity(used.len());
                for &p in &used {
                    if let Some(t) = profiles.get(p) {
                        let mut prep = t.prepare(i, class.clone(), raw)?;
                        prep.source = Some(source.clone());
                        out.push((p, Arc::new(prep)));
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
    PreparedBatch {
        prepared: prepared.into_iter().map(Arc::new).collect(),
        classes,
        malformed,
    }
}
