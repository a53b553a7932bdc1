#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn rec(i: usize, size: usize) -> Record {
    let mut data = format!("{i:08}").into_bytes();
    data.resize(size.max(8), b'x');
    Record {
        data,
        partition_key: "k".repeat(32),
    }
}

fn policy() -> PutPolicy {
    PutPolicy {
        max_attempts: 10,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        deadline: None,
        max_in_flight: 4,
    }
}

/// Accepts everything except the failures it is told to inject.
#[derive(Default)]
struct Memory {
    accepted: Mutex<Vec<Vec<u8>>>,
    /// Entries at odd positions fail while this is above zero.
    fail_entries: AtomicUsize,
    /// Whole calls that fail with a retryable error.
    fail_calls: AtomicUsize,
    /// The code of those whole-call failures.
    call_code: Option<&'static str>,
    largest_call: Mutex<(usize, usize)>,
    limits: Option<BatchLimits>,
    /// Answer one result less than asked.
    short_answer: bool,
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl BatchWriter for Memory {
    fn limits(&self) -> BatchLimits {
        self.limits.unwrap_or(KINESIS_LIMITS)
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        let limits = self.limits();
        let bytes: usize = records.iter().map(|r| limits.size_of(r)).sum();
        assert!(records.len() <= limits.max_records_per_call && bytes <= limits.max_bytes_per_call);
        {
            let mut largest = self.largest_call.lock().unwrap();
            largest.0 = largest.0.max(records.len());
            largest.1 = largest.1.max(bytes);
        }
        if take(&self.fail_calls) {
            return Err(call_error(self.call_code, "Rate exceeded for stream"));
        }
        let mut out = Vec::with_capacity(records.len());
        let mut accepted = self.accepted.lock().unwrap();
        for (i, r) in records.iter().enumerate() {
            if i % 2 == 1 && take(&self.fail_entries) {
                out.push(EntryResult::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard".into(),
                });
            } else {
                accepted.push(r.data.clone());
                out.push(EntryResult::Accepted);
            }
        }
        if self.short_answer {
            out.pop();
        }
        Ok(out)
    }
}

#[tokio::test]
async fn partial_failures_resend_only_the_failed_entries_until_all_are_accepted() {
    let sink = Memory::default();
    sink.fail_entries.store(300, Ordering::SeqCst);
    let records: Vec<_> = (0..1000).map(|i| rec(i, 100)).collect();
    let stats = put_all(&sink, &records, policy()).await.unwrap();
    let accepted = sink.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 1000, "each record accepted exactly once");
    let mut sorted = accepted.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1000);
    assert_eq!(stats.retried_entries, 300);
}

#[tokio::test]
async fn whole_call_throttling_is_retried() {
    let sink = Memory {
        call_code: Some("ProvisionedThroughputExceededException"),
        ..Memory::default()
    };
    sink.fail_calls.store(3, Ordering::SeqCst);
    let records: Vec<_> = (0..10).map(|i| rec(i, 10)).collect();
    put_all(&sink, &records, policy()).await.unwrap();
    assert_eq!(sink.accepted.lock().unwrap().len(), 10);
}

#[tokio::test]
async fn persistent_failures_end_in_an_error_naming_the_count() {
    let sink = Memory::default();
    sink.fail_calls.store(usize::MAX, Ordering::SeqCst);
    let records: Vec<_> = (0..10).map(|i| rec(i, 10)).collect();
    let mut p = policy();
    p.max_attempts = 3;
    let e = put_all(&sink, &records, p).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Exhausted {
                failed: 10,
                total: 10,
                attempts: 3,
                last,
                out_of_time: false,
            } if last == "sdk: Rate exceeded for stream"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_fatal_call_failure_stops_at_once() {
    let sink = Memory {
        call_code: Some("ResourceNotFoundException"),
        ..Memory::default()
    };
    sink.fail_calls.store(usize::MAX, Ordering::SeqCst);
    let records: Vec<_> = (0..10).map(|i| rec(i, 10)).collect();
    let e = put_all(&sink, &records, policy()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Fatal { code, .. } if code == "ResourceNotFoundException"),
        "{e}"
    );
    assert_eq!(
        sink.fail_calls.load(Ordering::SeqCst),
        usize::MAX - 1,
        "one call only"
    );
}

