//! Isolation at the throughput level: an emitter that is down (its receiver never answers)
//! costs the others nothing once its breaker is open: its records are spooled at once, it is
//! probed at most once per probe interval, a new instance reads its breaker at cold start, and
//! once it is back it catches up with nothing lost and nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use super::spool_tests::{Switch, batch, ids, probe_due, slot, spooled};
use super::tests::deadline;
use super::*;
use crate::config::SpoolConfig;
use crate::emit::BoxFuture;
use crate::record::Prepared;
use crate::spool::memory::MemorySpool;
use crate::spool::redrive::MIN_OBJECTS;

/// A receiver that accepts and never answers: every request times out. Counts requests.
struct Hang {
    calls: AtomicUsize,
}

impl Emitter for Hang {
    fn name(&self) -> &str {
        "down"
    }
    fn emit<'a>(&'a self, _batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<crate::emit::Outcome>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}

/// Short timeouts, so that the hanging receiver's requests end quickly.
fn config() -> SpoolConfig {
    SpoolConfig {
        probe_timeout: Duration::from_millis(20),
        ..SpoolConfig::default()
    }
}

/// A forwarder of `ok` (slot 0) and a hanging receiver (slot 1, `emitAtLeastOneOf` style: the
/// healthy one is required, the down one best effort) spooling into `store`.
fn forwarder(ok: &Arc<Switch>, hang: &Arc<Hang>, store: &Arc<MemorySpool>) -> Forwarder {
    let mut f = spooled(
        vec![ok.clone(), Switch::new("down", true)],
        store.clone(),
        Arc::default(),
        config(),
    );
    f.slots[1] = Slot {
        emitter: hang.clone(),
        timeout: Duration::from_millis(20),
        ..slot(Switch::new("down", true))
    };
    f.all_of = vec![0];
    f
}

/// Records spooled for emitter `name` in `store`.
fn spooled_lines(store: &MemorySpool, name: &str) -> usize {
    store
        .objects()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("spool/{name}/")) && k.ends_with(".jsonl"))
        .map(|(_, b)| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count())
        .sum()
}

