//! The spool's rules, with a switchable fake emitter, the in-memory spool store and the
//! in-memory dead-letter store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::tests::{MemDlq, deadline, login, rec};
use super::*;
use crate::config::SpoolConfig;
use crate::emit::{BoxFuture, Outcome, all};
use crate::record::Prepared;
use crate::spool::memory::MemorySpool;
use serde_json::Value;

/// An emitter that is up or down (503) as the test says; records what it received.
pub(super) struct Switch {
    name: String,
    pub(super) up: AtomicBool,
    pub(super) calls: AtomicUsize,
    got: Mutex<Vec<String>>,
}

impl Switch {
    pub(super) fn new(name: &str, up: bool) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            up: AtomicBool::new(up),
            calls: AtomicUsize::new(0),
            got: Mutex::new(Vec::new()),
        })
    }
    pub(super) fn ids(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|j| {
                serde_json::from_str::<Value>(j).unwrap()["event"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl Emitter for Switch {
    fn name(&self) -> &str {
        &self.name
    }
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let up = self.up.load(Ordering::SeqCst);
        if up {
            self.got
                .lock()
                .unwrap()
                .extend(batch.iter().map(|p| p.json.clone()));
        }
        Box::pin(async move {
            if up {
                all(batch.len(), Outcome::Delivered)
            } else {
                all(batch.len(), Outcome::Retryable(Failure::new("503", "busy")))
            }
        })
    }
}

pub(super) fn slot(e: Arc<Switch>) -> Slot {
    Slot {
        emitter: e,
        selector: Selector::new(vec![], vec![]),
        buffering: Buffering {
            max_batched_events: 2,
            max_size: 1 << 20,
            max_concurrent_requests: 1,
        },
        timeout: Duration::from_secs(5),
        profile: 0,
    }
}

pub(super) fn spooled(
    emitters: Vec<Arc<Switch>>,
    store: Arc<MemorySpool>,
    dlq: Arc<MemDlq>,
    config: SpoolConfig,
) -> Forwarder {
    let n = emitters.len();
    Forwarder {
        slots: emitters.into_iter().map(slot).collect(),
        profiles: vec![Transform::identity()],
        all_of: (0..n).collect(),
        at_least_one_of: vec![],
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_record_age: Duration::from_secs(3600),
        },
        dlq,
        dlq_prefix: "dlq/".into(),
        spool: None,
    }
    .with_spool(store, "spool/", config)
}

pub(super) fn batch(from: u32, n: u32) -> Vec<InputRecord> {
    (from..from + n)
        .map(|i| rec(i, &login(&format!("E{i}")), 0))
        .collect()
}

pub(super) fn ids(from: u32, n: u32) -> Vec<String> {
    (from..from + n).map(|i| format!("E{i}-id")).collect()
}

#[tokio::test]
async fn a_down_emitter_never_causes_a_healthy_one_to_receive_a_record_twice() {
    let (ok, down) = (Switch::new("ok", true), Switch::new("down", false));
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![ok.clone(), down.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    for k in 0..3 {
        let r = f.process(&batch(10 * k + 1, 4), deadline()).await;
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.emitters[1].1.spooled, 4);
        assert!(r.emitters[1].1.breaker_open);
    }
    let mut want = ids(1, 4);
    want.extend(ids(11, 4));
    want.extend(ids(21, 4));
    assert_eq!(ok.ids(), want, "each record once, in order");
    assert!(down.ids().is_empty());
    let objects = store.objects();
    let spooled: usize = objects
        .iter()
        .filter(|(k, _)| k.starts_with("spool/down/") && k.ends_with(".jsonl"))
        .map(|(_, b)| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count())
        .sum();
    assert_eq!(spooled, 12);
    assert!(objects.keys().all(|k| !k.starts_with("spool/ok/")));
}

#[tokio::test]
async fn a_spool_write_failure_is_the_only_batch_item_failure() {
    let (ok, down) = (Switch::new("ok", true), Switch::new("down", false));
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![ok.clone(), down],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    store.set_failing(true);
    let r = f.process(&batch(1, 3), deadline()).await;
    assert_eq!(r.failures, vec!["1", "2", "3"]);
    assert_eq!(r.spool_write_failures, 1);
    assert_eq!(r.dead_letters, 0);
    store.set_failing(false);
    let r = f.process(&batch(4, 3), deadline()).await;
    assert!(r.failures.is_empty());
    // The healthy emitter got the failed batch once; a Lambda retry would send it again (same
    // event ids: at least once).
    assert_eq!(ok.ids(), ids(1, 6));
}

#[tokio::test]
async fn redrive_sends_oldest_first_and_never_resends_a_delivered_record() {
    let siem = Switch::new("siem", false);
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![siem.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    f.process(&batch(1, 3), deadline()).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    f.process(&batch(4, 3), deadline()).await;
    siem.up.store(true, Ordering::SeqCst);
    let r = f.redrive_all(deadline(), "sched-1").await;
    assert_eq!(r.emitters[0].1.redriven, 6);
    assert_eq!(siem.ids(), ids(1, 6));
    assert!(
        store.objects().keys().all(|k| !k.ends_with(".jsonl")),
        "spool empty"
    );
    assert!(!f.spool.as_ref().unwrap().state(0).needs_redrive());
    // Nothing is sent again, by a second redrive or by the next batch.
    f.redrive_all(deadline(), "sched-2").await;
    let r = f.process(&batch(7, 2), deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(siem.ids(), ids(1, 8));
}

#[tokio::test]
async fn a_partly_redriven_object_keeps_only_the_records_left() {
    let siem = Switch::new("siem", false);
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![siem.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    f.process(&batch(1, 4), deadline()).await;
    // The redrive's first request (two records) is delivered, then the receiver fails again.
    siem.up.store(true, Ordering::SeqCst);
    let before = store.objects();
    let key = before
        .keys()
        .find(|k| k.ends_with(".jsonl"))
        .unwrap()
        .clone();
    let body = before[&key].clone();
    let mut g = spooled(
        vec![siem.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    g.slots[0].emitter = Arc::new(Flaky {
        inner: siem.clone(),
        left: AtomicUsize::new(1),
    });
    g.redrive_all(deadline(), "sched-1").await;
    let after = store.objects();
    let rest: Vec<&String> = after.keys().filter(|k| k.ends_with(".jsonl")).collect();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0], &key, "the rest is written under a new key");
    let lines = |b: &[u8]| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!((lines(&body), lines(&after[rest[0]])), (4, 2));
    assert_eq!(siem.ids(), ids(1, 2));
}

/// Delivers `left` requests through `inner`, then answers 503.
struct Flaky {
    inner: Arc<Switch>,
    left: AtomicUsize,
}

impl Emitter for Flaky {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        let go = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if go {
            self.inner.emit(batch)
        } else {
            Box::pin(
                async move { all(batch.len(), Outcome::Retryable(Failure::new("503", "busy"))) },
            )
        }
    }
}

/// As if slot `k`'s probe interval had passed.
pub(super) fn probe_due(f: &Forwarder, k: usize) {
    f.spool
        .as_ref()
        .unwrap()
        .update(k, |s| s.next_probe = Some(Instant::now()));
}

#[tokio::test]
async fn an_open_breaker_spends_one_probe_not_a_retry_budget() {
    let siem = Switch::new("siem", false);
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![siem.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    f.process(&batch(1, 4), deadline()).await;
    // Two requests of two records, three attempts each.
    assert_eq!(siem.calls.load(Ordering::SeqCst), 6);
    probe_due(&f, 0);
    let r = f.process(&batch(5, 4), deadline()).await;
    assert_eq!(siem.calls.load(Ordering::SeqCst), 7, "one probe");
    assert!(r.failures.is_empty());
    assert_eq!(r.emitters[0].1.spooled, 4);
    assert!(r.emitters[0].1.breaker_open);
    assert_eq!(r.emitters[0].1.spool_depth, 8);
    // Back up: the probe passes, the spool drains oldest first, then the batch is delivered.
    siem.up.store(true, Ordering::SeqCst);
    probe_due(&f, 0);
    let r = f.process(&batch(9, 2), deadline()).await;
    assert_eq!(siem.ids(), ids(1, 10));
    assert!(!r.emitters[0].1.breaker_open);
    assert_eq!(r.emitters[0].1.spool_depth, 0);
    assert_eq!(r.emitters[0].1.redriven, 8);
}

#[tokio::test]
async fn records_spooled_longer_than_the_retention_become_dead_letters() {
    let siem = Switch::new("siem", false);
    let store = Arc::new(MemorySpool::new());
    let dlq = Arc::new(MemDlq::default());
    let config = SpoolConfig {
        max_age: Duration::from_secs(60),
        ..SpoolConfig::default()
    };
    let f = spooled(vec![siem.clone()], store.clone(), dlq.clone(), config);
    let old = vec![rec(1, &login("OLD"), 120_000), rec(2, &login("NEW"), 0)];
    let r = f.process(&old, deadline()).await;
    assert_eq!(r.emitters[0].1.spooled, 2);
    siem.up.store(true, Ordering::SeqCst);
    let r = f.redrive_all(deadline(), "sched").await;
    assert_eq!(r.emitters[0].1.spool_expired, 1);
    assert_eq!(r.emitters[0].1.redriven, 1);
    let letters = dlq.objects.lock().unwrap();
    assert_eq!(letters.len(), 1);
    let v = letters.values().next().unwrap();
    assert_eq!(v["reason"], "spool retention exceeded");
    assert_eq!(v["record"]["event"]["id"], "OLD-id");
    assert_eq!(v["emitter"], "siem");
    assert_eq!(siem.ids(), vec!["NEW-id"]);
}

#[tokio::test]
async fn a_warm_instance_with_nothing_spooled_makes_no_s3_request() {
    let siem = Switch::new("siem", true);
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![siem.clone()],
        store.clone(),
        Arc::default(),
        SpoolConfig::default(),
    );
    for k in 0..5 {
        let r = f.process(&batch(k * 10, 5), deadline()).await;
        assert!(r.failures.is_empty());
    }
    assert_eq!(store.requests(), 0);
}

#[tokio::test]
async fn an_unavailable_receiver_is_spooled_at_once_with_a_spool_and_dead_lettered_without() {
    struct Denied;
    impl Emitter for Denied {
        fn name(&self) -> &str {
            "denied"
        }
        fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
            Box::pin(async move {
                all(
                    batch.len(),
                    Outcome::Unavailable(Failure::new("401", "bad token")),
                )
            })
        }
    }
    let store = Arc::new(MemorySpool::new());
    let dlq = Arc::new(MemDlq::default());
    let mut f = spooled(
        vec![Switch::new("x", true)],
        store.clone(),
        dlq.clone(),
        SpoolConfig::default(),
    );
    f.slots[0].emitter = Arc::new(Denied);
    let r = f.process(&batch(1, 2), deadline()).await;
    assert_eq!((r.emitters[0].1.spooled, r.emitters[0].1.retried), (2, 0));
    assert!(dlq.objects.lock().unwrap().is_empty());
    f.spool = None;
    let r = f.process(&batch(3, 2), deadline()).await;
    assert!(r.failures.is_empty());
    assert_eq!(r.emitters[0].1.dead_lettered, 2);
}
