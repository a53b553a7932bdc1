//! The reconciliation object: one small JSON document per window of event time, written by the
//! reconciler under a deterministic key ([`object_key`]) and read by `authtrail-check
//! reconcile`. Its format is documented field by field here and in the reconciler's README.

use serde::{Deserialize, Serialize};

use super::Digest;

/// The version of the reconciliation object format.
pub const OBJECT_VERSION: u32 = 1;

/// The key of the reconciliation object of the window starting at `start_ms` (epoch
/// milliseconds) and lasting `seconds`:
/// `{prefix}{yyyy}/{MM}/{dd}/{HH}/{yyyy}{MM}{dd}T{HH}{mm}Z-{seconds}s.json`.
pub fn object_key(prefix: &str, start_ms: i64, seconds: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(start_ms).unwrap_or_default();
    format!(
        "{prefix}{}/{}-{seconds}s.json",
        t.format("%Y/%m/%d/%H"),
        t.format("%Y%m%dT%H%MZ")
    )
}

/// Where a window stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowStatus {
    /// Every hop accounted for every record.
    Complete,
    /// At least one hop has records unaccounted for (or a digest that does not match).
    Unaccounted,
    /// No hop is short, but at least one hop's figure is unknown (a tally is missing).
    Unknown,
}

/// Where one hop stands in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HopStatus {
    /// Counts and digests agree.
    Ok,
    /// Fewer records came out than went in.
    Unaccounted,
    /// More records came out than went in (duplicates, or the reference lost some).
    Extra,
    /// The counts agree but the digests do not: records differ (altered, or as many lost as
    /// others added). Counted as one record unaccounted.
    Mismatch,
    /// One side's tally is missing: the figure is unknown, not zero.
    Unknown,
}

/// A count and its digest, as written in the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figure {
    /// Records.
    pub count: u64,
    /// The sum of their hashes mod 2^64, 16 hex digits.
    pub digest: String,
}

impl From<Digest> for Figure {
    fn from(d: Digest) -> Self {
        Figure {
            count: d.count,
            digest: d.sum_hex(),
        }
    }
}

/// What one emitter did with the window's records (counts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeCounts {
    /// Delivered.
    pub delivered: u64,
    /// Spooled (in custody, redriven later).
    pub spooled: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Filtered out by `include` / `exclude`.
    pub filtered: u64,
}

/// The comparison at one hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HopResult {
    /// The hop (`producer>stream`, `stream>archive`, `stream>forwarder`,
    /// `forwarder>emitter:<name>`).
    pub hop: String,
    /// Its status.
    pub status: HopStatus,
    /// What went in (`None` when unknown).
    pub expected: Option<Figure>,
    /// What came out (`None` when unknown).
    pub observed: Option<Figure>,
    /// Records that went in and did not come out (0 when unknown).
    pub unaccounted: u64,
    /// Records that came out without going in.
    pub extra: u64,
    /// For emitter hops: the breakdown of what came out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomeCounts>,
    /// Why the status is what it is, in words, when it is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the archive held for the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    /// Archive objects read (those written during the window's arrival span).
    pub objects: u64,
    /// Records of the window in them.
    pub records: u64,
    /// Contract 1 envelopes among them (copies included).
    pub envelopes: u64,
    /// Distinct envelopes.
    pub distinct_envelopes: u64,
    /// Other producers' records.
    pub other: u64,
    /// Undated records in the objects read (not in any window).
    pub undated: u64,
}

/// What the forwarder's tallies said of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwarderSummary {
    /// Tally lines read (after dropping exact repeats).
    pub lines: u64,
    /// Tally lines that repeated another one exactly (a retried invocation), dropped.
    pub repeated_lines: u64,
    /// Tally lines that overlapped another one in part (their records may count twice).
    pub overlapping_lines: u64,
    /// Shards seen.
    pub shards: u64,
    /// The tallies could not be read (the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// What the producers' tallies said of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerSummary {
    /// Checkpoint objects read.
    pub checkpoints: u64,
    /// Events put in the window (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put: Option<u64>,
    /// Why the figure is unknown, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

/// The reconciliation of one window of event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    /// The format version ([`OBJECT_VERSION`]).
    pub version: u32,
    /// Start of the window (event time, inclusive), ISO-8601 UTC.
    pub window_start: String,
    /// End of the window (exclusive), ISO-8601 UTC.
    pub window_end: String,
    /// Length of the window, seconds.
    pub window_seconds: u64,
    /// When this object was computed, ISO-8601 UTC.
    pub computed_at: String,
    /// The settle delay the window was given before it was computed, seconds.
    pub settle_seconds: u64,
    /// The window as a whole.
    pub status: WindowStatus,
    /// Records unaccounted for, summed over the hops.
    pub unaccounted: u64,
    /// Per hop, in pipeline order.
    pub hops: Vec<HopResult>,
    /// The archive's side.
    pub archive: ArchiveSummary,
    /// The forwarder's side.
    pub forwarder: ForwarderSummary,
    /// The producers' side.
    pub producer: ProducerSummary,
}

impl Reconciliation {
    /// The status a set of hops gives a window, and the records unaccounted summed over them.
    pub fn status_of(hops: &[HopResult]) -> (WindowStatus, u64) {
        let unaccounted: u64 = hops.iter().map(|h| h.unaccounted).sum();
        let status = if hops
            .iter()
            .any(|h| matches!(h.status, HopStatus::Unaccounted | HopStatus::Mismatch))
        {
            WindowStatus::Unaccounted
        } else if hops.iter().any(|h| h.status == HopStatus::Unknown) {
            WindowStatus::Unknown
        } else {
            WindowStatus::Complete
        };
        (status, unaccounted)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn object_keys_are_deterministic_per_window_start_and_length() {
        // 2025-02-12T19:25:00Z
        let k = object_key("reconciliation/", 1_739_388_300_000, 300);
        assert_eq!(k, "reconciliation/2025/02/12/19/20250212T1925Z-300s.json");
        assert_ne!(k, object_key("reconciliation/", 1_739_388_300_000, 60));
    }

    fn hop(status: HopStatus, unaccounted: u64) -> HopResult {
        HopResult {
            hop: "h".into(),
            status,
            expected: None,
            observed: None,
            unaccounted,
            extra: 0,
            outcomes: None,
            reason: None,
        }
    }

    #[test]
    fn a_window_is_unaccounted_if_any_hop_is_short_and_unknown_never_counts_as_zero() {
        use HopStatus::*;
        assert_eq!(
            Reconciliation::status_of(&[hop(Ok, 0), hop(Extra, 0)]),
            (WindowStatus::Complete, 0)
        );
        assert_eq!(
            Reconciliation::status_of(&[hop(Ok, 0), hop(Unknown, 0)]),
            (WindowStatus::Unknown, 0)
        );
        assert_eq!(
            Reconciliation::status_of(&[hop(Unaccounted, 3), hop(Unknown, 0), hop(Mismatch, 1)]),
            (WindowStatus::Unaccounted, 4)
        );
    }

    #[test]
    fn statuses_serialize_in_lowercase() {
        assert_eq!(
            serde_json::to_string(&HopStatus::Unaccounted).unwrap(),
            "\"unaccounted\""
        );
        assert_eq!(
            serde_json::to_string(&WindowStatus::Complete).unwrap(),
            "\"complete\""
        );
    }
}
