//! The invocation's steps together, with fake emitters and an in-memory dead-letter store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ForwarderError;
use crate::emit::{BoxFuture, Outcome, all};
use crate::record::Prepared;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An emitter that answers from a script: for attempt `k` (0-based) `script[k]`, then the
/// last entry forever. Records what it received.
struct Fake {
    name: String,
    script: Vec<Outcome>,
    calls: AtomicUsize,
    got: Mutex<Vec<String>>,
}

impl Fake {
    fn new(name: &str, script: Vec<Outcome>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            script,
            calls: AtomicUsize::new(0),
            got: Mutex::new(Vec::new()),
        })
    }
    fn received(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

impl Emitter for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        let k = self.calls.fetch_add(1, Ordering::SeqCst);
        let o = self
            .script
            .get(k)
            .or(self.script.last())
            .cloned()
            .unwrap_or(Outcome::Delivered);
        if o == Outcome::Delivered {
            self.got
                .lock()
                .unwrap()
                .extend(batch.iter().map(|p| p.json.clone()));
        }
        Box::pin(async move { all(batch.len(), o) })
    }
}

#[derive(Default)]
pub(super) struct MemDlq {
    pub(super) objects: Mutex<HashMap<String, Value>>,
    fail: bool,
}

impl DeadLetterSink for MemDlq {
    fn put<'a>(&'a self, key: String, body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async move {
            if self.fail {
                return Err(ForwarderError::DeadLetterNotWritten {
                    bucket: "memory".into(),
                    key,
                    detail: "s3 down".into(),
                });
            }
            // One entry per letter (`{key}#{line}`): objects hold JSON lines.
            let mut objects = self.objects.lock().unwrap();
            assert!(
                !objects.keys().any(|k| k.starts_with(&format!("{key}#"))),
                "{key} written twice"
            );
            for (n, line) in body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                objects.insert(format!("{key}#{n}"), serde_json::from_slice(line).unwrap());
            }
            Ok(())
        })
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        max_record_age: Duration::from_secs(3600),
    }
}

fn slot(e: Arc<Fake>, include: &[&str]) -> Slot {
    Slot {
        emitter: e,
        selector: Selector::new(include.iter().map(|s| s.to_string()).collect(), vec![]),
        buffering: Buffering {
            max_batched_events: 2,
            max_size: 1 << 20,
            max_concurrent_requests: 4,
        },
        timeout: Duration::from_secs(5),
        profile: 0,
    }
}

fn forwarder(
    slots: Vec<Slot>,
    all_of: Vec<usize>,
    one_of: Vec<usize>,
    dlq: Arc<MemDlq>,
) -> Forwarder {
    Forwarder {
        slots,
        profiles: vec![Transform::identity()],
        all_of,
        at_least_one_of: one_of,
        retry: fast_retry(),
        dlq,
        dlq_prefix: "dlq/".into(),
        spool: None,
    }
}

pub(super) fn rec(seq: u32, data: &str, age_ms: i64) -> InputRecord {
    InputRecord {
        source: Source {
            stream: "s".into(),
            shard: "shardId-000000000000".into(),
            sequence_number: seq.to_string(),
            arrival_ms: chrono::Utc::now().timestamp_millis() - age_ms,
        },
        data: data.as_bytes().to_vec(),
    }
}

pub(super) fn login(t: &str) -> String {
    format!(
        r#"{{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{{"id":"{t}-id","type":"{t}"}}}}"#
    )
}

pub(super) fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn retryable() -> Outcome {
    Outcome::Retryable(Failure::new("503", "busy"))
}

