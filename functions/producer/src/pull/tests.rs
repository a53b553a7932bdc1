//! Unit tests of the pull algorithm against in-memory fakes: a Keycloak-like event source (ties
//! come back shuffled on every request, late commits, legacy mode, faults), the memory sink and
//! the memory checkpoint store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authtrail_core::envelope::EventKind;
use authtrail_core::redact::Redactor;
use chrono::{DateTime, NaiveDate};
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::{Producer, PullSettings, now_ms};
use crate::checkpoint::{ApiMode, Checkpoint, KindCursor, MemoryCheckpointStore};
use crate::config::{ApiModeSetting, StartFrom};
use crate::error::{ProducerError, SourceError};
use crate::lease::Lease;
use crate::mpas::{DateParam, EventSource, PageQuery};
use crate::sink::MemorySink;

struct FakeEvent {
    kind: EventKind,
    id: String,
    time: i64,
    visible: bool,
}

#[derive(Default)]
struct FakeSource {
    events: Mutex<Vec<FakeEvent>>,
    legacy: bool,
    /// Fail (garbage) every request after this many successful ones, while set.
    garbage_after: Mutex<Option<usize>>,
    requests: AtomicUsize,
    /// Time each request takes (a slow server, to make a run meet its deadline).
    delay: Mutex<Duration>,
}

impl FakeSource {
    fn add(&self, kind: EventKind, time: i64, visible: bool) -> String {
        let mut ev = self.events.lock().unwrap();
        let id = format!("{}-{}", kind.as_str(), ev.len());
        ev.push(FakeEvent {
            kind,
            id: id.clone(),
            time,
            visible,
        });
        id
    }

    fn commit_all(&self) {
        for e in self.events.lock().unwrap().iter_mut() {
            e.visible = true;
        }
    }

    fn render(&self, e: &FakeEvent) -> Value {
        let mut v = json!({
            "time": e.time,
            "type": "LOGIN",
            "realmId": "r",
            "ipAddress": "192.0.2.1",
            "details": {"username": "alice", "marker": e.id},
        });
        if !self.legacy {
            v["id"] = json!(e.id);
        }
        v
    }
}

fn day_bounds(d: NaiveDate) -> (i64, i64) {
    let start = d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
    (start, start + 86_400_000 - 1)
}

impl EventSource for FakeSource {
    async fn fetch_page(&self, kind: EventKind, q: &PageQuery) -> Result<Vec<Value>, SourceError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let limit = *self.garbage_after.lock().unwrap();
        if limit.is_some_and(|l| n >= l) {
            return Err(SourceError::Garbage {
                detail: "truncated".into(),
                attempts: 3,
            });
        }
        let bound = |p: Option<DateParam>, upper: bool| -> Result<Option<i64>, SourceError> {
            match p {
                None => Ok(None),
                Some(DateParam::EpochMs(ms)) => {
                    if self.legacy {
                        Err(SourceError::BadRequest("epoch dates unsupported".into()))
                    } else {
                        Ok(Some(ms))
                    }
                }
                Some(DateParam::Day(d)) => {
                    let (a, b) = day_bounds(d);
                    Ok(Some(if upper { b } else { a }))
                }
            }
        };
        let from = bound(q.date_from, false)?;
        let to = bound(q.date_to, true)?;
        let ascending = if self.legacy {
            false
        } else {
            q.ascending == Some(true)
        };
        let events = self.events.lock().unwrap();
        let mut rows: Vec<&FakeEvent> = events
            .iter()
            .filter(|e| e.kind == kind && e.visible)
            .filter(|e| from.is_none_or(|f| e.time >= f) && to.is_none_or(|t| e.time <= t))
            .collect();
        // Sorted by time only; ties in a fresh random order on every request.
        rows.shuffle(&mut rand::rng());
        if ascending {
            rows.sort_by_key(|e| e.time);
        } else {
            rows.sort_by_key(|e| std::cmp::Reverse(e.time));
        }
        Ok(rows
            .into_iter()
            .skip(q.first as usize)
            .take(q.max as usize)
            .map(|e| self.render(e))
            .collect())
    }
}

fn settings(page_size: u32) -> PullSettings {
    PullSettings {
        user_events: true,
        admin_events: true,
        page_size,
        settle_window: Duration::from_secs(60),
        query_lag: Duration::ZERO,
        start_from: StartFrom::Oldest,
        api_mode: ApiModeSetting::Auto,
        deadline_reserve: Duration::from_millis(500),
        sink_max_attempts: 20,
        sink_base_backoff: Duration::from_millis(1),
    }
}