#[tokio::test]
async fn with_the_breaker_open_a_hanging_emitter_gets_one_probe_per_interval_and_the_healthy_one_each_record_once()
 {
    let ok = Switch::new("ok", true);
    let hang = Arc::new(Hang {
        calls: AtomicUsize::new(0),
    });
    let store = Arc::new(MemorySpool::new());
    let f = forwarder(&ok, &hang, &store);
    // The first invocation finds the receiver down: its retries time out, the breaker opens
    // and is recorded in the store.
    let r = f.process(&batch(1, 4), deadline()).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(r.emitters[1].1.breaker_open);
    let opening = hang.calls.load(Ordering::SeqCst);
    assert!(opening > 0);
    assert!(store.objects().contains_key("spool/down/.breaker"));

    // Ten invocations within the probe interval: no request to the down emitter, one spool
    // write each.
    for k in 0..10 {
        let before = store.requests();
        let r = f.process(&batch(10 * k + 11, 4), deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(r.emitters[1].1.spooled, 4);
        assert_eq!(store.requests() - before, 1, "one PUT per invocation");
    }
    assert_eq!(hang.calls.load(Ordering::SeqCst), opening, "no probe yet");

    // The interval passes: ten more invocations make one probe between them, which fails and
    // doubles the interval.
    probe_due(&f, 1);
    for k in 10..20 {
        let r = f.process(&batch(10 * k + 11, 4), deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(r.emitters[1].1.spooled, 4);
    }
    assert_eq!(hang.calls.load(Ordering::SeqCst), opening + 1, "one probe");
    let st = f.spool.as_ref().unwrap().state(1);
    assert!(st.breaker_open);
    assert_eq!(st.probe_interval, config().probe_interval * 2);

    let mut want = ids(1, 4);
    for k in 0..20 {
        want.extend(ids(10 * k + 11, 4));
    }
    assert_eq!(ok.ids(), want, "each record once, in order");
    assert_eq!(
        spooled_lines(&store, "down"),
        want.len(),
        "every record spooled"
    );
}

#[tokio::test]
async fn a_cold_instance_reads_the_open_breaker_and_sends_nothing_to_the_down_emitter() {
    let ok = Switch::new("ok", true);
    let hang = Arc::new(Hang {
        calls: AtomicUsize::new(0),
    });
    let store = Arc::new(MemorySpool::new());
    forwarder(&ok, &hang, &store)
        .process(&batch(1, 4), deadline())
        .await;
    let opening = hang.calls.load(Ordering::SeqCst);

    // A new instance: one GET per emitter at cold start, then no request to the down one.
    let cold = forwarder(&ok, &hang, &store);
    let before = store.requests();
    cold.load_breakers().await;
    assert_eq!(store.requests() - before, 2);
    assert!(cold.spool.as_ref().unwrap().state(1).breaker_open);
    for k in 0..5 {
        let r = cold.process(&batch(10 * k + 11, 4), deadline()).await;
        assert!(r.failures.is_empty());
        assert_eq!(r.emitters[1].1.spooled, 4);
    }
    assert_eq!(hang.calls.load(Ordering::SeqCst), opening);
    assert_eq!(spooled_lines(&store, "down"), 24);
    let mut want = ids(1, 4);
    for k in 0..5 {
        want.extend(ids(10 * k + 11, 4));
    }
    assert_eq!(ok.ids(), want);

    // A cold start with every breaker closed: one GET per emitter, then no request per
    // invocation.
    let fresh = Arc::new(MemorySpool::new());
    let quiet = spooled(
        vec![Switch::new("a", true), Switch::new("b", true)],
        fresh.clone(),
        Arc::default(),
        config(),
    );
    quiet.load_breakers().await;
    assert_eq!(fresh.requests(), 2);
    for k in 0..3 {
        quiet.process(&batch(10 * k + 1, 4), deadline()).await;
    }
    assert_eq!(fresh.requests(), 2);
}

#[tokio::test]
async fn once_the_receiver_is_back_a_probe_closes_the_breaker_and_the_spool_drains_with_nothing_twice()
 {
    let ok = Switch::new("ok", true);
    let back = Switch::new("down", false);
    let store = Arc::new(MemorySpool::new());
    let f = spooled(
        vec![ok.clone(), back.clone()],
        store.clone(),
        Arc::default(),
        config(),
    );
    for k in 0..4 {
        f.process(&batch(10 * k + 1, 4), deadline()).await;
    }
    assert!(store.objects().contains_key("spool/down/.breaker"));
    let calls = back.calls.load(Ordering::SeqCst);

    // Back up, but the interval has not passed: still spooled, nothing sent.
    back.up.store(true, Ordering::SeqCst);
    f.process(&batch(41, 4), deadline()).await;
    assert_eq!(back.calls.load(Ordering::SeqCst), calls);

    // The probe passes: the breaker closes (in the store too) and the spool is redriven
    // oldest first, from Kinesis invocations (yielding to the healthy emitter's delivery) and
    // from the schedule.
    probe_due(&f, 1);
    let r = f.process(&batch(51, 4), deadline()).await;
    assert!(!r.emitters[1].1.breaker_open);
    assert!(r.emitters[1].1.redriven > 0);
    assert!(!store.objects().keys().any(|k| k.ends_with(".breaker")));
    f.process(&batch(61, 4), deadline()).await;
    f.redrive_all(deadline(), "sched").await;

    let mut want = Vec::new();
    for k in 0..7 {
        want.extend(ids(10 * k + 1, 4));
    }
    assert_eq!(back.ids(), want, "every record once, oldest first");
    assert_eq!(ok.ids(), want, "the healthy emitter: each record once");
    assert_eq!(spooled_lines(&store, "down"), 0);
}

#[tokio::test]
async fn a_redrive_in_a_kinesis_invocation_stops_after_two_objects_once_the_others_are_done() {
    let quiet = Switch::new("ok", true);
    let back = Switch::new("down", false);
    let store = Arc::new(MemorySpool::new());
    let mut f = spooled(
        vec![quiet.clone(), back.clone()],
        store.clone(),
        Arc::default(),
        config(),
    );
    // Five objects spooled for the down emitter (one per invocation).
    for k in 0..5 {
        f.process(&batch(10 * k + 1, 2), deadline()).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    back.up.store(true, Ordering::SeqCst);
    let spool = f.spool.clone().unwrap();
    spool.close_breaker(1);
    // The other emitter selects nothing of the next batch: its delivery is done at once.
    f.slots[0].selector = Selector::new(vec!["LOGOUT".into()], vec![]);
    let r = f.process(&batch(51, 2), deadline()).await;
    assert_eq!(
        r.emitters[1].1.redriven,
        2 * MIN_OBJECTS,
        "{:?}",
        r.emitters[1].1
    );
    assert_eq!(
        r.emitters[1].1.spooled, 2,
        "the batch is spooled behind the rest"
    );
    assert!(!r.emitters[1].1.breaker_open, "yielding is not a failure");
    // The scheduled redrive has no one to yield to: it drains the rest, oldest first.
    let r = f.redrive_all(deadline(), "sched").await;
    assert_eq!(r.emitters[1].1.redriven, 8);
    let mut want = Vec::new();
    for k in 0..6 {
        want.extend(ids(10 * k + 1, 2));
    }
    assert_eq!(back.ids(), want);
}
