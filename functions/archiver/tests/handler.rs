//! Handler behaviour on an in-memory object store: keys, bodies, exactly-once under retries,
//! poison records, failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use authtrail_archiver::store::MemoryObject;
use authtrail_archiver::{
    Archiver, Compression, Config, META_COUNT, META_FIRST, META_LAST, MemoryStore,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const SHARD: &str = "shardId-000000000000";
/// 2025-02-12T19:27:50Z
const T0: f64 = 1_739_388_470.156;

fn event(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    event_at(records, T0)
}

fn event_at(records: &[(u64, Vec<u8>)], arrival: f64) -> Vec<u8> {
    event_from(
        records,
        arrival,
        "arn:aws:kinesis:us-east-1:123456789012:stream/audit",
    )
}

fn event_from(records: &[(u64, Vec<u8>)], arrival: f64, source_arn: &str) -> Vec<u8> {
    let recs: Vec<Value> = records
        .iter()
        .map(|(seq, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("pk-{seq}"),
                    "sequenceNumber": seq_str(*seq),
                    "data": STANDARD.encode(data),
                    "approximateArrivalTimestamp": arrival + *seq as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{}", seq_str(*seq)),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/archiver",
                "awsRegion": "us-east-1",
                "eventSourceARN": source_arn,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "Records": recs })).unwrap()
}

/// Real-looking 56-digit sequence numbers, ordered like `n`.
fn seq_str(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{n:07}")
}

fn good(n: u64) -> Vec<u8> {
    format!("{{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"user-event\",\"event\":{{\"n\":{n}}}}}\n")
        .into_bytes()
}

fn goods(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|n| (n, good(n))).collect()
}