type TestProducer = Producer<FakeSource, MemorySink, MemoryCheckpointStore>;

fn producer(source: FakeSource, s: PullSettings) -> TestProducer {
    producer_with(source, s, MemorySink::default())
}

fn producer_with(source: FakeSource, s: PullSettings, sink: MemorySink) -> TestProducer {
    Producer::new(
        s,
        source,
        sink,
        MemoryCheckpointStore::default(),
        Redactor::none(),
        Redactor::none(),
    )
}

fn deadline() -> i64 {
    now_ms() + 60_000
}

/// Marker of each record written (the fake puts the event's own id in details.marker).
fn written(p: &TestProducer) -> Vec<String> {
    p.sink()
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_slice(line).unwrap();
            v["event"]["details"]["marker"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn assert_exactly_once(p: &TestProducer) {
    let got = written(p);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &got {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let events = p.source().events.lock().unwrap();
    let missing: Vec<_> = events
        .iter()
        .filter(|e| e.visible && !counts.contains_key(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {} events: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// A history with many same-millisecond bursts straddling page boundaries.
fn fill_history(src: &FakeSource, base: i64, n: usize) {
    for i in 0..n {
        let kind = if i % 7 == 0 {
            EventKind::Admin
        } else {
            EventKind::User
        };
        // groups of 13 events share a millisecond, every 5th group
        let t = if (i / 13) % 5 == 0 {
            base + (i / 13) as i64 * 10
        } else {
            base + i as i64 * 10
        };
        src.add(kind, t, true);
    }
}

#[tokio::test]
async fn modern_history_with_ties_across_pages_is_written_exactly_once() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 2000);
    let p = producer(src, settings(50));
    let s = p.run(deadline()).await.unwrap();
    assert!(s.complete && !s.stood_down);
    assert_eq!(s.user_mode, Some(ApiMode::Modern));
    assert_exactly_once(&p);
    // A second run re-reads the settle window and writes nothing new.
    let s2 = p.run(deadline()).await.unwrap();
    assert_eq!(s2.put, 0);
    assert_exactly_once(&p);
}

#[tokio::test]
async fn late_commits_inside_the_settle_window_are_picked_up_by_the_next_run_once() {
    let src = FakeSource::default();
    let now = now_ms();
    fill_history(&src, now - 20_000, 500);
    // Late events stamped before events already visible.
    for i in 0..50 {
        src.add(EventKind::User, now - 15_000 + i * 100, false);
    }
    let p = producer(src, settings(64));
    p.run(deadline()).await.unwrap();
    assert_eq!(written(&p).len(), 500);
    p.source().commit_all();
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.put, 50);
    assert!(s.duplicates_skipped > 0, "the settle window is re-read");
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_millisecond_with_more_events_than_a_page_is_read_whole() {
    let src = FakeSource::default();
    let t = now_ms() - 60_000;
    for _ in 0..250 {
        src.add(EventKind::User, t, true);
    }
    src.add(EventKind::User, t + 1, true);
    let mut s = settings(20);
    s.admin_events = false;
    let p = producer(src, s);
    p.run(deadline()).await.unwrap();
    assert_exactly_once(&p);
    assert_eq!(written(&p).len(), 251);
}

#[tokio::test]
async fn legacy_server_is_detected_and_deduped_by_content_hash() {
    let src = FakeSource {
        legacy: true,
        ..FakeSource::default()
    };
    let now = now_ms();
    fill_history(&src, now - 40_000, 1500);
    for i in 0..30 {
        src.add(EventKind::Admin, now - 30_000 + i * 7, false);
    }
    let p = producer(src, settings(40));
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.user_mode, Some(ApiMode::Legacy));
    assert_eq!(s.admin_mode, Some(ApiMode::Legacy));
    assert_exactly_once(&p);
    p.source().commit_all();
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.put, 30);
    assert_exactly_once(&p);
    let again = p.run(deadline()).await.unwrap();
    assert_eq!(again.put, 0);
}

#[tokio::test]
async fn an_unexpired_lease_of_another_invocation_makes_this_one_stand_down_writing_nothing() {
    let src = FakeSource::default();
    src.add(EventKind::User, now_ms() - 10_000, true);
    let p = producer(src, settings(10));
    let held = Checkpoint {
        lease: Some(Lease {
            owner: "other".into(),
            expires_at: now_ms() + 30_000,
        }),
        ..Checkpoint::default()
    };
    p.store().overwrite(&held);
    let s = p.run(deadline()).await.unwrap();
    assert!(s.stood_down);
    assert!(written(&p).is_empty());
    assert_eq!(p.store().current().unwrap(), held, "checkpoint untouched");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_released_at_the_end() {
    let src = FakeSource::default();
    src.add(EventKind::User, now_ms() - 10_000, true);
    let p = producer(src, settings(10));
    p.store().overwrite(&Checkpoint {
        lease: Some(Lease {
            owner: "dead".into(),
            expires_at: now_ms() - 1,
        }),
        ..Checkpoint::default()
    });
    let s = p.run(deadline()).await.unwrap();
    assert!(!s.stood_down);
    assert_eq!(s.put, 1);
    assert!(p.store().current().unwrap().lease.is_none());
}

#[tokio::test]
async fn a_garbage_response_fails_the_run_without_advancing_past_it_and_the_next_run_catches_up() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 600);
    *src.garbage_after.lock().unwrap() = Some(4);
    let p = producer(src, settings(50));
    let err = p.run(deadline()).await.unwrap_err();
    assert!(
        matches!(err, ProducerError::Source(SourceError::Garbage { .. })),
        "{err}"
    );
    let before = written(&p).len();
    assert!(before < 600);
    let cp = p.store().current().unwrap();
    assert!(cp.lease.is_none(), "lease released after the failure");
    assert_eq!(
        cp.user.as_ref().map(|c| c.seen.len()).unwrap_or(0) > 0,
        before > 0
    );
    *p.source().garbage_after.lock().unwrap() = None;
    p.run(deadline()).await.unwrap();
    assert_exactly_once(&p);
}

#[tokio::test]
async fn an_event_time_outside_1970_to_9999_fails_the_run_as_garbage_without_moving_the_cursor() {
    for absurd in [i64::MIN, -1] {
        let src = FakeSource::default();
        fill_history(&src, now_ms() - 3_600_000, 10);
        src.add(EventKind::User, absurd, true);
        let p = producer(src, settings(50));
        let err = p.run(deadline()).await.unwrap_err();
        assert!(
            matches!(err, ProducerError::EventTimeOutOfRange { time, .. } if time == absurd),
            "{err}"
        );
        assert_eq!(err.error_type().as_str(), "MpasBadResponse");
        let cp = p.store().current().unwrap();
        assert!(cp.user.is_none(), "the user cursor did not move");
    }
}

#[tokio::test]
async fn a_stored_cursor_at_the_edge_of_time_does_not_overflow_the_window_arithmetic() {
    for legacy in [false, true] {
        let src = FakeSource {
            legacy,
            ..FakeSource::default()
        };
        fill_history(&src, now_ms() - 3_600_000, 10);
        let p = producer(src, settings(50));
        let mut cp = Checkpoint::default();
        for kind in [EventKind::User, EventKind::Admin] {
            cp.set_cursor(
                kind,
                KindCursor {
                    mode: if legacy {
                        ApiMode::Legacy
                    } else {
                        ApiMode::Modern
                    },
                    time: i64::MIN + 1,
                    seen: Default::default(),
                },
            );
        }
        p.store().overwrite(&cp);
        let summary = p.run(deadline()).await.unwrap();
        assert!(summary.complete, "legacy={legacy}");
        assert_exactly_once(&p);
    }
}

#[tokio::test]
async fn a_run_stops_paging_near_the_deadline_and_later_runs_drain_the_backlog() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let mut s = settings(25);
    s.deadline_reserve = Duration::from_secs(5);
    let p = producer(src, s);
    // A deadline inside the reserve: no page is read at all, nothing is lost.
    let s = p.run(now_ms() + 4_000).await.unwrap();
    assert!(!s.complete);
    assert_eq!(s.pages, 0);
    let s = p.run(deadline()).await.unwrap();
    assert!(s.complete);
    assert_exactly_once(&p);
}

