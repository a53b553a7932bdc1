//! The tallies the functions keep: the producer's in its checkpoint object ([`ProducerTally`],
//! saved with the cursor, so it moves exactly when the cursor does) and the forwarder's as one
//! log line per Kinesis invocation ([`ForwarderTally`], printed with the invocation's summary,
//! which CloudWatch Logs keeps whatever happens to the instance afterwards).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Digest;

/// The member that marks a forwarder tally log line (and the CloudWatch Logs filter term).
pub const TALLY_LINE_MARKER: &str = "authtrailTally";
/// The version of the tally formats.
pub const TALLY_VERSION: u32 = 1;

/// What the producer put into the stream, per minute of event time: each event once (the
/// tally is saved in the same conditional write as the cursor that moves past it).
///
/// ```json
/// {"since":28989806,"finalBefore":28989850,"minutes":{"28989806":[118,"9f0c..."],...}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerTally {
    /// Epoch minute from which on every put record is tallied (the tally began, or was pruned,
    /// there). Minutes before it are unknown.
    pub since: i64,
    /// Epoch minute before which the tally is final: every event with an earlier time that the
    /// producer will ever put is already in it (the oldest cursor minus the settle window).
    pub final_before: i64,
    /// Per epoch minute (as a decimal string key): the records put.
    #[serde(default)]
    pub minutes: BTreeMap<i64, Digest>,
}

/// What a tally says of a span of minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TallyFigure {
    /// The records of the span, final.
    Known(Digest),
    /// The span is not final yet (the producer has not read past it).
    Pending,
    /// The tally does not cover the span (it began or was pruned after its start).
    Unknown,
}

impl ProducerTally {
    /// A tally that begins at epoch minute `since`.
    pub fn starting_at(since: i64) -> Self {
        Self {
            since,
            final_before: since,
            minutes: BTreeMap::new(),
        }
    }

    /// Counts one record of epoch minute `minute` (records before `since` are not counted:
    /// their minutes are unknown anyway).
    pub fn add(&mut self, minute: i64, hash: u64) {
        if minute >= self.since {
            self.minutes.entry(minute).or_default().add(hash);
        }
    }

    /// Drops the minutes before `before` (and moves `since` there).
    pub fn prune(&mut self, before: i64) {
        if before > self.since {
            self.since = before;
            self.minutes = self.minutes.split_off(&before);
        }
    }

    /// The records of minutes `[from, to)`.
    pub fn figure(&self, from: i64, to: i64) -> TallyFigure {
        if from < self.since {
            return TallyFigure::Unknown;
        }
        if to > self.final_before {
            return TallyFigure::Pending;
        }
        let mut d = Digest::default();
        for (_, m) in self.minutes.range(from..to) {
            d += m;
        }
        TallyFigure::Known(d)
    }
}

/// What one Kinesis invocation of the forwarder finished: the records of its batch before the
/// first one it reported for retry (Lambda never sends those again), per minute of event time,
/// and per emitter what became of them. One JSON line on stdout per invocation.
///
/// ```json
/// {"authtrailTally":1,"stream":"s","shard":"shardId-000000000000","firstSeq":"4959...",
///  "lastSeq":"4959...","records":412,"undated":0,
///  "minutes":{"28989806":{"seen":[300,"..."],"envelopes":[290,"..."],
///    "emitters":{"splunk":{"delivered":[300,"..."]},"syslog":{"spooled":[300,"..."]}}}}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwarderTally {
    /// The format version ([`TALLY_VERSION`]); also the line's marker.
    #[serde(rename = "authtrailTally")]
    pub version: u32,
    /// The stream name.
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// Sequence number of the first record tallied.
    pub first_seq: String,
    /// Sequence number of the last record tallied.
    pub last_seq: String,
    /// Records tallied (dated and undated).
    pub records: u64,
    /// Records tallied without an event time.
    #[serde(default)]
    pub undated: u64,
    /// Per epoch minute (as a decimal string key).
    #[serde(default)]
    pub minutes: BTreeMap<i64, ForwarderMinute>,
}

/// The forwarder's tally of one minute of event time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwarderMinute {
    /// Every record finished.
    pub seen: Digest,
    /// The Contract 1 envelopes among them.
    #[serde(default, skip_serializing_if = "Digest::is_empty")]
    pub envelopes: Digest,
    /// Per emitter name.
    #[serde(default)]
    pub emitters: BTreeMap<String, Outcomes>,
}

/// What became of records at one emitter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    /// Delivered to the receiver.
    #[serde(default, skip_serializing_if = "Digest::is_empty")]
    pub delivered: Digest,
    /// Written to the emitter's spool (in custody; the redrive delivers them later).
    #[serde(default, skip_serializing_if = "Digest::is_empty")]
    pub spooled: Digest,
    /// Written to the dead-letter prefix (refused for good, too old, or the quorum went on
    /// without this emitter).
    #[serde(default, skip_serializing_if = "Digest::is_empty")]
    pub dead_lettered: Digest,
    /// Not selected by the emitter's `include` / `exclude`.
    #[serde(default, skip_serializing_if = "Digest::is_empty")]
    pub filtered: Digest,
}

