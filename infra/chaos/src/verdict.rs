//! The verdict: per place lost, duplicated and dead-lettered, against the exit criteria: nothing
//! lost anywhere; no record twice in the stream or in the archive (a producer killed between
//! "accepted" and "saved" settles its put by reading the stream back); no duplicate at a receiver
//! that was up the whole time; at the others only repeats of the same event id, listed; every
//! malformed record dead-lettered with a reason by the forwarder and kept by the archiver; the
//! spool empty.

use std::collections::BTreeMap;

use authtrail_check::Report;
use serde_json::{Value, json};

use crate::account::{Place, Places};
use crate::foreign::Written;

/// What the run proved.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// All criteria hold.
    pub pass: bool,
    /// Lines of the accounting, per place.
    pub lines: Vec<String>,
    /// Why it failed (empty when it passed).
    pub failures: Vec<String>,
    /// The figures, for the JSON report.
    pub json: Value,
}

/// The facts about the run that the criteria need.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts {
    /// Producer kills that landed between "accepted" and "saved" (mid-PutRecords and
    /// mid-checkpoint): the puts the next run had to settle.
    pub kills_in_window: u64,
}

/// Receivers with a fault scheduled (splunk and webhook down, syslog stalled): duplicates of
/// the same event id allowed there, listed. Elasticsearch stays up the whole time.
const FAULTED: [&str; 3] = ["splunk", "webhook", "syslog"];

/// Judges the places.
pub fn judge(p: &Places, written: &Written, facts: RunFacts) -> Verdict {
    let mut sources: Vec<&authtrail_check::Tally> = vec![&p.stream.tally, &p.archive.tally];
    sources.extend(p.receivers.iter().map(|r| &r.tally));
    let report = Report::compare(&p.expected, &sources, Some(&p.dead_letters.tally), 60_000);
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    let mut places_json = BTreeMap::new();
    let all: Vec<&Place> = [&p.stream, &p.archive]
        .into_iter()
        .chain(p.receivers.iter())
        .collect();
    for place in all {
        let s = &report.sources[&place.name];
        let dups: Vec<(String, u32)> = report
            .findings
            .iter()
            .filter(|f| f.source == place.name && f.problem == "duplicated")
            .map(|f| (f.key.clone(), f.count))
            .collect();
        let unexpected = s.unexpected;
        let foreign_missing_ids: Vec<&String> = written
            .foreign
            .iter()
            .filter(|id| {
                !place.foreign.contains_key(*id) && !p.dead_letters.foreign.contains_key(*id)
            })
            .collect();
        let foreign_missing = foreign_missing_ids.len();
        // The ids lost here (at most 100 listed), foreign ones marked when the archiver's error
        // objects hold them.
        let mut lost_ids: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.source == place.name && f.problem == "missing")
            .map(|f| f.key.clone())
            .chain(foreign_missing_ids.iter().map(|id| {
                if p.archive_errors.foreign.contains_key(*id) {
                    format!("{id} (in the archive's errors/)")
                } else {
                    (*id).clone()
                }
            }))
            .collect();
        lost_ids.sort();
        lost_ids.truncate(100);
        let foreign_dups: Vec<(String, u32)> = place
            .foreign
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        let lost = s.missing + foreign_missing;
        if lost > 0 || unexpected > 0 {
            failures.push(format!(
                "{}: {lost} lost, {unexpected} not made at the IdP",
                place.name
            ));
        }
        let extra_copies: u64 = dups.iter().map(|(_, n)| u64::from(*n) - 1).sum::<u64>()
            + foreign_dups
                .iter()
                .map(|(_, n)| u64::from(*n) - 1)
                .sum::<u64>();
        match place.name.as_str() {
            "stream" => {
                if extra_copies > 0 || !foreign_dups.is_empty() {
                    failures.push(format!(
                        "stream: {extra_copies} extra copies: records written twice (the producer settles a put interrupted by a kill by reading the stream back; {} kills landed between accepted and saved)",
                        facts.kills_in_window
                    ));
                }
            }
            "archive" => {
                if extra_copies > 0 {
                    failures.push(format!(
                        "archive: {} events archived more than once ({extra_copies} extra copies)",
                        dups.len() + foreign_dups.len()
                    ));
                }
            }
            name if FAULTED.contains(&name) => {}
            name => {
                if extra_copies > 0 {
                    failures.push(format!(
                        "{name}: {extra_copies} duplicates at a receiver that was up the whole time"
                    ));
                }
            }
        }
        lines.push(format!(
            "  {:<10} records {:>8}  distinct {:>8}  foreign {:>6}  lost {:>4}  duplicated {:>5} (extra copies {:>5})  dead-lettered {:>5}",
            place.name,
            s.records,
            s.distinct,
            place.foreign.len(),
            lost,
            dups.len() + foreign_dups.len(),
            extra_copies,
            s.dead_lettered,
        ));
        let mut dup_ids: Vec<String> = dups.iter().map(|(k, _)| k.clone()).collect();
        dup_ids.extend(foreign_dups.iter().map(|(k, _)| k.clone()));
        dup_ids.sort();
        places_json.insert(
            place.name.clone(),
            json!({"records": s.records, "distinct": s.distinct, "foreign": place.foreign.len(),
                   "lost": lost, "duplicated": dup_ids.len(), "extraCopies": extra_copies,
                   "deadLettered": s.dead_lettered, "duplicatedIds": dup_ids,
                   "lostIds": lost_ids}),
        );
    }
    let (malformed_line, malformed_json) = judge_malformed(p, written, &mut failures);
    lines.push(malformed_line);
    if p.spool_left > 0 {
        failures.push(format!("spool: {} objects left", p.spool_left));
    }
    lines.push(format!("  spool      objects left {}", p.spool_left));
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for r in p.dead_letters.malformed.values() {
        *reasons.entry(short_reason(r)).or_default() += 1;
    }
    let dead_json = json!({
        "events": p.dead_letters.tally.total(),
        "foreign": p.dead_letters.foreign.len(),
        "malformed": p.dead_letters.malformed.len(),
        "reasons": reasons,
    });
    lines.push(format!(
        "  dead letters: {} MPAS events, {} foreign, {} malformed; reasons {:?}",
        p.dead_letters.tally.total(),
        p.dead_letters.foreign.len(),
        p.dead_letters.malformed.len(),
        reasons
    ));
    Verdict {
        pass: failures.is_empty(),
        lines,
        json: json!({"expected": p.expected.distinct(), "foreignWritten": written.foreign.len(),
                     "malformedWritten": written.malformed.len(), "places": places_json,
                     "malformed": malformed_json, "deadLetters": dead_json,
                     "spoolLeft": p.spool_left, "failures": failures}),
        failures,
    }
}

