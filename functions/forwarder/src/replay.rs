//! Replay: one emitter of a forwarder configuration, fed records from outside the stream (the
//! archive, a range of the stream read directly, dead letters) by the operator's
//! `authtrail-replay` command.
//!
//! The records go through the forwarder itself, built from the configuration reduced to the
//! named emitter ([`reduce`]): the same `include` / `exclude`, field filter, redaction, format,
//! buffering and retries as in the Lambda function. What changes for a replay:
//! - the quorum is that one emitter;
//! - no spool and no dead-letter bucket: records the emitter refuses for good go to an
//!   in-memory sink ([`MemoryDeadLetters`]) that the command reports;
//! - `retry.maxRecordAgeInSec` does not apply (replayed records are old by nature): a record
//!   still failing at the end of its retries is reported as not delivered;
//! - records that already went through the transform (dead letters hold the record as the
//!   emitter would have received it) are sent as they are ([`Shape::AsStored`]), never filtered
//!   or redacted twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::ForwarderError;
use crate::config::{EmitterType, ForwarderConfig, Quorum, err};
use crate::dlq::DeadLetterSink;
use crate::emit::BoxFuture;
use crate::forward::{Forwarder, InputRecord};
use crate::record::{self, Transform};

/// Dead letters kept in memory, for the command to report.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Vec<Vec<u8>>>,
}

impl MemoryDeadLetters {
    /// Takes the letters written so far, leaving none: one per single-letter object, one per
    /// line of a JSON-lines object.
    pub fn take(&self) -> Vec<Value> {
        let bodies = match self.letters.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let mut letters = Vec::new();
        for body in &bodies {
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => letters.push(v),
                Err(_) => letters.extend(
                    body.split(|b| *b == b'\n')
                        .filter_map(|line| serde_json::from_slice::<Value>(line).ok()),
                ),
            }
        }
        letters
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn put<'a>(&'a self, _key: String, body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>> {
        match self.letters.lock() {
            Ok(mut g) => g.push(body),
            Err(poisoned) => poisoned.into_inner().push(body),
        }
        Box::pin(async { Ok(()) })
    }
}

/// What the records given to [`Replayer::send`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Records as the stream carried them (archive, stream): filtered, redacted, formatted.
    Raw,
    /// Records already filtered and redacted for the emitter (dead letters): formatted only.
    AsStored,
}

/// What happened to one record given to [`Replayer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The emitter took it.
    Delivered,
    /// Not selected by the emitter's `include` / `exclude`: nothing to send.
    Filtered,
    /// Refused for good by the emitter (or malformed): what a dead letter would say.
    Refused {
        /// HTTP status or a short word (`malformed`, `too-large`, ...).
        status: String,
        /// Why.
        reason: String,
    },
    /// Still failing with a retryable error after the retry policy's attempts.
    NotDelivered,
}

impl RecordOutcome {
    /// Whether the record needs nothing more (delivered, or not meant for this emitter).
    pub fn is_done(&self) -> bool {
        matches!(self, RecordOutcome::Delivered | RecordOutcome::Filtered)
    }
}

/// Whether re-sending a record to an emitter of this type is harmless: only Elasticsearch /
/// OpenSearch, whose documents are keyed by the event id. Every other receiver stores a second
/// copy.
pub fn is_idempotent(kind: EmitterType) -> bool {
    kind == EmitterType::Elasticsearch
}

/// The configuration reduced to the emitter called `emitter`: only that emitter (it must be
/// configured and enabled), which is then the whole quorum; the retry age limit lifted.
pub fn reduce(config: &ForwarderConfig, emitter: &str) -> Result<ForwarderConfig, ForwarderError> {
    let Some(one) = config.emitters.iter().find(|e| e.name == emitter) else {
        let names: Vec<&str> = config.emitters.iter().map(|e| e.name.as_str()).collect();
        return Err(err(
            "emitter",
            format!(
                "no enabled emitter named {emitter:?} in the configuration (enabled: {})",
                names.join(", ")
            ),
        ));
    };
    let mut reduced = config.clone();
    reduced.emitters = vec![one.clone()];
    reduced.quorum = Quorum {
        all_of: vec![emitter.to_string()],
        at_least_one_of: Vec::new(),
    };
    // About 136 years: no replayed record is too old to retry.
    reduced.retry.max_record_age = Duration::from_secs(u64::from(u32::MAX));
    Ok(reduced)
}

