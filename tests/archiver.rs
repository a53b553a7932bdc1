//! End-to-end tests of the archiver: the real `authtrail-archiver` binary under the local
//! Lambda runtime, fed by the event-source runner from moto's Kinesis, writing to moto's S3.
//!
//! Build the binary first: `cargo build -p authtrail-archiver --bins` (`make test` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use authtrail_harness::{Emulator, bin_path};
use authtrail_runner::kinesis::{EventContext, RecordInput, event_payload, record_json};
use authtrail_runner::{FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: &str = "archive";

/// A record put into the stream: where it landed and what it holds.
#[derive(Debug, Clone)]
struct Put {
    shard: String,
    seq: String,
    data: Vec<u8>,
}

fn cmp_seq(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn envelope(i: usize) -> Vec<u8> {
    format!(
        "{{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"user-event\",\"event\":{{\"id\":\"ev-{i:06}\",\"time\":1739388470156,\"type\":\"LOGIN\",\"realmId\":\"r\",\"clientId\":\"admin-cli\",\"ipAddress\":\"<redacted>\"}}}}\n"
    )
    .into_bytes()
}

/// Puts `records` with random partition keys, 500 per PutRecords call, four calls in flight;
/// returns them in input order with the shard and sequence number Kinesis gave each.
async fn put_all(emu: &Emulator, stream: &str, records: Vec<Vec<u8>>) -> Vec<Put> {
    let kinesis = emu.kinesis().await;
    let chunks: Vec<Vec<Vec<u8>>> = records.chunks(500).map(<[_]>::to_vec).collect();
    let mut results: Vec<Option<Vec<Put>>> = vec![None; chunks.len()];
    let mut tasks = tokio::task::JoinSet::new();
    for (index, chunk) in chunks.into_iter().enumerate() {
        if tasks.len() >= 4
            && let Some(done) = tasks.join_next().await
        {
            let (i, puts) = done.unwrap();
            results[i] = Some(puts);
        }
        let kinesis = kinesis.clone();
        let stream = stream.to_string();
        tasks.spawn(async move {
            let entries: Vec<PutRecordsRequestEntry> = chunk
                .iter()
                .map(|d| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(d.clone()))
                        .partition_key(uuid::Uuid::new_v4().to_string())
                        .build()
                        .unwrap()
                })
                .collect();
            let resp = kinesis
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.failed_record_count(), Some(0));
            let puts: Vec<Put> = resp
                .records()
                .iter()
                .zip(chunk)
                .map(|(entry, data)| Put {
                    shard: entry.shard_id().unwrap().to_string(),
                    seq: entry.sequence_number().unwrap().to_string(),
                    data,
                })
                .collect();
            (index, puts)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, puts) = done.unwrap();
        results[i] = Some(puts);
    }
    results.into_iter().flat_map(Option::unwrap).collect()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// An S3 object: key, user metadata, body.
struct Object {
    key: String,
    metadata: HashMap<String, String>,
    body: Vec<u8>,
}

async fn objects_under(emu: &Emulator, prefix: &str) -> Vec<Object> {
    let s3 = emu.s3().await;
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let resp = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            resp.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match resp.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let o = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        let metadata = o.metadata().cloned().unwrap_or_default();
        let body = o.body.collect().await.unwrap().into_bytes().to_vec();
        out.push(Object {
            key,
            metadata,
            body,
        });
    }
    out
}

