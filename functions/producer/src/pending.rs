//! The intent of a put, saved in the checkpoint before the put's first call, so that a run that
//! dies between "accepted by the stream" and "checkpoint saved" leaves behind what it was
//! writing, and the next run can tell which of those records reached the stream.
//!
//! ```json
//! "pending":{"user":{"target":"authtrail","startedAt":1739388470156,"until":1739388530156,
//!   "records":[{"h":"<32 hex>","k":"<event id or legacy hash>","t":1739388469000}],
//!   "written":{"<key>":1739388468000}}}
//! ```
//! `h` is the first 16 bytes of the SHA-256 of the record's exact bytes (hex), `k` the key the
//! cursor's `seen` set uses and `t` the event time. `written` carries keys that an earlier run
//! already found in the stream while the kind's cursor does not hold them yet. One slot per
//! kind: the save that checkpoints a page of that kind replaces it (with the next page's intent,
//! or nothing).
//!
//! [`Matcher`] settles a slot against records read back from the stream: each record read whose
//! digest is one of the slot's marks one entry as written (a multiset: two identical records of
//! a legacy page are two entries, and one copy in the stream marks only one of them).

use std::collections::HashMap;

use authtrail_core::envelope::EventKind;
use authtrail_core::put_batch::Record;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of the SHA-256 kept as a record's digest.
const DIGEST_BYTES: usize = 16;

/// The digest of a record's exact bytes: the first 16 bytes of its SHA-256, in hex.
pub fn record_digest(data: &[u8]) -> String {
    let full = Sha256::digest(data);
    hex::encode(&full[..DIGEST_BYTES])
}

/// One record of an interrupted put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// [`record_digest`] of the record's bytes.
    pub h: String,
    /// The dedupe key of its event (the cursor's `seen` key).
    pub k: String,
    /// The event's time (epoch ms), for pruning.
    pub t: i64,
}

/// A put of one page, recorded before its first call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPut {
    /// The stream the records go to (its name or ARN, as configured).
    pub target: String,
    /// Wall-clock epoch ms taken before the put's first call.
    pub started_at: i64,
    /// Epoch ms after which the put sends nothing (the invocation's deadline).
    pub until: i64,
    /// The page's new records.
    #[serde(default)]
    pub records: Vec<PendingRecord>,
    /// Keys found in the stream by an earlier run and not yet in the kind's cursor.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub written: HashMap<String, i64>,
    /// The run that recorded it ended without dying (failed or cut short): every call it sent
    /// was answered, so no record of it can reach the stream any more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

impl PendingPut {
    /// The intent of putting `records` (whose dedupe keys are `keys`, in the same order) to
    /// `target`, starting now and ending by `until`; `written` carried along.
    pub fn new(
        target: &str,
        records: &[Record],
        keys: &[(String, i64)],
        now_ms: i64,
        until: i64,
        written: HashMap<String, i64>,
    ) -> Self {
        let records = records
            .iter()
            .zip(keys)
            .map(|(r, (k, t))| PendingRecord {
                h: record_digest(&r.data),
                k: k.clone(),
                t: *t,
            })
            .collect();
        Self {
            target: target.to_string(),
            started_at: now_ms,
            until,
            records,
            written,
            closed: false,
        }
    }
}

/// The pending puts of both kinds (the checkpoint's `pending`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPuts {
    /// The user events' interrupted put, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<PendingPut>,
    /// The admin events' interrupted put, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<PendingPut>,
}

impl PendingPuts {
    /// Neither kind has a pending put.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.admin.is_none()
    }

    /// The slot of one kind.
    pub fn get(&self, kind: EventKind) -> Option<&PendingPut> {
        match kind {
            EventKind::User => self.user.as_ref(),
            EventKind::Admin => self.admin.as_ref(),
        }
    }

    /// Replaces the slot of one kind.
    pub fn set(&mut self, kind: EventKind, put: Option<PendingPut>) {
        match kind {
            EventKind::User => self.user = put,
            EventKind::Admin => self.admin = put,
        }
    }

    /// Closes every pending put at `now_ms`: the run that recorded them ended without dying
    /// (every call it sent was answered), so the next run reads the stream back only up to
    /// now and need not wait at the tips for calls still in flight.
    pub fn close_at(&mut self, now_ms: i64) {
        for put in [self.user.as_mut(), self.admin.as_mut()]
            .into_iter()
            .flatten()
        {
            put.until = put.until.min(now_ms);
            put.closed = true;
        }
    }
}

