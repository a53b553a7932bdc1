//! The run summary: what one invocation did, returned as the function's response, logged as
//! one line and emitted as CloudWatch EMF metrics (namespace `authtrail`, `Function=producer`).

use authtrail_core::metrics::Emf;
use serde::Serialize;

use crate::checkpoint::{ApiMode, Checkpoint};
use crate::pull::iso;

/// What one invocation did (also the function's response and the summary log line).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Another invocation held the lease: this one wrote nothing.
    pub stood_down: bool,
    /// Events read from MPAS (re-read ones included).
    pub pulled: u64,
    /// Records accepted by the stream.
    pub put: u64,
    /// Events read again (settle window, page boundaries) and not written twice.
    pub duplicates_skipped: u64,
    /// Pages fetched from MPAS.
    pub pages: u64,
    /// Events too large for one record, written truncated.
    pub truncated: u64,
    /// Records resent after a per-entry or whole-call failure.
    pub retried_entries: u64,
    /// Writes of the checkpoint object (lease taken and released included).
    pub checkpoint_saves: u64,
    /// Of those, writes of a put's intent alone (a run's first page, every legacy page).
    pub intent_saves: u64,
    /// Records of a put interrupted by a dead run found in the stream (not written again).
    pub pending_found: u64,
    /// Records of an interrupted put written again without knowing whether the stream had
    /// them (the put could not be settled: at-least-once).
    pub pending_resent: u64,
    /// Interrupted puts that could not be settled (see the WARN line for why).
    pub pending_unsettled: u64,
    /// Records of a page still refused when the run's time ran out: the page stays pending
    /// (its intent saved), the cursor before it, and the next run settles it.
    pub put_cut_short: u64,
    /// Every enabled kind was read up to this run's `dateTo` (false: the deadline cut it short).
    pub complete: bool,
    /// The cursor was older than the oldest event the server still keeps.
    pub collection_gap: bool,
    /// Now minus the oldest enabled cursor, in seconds.
    pub lag_seconds: Option<f64>,
    /// The user events' cursor (ISO-8601).
    pub user_cursor: Option<String>,
    /// The admin events' cursor (ISO-8601).
    pub admin_cursor: Option<String>,
    /// The server flavour the user events were read as.
    pub user_mode: Option<ApiMode>,
    /// The server flavour the admin events were read as.
    pub admin_mode: Option<ApiMode>,
}

impl RunSummary {
    /// The CloudWatch EMF line with the run's figures.
    pub fn to_emf(&self, request_id: &str) -> Emf {
        let mut emf = Emf::new("authtrail")
            .dimension("Function", "producer")
            .count("Pulled", self.pulled)
            .count("Put", self.put)
            .count("DuplicatesSkipped", self.duplicates_skipped)
            .count("Pages", self.pages)
            .count("Truncated", self.truncated)
            .count("RetriedEntries", self.retried_entries)
            .count("CollectionGap", u64::from(self.collection_gap))
            .count("StoodDown", u64::from(self.stood_down))
            .count("PendingFound", self.pending_found)
            .count("PendingResent", self.pending_resent)
            .count("PendingUnsettled", self.pending_unsettled)
            .count("PutCutShort", self.put_cut_short)
            .property("RequestId", request_id);
        if let Some(lag) = self.lag_seconds {
            emf = emf.metric("LagSeconds", lag, "Seconds");
        }
        if let Some(c) = &self.user_cursor {
            emf = emf.property("UserCursor", c.as_str());
        }
        if let Some(c) = &self.admin_cursor {
            emf = emf.property("AdminCursor", c.as_str());
        }
        emf
    }

    /// Logs the one summary line of the invocation.
    pub fn log(&self, request_id: &str) {
        tracing::info!(
            request_id,
            stood_down = self.stood_down,
            pulled = self.pulled,
            put = self.put,
            duplicates_skipped = self.duplicates_skipped,
            pages = self.pages,
            truncated = self.truncated,
            retried_entries = self.retried_entries,
            checkpoint_saves = self.checkpoint_saves,
            intent_saves = self.intent_saves,
            pending_found = self.pending_found,
            pending_resent = self.pending_resent,
            pending_unsettled = self.pending_unsettled,
            put_cut_short = self.put_cut_short,
            complete = self.complete,
            collection_gap = self.collection_gap,
            lag_seconds = self.lag_seconds.unwrap_or(-1.0),
            user_cursor = self.user_cursor.as_deref().unwrap_or("-"),
            admin_cursor = self.admin_cursor.as_deref().unwrap_or("-"),
            "producer run summary"
        );
    }
}

impl RunSummary {
    /// Fills the cursors, modes and lag of the enabled kinds from the checkpoint a run ended
    /// with (`now_ms` for the lag).
    pub fn record_cursors(
        &mut self,
        checkpoint: &Checkpoint,
        user_events: bool,
        admin_events: bool,
        now_ms: i64,
    ) {
        let mut oldest: Option<i64> = None;
        for (enabled, cursor, out, mode) in [
            (
                user_events,
                &checkpoint.user,
                &mut self.user_cursor,
                &mut self.user_mode,
            ),
            (
                admin_events,
                &checkpoint.admin,
                &mut self.admin_cursor,
                &mut self.admin_mode,
            ),
        ] {
            if let (true, Some(c)) = (enabled, cursor) {
                *out = Some(iso(c.time));
                *mode = Some(c.mode);
                oldest = Some(oldest.map_or(c.time, |o: i64| o.min(c.time)));
            }
        }
        self.lag_seconds = oldest.map(|t| (now_ms.saturating_sub(t).max(0) as f64) / 1000.0);
    }

    /// The CloudWatch EMF line of a failed run (`RunFailed`).
    pub fn failure_emf(request_id: &str) -> Emf {
        Emf::new("authtrail")
            .dimension("Function", "producer")
            .count("RunFailed", 1)
            .property("RequestId", request_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::checkpoint::KindCursor;
    use std::collections::HashMap;

    fn cursor(mode: ApiMode, time: i64) -> Option<KindCursor> {
        Some(KindCursor {
            mode,
            time,
            seen: HashMap::new(),
        })
    }

    #[test]
    fn cursors_of_enabled_kinds_are_reported_and_the_lag_counts_from_the_oldest() {
        let cp = Checkpoint {
            user: cursor(ApiMode::Modern, 10_000),
            admin: cursor(ApiMode::Legacy, 4_000),
            ..Checkpoint::default()
        };
        let mut s = RunSummary::default();
        s.record_cursors(&cp, true, true, 12_500);
        assert_eq!(s.user_cursor.as_deref(), Some("1970-01-01T00:00:10.000Z"));
        assert_eq!(s.admin_mode, Some(ApiMode::Legacy));
        assert_eq!(s.lag_seconds, Some(8.5));
        let mut s = RunSummary::default();
        s.record_cursors(&cp, true, false, 12_500);
        assert_eq!(s.admin_cursor, None);
        assert_eq!(s.lag_seconds, Some(2.5));
    }

    #[test]
    fn the_summary_serializes_with_the_documented_camel_case_names() {
        let v = serde_json::to_value(RunSummary::default()).unwrap();
        for key in [
            "stoodDown",
            "duplicatesSkipped",
            "retriedEntries",
            "checkpointSaves",
            "collectionGap",
            "lagSeconds",
            "userCursor",
            "adminMode",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
}
