//! Accounting for an authtrail deployment: did every event arrive, once?
//!
//! Sources of records are read into [`Tally`]s keyed by event identity: the identity provider's
//! own record (a ledger of events as served by its API: the MPAS simulator's `/sim/ledger`, or
//! an export), the S3 archive (Contract 2 objects), each SIEM's received sample, and the
//! dead-letter prefix. [`Report::compare`] then says, per time window and event by event, what
//! is missing or duplicated where.
//!
//! Identity: `{eventType}:{event.id}` when the event has an `id` (Keycloak 26.2+); otherwise a
//! SHA-256 of the event with the redacted fields removed (`{eventType}#{hex}`), so an unredacted
//! ledger entry and its redacted archive copy get the same key. Records that are not authtrail
//! envelopes (other producers' JSON) are counted as `foreign` and not matched.
//!
//! The `authtrail-check` binary's command line is [`cli`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod cli;
mod error;
pub mod sources;

pub use error::CheckError;

/// The fields (JSON pointers into the Keycloak event) left out of the content hash: the
/// documented default redactions of both event kinds, plus `id`.
pub const DEFAULT_HASH_IGNORE: &[&str] = &[
    "/id",
    "/ipAddress",
    "/details/username",
    "/authDetails/ipAddress",
    "/representation",
];

/// How event identities are computed.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    ignore: Vec<Vec<String>>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_HASH_IGNORE.iter().map(|s| s.to_string()))
    }
}

impl KeyPolicy {
    /// `ignore`: JSON pointers into the event to leave out of the content hash.
    pub fn new(ignore: impl IntoIterator<Item = String>) -> Self {
        let ignore = ignore
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix('/').map(|rest| {
                    rest.split('/')
                        .map(|t| t.replace("~1", "/").replace("~0", "~"))
                        .collect()
                })
            })
            .collect();
        Self { ignore }
    }

    /// The identity of an event of kind `kind` (`user-event` / `admin-event`).
    pub fn key(&self, kind: &str, event: &Value) -> String {
        if let Some(id) = event.get("id").and_then(Value::as_str) {
            return format!("{kind}:{id}");
        }
        let mut copy = event.clone();
        for path in &self.ignore {
            remove_path(&mut copy, path);
        }
        let digest = Sha256::digest(copy.to_string().as_bytes());
        format!("{kind}#{}", hex::encode(digest))
    }
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for token in parents {
        cur = match cur.get_mut(token.as_str()) {
            Some(next) => next,
            None => return,
        };
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last.as_str());
    }
}

/// What one source holds: per identity, how many times and when.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub name: String,
    counts: HashMap<String, (u32, i64)>,
    /// Records that are JSON but not authtrail envelopes (other producers).
    pub foreign: u64,
    /// Lines that are not JSON at all.
    pub unreadable: u64,
}

impl Tally {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn add(&mut self, key: String, time_ms: i64) {
        let entry = self.counts.entry(key).or_insert((0, time_ms));
        entry.0 += 1;
    }

    /// Adds one record line: an envelope `{"timestamp","eventType","event"}`, a ledger entry
    /// `{"kind","event",...}`, or an object carrying an envelope in a `msg`/`event` string field
    /// (syslog and HEC samples).
    pub fn add_line(&mut self, policy: &KeyPolicy, line: &[u8]) {
        let line = trim_ascii(line);
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => self.add_value(policy, &v),
            Err(_) => self.unreadable += 1,
        }
    }

    pub fn add_value(&mut self, policy: &KeyPolicy, v: &Value) {
        if let Some((kind, event)) = envelope_parts(v) {
            let time = event.get("time").and_then(Value::as_i64).unwrap_or(0);
            self.add(policy.key(kind, event), time);
            return;
        }
        // A wrapper whose message is an envelope (syslog JSON, HEC event, ES source).
        for field in ["msg", "message", "event", "_source", "source", "record"] {
            match v.get(field) {
                Some(Value::String(s)) => {
                    if let Ok(inner) = serde_json::from_str::<Value>(s)
                        && envelope_parts(&inner).is_some()
                    {
                        return self.add_value(policy, &inner);
                    }
                }
                Some(inner @ Value::Object(_)) if envelope_parts(inner).is_some() => {
                    return self.add_value(policy, inner);
                }
                _ => {}
            }
        }
        self.foreign += 1;
    }

    /// Reads JSON lines from a reader.
    pub fn read_lines(&mut self, policy: &KeyPolicy, reader: impl Read) -> std::io::Result<()> {
        let mut reader = std::io::BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            self.add_line(policy, &buf);
        }
    }

    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    pub fn total(&self) -> u64 {
        self.counts.values().map(|(n, _)| u64::from(*n)).sum()
    }

    /// A tally with each distinct event of this one once, under another name.
    pub fn distinct_copy(&self, name: &str) -> Tally {
        Tally {
            name: name.to_string(),
            counts: self
                .counts
                .iter()
                .map(|(k, (_, t))| (k.clone(), (1, *t)))
                .collect(),
            foreign: 0,
            unreadable: 0,
        }
    }

    pub fn count(&self, key: &str) -> u32 {
        self.counts.get(key).map_or(0, |(n, _)| *n)
    }
}

