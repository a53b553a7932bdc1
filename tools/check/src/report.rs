//! The comparison of sources with the expected events ([`Report::compare`]): per time window
//! and event by event, what is missing, duplicated or unexpected where, and its text summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Tally;

/// One event that is not where it should be.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// `missing`, `duplicated` or `unexpected`.
    pub problem: &'static str,
    /// The source where it is missing or duplicated.
    pub source: String,
    /// The event's identity (see [`KeyPolicy::key`](crate::KeyPolicy::key)).
    pub key: String,
    /// The event's time, ISO-8601 UTC.
    pub time: String,
    /// Copies in the source (0 when missing).
    pub count: u32,
}

/// Counts of one time window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowCounts {
    /// Start of the window, ISO-8601 UTC.
    pub window_start: String,
    /// Expected events with a time in the window.
    pub expected: u64,
    /// Per source: distinct events present.
    pub present: BTreeMap<String, u64>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Distinct expected events.
    pub expected: usize,
    /// Per source, by name.
    pub sources: BTreeMap<String, SourceSummary>,
    /// Counts per time window, in time order.
    pub windows: Vec<WindowCounts>,
    /// Every event not where it should be, by source, time and key.
    pub findings: Vec<Finding>,
    /// True when there are no findings.
    pub complete: bool,
}

/// What one source holds, measured against the expected events.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    /// Envelope records read (copies included).
    pub records: u64,
    /// Distinct events.
    pub distinct: usize,
    /// Expected events neither here nor dead-lettered.
    pub missing: usize,
    /// Expected events here more than once.
    pub duplicated: usize,
    /// Events here that were not expected.
    pub unexpected: usize,
    /// Other producers' records.
    pub foreign: u64,
    /// Lines that are not JSON.
    pub unreadable: u64,
    /// Expected events not here but in the dead-letter prefix.
    pub dead_lettered: usize,
}

impl Report {
    /// Compares every source with `expected` (the ledger). An event counts as delivered to a
    /// source when it is there or in `dead_letters` (it was accounted for, with a reason).
    /// `window_ms` groups the counts by event time.
    pub fn compare(
        expected: &Tally,
        sources: &[&Tally],
        dead_letters: Option<&Tally>,
        window_ms: i64,
    ) -> Self {
        let window_ms = window_ms.max(1);
        let mut findings = Vec::new();
        let mut summaries = BTreeMap::new();
        let mut windows: BTreeMap<i64, WindowCounts> = BTreeMap::new();
        for (key, (_, time)) in &expected.counts {
            let w = windows
                .entry(time.div_euclid(window_ms) * window_ms)
                .or_default();
            w.expected += 1;
            for src in sources {
                if src.count(key) > 0 {
                    *w.present.entry(src.name.clone()).or_default() += 1;
                }
            }
        }
        for src in sources {
            let mut missing = 0;
            let mut duplicated = 0;
            let mut dead = 0;
            for (key, (_, time)) in &expected.counts {
                let n = src.count(key);
                if n == 0 {
                    if dead_letters.is_some_and(|d| d.count(key) > 0) {
                        dead += 1;
                    } else {
                        missing += 1;
                        findings.push(finding("missing", src, key, *time, 0));
                    }
                } else if n > 1 {
                    duplicated += 1;
                    findings.push(finding("duplicated", src, key, *time, n));
                }
            }
            let mut unexpected = 0;
            for (key, (n, time)) in &src.counts {
                if !expected.counts.contains_key(key) {
                    unexpected += 1;
                    findings.push(finding("unexpected", src, key, *time, *n));
                }
            }
            summaries.insert(
                src.name.clone(),
                SourceSummary {
                    records: src.total(),
                    distinct: src.distinct(),
                    missing,
                    duplicated,
                    unexpected,
                    foreign: src.foreign,
                    unreadable: src.unreadable,
                    dead_lettered: dead,
                },
            );
        }
        findings.sort_by(|a, b| (&a.source, &a.time, &a.key).cmp(&(&b.source, &b.time, &b.key)));
        let windows = windows
            .into_iter()
            .map(|(start, mut w)| {
                w.window_start = authtrail_core::envelope::format_timestamp(start);
                w
            })
            .collect();
        let complete = findings.is_empty();
        Report {
            expected: expected.distinct(),
            sources: summaries,
            windows,
            findings,
            complete,
        }
    }