#[tokio::test]
async fn all_records_delivered_gives_no_failures_and_chunks_follow_buffering() {
    let a = Fake::new("a", vec![Outcome::Delivered]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
    let recs: Vec<_> = (1..=5).map(|i| rec(i, &login("LOGIN"), 0)).collect();
    let r = f.process(&recs, deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(a.received().len(), 5);
    // maxBatchedEvents 2: 3 requests for 5 records.
    assert_eq!(a.calls.load(Ordering::SeqCst), 3);
    assert_eq!(r.emitters[0].1.delivered, 5);
    assert!(dlq.objects.lock().unwrap().is_empty());
}

#[tokio::test]
async fn retryable_failures_are_retried_and_then_delivered() {
    let a = Fake::new("a", vec![retryable(), retryable(), Outcome::Delivered]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
    let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(r.emitters[0].1.retried, 2);
    assert_eq!(a.received().len(), 1);
}

#[tokio::test]
async fn a_required_emitter_that_stays_down_reports_the_records_for_lambda_to_retry() {
    let up = Fake::new("up", vec![Outcome::Delivered]);
    let down = Fake::new("down", vec![retryable()]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(
        vec![slot(up.clone(), &[]), slot(down.clone(), &[])],
        vec![0, 1],
        vec![],
        dlq.clone(),
    );
    let r = f
        .process(
            &[rec(7, &login("LOGIN"), 0), rec(8, &login("LOGIN"), 0)],
            deadline(),
        )
        .await;
    assert_eq!(r.failures, vec!["7", "8"]);
    assert_eq!(
        down.calls.load(Ordering::SeqCst),
        3,
        "max_attempts per invocation"
    );
    assert!(
        dlq.objects.lock().unwrap().is_empty(),
        "still retryable: no dead letter yet"
    );
}

#[tokio::test]
async fn retryable_failures_past_the_record_age_limit_are_dead_lettered_and_done() {
    let down = Fake::new("down", vec![retryable()]);
    let dlq = Arc::new(MemDlq::default());
    let mut f = forwarder(vec![slot(down, &[])], vec![0], vec![], dlq.clone());
    f.retry.max_record_age = Duration::from_secs(60);
    let r = f
        .process(
            &[rec(1, &login("LOGIN"), 120_000), rec(2, &login("LOGIN"), 0)],
            deadline(),
        )
        .await;
    assert_eq!(r.failures, vec!["2"]);
    let objects = dlq.objects.lock().unwrap();
    assert_eq!(objects.len(), 1);
    let (key, v) = objects.iter().next().unwrap();
    assert!(
        key.starts_with("dlq/")
            && key.contains("/s-shardId-000000000000-1-")
            && key.ends_with("-0.jsonl#0"),
        "{key}"
    );
    assert_eq!(v["status"], "503");
    assert_eq!(v["emitter"], "down");
    assert!(v["reason"].as_str().unwrap().contains("age limit"));
    assert_eq!(v["record"]["event"]["type"], "LOGIN");
}

#[tokio::test]
async fn permanent_refusals_are_dead_lettered_and_count_as_taken() {
    let bad = Fake::new(
        "bad",
        vec![Outcome::Permanent(Failure::new("400", "invalid event"))],
    );
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(vec![slot(bad.clone(), &[])], vec![0], vec![], dlq.clone());
    let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(
        bad.calls.load(Ordering::SeqCst),
        1,
        "no retry on a permanent refusal"
    );
    let objects = dlq.objects.lock().unwrap();
    let v = objects.values().next().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["response"].as_str()),
        (Some("400"), Some("invalid event"))
    );
}

#[tokio::test]
async fn at_least_one_of_is_met_by_one_emitter_and_the_other_failure_is_dead_lettered() {
    let must = Fake::new("must", vec![Outcome::Delivered]);
    let one = Fake::new("one", vec![Outcome::Delivered]);
    let two = Fake::new("two", vec![retryable()]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(
        vec![slot(must, &[]), slot(one, &[]), slot(two, &[])],
        vec![0],
        vec![1, 2],
        dlq.clone(),
    );
    let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
    assert!(r.failures.is_empty());
    let objects = dlq.objects.lock().unwrap();
    assert_eq!(objects.len(), 1);
    let v = objects.values().next().unwrap();
    assert_eq!(v["emitter"], "two");
    assert!(v["reason"].as_str().unwrap().contains("quorum"));
}

#[tokio::test]
async fn at_least_one_of_with_every_member_down_is_not_done() {
    let must = Fake::new("must", vec![Outcome::Delivered]);
    let one = Fake::new("one", vec![retryable()]);
    let two = Fake::new("two", vec![retryable()]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(
        vec![slot(must, &[]), slot(one, &[]), slot(two, &[])],
        vec![0],
        vec![1, 2],
        dlq.clone(),
    );
    let r = f.process(&[rec(1, &login("LOGIN"), 0)], deadline()).await;
    assert_eq!(r.failures, vec!["1"]);
}

#[tokio::test]
async fn include_lists_select_records_and_unselected_records_count_as_taken() {
    let errors_only = Fake::new("errors", vec![retryable()]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(
        vec![slot(errors_only.clone(), &["LOGIN_ERROR"])],
        vec![0],
        vec![],
        dlq.clone(),
    );
    let r = f
        .process(
            &[rec(1, &login("LOGIN"), 0), rec(2, &login("LOGIN_ERROR"), 0)],
            deadline(),
        )
        .await;
    // Only the LOGIN_ERROR record was sent (and failed); the LOGIN one is done.
    assert_eq!(r.failures, vec!["2"]);
    assert_eq!(r.emitters[0].1.skipped, 1);
}

#[tokio::test]
async fn malformed_records_are_dead_lettered_with_their_bytes_and_never_block() {
    let a = Fake::new("a", vec![Outcome::Delivered]);
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(vec![slot(a.clone(), &[])], vec![0], vec![], dlq.clone());
    let r = f
        .process(
            &[rec(1, "not json", 0), rec(2, &login("LOGIN"), 0)],
            deadline(),
        )
        .await;
    assert!(r.failures.is_empty());
    assert_eq!(r.malformed, 1);
    assert_eq!(a.received().len(), 1);
    let objects = dlq.objects.lock().unwrap();
    let (key, v) = objects.iter().next().unwrap();
    assert!(key.contains("-shardId-000000000000-1-"), "{key}");
    assert_eq!(v["emitter"], "malformed");
    assert_eq!(v["dataBase64"], "bm90IGpzb24=");
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_leaves_the_record_not_done() {
    let bad = Fake::new("bad", vec![Outcome::Permanent(Failure::new("400", "no"))]);
    let dlq = Arc::new(MemDlq {
        fail: true,
        ..Default::default()
    });
    let f = forwarder(vec![slot(bad, &[])], vec![0], vec![], dlq);
    let r = f
        .process(&[rec(1, &login("LOGIN"), 0), rec(2, "{", 0)], deadline())
        .await;
    assert_eq!(r.failures, vec!["1", "2"]);
    assert_eq!(r.dead_letter_errors, 2);
}

#[tokio::test]
async fn retries_stop_before_the_deadline() {
    let slow = Fake::new(
        "slow",
        vec![Outcome::Retryable(Failure {
            status: "429".into(),
            text: "later".into(),
            retry_after: Some(Duration::from_secs(60)),
        })],
    );
    let dlq = Arc::new(MemDlq::default());
    let f = forwarder(vec![slot(slow.clone(), &[])], vec![0], vec![], dlq);
    let r = f
        .process(
            &[rec(1, &login("LOGIN"), 0)],
            Instant::now() + Duration::from_secs(3),
        )
        .await;
    assert_eq!(r.failures, vec!["1"]);
    assert_eq!(
        slow.calls.load(Ordering::SeqCst),
        1,
        "a 60 s Retry-After does not fit in the invocation"
    );
}

/// Refuses as a whole (400) every request holding a record whose text contains `POISON`;
/// takes the others. Counts requests and the most requests in flight at once.
struct Picky {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    got: Mutex<Vec<usize>>,
    outcome: Outcome,
}

impl Picky {
    fn new(outcome: Outcome) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            got: Mutex::new(Vec::new()),
            outcome,
        })
    }
}

impl Emitter for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if batch.iter().any(|p| p.json.contains("POISON")) {
                return all(batch.len(), self.outcome.clone());
            }
            self.got
                .lock()
                .unwrap()
                .extend(batch.iter().map(|p| p.index));
            all(batch.len(), Outcome::Delivered)
        })
    }
}