/// `(eventType, event)` of an envelope or a ledger entry.
fn envelope_parts(v: &Value) -> Option<(&str, &Value)> {
    let event = v.get("event").filter(|e| e.is_object())?;
    let kind = v
        .get("eventType")
        .or_else(|| v.get("kind"))
        .and_then(Value::as_str)
        .filter(|k| *k == "user-event" || *k == "admin-event")?;
    Some((kind, event))
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    s
}

/// One event that is not where it should be.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// `missing`, `duplicated` or `unexpected`.
    pub problem: &'static str,
    /// The source where it is missing or duplicated.
    pub source: String,
    pub key: String,
    pub time: String,
    pub count: u32,
}

/// Counts of one time window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowCounts {
    pub window_start: String,
    pub expected: u64,
    /// Per source: distinct events present.
    pub present: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub expected: usize,
    pub sources: BTreeMap<String, SourceSummary>,
    pub windows: Vec<WindowCounts>,
    pub findings: Vec<Finding>,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    pub records: u64,
    pub distinct: usize,
    pub missing: usize,
    pub duplicated: usize,
    pub unexpected: usize,
    pub foreign: u64,
    pub unreadable: u64,
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
    use super::*;
    use serde_json::json;

    fn ledger_line(kind: &str, event: Value) -> Vec<u8> {
        json!({"seq": 0, "kind": kind, "id": "x", "time": event["time"], "event": event})
            .to_string()
            .into_bytes()
    }

    fn envelope(kind: &str, event: Value) -> Vec<u8> {
        json!({"timestamp": "t", "eventType": kind, "event": event})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn events_with_ids_match_by_kind_and_id_whatever_the_redaction() {
        let p = KeyPolicy::default();
        let a = p.key("user-event", &json!({"id": "e1", "ipAddress": "10.0.0.1"}));
        let b = p.key(
            "user-event",
            &json!({"id": "e1", "ipAddress": "<redacted>"}),
        );
        assert_eq!(a, b);
        assert_ne!(a, p.key("admin-event", &json!({"id": "e1"})));
    }

    #[test]
    fn events_without_ids_match_by_content_minus_redacted_fields() {
        let p = KeyPolicy::default();
        let raw = json!({"time": 1, "type": "LOGIN", "ipAddress": "10.0.0.1", "details": {"username": "alice", "auth_method": "x"}});
        let red = json!({"time": 1, "type": "LOGIN", "ipAddress": "<redacted>", "details": {"username": "<redacted>", "auth_method": "x"}});
        assert_eq!(p.key("user-event", &raw), p.key("user-event", &red));
        let other = json!({"time": 2, "type": "LOGIN", "ipAddress": "10.0.0.1", "details": {"username": "alice", "auth_method": "x"}});
        assert_ne!(p.key("user-event", &raw), p.key("user-event", &other));
    }

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
    fn wrapped_envelopes_in_syslog_or_hec_samples_are_unwrapped() {
        let p = KeyPolicy::default();
        let mut t = Tally::new("syslog");
        let env =
            String::from_utf8(envelope("user-event", json!({"id": "e1", "time": 1}))).unwrap();
        t.add_value(&p, &json!({"msg": env, "severity": "info"}));
        t.add_value(&p, &json!({"time": 1, "event": {"eventType": "user-event", "event": {"id": "e2", "time": 1}}}));
        assert_eq!(t.distinct(), 2);
        assert_eq!(t.foreign, 0);
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