/// Matches records read back from the stream against a pending put's records.
#[derive(Debug)]
pub struct Matcher {
    /// Digest to the indexes (into `records`) of entries not matched yet.
    open: HashMap<String, Vec<usize>>,
    records: Vec<PendingRecord>,
    found: Vec<bool>,
    remaining: usize,
}

impl Matcher {
    /// A matcher for `records`, none found yet.
    pub fn new(records: Vec<PendingRecord>) -> Self {
        let mut open: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate().rev() {
            open.entry(r.h.clone()).or_default().push(i);
        }
        let remaining = records.len();
        Self {
            open,
            found: vec![false; records.len()],
            records,
            remaining,
        }
    }

    /// Looks at one record read back; returns whether it was one of the pending records (and
    /// marks that entry as written).
    pub fn offer(&mut self, data: &[u8]) -> bool {
        if self.remaining == 0 {
            return false;
        }
        let Some(slots) = self.open.get_mut(&record_digest(data)) else {
            return false;
        };
        let Some(i) = slots.pop() else {
            return false;
        };
        if let Some(f) = self.found.get_mut(i) {
            *f = true;
        }
        self.remaining -= 1;
        true
    }

    /// Every pending record was found.
    pub fn all_found(&self) -> bool {
        self.remaining == 0
    }

    /// Pending records not found yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The keys (with times) of the records found.
    pub fn found_keys(&self) -> impl Iterator<Item = (&str, i64)> {
        self.records
            .iter()
            .zip(&self.found)
            .filter(|(_, f)| **f)
            .map(|(r, _)| (r.k.as_str(), r.t))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rec(data: &[u8], k: &str) -> PendingRecord {
        PendingRecord {
            h: record_digest(data),
            k: k.into(),
            t: 1,
        }
    }

    #[test]
    fn the_digest_is_16_bytes_of_sha256_in_hex_and_differs_for_one_changed_byte() {
        let a = record_digest(b"{\"a\":1}\n");
        assert_eq!(a.len(), 32);
        assert_ne!(a, record_digest(b"{\"a\":1} \n"));
        assert_eq!(a, record_digest(b"{\"a\":1}\n"));
    }

    #[test]
    fn one_copy_in_the_stream_marks_one_of_two_identical_pending_records() {
        let mut m = Matcher::new(vec![rec(b"same", "h"), rec(b"same", "h-1"), rec(b"x", "x")]);
        assert!(m.offer(b"same"));
        assert!(!m.offer(b"foreign"));
        assert_eq!(m.remaining(), 2);
        let keys: Vec<_> = m.found_keys().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, vec!["h".to_string()]);
        assert!(m.offer(b"same") && m.offer(b"x"));
        assert!(m.all_found());
        assert!(!m.offer(b"same"), "a third copy matches nothing");
    }

    #[test]
    fn pending_json_uses_the_documented_field_names() {
        let mut puts = PendingPuts::default();
        puts.set(
            EventKind::Admin,
            Some(PendingPut {
                target: "s".into(),
                started_at: 5,
                until: 9,
                records: vec![rec(b"r", "id1")],
                written: HashMap::from([("id0".to_string(), 3)]),
                closed: false,
            }),
        );
        let v = serde_json::to_value(&puts).unwrap();
        assert!(v.get("user").is_none());
        assert_eq!(v["admin"]["startedAt"], 5);
        assert_eq!(v["admin"]["records"][0]["k"], "id1");
        assert_eq!(v["admin"]["written"]["id0"], 3);
        let back: PendingPuts = serde_json::from_value(v).unwrap();
        assert_eq!(back, puts);
    }
}