impl Outcomes {
    /// Every record accounted for.
    pub fn total(&self) -> Digest {
        let mut d = self.delivered;
        d += &self.spooled;
        d += &self.dead_lettered;
        d += &self.filtered;
        d
    }

    /// Adds `other`'s records.
    pub fn merge(&mut self, other: &Outcomes) {
        self.delivered += &other.delivered;
        self.spooled += &other.spooled;
        self.dead_lettered += &other.dead_lettered;
        self.filtered += &other.filtered;
    }
}

impl ForwarderMinute {
    /// Adds `other`'s records.
    pub fn merge(&mut self, other: &ForwarderMinute) {
        self.seen += &other.seen;
        self.envelopes += &other.envelopes;
        for (name, o) in &other.emitters {
            self.emitters.entry(name.clone()).or_default().merge(o);
        }
    }
}

impl ForwarderTally {
    /// The line as printed (compact JSON, no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a tally from a log message: the line itself, the line after a text prefix, or a
    /// JSON log record whose `message` member is the line. `None` for other messages.
    pub fn from_log_message(message: &str) -> Option<Self> {
        if !message.contains(TALLY_LINE_MARKER) {
            return None;
        }
        let start = message.find('{')?;
        let text = message.get(start..)?.trim_end();
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        if value.get(TALLY_LINE_MARKER).is_some() {
            return serde_json::from_value(value).ok();
        }
        let inner = value.get("message").and_then(|m| m.as_str())?;
        Self::from_log_message(inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_producer_tally_knows_only_final_minutes_it_covers_whole() {
        let mut t = ProducerTally::starting_at(100);
        t.add(99, 5);
        t.add(100, 1);
        t.add(101, 2);
        t.add(103, 3);
        t.final_before = 103;
        assert_eq!(t.figure(99, 101), TallyFigure::Unknown);
        assert_eq!(t.figure(100, 104), TallyFigure::Pending);
        let TallyFigure::Known(d) = t.figure(100, 103) else {
            panic!("not known");
        };
        assert_eq!((d.count, d.sum), (2, 3));
        assert_eq!(t.figure(102, 103), TallyFigure::Known(Digest::default()));
        t.prune(101);
        assert_eq!(t.since, 101);
        assert_eq!(t.figure(100, 103), TallyFigure::Unknown);
        assert_eq!(t.minutes.len(), 2);
    }

    #[test]
    fn the_producer_tally_json_uses_minute_keys_and_camel_case() {
        let mut t = ProducerTally::starting_at(7);
        t.add(7, 1);
        t.final_before = 8;
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"since": 7, "finalBefore": 8, "minutes": {"7": [1, "0000000000000001"]}})
        );
        assert_eq!(serde_json::from_value::<ProducerTally>(v).unwrap(), t);
    }

    fn tally() -> ForwarderTally {
        let mut m = ForwarderMinute::default();
        m.seen.add(3);
        m.emitters
            .entry("splunk".into())
            .or_default()
            .delivered
            .add(3);
        ForwarderTally {
            version: TALLY_VERSION,
            stream: "s".into(),
            shard: "shardId-000000000000".into(),
            first_seq: "1".into(),
            last_seq: "1".into(),
            records: 1,
            undated: 0,
            minutes: BTreeMap::from([(28_989_806, m)]),
        }
    }

    #[test]
    fn a_forwarder_tally_line_is_found_bare_after_a_prefix_or_inside_a_json_log_record() {
        let t = tally();
        let line = t.to_line();
        assert!(line.starts_with(r#"{"authtrailTally":1,"#), "{line}");
        assert_eq!(ForwarderTally::from_log_message(&line), Some(t.clone()));
        assert_eq!(
            ForwarderTally::from_log_message(&format!("2025-02-12T19:27:50Z INFO {line}\n")),
            Some(t.clone())
        );
        let wrapped = serde_json::json!({"level": "INFO", "message": line}).to_string();
        assert_eq!(ForwarderTally::from_log_message(&wrapped), Some(t));
        assert_eq!(ForwarderTally::from_log_message(r#"{"Records":1}"#), None);
        assert_eq!(
            ForwarderTally::from_log_message("authtrailTally {broken"),
            None
        );
    }

    #[test]
    fn outcomes_add_up_to_the_records_they_account_for() {
        let mut o = Outcomes::default();
        o.delivered.add(1);
        o.spooled.add(2);
        o.dead_lettered.add(3);
        o.filtered.add(4);
        assert_eq!(o.total(), Digest { count: 4, sum: 10 });
        let mut m = ForwarderMinute::default();
        m.merge(&tally().minutes[&28_989_806]);
        m.merge(&tally().minutes[&28_989_806]);
        assert_eq!(m.seen.count, 2);
        assert_eq!(m.emitters["splunk"].delivered.count, 2);
    }
}
