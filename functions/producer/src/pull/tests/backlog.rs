//! Unit tests of runs that meet their deadline with a backlog: both kinds get a share of the
//! run, and a page still refused when the time runs out is left pending (not a failed run).

use super::*;

/// Runs until a run reads everything up to its `dateTo` (at most `max_runs`), each with
/// `run_ms` to its deadline.
async fn run_until_complete(p: &TestProducer, run_ms: i64, max_runs: usize) {
    for _ in 0..max_runs {
        if p.run(now_ms() + run_ms).await.unwrap().complete {
            return;
        }
    }
    panic!("no run completed in {max_runs} runs");
}

fn written_of(p: &TestProducer, prefix: &str) -> usize {
    written(p).iter().filter(|m| m.starts_with(prefix)).count()
}

#[tokio::test]
async fn a_user_event_backlog_does_not_starve_the_admin_events_each_kind_gets_a_share_of_the_run() {
    let src = FakeSource::default();
    let base = now_ms() - 3_600_000;
    for i in 0..20_000 {
        src.add(EventKind::User, base + i, true);
    }
    for i in 0..200 {
        src.add(EventKind::Admin, base + i * 10, true);
    }
    *src.delay.lock().unwrap() = Duration::from_millis(10);
    let p = producer(src, settings(50));
    let s = p.run(now_ms() + 2_000).await.unwrap();
    assert!(!s.complete, "the user backlog does not fit one run");
    assert_eq!(
        written_of(&p, "admin-event"),
        200,
        "every admin event is written in the same run as the user backlog's first pages"
    );
    let users = written_of(&p, "user-event");
    assert!(users > 0 && users < 20_000, "{users} user events");
    // The backlog drains over the next runs (a fast server now), every event once.
    *p.source().delay.lock().unwrap() = Duration::ZERO;
    run_until_complete(&p, 60_000, 10).await;
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_page_still_refused_when_the_time_runs_out_ends_the_run_short_and_the_next_run_writes_the_rest_once()
 {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 600);
    let mut s = settings(100);
    s.sink_base_backoff = Duration::from_millis(400);
    let p = producer(src, s);
    // Every entry at an odd position is refused, for good.
    p.sink()
        .fail_entries
        .store(usize::MAX / 2, Ordering::SeqCst);
    let started = now_ms();
    let summary = p.run(now_ms() + 1_500).await.unwrap();
    assert!(!summary.complete);
    assert!(summary.put_cut_short > 0, "the refused records are counted");
    let cp = p.store().current().unwrap();
    assert!(cp.lease.is_none(), "the lease is released");
    let pending = cp.pending.user.expect("the page's intent stays saved");
    assert!(!pending.records.is_empty());
    assert!(
        pending.until <= now_ms() && pending.until >= started,
        "the pending put ends when the run ended, not at its deadline"
    );
    assert!(
        pending.closed,
        "its calls were all answered: nothing to wait for"
    );
    assert!(cp.user.is_none(), "the cursor did not move past the page");
    // The stream heals: the next run settles the page (finds the accepted half) and writes
    // the rest, every event once.
    p.sink().fail_entries.store(0, Ordering::SeqCst);
    let next = p.run(deadline()).await.unwrap();
    assert!(next.complete);
    assert!(next.pending_found > 0, "the accepted records were found");
    assert_eq!(next.pending_unsettled, 0);
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_failed_run_ends_its_pending_put_at_the_failure_not_at_its_deadline() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 600);
    let p = producer(src, settings(100));
    // The third page fetch answers garbage: the run fails with an intent saved.
    *p.source().garbage_after.lock().unwrap() = Some(3);
    let far = now_ms() + 600_000;
    p.run(far).await.unwrap_err();
    let cp = p.store().current().unwrap();
    assert!(cp.lease.is_none());
    if let Some(pending) = cp.pending.user {
        assert!(
            pending.until <= now_ms(),
            "until {} vs deadline {far}",
            pending.until
        );
    }
    *p.source().garbage_after.lock().unwrap() = None;
    p.run(deadline()).await.unwrap();
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_late_commit_inside_the_settle_window_is_written_by_the_next_run_of_a_caught_up_cursor() {
    let src = FakeSource::default();
    let now = now_ms();
    for i in 0..100 {
        src.add(EventKind::User, now - 30_000 + i * 100, true);
    }
    // Committed late, stamped before events already visible.
    let late = src.add(EventKind::User, now - 25_000, false);
    let p = producer(src, settings(500));
    p.run(deadline()).await.unwrap();
    p.source().commit_all();
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.put, 1);
    assert!(written(&p).contains(&late));
    assert_exactly_once(&p);
}