/// Checks the archive against what was put: every good record exactly once, byte for byte,
/// in sequence order within each object, under the contract's keys with the right metadata.
async fn assert_archived_exactly_once(emu: &Emulator, stream: &str, expected: &[&Put]) {
    let by_data: HashMap<&[u8], &Put> = expected.iter().map(|p| (&p.data[..], *p)).collect();
    assert_eq!(by_data.len(), expected.len(), "test data must be unique");
    // moto numbers each shard from 1: a record is identified by shard and sequence number.
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for o in objects_under(emu, "raw/").await {
        // raw/YYYY/MM/DD/HH/{stream}-{shardId}-{firstSequenceNumber}.jsonl.gz
        let parts: Vec<&str> = o.key.split('/').collect();
        assert_eq!(parts.len(), 6, "key {}", o.key);
        assert_eq!(parts[1].len(), 4);
        assert!(
            parts[2..5]
                .iter()
                .all(|p| p.len() == 2 && p.parse::<u32>().is_ok())
        );
        let name = parts[5].strip_suffix(".jsonl.gz").expect("gzip extension");
        let body = gunzip(&o.body);
        assert!(body.ends_with(b"\n"));
        let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
        let puts: Vec<&Put> = lines
            .iter()
            .map(|l| {
                *by_data
                    .get(l)
                    .expect("archived line is a record that was put")
            })
            .collect();
        let first = puts[0];
        let last = puts[puts.len() - 1];
        assert_eq!(name, format!("{stream}-{}-{}", first.shard, first.seq));
        assert!(
            puts.iter().all(|p| p.shard == first.shard),
            "one shard per object"
        );
        assert!(
            puts.windows(2)
                .all(|w| cmp_seq(&w[0].seq, &w[1].seq).is_lt()),
            "lines in sequence order in {}",
            o.key
        );
        assert_eq!(o.metadata["first-sequence-number"], first.seq);
        assert_eq!(o.metadata["last-sequence-number"], last.seq);
        assert_eq!(o.metadata["record-count"], puts.len().to_string());
        for p in puts {
            assert!(
                seen.insert((p.shard.clone(), p.seq.clone())),
                "record {}/{} archived twice",
                p.shard,
                p.seq
            );
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|p| !seen.contains(&(p.shard.clone(), p.seq.clone())))
        .map(|p| p.seq.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} records not archived: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

async fn setup(stream: &str, shards: i32) -> Emulator {
    let emu = Emulator::start().await.unwrap();
    emu.create_stream(stream, shards).await.unwrap();
    emu.create_bucket(BUCKET).await.unwrap();
    emu
}

fn function_config(emu: &Emulator, extra: &[(&str, &str)]) -> FunctionConfig {
    let mut cfg = FunctionConfig::new(
        "authtrail-archiver",
        bin_path("authtrail-archiver").unwrap(),
    )
    .with_env(emu.env())
    .with_env([("ARCHIVE_BUCKET", BUCKET)])
    .with_env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    .with_timeout(Duration::from_secs(60));
    cfg.memory_mb = 128;
    cfg.echo_logs = false;
    cfg
}

fn mapping(stream: &str) -> KinesisSourceConfig {
    let mut m = KinesisSourceConfig::new(stream);
    m.batch_size = 10_000;
    m.max_batching_window = Duration::from_secs(1);
    m.report_batch_item_failures = true;
    m.retry_backoff = Duration::from_millis(200);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_over_two_shards_are_archived_exactly_once_in_order_under_contract_keys()
 {
    let stream = "audit-100k";
    let emu = setup(stream, 2).await;
    let t0 = std::time::Instant::now();
    let puts = put_all(&emu, stream, (0..100_000).map(envelope).collect()).await;
    eprintln!("put: {:?}", t0.elapsed());
    assert_eq!(
        puts.iter().map(|p| &p.shard).collect::<HashSet<_>>().len(),
        2
    );
    let function = Arc::new(
        LambdaFunction::start(function_config(&emu, &[]))
            .await
            .unwrap(),
    );
    let source =
        KinesisEventSource::new(&emu.sdk_config().await, mapping(stream), function.clone())
            .await
            .unwrap();
    let stats = source.drain().await.unwrap();
    eprintln!("drained: {:?}", t0.elapsed());
    assert_eq!(stats.total.records_processed, 100_000, "{stats}");
    assert_eq!(
        stats.total.partial_failures + stats.total.function_errors,
        0,
        "{stats}"
    );
    let expected: Vec<&Put> = puts.iter().collect();
    assert_archived_exactly_once(&emu, stream, &expected).await;
    eprintln!("checked: {:?}", t0.elapsed());
    // One summary line per invocation, with the counts.
    let summaries = function
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("archived batch"))
        .count();
    assert_eq!(summaries as u64, stats.total.invocations);
}

/// Real stream records, read back from moto, as they would appear in a `KinesisEvent`.
async fn read_shard(
    emu: &Emulator,
    stream: &str,
) -> (
    String,
    Vec<(String, String, Vec<u8>, chrono::DateTime<chrono::Utc>)>,
) {
    let kinesis = emu.kinesis().await;
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let shard = shards.shards()[0].shard_id().to_string();
    let mut it = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_string);
    let mut out = Vec::new();
    while let Some(i) = it {
        let r = kinesis
            .get_records()
            .shard_iterator(i)
            .send()
            .await
            .unwrap();
        if r.records().is_empty() {
            break;
        }
        for rec in r.records() {
            let t = rec.approximate_arrival_timestamp().unwrap();
            out.push((
                rec.sequence_number().to_string(),
                rec.partition_key().unwrap_or_default().to_string(),
                rec.data().as_ref().to_vec(),
                chrono::DateTime::from_timestamp_millis(t.to_millis().unwrap()).unwrap(),
            ));
        }
        it = r.next_shard_iterator().map(str::to_string);
    }
    (shard, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_retried_after_a_successful_write_with_same_start_longer_or_shorter_adds_no_duplicate()
 {
    let stream = "audit-retry";
    let emu = setup(stream, 1).await;
    let puts = put_all(&emu, stream, (0..300).map(envelope).collect()).await;
    let (shard, records) = read_shard(&emu, stream).await;
    assert_eq!(records.len(), 300);
    let ctx = EventContext {
        region: emu.region().to_string(),
        stream_arn: format!(
            "arn:aws:kinesis:{}:123456789012:stream/{stream}",
            emu.region()
        ),
        invoke_identity_arn: "arn:aws:iam::123456789012:role/authtrail-archiver-role".into(),
    };
    let payload = |range: std::ops::Range<usize>| {
        let jsons: Vec<String> = records[range]
            .iter()
            .map(|(seq, pk, data, at)| {
                record_json(
                    &ctx,
                    &RecordInput {
                        shard_id: &shard,
                        sequence_number: seq,
                        partition_key: pk,
                        data,
                        arrival: *at,
                        encryption_type: None,
                    },
                )
                .unwrap()
            })
            .collect();
        event_payload(jsons.iter().map(String::as_str))
    };
    let function = LambdaFunction::start(function_config(&emu, &[]))
        .await
        .unwrap();
    // Batches as Lambda may deliver them after a write that landed: same start, same length,
    // longer, shorter; then the batch that follows the shorter one, and one more retry.
    for range in [0..100, 0..100, 0..200, 0..50, 50..250, 50..120, 250..300] {
        let inv = function.invoke(payload(range.clone())).await.unwrap();
        let resp: Value = inv.response_json().unwrap();
        assert_eq!(
            resp["batchItemFailures"],
            serde_json::json!([]),
            "batch {range:?}"
        );
    }
    let expected: Vec<&Put> = puts.iter().collect();
    assert_archived_exactly_once(&emu, stream, &expected).await;
}

/// A TCP proxy in front of moto's S3 whose behaviour the test switches: forward, refuse
/// connections, or forward every request but lose the responses to PUTs (the write lands, the
/// caller sees a broken connection).
struct FaultyProxy {
    port: u16,
    mode: Arc<AtomicU8>,
}

const FORWARD: u8 = 0;
const REFUSE: u8 = 1;
const LOSE_PUT_RESPONSES: u8 = 2;

impl FaultyProxy {
    async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let m = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move { proxy_connection(client, upstream_port, m).await });
            }
        });
        Self { port, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn proxy_connection(mut client: TcpStream, upstream_port: u16, mode: Arc<AtomicU8>) {
    if mode.load(Ordering::SeqCst) == REFUSE {
        return; // dropped: connection reset/closed before any response
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
        return;
    };
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut ubuf = vec![0u8; 64 * 1024];
    // Method of the request in flight on this connection (HTTP/1.1, one at a time).
    let mut is_put = false;
    loop {
        tokio::select! {
            n = client.read(&mut cbuf) => {
                let Ok(n) = n else { return };
                if n == 0 || mode.load(Ordering::SeqCst) == REFUSE { return; }
                for method in [&b"PUT "[..], b"GET ", b"HEAD ", b"POST ", b"DELETE "] {
                    if cbuf[..n].starts_with(method) {
                        is_put = method == b"PUT ";
                    }
                }
                if upstream.write_all(&cbuf[..n]).await.is_err() { return; }
            }
            n = upstream.read(&mut ubuf) => {
                let Ok(n) = n else { return };
                if n == 0 { return; }
                match mode.load(Ordering::SeqCst) {
                    // S3 processed the PUT; the caller never learns how.
                    LOSE_PUT_RESPONSES if is_put => return,
                    REFUSE => return,
                    _ => if client.write_all(&ubuf[..n]).await.is_err() { return; },
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_s3_failures_lose_no_record_and_duplicate_none() {
    let stream = "audit-faults";
    let emu = setup(stream, 1).await;
    let proxy = FaultyProxy::start(emu.port()).await;
    let s3_endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let cfg = function_config(
        &emu,
        &[
            ("AWS_ENDPOINT_URL_S3", &s3_endpoint),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
    );
    let function = Arc::new(LambdaFunction::start(cfg).await.unwrap());
    let mut m = mapping(stream);
    m.batch_size = 400;
    let source = KinesisEventSource::new(&emu.sdk_config().await, m, function.clone())
        .await
        .unwrap();
    let mut puts = put_all(&emu, stream, (0..1000).map(envelope).collect()).await;
    // Phase 1: every PUT reaches S3 but its response is lost.
    proxy.set(LOSE_PUT_RESPONSES);
    let stats = source.run_for(Duration::from_secs(4)).await.unwrap();
    assert!(
        stats.total.partial_failures + stats.total.retries > 0,
        "{stats}"
    );
    assert!(stats.total.records_processed < 1000, "{stats}");
    assert!(
        !objects_under(&emu, "raw/").await.is_empty(),
        "writes landed although the function saw them fail"
    );
    // Phase 2: S3 unreachable.
    puts.extend(put_all(&emu, stream, (1000..2000).map(envelope).collect()).await);
    proxy.set(REFUSE);
    let stats = source.run_for(Duration::from_secs(3)).await.unwrap();
    assert!(
        stats.total.partial_failures + stats.total.retries > 0,
        "{stats}"
    );
    // Phase 3: healed; everything drains.
    puts.extend(put_all(&emu, stream, (2000..3000).map(envelope).collect()).await);
    proxy.set(FORWARD);
    let stats = source.drain().await.unwrap();
    assert_eq!(stats.total.records_discarded, 0, "{stats}");
    let expected: Vec<&Put> = puts.iter().collect();
    assert_archived_exactly_once(&emu, stream, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_malformed_records_go_to_the_error_prefix_with_reasons_and_the_rest_is_archived()
 {
    let stream = "audit-poison";
    let emu = setup(stream, 2).await;
    let records: Vec<Vec<u8>> = (0..10_000)
        .map(|i| match (i % 100, i / 100 % 4) {
            (37, 0) => format!("\u{1}not json {i}").into_bytes(),
            (37, 1) => {
                let mut v = format!("{{\"id\":{i},\"bad\":\"").into_bytes();
                v.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
                v
            }
            (37, 2) => format!("[{i}]").into_bytes(),
            (37, _) => format!("{{\"truncated\":{i}").into_bytes(),
            _ => envelope(i),
        })
        .collect();
    let puts = put_all(&emu, stream, records).await;
    let function = Arc::new(
        LambdaFunction::start(function_config(&emu, &[]))
            .await
            .unwrap(),
    );
    let source = KinesisEventSource::new(&emu.sdk_config().await, mapping(stream), function)
        .await
        .unwrap();
    let stats = source.drain().await.unwrap();
    assert_eq!(stats.total.records_processed, 10_000, "{stats}");
    let (bad, good): (Vec<&Put>, Vec<&Put>) = puts.iter().partition(|p| {
        serde_json::from_slice::<Value>(&p.data)
            .map(|v| !v.is_object())
            .unwrap_or(true)
    });
    assert_eq!(bad.len(), 100);
    assert_archived_exactly_once(&emu, stream, &good).await;
    let mut errors: BTreeMap<(String, String), Value> = BTreeMap::new();
    for o in objects_under(&emu, "errors/").await {
        assert!(o.key.ends_with(".jsonl"), "{}", o.key);
        for line in String::from_utf8(o.body).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let id = (
                v["shardId"].as_str().unwrap().to_string(),
                v["sequenceNumber"].as_str().unwrap().to_string(),
            );
            assert!(errors.insert(id, v).is_none(), "poison record stored twice");
        }
    }
    assert_eq!(errors.len(), 100);
    for p in bad {
        let e = &errors[&(p.shard.clone(), p.seq.clone())];
        assert_eq!(e["shardId"], p.shard.as_str());
        let data = base64::engine::general_purpose::STANDARD
            .decode(e["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, p.data);
        let reason = e["reason"].as_str().unwrap();
        let expected = if std::str::from_utf8(&p.data).is_err() {
            "UTF-8"
        } else if p.data.starts_with(b"[") || p.data.starts_with(b"\x01") {
            "not a JSON object"
        } else {
            "not valid JSON"
        };
        assert!(
            reason.contains(expected),
            "{reason} for {:?}",
            String::from_utf8_lossy(&p.data)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_fails_the_cold_start_naming_the_variable() {
    let emu = Emulator::start().await.unwrap();
    let function = LambdaFunction::start(function_config(&emu, &[("ARCHIVE_COMPRESSION", "zip")]))
        .await
        .unwrap();
    let inv = function.invoke("{\"Records\":[]}").await.unwrap();
    assert!(!inv.is_success());
    let logs = function.logs();
    assert!(
        logs.contains("ARCHIVE_COMPRESSION must be one of gzip, none"),
        "{logs}"
    );
}