/// One emitter of a forwarder configuration, ready to take replayed records.
pub struct Replayer {
    forwarder: Forwarder,
    letters: Arc<MemoryDeadLetters>,
    kind: EmitterType,
    name: String,
}

impl Replayer {
    /// Builds the forwarder of `config` reduced to `emitter` (secrets read, client built). `sdk`
    /// is needed for Secrets Manager ARNs and Firehose emitters.
    pub async fn build(
        config: &ForwarderConfig,
        emitter: &str,
        shape: Shape,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let reduced = reduce(config, emitter)?;
        let kind = reduced
            .emitters
            .first()
            .map(|e| e.kind)
            .ok_or_else(|| err("emitter", "no emitter left"))?;
        let letters = Arc::new(MemoryDeadLetters::default());
        let mut forwarder = crate::build(&reduced, sdk, letters.clone(), "replay/").await?;
        if shape == Shape::AsStored {
            forwarder.profiles = vec![Transform::identity()];
            forwarder.slots.iter_mut().for_each(|s| s.profile = 0);
        }
        Ok(Self {
            forwarder,
            letters,
            kind,
            name: emitter.to_string(),
        })
    }

    /// The emitter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The emitter's type.
    pub fn kind(&self) -> EmitterType {
        self.kind
    }

    /// Whether sending a record twice leaves one copy at the receiver ([`is_idempotent`]).
    pub fn is_idempotent(&self) -> bool {
        is_idempotent(self.kind)
    }

    /// Whether the emitter would be sent this record (it is a JSON object its `include` /
    /// `exclude` select); what `--dry-run` counts.
    pub fn selects(&self, data: &[u8]) -> bool {
        let Ok((_, class)) = record::parse_classify(data, 0) else {
            return false;
        };
        self.forwarder
            .slots
            .iter()
            .all(|s| s.selector.matches(class.names()))
    }

    /// Sends `records` (one request batch or more, as the emitter's buffering cuts them), with
    /// the configuration's retries, none past `deadline`. Returns one outcome per record, in
    /// order.
    pub async fn send(&self, records: &[InputRecord], deadline: Instant) -> Vec<RecordOutcome> {
        // Positions are the sequence numbers the forwarder reports back.
        let batch: Vec<InputRecord> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r = r.clone();
                r.source.sequence_number = i.to_string();
                r
            })
            .collect();
        let result = self.forwarder.process(&batch, deadline).await;
        let mut outcomes: Vec<RecordOutcome> = records
            .iter()
            .map(|r| {
                if self.selects(&r.data) {
                    RecordOutcome::Delivered
                } else {
                    RecordOutcome::Filtered
                }
            })
            .collect();
        for letter in self.letters.take() {
            let text = |k: &str| letter.get(k).and_then(Value::as_str).unwrap_or_default();
            if let Some(o) = position(text("sequenceNumber")).and_then(|i| outcomes.get_mut(i)) {
                *o = RecordOutcome::Refused {
                    status: text("status").to_string(),
                    reason: format!("{}: {}", text("reason"), text("response")),
                };
            }
        }
        for seq in &result.failures {
            if let Some(o) = position(seq).and_then(|i| outcomes.get_mut(i)) {
                *o = RecordOutcome::NotDelivered;
            }
        }
        // Never report more deliveries than the emitter counted: if the accounts disagree,
        // no record of the batch is claimed delivered (a second run sends them again).
        let counted: usize = result.emitters.iter().map(|(_, s)| s.delivered).sum();
        let claimed = outcomes
            .iter()
            .filter(|o| **o == RecordOutcome::Delivered)
            .count();
        if claimed > counted {
            for o in outcomes.iter_mut() {
                if *o == RecordOutcome::Delivered {
                    *o = RecordOutcome::NotDelivered;
                }
            }
        }
        outcomes
    }
}

