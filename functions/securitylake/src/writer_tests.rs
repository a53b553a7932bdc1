//! The handler on an in-memory store: keys, Parquet bodies read back, retries of every shape,
//! poison records, injected failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use base64::Engine;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use super::*;
use crate::schema::OcsfClass;
use crate::store::MemoryStore;

const LAKE: &str = "aws-security-data-lake-eu-west-1-abc";
const WORK: &str = "authtrail-work";
const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-1:123456789012:stream/authtrail-events";
const SHARD: &str = "shardId-000000000000";
/// 2025-02-12T19:27:50Z.
const T0: i64 = 1_739_388_470;

fn writer() -> Writer<MemoryStore> {
    let config = Config::new(LAKE, "eu-west-1", "123456789012", WORK);
    Writer::new(MemoryStore::new(), config)
}

/// A user event envelope `ev-{i}` at `T0 + offset` seconds.
fn user_event(i: usize, offset: i64) -> Vec<u8> {
    let ms = (T0 + offset) * 1000;
    format!(
        "{{\"timestamp\":\"{}\",\"eventType\":\"user-event\",\"event\":{{\"id\":\"ev-{i:05}\",\"time\":{ms},\"type\":\"LOGIN\",\"realmId\":\"r\",\"clientId\":\"admin-cli\",\"ipAddress\":\"192.0.2.10\"}}}}\n",
        authtrail_core::envelope::format_timestamp(ms)
    )
    .into_bytes()
}

/// Sequence number of the `i`-th record (zero-padded like real ones, so they compare as text
/// and as numbers alike).
fn seq(i: usize) -> String {
    format!("4959{i:010}")
}

fn payload(records: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let items: Vec<Value> = records
        .iter()
        .map(|(i, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("pk-{i}"),
                    "sequenceNumber": seq(*i),
                    "data": b64.encode(data),
                    "approximateArrivalTimestamp": T0 as f64 + *i as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{}", seq(*i)),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/authtrail-securitylake",
                "awsRegion": "eu-west-1",
                "eventSourceARN": STREAM_ARN,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "Records": items })).unwrap()
}

fn batch_of(records: &[(usize, Vec<u8>)], range: std::ops::Range<usize>) -> Vec<u8> {
    payload(&records[range])
}

/// The rows of a Parquet body.
fn read(body: &bytes::Bytes) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "one row group, one batch");
    batches[0].clone()
}

/// `metadata.uid` of every row of every data object, with the object's key, in row order.
fn stored_uids(w: &Writer<MemoryStore>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (path, o) in w.store().objects() {
        let Some(key) = path.strip_prefix(&format!("{LAKE}/")) else {
            continue;
        };
        let batch = read(&o.body);
        let metadata = batch.column_by_name("metadata").unwrap().as_struct();
        let uid = metadata.column_by_name("uid").unwrap().as_string::<i32>();
        let uids: Vec<String> = (0..uid.len()).map(|i| uid.value(i).to_string()).collect();
        assert_eq!(o.metadata[META_COUNT], uids.len().to_string(), "{key}");
        out.insert(key.to_string(), uids);
    }
    out
}

/// Every uid exactly once across all objects.
fn assert_exactly_once(w: &Writer<MemoryStore>, n: usize) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (key, uids) in stored_uids(w) {
        for uid in uids {
            if let Some(other) = seen.insert(uid.clone(), key.clone()) {
                panic!("{uid} stored twice: in {other} and {key}");
            }
        }
    }
    let missing: Vec<String> = (0..n)
        .map(|i| format!("ev-{i:05}"))
        .filter(|u| !seen.contains_key(u))
        .collect();
    assert!(missing.is_empty(), "not stored: {missing:?}");
    assert_eq!(seen.len(), n);
}

#[tokio::test]
async fn a_batch_lands_as_one_parquet_object_per_class_and_day_under_the_partition_layout() {
    let w = writer();
    // 30 events on 2025-02-12 and 10 just after midnight UTC on 2025-02-13.
    let records: Vec<(usize, Vec<u8>)> = (0..40)
        .map(|i| (i, user_event(i, if i < 30 { i as i64 } else { 20_000 })))
        .collect();
    let (resp, s) = w.process(&payload(&records)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((s.records, s.rows, s.objects, s.poison), (40, 40, 2, 0));
    let stored = stored_uids(&w);
    let keys: Vec<&String> = stored.keys().collect();
    let class = OcsfClass::from_uid(i64::from(
        read(&w.store().objects()[&format!("{LAKE}/{}", keys[0])].body)
            .column_by_name("class_uid")
            .unwrap()
            .as_primitive::<Int32Type>()
            .value(0),
    ))
    .unwrap();
    let source = w.config().source_name(class);
    assert_eq!(
        keys,
        [
            &format!(
                "ext/{source}/region=eu-west-1/accountId=123456789012/eventDay=20250212/authtrail-events-{SHARD}-{}.parquet",
                seq(0)
            ),
            &format!(
                "ext/{source}/region=eu-west-1/accountId=123456789012/eventDay=20250213/authtrail-events-{SHARD}-{}.parquet",
                seq(30)
            ),
        ]
    );
    assert_exactly_once(&w, 40);
    for (path, o) in w.store().objects() {
        assert_eq!(o.content_type, PARQUET_CONTENT_TYPE, "{path}");
        assert!(o.metadata.contains_key(META_FIRST) && o.metadata.contains_key(META_LAST));
    }
    // No state object is needed for a batch that went through in one go.
    assert!(w.store().objects().keys().all(|k| k.starts_with(LAKE)));
}

#[tokio::test]
async fn rows_are_ordered_by_time_within_an_object() {
    let w = writer();
    // Sequence order is not time order: later-stamped events arrive first.
    let records: Vec<(usize, Vec<u8>)> = (0..20)
        .map(|i| (i, user_event(i, 100 - i as i64)))
        .collect();
    w.process(&payload(&records)).await.unwrap();
    let objects = w.store().objects();
    assert_eq!(objects.len(), 1);
    let batch = read(&objects.values().next().unwrap().body);
    let time = batch
        .column_by_name("time")
        .unwrap()
        .as_primitive::<Int64Type>();
    let times: Vec<i64> = time.values().to_vec();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted);
    assert_eq!(times[0], (T0 + 81) * 1000);
}