/// Every malformed record written must be dead-lettered by the forwarder with a reason, kept
/// by the archiver with a reason, and delivered nowhere.
fn judge_malformed(p: &Places, written: &Written, failures: &mut Vec<String>) -> (String, Value) {
    let reasoned = |place: &Place, id: &String| {
        place
            .malformed
            .get(id)
            .is_some_and(|r| !r.trim().is_empty())
    };
    let not_dead = written
        .malformed
        .iter()
        .filter(|id| !reasoned(&p.dead_letters, id))
        .count();
    let not_kept = written
        .malformed
        .iter()
        .filter(|id| !reasoned(&p.archive_errors, id))
        .count();
    let delivered: usize = p.receivers.iter().map(|r| r.malformed.len()).sum();
    if not_dead > 0 || not_kept > 0 || delivered > 0 {
        failures.push(format!(
            "malformed: {not_dead} not dead-lettered with a reason, {not_kept} not in the archive's errors with a reason, {delivered} delivered"
        ));
    }
    (
        format!(
            "  malformed  written {:>6}  dead-lettered with reason {:>6}  in archive errors {:>6}  delivered {delivered}",
            written.malformed.len(),
            written.malformed.len() - not_dead,
            written.malformed.len() - not_kept
        ),
        json!({"written": written.malformed.len(), "notDeadLettered": not_dead,
               "notInArchiveErrors": not_kept, "delivered": delivered}),
    )
}

/// The reason without record-specific detail (for counting by reason).
fn short_reason(r: &str) -> String {
    r.split([':', '(']).next().unwrap_or(r).trim().to_string()
}