fn position(seq: &str) -> Option<usize> {
    seq.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::record::Source;

    fn config() -> ForwarderConfig {
        ForwarderConfig::parse(
            r#"{"emitters": [
                {"name": "out", "type": "stdout", "include": ["LOGIN"]},
                {"name": "other", "type": "stdout"},
                {"name": "off", "type": "stdout", "enabled": false}],
                "emitToAllOf": ["other"],
                "redaction": {"mode": "mask", "fields": ["/event/ipAddress"]}}"#,
        )
        .unwrap()
    }

    fn input(data: &str) -> InputRecord {
        InputRecord {
            source: Source {
                stream: Arc::from("s"),
                shard: Arc::from("shard-1"),
                sequence_number: "49".into(),
                arrival_ms: 0,
            },
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reduce_keeps_only_the_named_emitter_and_makes_it_the_quorum() {
        let r = reduce(&config(), "out").unwrap();
        assert_eq!(r.emitters.len(), 1);
        assert_eq!(r.emitters[0].name, "out");
        assert_eq!(r.quorum.all_of, vec!["out".to_string()]);
        assert!(r.quorum.at_least_one_of.is_empty());
        assert!(r.retry.max_record_age > Duration::from_secs(100 * 365 * 86_400));
    }

    #[test]
    fn reduce_refuses_an_unknown_or_disabled_emitter_naming_the_enabled_ones() {
        for name in ["nope", "off"] {
            let e = reduce(&config(), name).err().unwrap().to_string();
            assert!(e.contains(name) && e.contains("out, other"), "{e}");
        }
    }

    #[test]
    fn memory_dead_letters_are_read_from_single_letter_and_json_lines_bodies() {
        let sink = MemoryDeadLetters::default();
        futures_block(sink.put("a".into(), b"{\n  \"sequenceNumber\": \"1\"\n}\n".to_vec()))
            .unwrap();
        futures_block(sink.put(
            "b".into(),
            b"{\"sequenceNumber\":\"2\"}\n{\"sequenceNumber\":\"3\"}\n".to_vec(),
        ))
        .unwrap();
        let seqs: Vec<String> = sink
            .take()
            .iter()
            .map(|l| l["sequenceNumber"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seqs, vec!["1", "2", "3"]);
        assert!(sink.take().is_empty());
    }

    fn futures_block<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn only_elasticsearch_is_idempotent() {
        assert!(is_idempotent(EmitterType::Elasticsearch));
        assert!(!is_idempotent(EmitterType::Http));
        assert!(!is_idempotent(EmitterType::SplunkHec));
        assert!(!is_idempotent(EmitterType::Syslog));
    }

    #[tokio::test]
    async fn send_reports_delivered_filtered_and_malformed_records_in_order() {
        let r = Replayer::build(&config(), "out", Shape::Raw, None)
            .await
            .unwrap();
        let records = [
            input(r#"{"eventType":"user-event","event":{"type":"LOGIN","ipAddress":"1"}}"#),
            input(r#"{"eventType":"user-event","event":{"type":"LOGOUT"}}"#),
            input("not json"),
        ];
        assert!(r.selects(&records[0].data));
        assert!(!r.selects(&records[1].data));
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = r.send(&records, deadline).await;
        assert_eq!(out[0], RecordOutcome::Delivered);
        assert_eq!(out[1], RecordOutcome::Filtered);
        assert!(matches!(&out[2], RecordOutcome::Refused { status, .. } if status == "malformed"));
    }

    #[tokio::test]
    async fn records_as_stored_are_not_transformed_again() {
        let raw = Replayer::build(&config(), "out", Shape::Raw, None)
            .await
            .unwrap();
        let stored = Replayer::build(&config(), "out", Shape::AsStored, None)
            .await
            .unwrap();
        assert_eq!(raw.forwarder.profiles.len(), 1);
        assert!(raw.forwarder.profiles[0].redactor.is_some());
        assert!(stored.forwarder.profiles[0].redactor.is_none());
        assert_eq!(stored.name(), "out");
        assert_eq!(stored.kind(), EmitterType::Stdout);
    }
}