#[tokio::test]
async fn the_same_batch_delivered_again_adds_nothing() {
    let w = writer();
    let records: Vec<(usize, Vec<u8>)> = (0..50).map(|i| (i, user_event(i, i as i64))).collect();
    let p = payload(&records);
    w.process(&p).await.unwrap();
    let before = w.store().objects();
    let (resp, s) = w.process(&p).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((s.objects, s.already_stored), (0, 50));
    assert_eq!(w.store().objects(), before);
    assert_exactly_once(&w, 50);
}

#[tokio::test]
async fn retries_with_same_start_longer_or_shorter_and_the_batches_after_them_add_no_duplicate() {
    let w = writer();
    let records: Vec<(usize, Vec<u8>)> = (0..300).map(|i| (i, user_event(i, i as i64))).collect();
    // Batches as Lambda may deliver them after a write that landed: same start, same length,
    // longer, shorter; then the batch that follows the shorter one, and one more retry.
    for range in [0..100, 0..100, 0..200, 0..50, 50..250, 50..120, 250..300] {
        let (resp, _) = w.process(&batch_of(&records, range.clone())).await.unwrap();
        assert!(resp.batch_item_failures.is_empty(), "batch {range:?}");
    }
    assert_exactly_once(&w, 300);
    // The shorter retry needed the per-shard marks.
    let state = format!("{WORK}/securitylake-state/authtrail-events-{SHARD}.json");
    assert!(w.store().objects().contains_key(&state));
}

#[tokio::test]
async fn poison_records_go_to_the_error_prefix_with_reasons_and_the_rest_is_stored() {
    let w = writer();
    let mut records: Vec<(usize, Vec<u8>)> = (0..30).map(|i| (i, user_event(i, 0))).collect();
    records.push((30, b"not json".to_vec()));
    records.push((31, b"[1,2]".to_vec()));
    records.push((32, vec![b'{', 0xff, b'}']));
    let p = payload(&records);
    let (resp, s) = w.process(&p).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((s.rows, s.poison), (30, 3));
    assert_exactly_once(&w, 30);
    let key = format!(
        "{WORK}/securitylake-errors/2025/02/12/19/authtrail-events-{SHARD}-{}.jsonl",
        seq(30)
    );
    let objects = w.store().objects();
    let body = String::from_utf8(objects[&key].body.to_vec()).unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not valid JSON")
    );
    assert_eq!(lines[1]["reason"], "not a JSON object");
    assert!(lines[2]["reason"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[1]["sequenceNumber"], seq(31));
    // Delivered again: nothing more.
    let (_, s) = w.process(&p).await.unwrap();
    assert_eq!((s.objects, s.already_stored), (0, 33));
}

#[tokio::test]
async fn a_failed_write_reports_the_first_unstored_record_and_the_retry_completes_exactly_once() {
    for land in [false, true] {
        let w = writer();
        // Three sinks: two days and errors.
        let mut records: Vec<(usize, Vec<u8>)> = (0..60)
            .map(|i| (i, user_event(i, if i % 2 == 0 { 0 } else { 20_000 })))
            .collect();
        records.push((60, b"poison".to_vec()));
        w.store().fail_writes_after(1, land);
        let (resp, s) = w.process(&payload(&records)).await.unwrap();
        assert_eq!(s.failed_shards, 1, "land={land}");
        let retry_from = resp.batch_item_failures[0].item_identifier.clone().unwrap();
        w.store().heal();
        let start = records
            .iter()
            .position(|(i, _)| seq(*i) == retry_from)
            .unwrap();
        let (resp, _) = w
            .process(&batch_of(&records, start..records.len()))
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty(), "land={land}");
        assert_exactly_once(&w, 60);
    }
}

#[tokio::test]
async fn a_payload_that_is_not_a_kinesis_event_fails_the_invocation_as_invalid_event() {
    let w = writer();
    let e = w
        .handle(b"{\"Records\":[{\"foo\":1}]}", "req-1")
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "InvalidEvent");
}
