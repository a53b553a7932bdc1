//! Unit tests of settling an interrupted put (the checkpoint's `pending`) against the memory
//! sink read back like a one-shard stream: crashes after every or some records of a page were
//! accepted, a stream that cannot be read, foreign and malformed records in the window, and a
//! record of another producer that names one of our events.

use super::*;

/// Expires a dead run's lease (the next scheduled run comes after its deadline) and lifts the
/// injected faults.
fn restart(p: &TestProducer) {
    *p.store().crash_after_saves.lock().unwrap() = None;
    *p.sink().accept_limit.lock().unwrap() = None;
    let mut cp = p.store().current().unwrap();
    if let Some(lease) = cp.lease.as_mut() {
        lease.expires_at = now_ms() - 1;
    }
    p.store().overwrite(&cp);
}

/// How often each event was written.
fn counts(p: &TestProducer) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in written(p) {
        *counts.entry(m).or_default() += 1;
    }
    counts
}

/// The interrupted put's records: how many, and how many of them the stream took.
fn pending_split(p: &TestProducer) -> (usize, usize) {
    let cp = p.store().current().unwrap();
    let pending = cp.pending.user.expect("an intent is saved");
    let written_now = counts(p);
    let in_stream = pending
        .records
        .iter()
        .filter(|r| written_now.contains_key(&r.k))
        .count();
    (pending.records.len(), in_stream)
}

/// A producer whose run dies after the lease, the first intent and four page checkpoints were
/// saved: the fifth page was accepted in full, its checkpoint (with the sixth page's intent)
/// never landed.
async fn crashed_after_a_whole_page(sink: MemorySink) -> TestProducer {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let p = producer_with(src, settings(50), sink);
    *p.store().crash_after_saves.lock().unwrap() = Some(6);
    let err = p.run(deadline()).await.unwrap_err();
    assert!(matches!(err, ProducerError::Store(_)), "{err}");
    let (pending, in_stream) = pending_split(&p);
    assert!(pending > 0);
    assert_eq!(pending, in_stream, "the whole page was accepted");
    p
}

#[tokio::test]
async fn a_crash_after_every_record_of_a_page_was_accepted_and_before_its_checkpoint_writes_each_event_once_in_all()
 {
    let p = crashed_after_a_whole_page(MemorySink::default()).await;
    let before = written(&p).len();
    let (pending, _) = pending_split(&p);
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert!(s.complete);
    assert_eq!(
        s.pending_found, pending as u64,
        "the whole page was found in the stream"
    );
    assert_eq!((s.pending_unsettled, s.pending_resent), (0, 0));
    assert_eq!(
        written(&p).len(),
        1000,
        "{before} written before the restart"
    );
    assert_exactly_once(&p);
    let cp = p.store().current().unwrap();
    assert!(cp.pending.is_empty(), "a finished run leaves no intent");
}

#[tokio::test]
async fn a_crash_after_some_records_of_a_page_were_accepted_writes_the_rest_once_and_loses_none() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let p = producer_with(src, settings(50), MemorySink::default());
    // Four pages and 17 records of the fifth reach the stream; then the process dies mid-put.
    *p.sink().accept_limit.lock().unwrap() = Some(4 * 50 + 17);
    let err = p.run(deadline()).await.unwrap_err();
    assert!(matches!(err, ProducerError::Sink(_)), "{err}");
    assert_eq!(written(&p).len(), 217);
    let (pending, in_stream) = pending_split(&p);
    assert!(
        in_stream > 0 && in_stream < pending,
        "{in_stream} of {pending}"
    );
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.pending_found, in_stream as u64);
    assert_eq!((s.pending_unsettled, s.pending_resent), (0, 0));
    assert_exactly_once(&p);
    assert_eq!(written(&p).len(), 1000);
}

#[tokio::test]
async fn a_pending_put_with_the_stream_unreadable_falls_back_to_writing_again_and_says_so() {
    let p = crashed_after_a_whole_page(MemorySink::default()).await;
    let (pending, _) = pending_split(&p);
    p.sink()
        .read_denied
        .store(true, std::sync::atomic::Ordering::SeqCst);
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.pending_unsettled, 1);
    assert_eq!(s.pending_resent, pending as u64);
    assert_eq!(s.pending_found, 0);
    let counts = counts(&p);
    assert!(counts.values().all(|n| *n <= 2));
    assert_eq!(
        counts.values().filter(|n| **n == 2).count(),
        pending,
        "at-least-once: only the interrupted page is written again"
    );
    assert_eq!(counts.len(), 1000, "no event lost");
}