#[tokio::test]
async fn partial_sink_failures_are_retried_until_every_record_is_accepted_once() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 800);
    let p = producer(src, settings(200));
    p.sink().fail_entries.store(250, Ordering::SeqCst);
    p.sink().fail_calls.store(2, Ordering::SeqCst);
    let s = p.run(deadline()).await.unwrap();
    assert!(s.retried_entries >= 250);
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_checkpoint_changed_by_someone_else_mid_run_stops_the_run() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 300);
    let p = producer(src, settings(10));
    // The lease save and two checkpoints succeed; then someone else changes the object.
    *p.store().conflict_after_saves.lock().unwrap() = Some(3);
    let result = p.run(deadline()).await;
    assert!(
        matches!(result, Err(ProducerError::LeaseLost)),
        "{result:?}"
    );
    let n = written(&p).len();
    assert!(
        n > 0 && n < 300,
        "stopped after the page whose save failed ({n} written)"
    );
}

#[tokio::test]
async fn a_crash_after_a_page_was_accepted_but_before_its_checkpoint_repeats_at_most_that_page_and_loses_nothing()
 {
    let page = 50;
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    // A sink that cannot be read back (as Firehose) keeps this at-least-once bound.
    let p = producer_with(src, settings(page), MemorySink::unreadable());
    // The lease and five page checkpoints land; the sixth page is accepted by the sink, then the
    // process "dies" before its checkpoint (and before releasing the lease).
    *p.store().crash_after_saves.lock().unwrap() = Some(6);
    let err = p.run(deadline()).await.unwrap_err();
    assert!(matches!(err, ProducerError::Store(_)), "{err}");
    let before_restart = written(&p).len();
    let mut cp = p.store().current().unwrap();
    assert!(
        cp.lease.is_some(),
        "a dead run's lease stays until its deadline"
    );
    // The next scheduled run comes after that deadline.
    cp.lease.as_mut().unwrap().expires_at = now_ms() - 1;
    p.store().overwrite(&cp);
    *p.store().crash_after_saves.lock().unwrap() = None;
    let s = p.run(deadline()).await.unwrap();
    assert!(s.complete);
    let got = written(&p);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &got {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n <= 2),
        "nothing written more than twice"
    );
    let duplicated = counts.values().filter(|n| **n == 2).count();
    assert!(
        duplicated >= 1 && duplicated <= page as usize,
        "the repeat is the one page accepted before the crash ({duplicated} duplicates, {before_restart} written before the restart)"
    );
    let events = p.source().events.lock().unwrap();
    assert!(
        events.iter().all(|e| counts.contains_key(e.id.as_str())),
        "no event lost"
    );
    assert_eq!(counts.len(), events.len());
}