#[tokio::test]
async fn a_deadline_too_close_for_the_next_wait_ends_the_retries() {
    let sink = Memory::default();
    sink.fail_calls.store(usize::MAX, Ordering::SeqCst);
    let records: Vec<_> = (0..3).map(|i| rec(i, 10)).collect();
    let mut p = policy();
    p.base_backoff = Duration::from_secs(10);
    p.max_backoff = Duration::from_secs(10);
    p.deadline = Some(Instant::now());
    let e = put_all(&sink, &records, p).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Exhausted {
                attempts: 1,
                out_of_time: true,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_wrong_number_of_results_is_an_error() {
    let sink = Memory {
        short_answer: true,
        ..Memory::default()
    };
    let records: Vec<_> = (0..3).map(|i| rec(i, 10)).collect();
    let e = put_all(&sink, &records, policy()).await.unwrap_err();
    assert!(
        matches!(e, Error::ResultCountMismatch { sent: 3, got: 2 }),
        "{e}"
    );
}

#[tokio::test]
async fn calls_respect_the_record_count_and_byte_limits() {
    let sink = Memory::default();
    // 12 records of ~900 KiB: at most 5 per 5 MiB call.
    let records: Vec<_> = (0..12).map(|i| rec(i, 900 * 1024)).collect();
    let stats = put_all(&sink, &records, policy()).await.unwrap();
    let (count, bytes) = *sink.largest_call.lock().unwrap();
    assert!(count <= 500 && bytes <= 5 * 1024 * 1024);
    assert_eq!(stats.calls, 3);
    let many: Vec<_> = (0..1201).map(|i| rec(i, 10)).collect();
    let stats = put_all(&sink, &many, policy()).await.unwrap();
    assert_eq!(stats.calls, 3);
}

#[tokio::test]
async fn a_record_over_the_per_record_limit_is_refused_before_any_call() {
    let sink = Memory::default();
    let records = vec![rec(0, 1024 * 1024)];
    let e = put_all(&sink, &records, policy()).await.unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
    assert!(sink.accepted.lock().unwrap().is_empty());
    // Firehose does not count the partition key, Kinesis does.
    let firehose = Memory {
        limits: Some(FIREHOSE_LIMITS),
        ..Memory::default()
    };
    let at_limit = vec![Record {
        data: vec![b'x'; 1000 * 1024],
        partition_key: "k".into(),
    }];
    put_all(&firehose, &at_limit, policy()).await.unwrap();
    assert!(
        put_all(&Memory::default(), &at_limit, policy())
            .await
            .is_ok()
    );
    let over = vec![Record {
        data: vec![b'x'; 1024 * 1024],
        partition_key: "k".into(),
    }];
    assert!(matches!(
        put_all(&Memory::default(), &over, policy()).await,
        Err(Error::RecordTooLarge { size, limit: 1048576 }) if size == 1024 * 1024 + 1
    ));
}

/// Accepts everything after a short pause, recording how many calls overlapped.
#[derive(Default)]
struct Slow {
    current: AtomicUsize,
    max: AtomicUsize,
    accepted: AtomicUsize,
}

impl BatchWriter for Slow {
    fn limits(&self) -> BatchLimits {
        KINESIS_LIMITS
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.accepted.fetch_add(records.len(), Ordering::SeqCst);
        Ok(vec![EntryResult::Accepted; records.len()])
    }
}

#[tokio::test]
async fn calls_are_sent_concurrently_but_never_more_than_max_in_flight() {
    let sink = Slow::default();
    let records: Vec<_> = (0..5000).map(|i| rec(i, 10)).collect();
    let mut p = policy();
    p.max_in_flight = 3;
    let stats = put_all(&sink, &records, p).await.unwrap();
    assert_eq!(stats.calls, 10);
    assert_eq!(sink.accepted.load(Ordering::SeqCst), 5000);
    assert_eq!(sink.max.load(Ordering::SeqCst), 3);
}

#[test]
fn firehose_limits_are_stricter_than_kinesis() {
    let records: Vec<_> = (0..600).map(|i| rec(i, 10)).collect();
    let idx: Vec<usize> = (0..records.len()).collect();
    let parts = FIREHOSE_LIMITS.split(&idx, &records);
    assert_eq!(
        parts.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![500, 100]
    );
    // 5 records of 900 KiB: four fit Firehose's 4 MiB, five Kinesis' 5 MiB.
    let big: Vec<_> = (0..5).map(|i| rec(i, 900 * 1024)).collect();
    let idx: Vec<usize> = (0..5).collect();
    assert_eq!(FIREHOSE_LIMITS.split(&idx, &big).len(), 2);
    assert_eq!(KINESIS_LIMITS.split(&idx, &big).len(), 1);
}

#[test]
fn fatal_codes_are_the_union_of_both_lists_and_the_rest_is_retryable() {
    for code in [
        "ResourceNotFoundException",
        "InvalidArgumentException",
        "AccessDeniedException",
        "InvalidKMSResourceException",
        "ValidationException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "KMSAccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSourceException",
    ] {
        assert!(is_fatal_error_code(code), "{code}");
        assert!(matches!(call_error(Some(code), "m"), Error::Fatal { .. }));
    }
    for code in [
        "ServiceUnavailableException",
        "ProvisionedThroughputExceededException",
        "InternalFailure",
        "ThrottlingException",
    ] {
        assert!(!is_fatal_error_code(code), "{code}");
    }
    assert!(matches!(
        call_error(None, "dispatch failure"),
        Error::Retryable { code, .. } if code == "sdk"
    ));
}
