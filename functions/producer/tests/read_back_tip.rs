//! Reading the stream back at a shard's tip, against moto's Kinesis: a put that a dead run sent
//! just before its deadline may be taken by the stream after the next run started reading, so
//! reaching the tip (`MillisBehindLatest` 0) before the window's end does not end a shard's
//! reading. [`KinesisSink::read_back`] reads every shard to its tip, then polls the tips reached
//! too early until a call sent after the window's `tip_until_ms` reached them, and only then
//! counts a shard as covered. These tests prove that a record taken
//! while the reader waits at the tip (before the window's end) is handed to the visitor, that a
//! window that already ended is read without waiting, and that a deadline before the window's
//! end leaves the read uncovered (not failed).
//!
//! moto stamps arrivals with the machine's clock, the clock the reader compares against.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use authtrail_harness::Emulator;
use authtrail_producer::error::ReadBackError;
use authtrail_producer::pull::now_ms;
use authtrail_producer::sink::{KinesisSink, ReadBack, ReadStats, ReadWindow};
use aws_sdk_kinesis::primitives::Blob;

const STREAM: &str = "authtrail-events";
const EARLY: [&str; 4] = ["early-0", "early-1", "early-2", "early-3"];

/// moto with a 2-shard stream holding the [`EARLY`] records, the even ones in the shard that
/// ListShards names first (the one read first), the odd ones in the other; returns the first
/// shard's starting hash key too.
async fn stream_with_early_records() -> (Emulator, String) {
    let em = Emulator::start().await.unwrap();
    em.create_stream(STREAM, 2).await.unwrap();
    let k = em.kinesis().await;
    let shards = k.list_shards().stream_name(STREAM).send().await.unwrap();
    let starts: Vec<String> = shards
        .shards()
        .iter()
        .map(|s| s.hash_key_range().unwrap().starting_hash_key().to_string())
        .collect();
    assert_eq!(starts.len(), 2);
    for (i, data) in EARLY.iter().enumerate() {
        k.put_record()
            .stream_name(STREAM)
            .partition_key(format!("key-{i}"))
            .explicit_hash_key(&starts[i % 2])
            .data(Blob::new(data.as_bytes()))
            .send()
            .await
            .unwrap();
    }
    (em, starts[0].clone())
}

/// Runs one read-back with a visitor that keeps every record's data; returns what it returned,
/// the data seen and how long it took.
async fn read(
    sink: &KinesisSink,
    window: &ReadWindow,
) -> (Result<ReadStats, ReadBackError>, Vec<String>, Duration) {
    let mut seen = Vec::new();
    let started = Instant::now();
    let result = sink
        .read_back(window, &mut |data: &[u8]| {
            seen.push(String::from_utf8_lossy(data).into_owned());
            ControlFlow::Continue(())
        })
        .await;
    (result, seen, started.elapsed())
}

fn assert_early_seen(seen: &[String]) {
    for data in EARLY {
        assert_eq!(
            seen.iter().filter(|s| *s == data).count(),
            1,
            "{data} handed over once: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_taken_after_the_reader_reached_the_tip_but_before_the_window_end_is_read() {
    let (em, first_shard_start) = stream_with_early_records().await;
    // A separate client writes the late record into the shard read first, the one polled at
    // its tip until the window's end (the other shard is read only after the window's end).
    let writer = em.kinesis().await;

    let sink = KinesisSink::new(em.kinesis().await, STREAM);
    let now = now_ms();
    let until_ms = now + 3000;
    let window = ReadWindow {
        from_ms: now - 10_000,
        until_ms,
        tip_until_ms: until_ms,
        max_calls: 1000,
        deadline: Instant::now() + Duration::from_secs(20),
    };
    let reader = tokio::spawn(async move { read(&sink, &window).await });

    tokio::time::sleep(Duration::from_secs(1)).await;
    writer
        .put_record()
        .stream_name(STREAM)
        .partition_key("late")
        .explicit_hash_key(first_shard_start)
        .data(Blob::new("late-record"))
        .send()
        .await
        .unwrap();
    let put_done_ms = now_ms();
    assert!(
        put_done_ms < until_ms,
        "test setup: the late put must be taken before the window's end ({put_done_ms} >= {until_ms})"
    );

    let (result, seen, elapsed) = reader.await.unwrap();
    let finished_ms = now_ms();
    let stats = result.unwrap();
    assert_early_seen(&seen);
    assert_eq!(
        seen.iter().filter(|s| *s == "late-record").count(),
        1,
        "the record taken while the reader waited at the tip is handed over: {seen:?}"
    );
    assert!(stats.covered, "{stats:?}");
    assert!(!stats.stopped, "{stats:?}");
    assert_eq!(stats.shards, 2, "{stats:?}");
    assert!(
        stats.calls >= 3,
        "the tip was polled, not read once per shard: {stats:?}"
    );
    assert!(
        finished_ms > until_ms,
        "the read ended only after the window's end ({finished_ms} <= {until_ms})"
    );
    assert!(
        elapsed >= Duration::from_millis(2500),
        "the read waited at the tip until the window's end: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_ended_before_the_read_stops_at_the_tip_without_waiting() {
    let (em, _) = stream_with_early_records().await;
    let from_ms = now_ms() - 10_000;
    // The early records arrived before the window's end (now - 1000 once this sleep is over).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let until_ms = now_ms() - 1000;
    // A record that arrived after the window's end ends its shard's reading, unread.
    em.kinesis()
        .await
        .put_record()
        .stream_name(STREAM)
        .partition_key("after")
        .data(Blob::new("after-the-window"))
        .send()
        .await
        .unwrap();

    let sink = KinesisSink::new(em.kinesis().await, STREAM);
    let window = ReadWindow {
        from_ms,
        until_ms,
        tip_until_ms: until_ms,
        max_calls: 1000,
        deadline: Instant::now() + Duration::from_secs(20),
    };
    let (result, seen, elapsed) = read(&sink, &window).await;
    let stats = result.unwrap();
    assert!(stats.covered, "{stats:?}");
    assert!(!stats.stopped, "{stats:?}");
    assert_early_seen(&seen);
    assert!(
        !seen.iter().any(|s| s == "after-the-window"),
        "a record that arrived after the window is not handed over: {seen:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "no wait at the tip of a window that already ended: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_before_the_window_end_leaves_the_read_uncovered() {
    let (em, _) = stream_with_early_records().await;
    let sink = KinesisSink::new(em.kinesis().await, STREAM);
    let now = now_ms();
    let window = ReadWindow {
        from_ms: now - 10_000,
        until_ms: now + 10_000,
        tip_until_ms: now + 10_000,
        max_calls: 1000,
        deadline: Instant::now() + Duration::from_secs(1),
    };
    let (result, seen, elapsed) = read(&sink, &window).await;
    let stats = result.expect("running out of time is not a failure");
    assert!(
        !stats.covered,
        "the tip before the window's end proves nothing: {stats:?}"
    );
    assert!(!stats.stopped, "{stats:?}");
    assert_early_seen(&seen);
    assert_eq!(
        seen.len(),
        4,
        "every shard is read to its tip before any tip is polled: {seen:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "the read gave up at its deadline, not at the window's end: {elapsed:?}"
    );
}