#[tokio::test]
async fn foreign_and_malformed_records_in_the_window_are_ignored() {
    let sink = MemorySink::default();
    {
        let mut foreign = sink.foreign.lock().unwrap();
        foreign.push(
            br#"{"type":"bind","timestamp":"2025-02-12 19:27:50.156","src_ip":"198.51.100.7","username":"alice"}"#
                .to_vec(),
        );
        foreign.push(vec![0xff, 0xfe, 0x00, 0x01]);
        foreign.push(Vec::new());
        foreign.push(b"not json at all\n".to_vec());
        foreign.push(vec![b'x'; 2 * 1024 * 1024]);
    }
    let p = crashed_after_a_whole_page(sink).await;
    let (pending, _) = pending_split(&p);
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.pending_found, pending as u64);
    assert_eq!(s.pending_unsettled, 0);
    assert_exactly_once(&p);
    assert_eq!(written(&p).len(), 1000);
}

#[tokio::test]
async fn a_record_of_another_producer_naming_a_pending_event_is_not_taken_for_ours() {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let p = producer_with(src, settings(50), MemorySink::default());
    *p.sink().accept_limit.lock().unwrap() = Some(4 * 50 + 10);
    p.run(deadline()).await.unwrap_err();
    let cp = p.store().current().unwrap();
    let pending = cp.pending.user.as_ref().unwrap();
    let written_now = counts(&p);
    let missing: Vec<&str> = pending
        .records
        .iter()
        .map(|r| r.k.as_str())
        .filter(|k| !written_now.contains_key(*k))
        .collect();
    let in_stream = pending.records.len() - missing.len();
    assert!(!missing.is_empty() && in_stream > 0);
    // Another producer writes records about those events: the same ids, other bytes.
    {
        let mut foreign = p.sink().foreign.lock().unwrap();
        for k in &missing {
            foreign.push(
                format!(r#"{{"eventType":"user-event","event":{{"id":"{k}"}}}}"#).into_bytes(),
            );
        }
    }
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.pending_found, in_stream as u64);
    assert_exactly_once(&p);
    assert_eq!(
        written(&p).len(),
        1000,
        "the missing events are ours to write"
    );
}

#[tokio::test]
async fn a_legacy_page_interrupted_after_its_put_is_settled_by_content_hash_without_repeating_it() {
    let src = FakeSource {
        legacy: true,
        ..FakeSource::default()
    };
    fill_history(&src, now_ms() - 40_000, 600);
    let mut s = settings(40);
    s.api_mode = ApiModeSetting::Legacy;
    let p = producer_with(src, s, MemorySink::default());
    // Lease, then per page an intent and a checkpoint: the third page's checkpoint never lands.
    *p.store().crash_after_saves.lock().unwrap() = Some(6);
    p.run(deadline()).await.unwrap_err();
    let pending = p.store().current().unwrap().pending.user.unwrap();
    assert!(!pending.records.is_empty());
    restart(&p);
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.pending_found, pending.records.len() as u64);
    assert_exactly_once(&p);
}

#[tokio::test]
async fn a_finished_modern_run_saves_one_intent_of_its_own_per_kind_and_the_rest_ride_in_page_checkpoints()
 {
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let p = producer(src, settings(50));
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.intent_saves, 2, "the first page of each kind");
    // lease + an intent per kind + one checkpoint per page (each kind's last, short page
    // included) + release.
    assert_eq!(s.checkpoint_saves, 1 + 2 + s.pages + 1);
    assert!(p.store().current().unwrap().pending.is_empty());
    // A sink that cannot be read back (as Firehose) saves no intents at all.
    let src = FakeSource::default();
    fill_history(&src, now_ms() - 3_600_000, 1000);
    let p = producer_with(src, settings(50), MemorySink::unreadable());
    let s = p.run(deadline()).await.unwrap();
    assert_eq!(s.intent_saves, 0);
    assert_eq!(s.checkpoint_saves, 1 + s.pages + 1);
}