    /// A human summary: one line per source, then "complete" or the findings.
    pub fn render(&self, max_findings: usize) -> String {
        let mut out = String::new();
        out.push_str(&format!("expected events: {}\n", self.expected));
        for (name, s) in &self.sources {
            out.push_str(&format!(
                "  {name:<18} records {:>8}  distinct {:>8}  missing {:>6}  duplicated {:>6}  unexpected {:>6}  dead-lettered {:>6}  foreign {:>6}\n",
                s.records, s.distinct, s.missing, s.duplicated, s.unexpected, s.dead_lettered, s.foreign
            ));
        }
        if self.complete {
            out.push_str("result: complete (every expected event is in every source exactly once, or dead-lettered)\n");
        } else {
            out.push_str(&format!(
                "result: INCOMPLETE ({} findings)\n",
                self.findings.len()
            ));
            for f in self.findings.iter().take(max_findings) {
                out.push_str(&format!(
                    "  {:<10} {:<18} {} {} (count {})\n",
                    f.problem, f.source, f.time, f.key, f.count
                ));
            }
            if self.findings.len() > max_findings {
                out.push_str(&format!(
                    "  ... and {} more\n",
                    self.findings.len() - max_findings
                ));
            }
        }
        out
    }
}

fn finding(problem: &'static str, src: &Tally, key: &str, time: i64, count: u32) -> Finding {
    Finding {
        problem,
        source: src.name.clone(),
        key: key.to_string(),
        time: authtrail_core::envelope::format_timestamp(time),
        count,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::KeyPolicy;
    use crate::test_lines::{envelope, ledger_line};
    use serde_json::json;

    #[test]
    fn comparison_reports_missing_duplicated_and_unexpected_events() {
        let p = KeyPolicy::default();
        let mut ledger = Tally::new("ledger");
        let mut archive = Tally::new("archive");
        for i in 0..5 {
            ledger.add_line(
                &p,
                &ledger_line(
                    "user-event",
                    json!({"id": format!("e{i}"), "time": i * 1000}),
                ),
            );
        }
        // e0 twice, e1..e3 once, e4 missing, e9 unexpected.
        for i in [0, 0, 1, 2, 3, 9] {
            archive.add_line(
                &p,
                &envelope(
                    "user-event",
                    json!({"id": format!("e{i}"), "time": i * 1000}),
                ),
            );
        }
        archive.add_line(&p, br#"{"service":"ldap","method":"bind"}"#);
        archive.add_line(&p, b"not json");
        let r = Report::compare(&ledger, &[&archive], None, 60_000);
        assert!(!r.complete);
        let s = &r.sources["archive"];
        assert_eq!(
            (
                s.missing,
                s.duplicated,
                s.unexpected,
                s.foreign,
                s.unreadable
            ),
            (1, 1, 1, 1, 1)
        );
        let problems: Vec<_> = r
            .findings
            .iter()
            .map(|f| (f.problem, f.key.as_str()))
            .collect();
        assert!(problems.contains(&("missing", "user-event:e4")));
        assert!(problems.contains(&("duplicated", "user-event:e0")));
        assert!(problems.contains(&("unexpected", "user-event:e9")));
        assert!(r.render(10).contains("INCOMPLETE"));
    }

    #[test]
    fn dead_lettered_events_count_as_accounted_for() {
        let p = KeyPolicy::default();
        let mut ledger = Tally::new("ledger");
        let mut siem = Tally::new("siem");
        let mut dlq = Tally::new("dlq");
        ledger.add_line(
            &p,
            &ledger_line("admin-event", json!({"id": "a1", "time": 5})),
        );
        dlq.add_value(&p, &json!({"emitter": "siem", "status": 400, "record": {"eventType": "admin-event", "event": {"id": "a1", "time": 5}}}));
        let r = Report::compare(&ledger, &[&siem], Some(&dlq), 60_000);
        assert!(r.complete, "{}", r.render(5));
        assert_eq!(r.sources["siem"].dead_lettered, 1);
        siem.add_line(&p, &envelope("admin-event", json!({"id": "a1", "time": 5})));
        assert!(Report::compare(&ledger, &[&siem], None, 60_000).complete);
    }

    #[test]
    fn windows_group_expected_and_present_counts_by_event_time() {
        let p = KeyPolicy::default();
        let mut ledger = Tally::new("ledger");
        let mut archive = Tally::new("archive");
        for (id, t) in [("a", 0), ("b", 59_999), ("c", 60_000)] {
            ledger.add_line(&p, &ledger_line("user-event", json!({"id": id, "time": t})));
        }
        archive.add_line(&p, &envelope("user-event", json!({"id": "a", "time": 0})));
        let r = Report::compare(&ledger, &[&archive], None, 60_000);
        assert_eq!(r.windows.len(), 2);
        assert_eq!(r.windows[0].expected, 2);
        assert_eq!(r.windows[0].present.get("archive"), Some(&1));
        assert_eq!(r.windows[1].expected, 1);
        assert_eq!(r.windows[1].present.get("archive"), None);
    }
}