fn archiver(compression: Compression) -> Archiver<MemoryStore> {
    let mut config = Config::new("bucket");
    config.compression = compression;
    Archiver::new(MemoryStore::new(), config)
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// All archive lines across objects under `raw/`, in key order of first sequence number.
fn archived_lines(objects: &HashMap<String, MemoryObject>) -> Vec<String> {
    let mut by_first: BTreeMap<String, &MemoryObject> = BTreeMap::new();
    for (k, o) in objects {
        if k.starts_with("raw/") {
            by_first.insert(o.metadata[META_FIRST].clone(), o);
        }
    }
    let mut lines = Vec::new();
    for o in by_first.values() {
        let body = match o.content_type.as_str() {
            "application/gzip" => gunzip(&o.body),
            "application/zstd" => zstd::stream::decode_all(&o.body[..]).unwrap(),
            _ => o.body.to_vec(),
        };
        lines.extend(String::from_utf8(body).unwrap().lines().map(str::to_string));
    }
    lines
}

fn expected_lines(range: std::ops::Range<u64>) -> Vec<String> {
    range
        .map(|n| String::from_utf8(good(n)).unwrap().trim_end().to_string())
        .collect()
}

fn failures(resp: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    resp.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn batch_becomes_one_gzip_object_under_the_contract_key_with_metadata() {
    let a = archiver(Compression::Gzip { level: 6 });
    let (resp, summary) = a.process(&event(&goods(1..11))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let objects = a.store().objects();
    assert_eq!(objects.len(), 1);
    let key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl.gz", seq_str(1));
    let o = &objects[&key];
    assert_eq!(o.metadata[META_FIRST], seq_str(1));
    assert_eq!(o.metadata[META_LAST], seq_str(10));
    assert_eq!(o.metadata[META_COUNT], "10");
    let expected: Vec<u8> = (1..11).flat_map(good).collect();
    assert_eq!(gunzip(&o.body), expected);
    assert_eq!(summary.records, 10);
    assert_eq!(summary.objects, 1);
    assert_eq!(summary.bytes_in, expected.len());
    assert_eq!(summary.bytes_out, o.body.len());
}

#[tokio::test]
async fn gzip_objects_at_every_level_are_one_standard_member_with_a_fixed_header_read_by_flate2() {
    let expected: Vec<u8> = (1..3001).flat_map(good).collect();
    for level in 0..=9 {
        let a = archiver(Compression::Gzip { level });
        a.process(&event(&goods(1..3001))).await.unwrap();
        let objects = a.store().objects();
        let key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl.gz", seq_str(1));
        let body = &objects[&key].body;
        // ID1 ID2, deflate, no flags (no name), mtime 0; OS byte "unknown".
        assert_eq!(&body[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "level {level}");
        assert_eq!(body[9], 255, "level {level}");
        // flate2's decoder (independent of the compressor) reads exactly the records, and the
        // member ends the object (a single-member decoder leaves nothing after it).
        let mut decoder = flate2::read::GzDecoder::new(&body[..]);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        assert_eq!(out, expected, "level {level}");
        assert!(decoder.into_inner().is_empty(), "level {level}");
        if level > 0 {
            assert!(body.len() < expected.len() / 2, "level {level} compresses");
        }
    }
}

#[tokio::test]
async fn zstd_mode_writes_a_jsonl_zst_object_that_decompresses_to_the_records() {
    let a = archiver(Compression::Zstd { level: 3 });
    let (resp, summary) = a.process(&event(&goods(1..1001))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let objects = a.store().objects();
    assert_eq!(objects.len(), 1);
    let key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl.zst", seq_str(1));
    let o = &objects[&key];
    assert_eq!(o.content_type, "application/zstd");
    assert_eq!(o.metadata[META_FIRST], seq_str(1));
    assert_eq!(o.metadata[META_LAST], seq_str(1000));
    assert_eq!(o.metadata[META_COUNT], "1000");
    let expected: Vec<u8> = (1..1001).flat_map(good).collect();
    assert_eq!(zstd::stream::decode_all(&o.body[..]).unwrap(), expected);
    assert!(o.body.len() < expected.len() / 4);
    assert_eq!(summary.bytes_out, o.body.len());
    assert_eq!(archived_lines(&objects), expected_lines(1..1001));
}

#[tokio::test]
async fn uncompressed_mode_writes_plain_jsonl_byte_for_byte_adding_missing_newlines() {
    let a = archiver(Compression::None);
    let recs = vec![
        (1, b"{\"a\":1}".to_vec()),
        (2, b"{\"b\":2}\n".to_vec()),
        (3, b" {\"c\":3}\r\n".to_vec()),
    ];
    a.process(&event(&recs)).await.unwrap();
    let objects = a.store().objects();
    let key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl", seq_str(1));
    assert_eq!(
        &objects[&key].body[..],
        b"{\"a\":1}\n{\"b\":2}\n {\"c\":3}\r\n"
    );
}

#[tokio::test]
async fn records_out_of_order_in_the_event_are_archived_in_sequence_order() {
    let a = archiver(Compression::None);
    let mut recs = goods(1..6);
    recs.reverse();
    a.process(&event(&recs)).await.unwrap();
    assert_eq!(archived_lines(&a.store().objects()), expected_lines(1..6));
}

#[tokio::test]
async fn same_batch_retried_after_a_successful_write_adds_nothing() {
    let a = archiver(Compression::Gzip { level: 1 });
    let payload = event(&goods(1..101));
    a.process(&payload).await.unwrap();
    let before = a.store().objects();
    let (resp, summary) = a.process(&payload).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.already_stored, 100);
    assert_eq!(summary.objects, 0);
    assert_eq!(a.store().objects(), before);
}

#[tokio::test]
async fn longer_retry_with_the_same_start_archives_only_the_new_tail() {
    let a = archiver(Compression::None);
    a.process(&event(&goods(1..51))).await.unwrap();
    let (resp, summary) = a.process(&event(&goods(1..101))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.already_stored, 50);
    let objects = a.store().objects();
    let tail_key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl", seq_str(51));
    assert_eq!(objects[&tail_key].metadata[META_FIRST], seq_str(51));
    assert_eq!(archived_lines(&objects), expected_lines(1..101));
}

#[tokio::test]
async fn shorter_retry_then_the_next_batch_does_not_duplicate_the_stored_tail() {
    let a = archiver(Compression::None);
    a.process(&event(&goods(1..101))).await.unwrap();
    // Lambda retries a shorter batch from the same start, then moves on after it.
    let (resp, _) = a.process(&event(&goods(1..41))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let (resp, summary) = a.process(&event(&goods(41..151))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.already_stored, 60);
    assert_eq!(archived_lines(&a.store().objects()), expected_lines(1..151));
}

#[tokio::test]
async fn chain_of_retries_with_growing_batches_stores_every_record_once() {
    let a = archiver(Compression::Gzip { level: 1 });
    for end in [10, 30, 20, 60, 60, 45, 100] {
        let (resp, _) = a.process(&event(&goods(1..end + 1))).await.unwrap();
        assert!(resp.batch_item_failures.is_empty());
    }
    a.process(&event(&goods(101..121))).await.unwrap();
    assert_eq!(archived_lines(&a.store().objects()), expected_lines(1..121));
}

#[tokio::test]
async fn key_hour_comes_from_the_first_records_arrival_time_in_utc() {
    let a = archiver(Compression::None);
    // 2025-02-12T23:59:59.9Z: later records of the batch arrive after midnight.
    a.process(&event_at(&goods(1..3), 1_739_404_799.9))
        .await
        .unwrap();
    let keys: Vec<String> = a.store().objects().into_keys().collect();
    assert_eq!(
        keys,
        vec![format!(
            "raw/2025/02/12/23/audit-{SHARD}-{}.jsonl",
            seq_str(1)
        )]
    );
}

#[tokio::test]
async fn an_enhanced_fan_out_consumer_arn_gives_the_stream_name_in_the_archive_key() {
    let a = archiver(Compression::Gzip { level: 1 });
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/audit/consumer/archiver:1739388470";
    let mut recs = goods(1..4);
    recs[1].1 = b"not json".to_vec();
    a.process(&event_from(&recs, T0, arn)).await.unwrap();
    let mut keys: Vec<String> = a.store().objects().into_keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("errors/2025/02/12/19/audit-{SHARD}-{}.jsonl", seq_str(2)),
            format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl.gz", seq_str(1)),
        ]
    );
    let err = &a.store().objects()[&keys[0]];
    let line: Value =
        serde_json::from_slice(err.body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["stream"], "audit");
}

#[tokio::test]
async fn names_that_are_not_key_safe_are_escaped_in_the_keys() {
    let a = archiver(Compression::None);
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/a b%";
    a.process(&event_from(&goods(1..2), T0, arn)).await.unwrap();
    let keys: Vec<String> = a.store().objects().into_keys().collect();
    assert_eq!(
        keys,
        vec![format!(
            "raw/2025/02/12/19/a%20b%25-{SHARD}-{}.jsonl",
            seq_str(1)
        )]
    );
    assert_eq!(
        a.state_key("a b%", SHARD),
        format!("archiver-state/a%20b%25-{SHARD}.json")
    );
}

#[tokio::test]
async fn poison_records_go_to_the_error_prefix_with_reasons_and_the_rest_is_archived() {
    let a = archiver(Compression::None);
    let mut recs = goods(1..11);
    recs[2].1 = b"\xff\xfe not utf8".to_vec();
    recs[5].1 = b"[1,2,3]".to_vec();
    recs[7].1 = b"{\"truncated\":".to_vec();
    let (resp, summary) = a.process(&event(&recs)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.poison, 3);
    let objects = a.store().objects();
    let expected: Vec<String> = expected_lines(1..11)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| ![2, 5, 7].contains(i))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(archived_lines(&objects), expected);
    let err_key = format!("errors/2025/02/12/19/audit-{SHARD}-{}.jsonl", seq_str(3));
    let err = &objects[&err_key];
    assert_eq!(err.metadata[META_COUNT], "3");
    let lines: Vec<Value> = std::str::from_utf8(&err.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["sequenceNumber"], seq_str(3));
    assert_eq!(lines[0]["shardId"], SHARD);
    assert_eq!(lines[0]["stream"], "audit");
    assert!(lines[0]["reason"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(
        STANDARD.decode(lines[0]["data"].as_str().unwrap()).unwrap(),
        recs[2].1
    );
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .contains("not a JSON object")
    );
    assert!(
        lines[2]["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[tokio::test]
async fn retried_batch_with_poison_records_duplicates_neither_sink() {
    let a = archiver(Compression::None);
    let mut recs = goods(1..41);
    for i in [4usize, 17, 30] {
        recs[i].1 = b"not json".to_vec();
    }
    a.process(&event(&recs[..25])).await.unwrap();
    a.process(&event(&recs)).await.unwrap();
    a.process(&event(&recs[..10])).await.unwrap();
    let (resp, summary) = a.process(&event(&recs)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.objects, 0);
    let objects = a.store().objects();
    let poison_lines: usize = objects
        .iter()
        .filter(|(k, _)| k.starts_with("errors/"))
        .map(|(_, o)| o.body.iter().filter(|b| **b == b'\n').count())
        .sum();
    assert_eq!(poison_lines, 3);
    assert_eq!(archived_lines(&objects).len(), 37);
}

#[tokio::test]
async fn a_batch_of_only_poison_records_succeeds_without_an_archive_object() {
    let a = archiver(Compression::None);
    let recs: Vec<(u64, Vec<u8>)> = (1..4).map(|n| (n, b"oops".to_vec())).collect();
    let (resp, _) = a.process(&event(&recs)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let keys: Vec<String> = a.store().objects().into_keys().collect();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("errors/"));
}

#[tokio::test]
async fn failed_write_reports_the_first_record_and_the_retry_stores_everything_once() {
    let a = archiver(Compression::None);
    a.store().fail_writes_after(0, false);
    let payload = event(&goods(1..21));
    let (resp, summary) = a.process(&payload).await.unwrap();
    assert_eq!(failures(&resp), vec![seq_str(1)]);
    assert_eq!(summary.failed_shards, 1);
    assert!(a.store().objects().is_empty());
    a.store().heal();
    let (resp, _) = a.process(&payload).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(archived_lines(&a.store().objects()), expected_lines(1..21));
}

#[tokio::test]
async fn write_that_landed_but_failed_is_not_duplicated_by_the_retry() {
    let a = archiver(Compression::None);
    a.store().fail_writes_after(0, true);
    let payload = event(&goods(1..21));
    let (resp, _) = a.process(&payload).await.unwrap();
    assert_eq!(failures(&resp), vec![seq_str(1)]);
    a.store().heal();
    let (resp, _) = a.process(&event(&goods(1..31))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(archived_lines(&a.store().objects()), expected_lines(1..31));
}

#[tokio::test]
async fn failure_after_the_archive_write_without_saved_progress_retries_from_the_start_without_duplicates()
 {
    let a = archiver(Compression::None);
    let mut recs = goods(1..21);
    recs[9].1 = b"bad".to_vec();
    // The archive write succeeds, then every write fails (error object and progress).
    a.store().fail_writes_after(1, false);
    let (resp, _) = a.process(&event(&recs)).await.unwrap();
    // Poison write failed, then the state write failed too (writes keep failing): the retry
    // starts where this invocation did.
    assert_eq!(failures(&resp), vec![seq_str(1)]);
    a.store().heal();
    // Lambda retries from the reported record with a batch of another length.
    let (resp, _) = a.process(&event(&recs[..15])).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    a.process(&event(&recs)).await.unwrap();
    let objects = a.store().objects();
    assert_eq!(archived_lines(&objects).len(), 19);
    assert_eq!(
        objects.keys().filter(|k| k.starts_with("errors/")).count(),
        1
    );
}

#[tokio::test]
async fn progress_is_recorded_so_only_unstored_records_are_reported() {
    let a = archiver(Compression::None);
    let mut recs = goods(1..21);
    recs[14].1 = b"bad".to_vec();
    // The archive write and the state write succeed, the error object write fails.
    a.store().fail_writes_under("errors/");
    let (resp, _) = a.process(&event(&recs)).await.unwrap();
    assert_eq!(failures(&resp), vec![seq_str(15)]);
    a.store().heal();
    // Lambda retries from the reported record.
    let (resp, summary) = a.process(&event(&recs[14..])).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(summary.already_stored, 5);
    let objects = a.store().objects();
    assert_eq!(archived_lines(&objects).len(), 19);
    assert_eq!(
        objects.keys().filter(|k| k.starts_with("errors/")).count(),
        1
    );
    // And the batch after it starts clean.
    let (resp, _) = a.process(&event(&goods(21..31))).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(archived_lines(&a.store().objects()).len(), 29);
}

#[tokio::test]
async fn object_under_our_key_without_metadata_is_reported_not_overwritten() {
    use authtrail_archiver::ObjectStore;
    let a = archiver(Compression::None);
    let key = format!("raw/2025/02/12/19/audit-{SHARD}-{}.jsonl", seq_str(1));
    a.store()
        .put(&key, bytes::Bytes::from_static(b"foreign\n"), "text/plain")
        .await
        .unwrap();
    let (resp, _) = a.process(&event(&goods(1..5))).await.unwrap();
    assert_eq!(failures(&resp), vec![seq_str(1)]);
    assert_eq!(&a.store().objects()[&key].body[..], b"foreign\n");
}

#[tokio::test]
async fn payload_that_is_not_a_kinesis_event_is_rejected() {
    let a = archiver(Compression::None);
    assert!(a.process(b"{\"Records\":[{\"foo\":1}]}").await.is_err());
    assert!(a.process(b"not json").await.is_err());
}

#[tokio::test]
async fn a_rejected_payload_reports_the_invalid_event_error_type_to_lambda() {
    let a = archiver(Compression::None);
    for payload in [&b"not json"[..], br#"{"Records":[{"foo":1}]}"#] {
        let e = a.handle(payload, "req-1").await.unwrap_err();
        let d = lambda_runtime::Diagnostic::from(e);
        assert_eq!(d.error_type, "InvalidEvent");
        assert!(
            d.error_message.starts_with("invalid Kinesis event"),
            "{}",
            d.error_message
        );
    }
    let mut recs = event(&goods(1..2));
    let text = String::from_utf8(recs.clone()).unwrap();
    recs = text.replace(&seq_str(1), "12a").into_bytes();
    let e = a.handle(&recs, "req-2").await.unwrap_err();
    assert_eq!(
        lambda_runtime::Diagnostic::from(e).error_type,
        "InvalidEvent"
    );
    assert!(a.store().objects().is_empty());
}

#[tokio::test]
async fn empty_event_succeeds_without_writing() {
    let a = archiver(Compression::None);
    let (resp, _) = a.process(b"{\"Records\":[]}").await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert!(a.store().calls().is_empty());
}