fn picky_slot(e: Arc<Picky>, batch: usize, concurrency: usize) -> Slot {
    Slot {
        emitter: e,
        selector: Selector::default(),
        buffering: Buffering {
            max_batched_events: batch,
            max_size: 1 << 20,
            max_concurrent_requests: concurrency,
        },
        timeout: Duration::from_secs(5),
        profile: 0,
    }
}

fn picky_forwarder(slot: Slot, dlq: Arc<MemDlq>) -> Forwarder {
    Forwarder {
        slots: vec![slot],
        profiles: vec![Transform::identity()],
        all_of: vec![0],
        at_least_one_of: vec![],
        retry: fast_retry(),
        dlq,
        dlq_prefix: "dlq/".into(),
        spool: None,
    }
}

#[tokio::test]
async fn a_request_refused_as_a_whole_is_split_until_only_the_bad_record_is_dead_lettered() {
    let e = Picky::new(Outcome::Rejected(Failure::new("400", "bad event in batch")));
    let dlq = Arc::new(MemDlq::default());
    let f = picky_forwarder(picky_slot(e.clone(), 500, 4), dlq.clone());
    let recs: Vec<_> = (1..=64)
        .map(|i| rec(i, &login(if i == 23 { "POISON" } else { "LOGIN" }), 0))
        .collect();
    let r = f.process(&recs, deadline()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let mut got = e.got.lock().unwrap().clone();
    got.sort_unstable();
    let expected: Vec<usize> = (0..64).filter(|&i| i != 22).collect();
    assert_eq!(got, expected, "every other record delivered exactly once");
    assert_eq!(r.emitters[0].1.delivered, 63);
    assert_eq!(r.emitters[0].1.dead_lettered, 1);
    // 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1: one refused request per level, two sent per split.
    assert_eq!(e.calls.load(Ordering::SeqCst), 1 + 2 * 6);
    let objects = dlq.objects.lock().unwrap();
    assert_eq!(objects.len(), 1);
    let (key, v) = objects.iter().next().unwrap();
    assert!(key.contains("-23-") && key.ends_with(".jsonl#0"), "{key}");
    assert_eq!(v["emitter"], "picky");
    assert_eq!(
        (v["status"].as_str(), v["response"].as_str()),
        (Some("400"), Some("bad event in batch"))
    );
}

#[tokio::test]
async fn a_permanent_refusal_that_is_not_about_the_content_is_not_split() {
    let e = Picky::new(Outcome::Permanent(Failure::new("403", "forbidden")));
    let dlq = Arc::new(MemDlq::default());
    let f = picky_forwarder(picky_slot(e.clone(), 500, 4), dlq.clone());
    let recs: Vec<_> = (1..=8)
        .map(|i| rec(i, &login(if i == 3 { "POISON" } else { "LOGIN" }), 0))
        .collect();
    let r = f.process(&recs, deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(e.calls.load(Ordering::SeqCst), 1);
    assert_eq!(dlq.objects.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn requests_of_one_emitter_run_concurrently_up_to_max_concurrent_requests() {
    for limit in [1, 3] {
        let e = Picky::new(Outcome::Delivered);
        let dlq = Arc::new(MemDlq::default());
        let f = picky_forwarder(picky_slot(e.clone(), 2, limit), dlq);
        let recs: Vec<_> = (1..=20).map(|i| rec(i, &login("LOGIN"), 0)).collect();
        let r = f.process(&recs, deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(e.calls.load(Ordering::SeqCst), 10);
        assert_eq!(e.max_in_flight.load(Ordering::SeqCst), limit);
        assert_eq!(e.got.lock().unwrap().len(), 20);
    }
}

#[tokio::test]
async fn retryable_failures_of_concurrent_requests_report_the_lowest_sequence_number_first() {
    let e = Picky::new(retryable());
    let dlq = Arc::new(MemDlq::default());
    let f = picky_forwarder(picky_slot(e.clone(), 2, 4), dlq);
    let recs: Vec<_> = (1..=10)
        .map(|i| rec(i, &login(if i % 3 == 0 { "POISON" } else { "LOGIN" }), 0))
        .collect();
    let r = f.process(&recs, deadline()).await;
    // Chunks [1,2] [3,4] [5,6] [7,8] [9,10]: those holding 3, 6 and 9 fail every attempt.
    assert_eq!(r.failures, vec!["3", "4", "5", "6", "9", "10"]);
}

/// A real HTTP receiver (axum on loopback) that refuses with 400 any NDJSON body holding a
/// `POISON` line and records the lines of the bodies it accepts.
#[tokio::test]
async fn the_http_emitter_bisects_a_400_from_a_real_receiver() {
    use axum::{Router, http::StatusCode, routing::post};
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let (acc, reqs) = (accepted.clone(), requests.clone());
    let app = Router::new().route(
        "/ingest",
        post(move |body: String| {
            let (acc, reqs) = (acc.clone(), reqs.clone());
            async move {
                reqs.fetch_add(1, Ordering::SeqCst);
                if body.contains("POISON") {
                    return (StatusCode::BAD_REQUEST, "invalid event".to_string());
                }
                acc.lock().unwrap().extend(body.lines().map(str::to_string));
                (StatusCode::OK, String::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let crate::emit::EmitterSettings::Http(config) = crate::emit::test_support::settings(&format!(
        r#"{{"name":"webhook","type":"http","url":"http://{addr}/ingest"}}"#
    )) else {
        panic!()
    };
    let emitter = crate::emit::http::HttpEmitter::new(
        "webhook",
        &config,
        &crate::emit::transport::ResolvedAuth::None,
    )
    .unwrap();
    let dlq = Arc::new(MemDlq::default());
    let f = Forwarder {
        slots: vec![Slot {
            emitter: Arc::new(emitter),
            selector: Selector::default(),
            buffering: Buffering {
                max_batched_events: 500,
                max_size: 1 << 20,
                max_concurrent_requests: 4,
            },
            timeout: Duration::from_secs(10),
            profile: 0,
        }],
        ..picky_forwarder(
            picky_slot(Picky::new(Outcome::Delivered), 1, 1),
            dlq.clone(),
        )
    };
    let recs: Vec<_> = (1..=500)
        .map(|i| rec(i, &login(if i == 250 { "POISON" } else { "LOGIN" }), 0))
        .collect();
    let r = f.process(&recs, deadline()).await;
    assert!(r.failures.is_empty(), "{:?}", r.emitters);
    let accepted = accepted.lock().unwrap();
    assert_eq!(accepted.len(), 499);
    assert!(accepted.iter().all(|l| l.contains("\"LOGIN\"")));
    let objects = dlq.objects.lock().unwrap();
    assert_eq!(objects.len(), 1);
    let v = objects.values().next().unwrap();
    assert_eq!(v["record"]["event"]["type"], "POISON");
    assert_eq!(v["status"], "400");
    // 500 records: 9 levels of halving to one record, two requests per level after the first.
    assert_eq!(requests.load(Ordering::SeqCst), 1 + 2 * 9);
}

#[test]
fn backoff_grows_exponentially_within_the_cap_with_jitter() {
    let p = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
        max_record_age: Duration::from_secs(1),
    };
    for _ in 0..50 {
        let d1 = backoff(&p, 1);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = backoff(&p, 3);
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        let d9 = backoff(&p, 9);
        assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
    }
}
