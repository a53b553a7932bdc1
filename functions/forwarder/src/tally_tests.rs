//! The tally of an invocation, through [`Forwarder::process`] with scripted emitters: what each
//! emitter did per minute, only for the records before the first one reported for retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::tally::{Digest, record_hash};
use tokio::time::Instant;

use crate::config::{Buffering, RetryPolicy};
use crate::dlq::DeadLetterSink;
use crate::emit::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::filter::Selector;
use crate::forward::{Forwarder, InputRecord, Slot};
use crate::record::{Prepared, Source, Transform};

/// An emitter that answers every request with one outcome.
struct Fixed(&'static str, Outcome);

impl Emitter for Fixed {
    fn name(&self) -> &str {
        self.0
    }
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        let o = self.1.clone();
        Box::pin(async move { all(batch.len(), o) })
    }
}

/// A dead-letter store that takes everything.
struct Sink;

impl DeadLetterSink for Sink {
    fn put<'a>(
        &'a self,
        _key: String,
        _body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), crate::ForwarderError>> {
        Box::pin(async { Ok(()) })
    }
}

fn slot(name: &'static str, outcome: Outcome, include: &[&str]) -> Slot {
    Slot {
        emitter: Arc::new(Fixed(name, outcome)),
        selector: Selector::new(include.iter().map(|s| s.to_string()).collect(), vec![]),
        buffering: Buffering {
            max_batched_events: 10,
            max_size: 1 << 20,
            max_concurrent_requests: 2,
        },
        timeout: Duration::from_secs(5),
        profile: 0,
    }
}

fn forwarder(slots: Vec<Slot>, all_of: Vec<usize>) -> Forwarder {
    Forwarder {
        slots,
        profiles: vec![Transform::identity()],
        all_of,
        at_least_one_of: vec![],
        retry: RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            max_record_age: Duration::from_secs(3600),
        },
        dlq: Arc::new(Sink),
        dlq_prefix: "dlq/".into(),
        spool: None,
    }
}

/// A user event of minute `minute` (epoch minutes), type `t`.
fn event(id: u32, minute: i64, t: &str) -> String {
    format!(
        r#"{{"timestamp":"x","eventType":"user-event","event":{{"id":"e{id}","time":{},"type":"{t}"}}}}"#,
        minute * 60_000 + i64::from(id)
    )
}

fn rec(seq: u32, data: &str) -> InputRecord {
    InputRecord {
        source: Source {
            stream: "s".into(),
            shard: "shardId-000000000001".into(),
            sequence_number: seq.to_string(),
            arrival_ms: chrono::Utc::now().timestamp_millis(),
        },
        data: data.as_bytes().to_vec(),
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn digest(items: &[&str]) -> Digest {
    let mut d = Digest::default();
    items.iter().for_each(|s| d.add(record_hash(s.as_bytes())));
    d
}

#[tokio::test]
async fn each_emitter_accounts_for_every_finished_record_by_minute() {
    let f = forwarder(
        vec![
            slot("siem", Outcome::Delivered, &[]),
            slot("errors-only", Outcome::Delivered, &["LOGIN_ERROR"]),
            slot("picky", Outcome::Permanent(Failure::new("400", "no")), &[]),
        ],
        vec![0],
    );
    let (a, b, c) = (
        event(1, 100, "LOGIN"),
        event(2, 100, "LOGIN_ERROR"),
        event(3, 101, "LOGIN"),
    );
    let foxpass = r#"{"service":"ldap","method":"bind","timestamp":"1970-01-01T01:41:00Z"}"#;
    let undated = r#"{"service":"radius","method":"authorize"}"#;
    let batch = [
        rec(1, &a),
        rec(2, &b),
        rec(3, &c),
        rec(4, foxpass),
        rec(5, undated),
    ];
    let r = f.process(&batch, deadline()).await;
    assert!(r.failures.is_empty());
    let t = r.tally.expect("a tally");
    assert_eq!(
        (t.stream.as_str(), t.shard.as_str()),
        ("s", "shardId-000000000001")
    );
    assert_eq!((t.first_seq.as_str(), t.last_seq.as_str()), ("1", "5"));
    assert_eq!((t.records, t.undated), (5, 1));
    let m100 = &t.minutes[&100];
    assert_eq!(m100.seen, digest(&[&a, &b]));
    assert_eq!(m100.envelopes, digest(&[&a, &b]));
    assert_eq!(m100.emitters["siem"].delivered, digest(&[&a, &b]));
    assert_eq!(m100.emitters["errors-only"].delivered, digest(&[&b]));
    assert_eq!(m100.emitters["errors-only"].filtered, digest(&[&a]));
    assert_eq!(m100.emitters["picky"].dead_lettered, digest(&[&a, &b]));
    let m101 = &t.minutes[&101];
    assert_eq!(m101.seen, digest(&[&c, foxpass]));
    assert_eq!(m101.envelopes, digest(&[&c]));
    for (name, o) in &m101.emitters {
        assert_eq!(o.total(), m101.seen, "{name}");
    }
}

#[tokio::test]
async fn records_from_the_first_one_reported_for_retry_on_are_left_to_the_retry() {
    let f = forwarder(
        vec![
            slot("siem", Outcome::Delivered, &[]),
            slot(
                "required",
                Outcome::Retryable(Failure::new("503", "busy")),
                &["LOGIN_ERROR"],
            ),
        ],
        vec![0, 1],
    );
    let (a, b, c) = (
        event(1, 100, "LOGIN"),
        event(2, 100, "LOGIN_ERROR"),
        event(3, 100, "LOGIN"),
    );
    let r = f
        .process(&[rec(1, &a), rec(2, &b), rec(3, &c)], deadline())
        .await;
    assert_eq!(r.failures, vec!["2".to_string()]);
    let t = r.tally.expect("a tally");
    assert_eq!(
        (t.first_seq.as_str(), t.last_seq.as_str(), t.records),
        ("1", "1", 1)
    );
    assert_eq!(t.minutes[&100].seen, digest(&[&a]));
    assert_eq!(t.minutes[&100].emitters["required"].filtered, digest(&[&a]));
    // Nothing finished: no tally at all.
    let r = f.process(&[rec(2, &b), rec(3, &c)], deadline()).await;
    assert!(r.tally.is_none());
}

#[tokio::test]
async fn the_tally_line_reads_back_as_the_tally() {
    let f = forwarder(vec![slot("siem", Outcome::Delivered, &[])], vec![0]);
    let r = f
        .process(&[rec(9, &event(1, 5, "LOGIN"))], deadline())
        .await;
    let t = r.tally.unwrap();
    let line = t.to_line();
    assert!(line.starts_with(r#"{"authtrailTally":1,"#));
    assert_eq!(
        authtrail_core::tally::line::ForwarderTally::from_log_message(&line),
        Some(t)
    );
}