#[tokio::test]
async fn a_cursor_older_than_the_oldest_kept_event_is_reported_as_a_collection_gap() {
    let src = FakeSource::default();
    src.add(EventKind::User, now_ms() - 10_000, true);
    let mut s = settings(10);
    s.admin_events = false;
    let p = producer(src, s);
    let cp = Checkpoint {
        user: Some(crate::checkpoint::KindCursor {
            mode: ApiMode::Modern,
            time: now_ms() - 86_400_000,
            seen: HashMap::new(),
        }),
        ..Checkpoint::default()
    };
    p.store().overwrite(&cp);
    let s = p.run(deadline()).await.unwrap();
    assert!(s.collection_gap);
    let ok = p.run(deadline()).await.unwrap();
    assert!(!ok.collection_gap, "no gap once the cursor is current");
}

#[tokio::test]
async fn a_legacy_server_that_no_longer_keeps_the_events_before_the_cursor_is_reported_as_a_collection_gap()
 {
    let src = FakeSource {
        legacy: true,
        ..FakeSource::default()
    };
    let now = now_ms();
    for i in 0..20 {
        src.add(EventKind::User, now - 30_000 + i * 1_000, true);
    }
    let mut s = settings(50);
    s.admin_events = false;
    let p = producer(src, s);
    let first = p.run(deadline()).await.unwrap();
    assert!(!first.collection_gap, "a first run has nothing to miss");
    // A quiet next run re-reads the settle window, meets what it saw: no gap.
    let quiet = p.run(deadline()).await.unwrap();
    assert!(!quiet.collection_gap);
    // The server expires everything up to now; new events arrive.
    p.source().events.lock().unwrap().clear();
    for i in 0..5 {
        p.source().add(EventKind::User, now_ms() - 500 + i, true);
    }
    let after = p.run(deadline()).await.unwrap();
    assert!(
        after.collection_gap,
        "events seen before the cursor vanished"
    );
    assert_eq!(after.put, 5, "the events still kept are collected");
    let next = p.run(deadline()).await.unwrap();
    assert!(!next.collection_gap, "no gap once the cursor is current");
}

#[tokio::test]
async fn start_from_latest_skips_the_existing_history() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 100);
    let mut s = settings(10);
    s.start_from = StartFrom::Latest;
    s.settle_window = Duration::from_secs(1);
    let p = producer(src, s);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.put, 0);
    p.source().add(EventKind::User, now_ms(), true);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.put, 1);
}

#[test]
fn day_bounds_cover_the_whole_utc_day() {
    let d = DateTime::from_timestamp_millis(1_739_388_470_156)
        .unwrap()
        .date_naive();
    let (a, b) = day_bounds(d);
    assert_eq!(b - a, 86_399_999);
}

mod backlog;
mod recover;
