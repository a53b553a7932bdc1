//! `make bench`: forwarder throughput.
//!
//! 1. Transform, one core: a full Kinesis event (~4,800 Contract 1 envelopes of ~520 bytes, as
//!    Lambda delivers it: JSON with base64 data) parsed into `aws_lambda_events` types, then
//!    every record parsed, classified, field-filtered, hash-redacted and formatted for each
//!    emitter type. Target: 150,000 events/s/core.
//! 2. Delivery: one invocation's worth of records forwarded to the local HTTPS receiver (TLS,
//!    gzip, strict wire-format checks) by the real emitters. Target: 50,000 events/s from one
//!    invocation. The receiver runs in the same process, on the same cores.
//! 3. Spool: the redrive's throughput (records/s from an in-memory spool holding one
//!    invocation's worth of records into the local receiver) and the spool store's requests per
//!    Kinesis invocation in the steady state with nothing spooled (target 0).
//! 4. Isolation: a healthy emitter's records/s over many Kinesis invocations (batches of 1,000
//!    records, the templates' `BatchSize`) while a second emitter is stalled (its receiver
//!    accepts TCP connections and never answers) and its breaker is open, versus both up, and
//!    the ratio (target at least 0.8); the stalled receiver's connections (probes) are counted.
//!
//! The configurations give plain loopback tokens and keys: run with
//! `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true` (`make bench` sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_forwarder::ForwarderError;
use authtrail_forwarder::KinesisBatch;
use authtrail_forwarder::config::{EmitterSettings, ForwarderConfig};
use authtrail_forwarder::dlq::DeadLetterSink;
use authtrail_forwarder::emit::BoxFuture;
use authtrail_forwarder::emit::elasticsearch::ElasticsearchEmitter;
use authtrail_forwarder::emit::http::HttpEmitter;
use authtrail_forwarder::emit::splunk_hec::SplunkHecEmitter;
use authtrail_forwarder::emit::syslog::SyslogEmitter;
use authtrail_forwarder::emit::transport::ResolvedAuth;
use authtrail_forwarder::forward::InputRecord;
use authtrail_forwarder::record::{self, Prepared, Transform};
use authtrail_forwarder::spool::memory::MemorySpool;
use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::{Value, json};

const RECORDS: usize = 4800;

/// Rounds per figure (best of): 16, or `AUTHTRAIL_BENCH_ROUNDS` (1 under valgrind).
fn rounds() -> usize {
    std::env::var("AUTHTRAIL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(16)
}

/// Whether a part (`transform`, `delivery`, `spool`, `isolation`) runs: all of them, or the ones named in
/// `AUTHTRAIL_BENCH_ONLY` (comma-separated).
fn part_runs(part: &str) -> bool {
    std::env::var("AUTHTRAIL_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|p| p.trim() == part))
}

fn envelope(i: usize) -> String {
    let t = 1_739_388_470_156_i64 + i as i64;
    let kind = [
        "LOGIN",
        "LOGIN_ERROR",
        "CODE_TO_TOKEN",
        "REFRESH_TOKEN",
        "LOGOUT",
    ][i % 5];
    let v = json!({"timestamp": authtrail_core::envelope::format_timestamp(t), "eventType": "user-event", "event": {
        "id": format!("0b5c{i:08}-6c2e-4a3b-9f1e-2d7c9a1b3c4d"), "time": t, "type": kind,
        "realmId": "8b3f1e2a-7c4d-4e5f-9a0b-1c2d3e4f5a6b", "clientId": "account-console",
        "userId": "f47ac10b-58cc-4372-a567-0e02b2c3d479", "sessionId": "2c1d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "ipAddress": format!("10.20.{}.{}", (i / 250) % 250, i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("user{i}@example.com"), "code_id": "c0a1b2c3-d4e5-4f6a-8b9c-0d1e2f3a4b5c",
                    "redirect_uri": "https://app.example.com/callback", "consent": "no_consent_required"}}});
    format!("{v}\n")
}

fn kinesis_event_json() -> (Vec<u8>, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data_bytes = 0;
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            let data = envelope(i);
            data_bytes += data.len();
            let seq = format!("4959033827149025660855969253836157109592157598913658{i:04}");
            json!({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{i}"), "sequenceNumber": seq,
                               "data": b64.encode(data.as_bytes()), "approximateArrivalTimestamp": 1739388470.156},
                   "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                   "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/forwarder",
                   "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/authtrail"})
        })
        .collect();
    (
        serde_json::to_vec(&json!({"Records": records})).unwrap(),
        data_bytes,
    )
}

fn config() -> ForwarderConfig {
    ForwarderConfig::parse(
        r#"{"emitters":[{"name":"s","type":"syslog","host":"127.0.0.1","port":514,"facility":"authpriv",
            "severityFieldMappings":[{"field":"/event/type","valueMappings":{"LOGIN_ERROR":"warning","LOGIN":"informational"}}]}],
          "filterPolicies":{"field":{"excludeIf":["/event/details/code_id"]}},
          "redaction":{"mode":"hash","fields":["/event/ipAddress","/event/details/username"],"hmacKey":"bench-key"}}"#,
    )
    .unwrap()
}

fn transform() -> Transform {
    use authtrail_core::redact::{RedactionMode, Redactor};
    let c = config();
    let key = authtrail_core::secret::Secret::new("bench-key");
    let fields = c.transform.redaction.as_ref().unwrap().fields().to_vec();
    Transform::new(
        c.transform.filter.clone(),
        Some(Redactor::new(&fields, RedactionMode::Hash(key)).unwrap()),
    )
}

fn prepare_all(event: &[u8], t: &Transform) -> Vec<Arc<Prepared>> {
    // The function's own path: the lean Kinesis event, the borrowed record parse, the text
    // transform.
    let parsed: KinesisBatch = serde_json::from_slice(event).unwrap();
    let inputs = parsed.records;
    inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (text, class) = record::parse_classify(&r.data, r.source.arrival_ms).unwrap();
            Arc::new(t.prepare(i, Arc::new(class), text).unwrap())
        })
        .collect()
}

/// The validated settings of one emitter (its JSON object).
fn settings(emitter: Value) -> EmitterSettings {
    let c = ForwarderConfig::parse(&json!({ "emitters": [emitter] }).to_string()).unwrap();
    c.emitters[0].settings.clone()
}

fn measure(label: &str, mut f: impl FnMut() -> usize) {
    // One warm-up round, then the best of ROUNDS (least disturbed by the other core's work).
    f();
    let mut best = Duration::MAX;
    let mut sink = 0;
    for _ in 0..rounds() {
        let t = Instant::now();
        sink += f();
        best = best.min(t.elapsed());
    }
    let rate = RECORDS as f64 / best.as_secs_f64();
    println!(
        "{label:<58} {:>8.2} ms/batch {:>10.0} events/s   (checksum {})",
        best.as_secs_f64() * 1000.0,
        rate,
        sink % 1000
    );
}

struct NoDlq;
impl DeadLetterSink for NoDlq {
    fn put<'a>(&'a self, key: String, _body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async {
            Err(ForwarderError::DeadLetterNotWritten {
                bucket: "none".into(),
                key,
                detail: "the benchmark has no dead-letter bucket".into(),
            })
        })
    }
}

fn main() {
    let allowed = std::env::var(authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV)
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    assert!(
        allowed,
        "the benchmark's emitters use plain loopback secrets: run it with {}=true (make bench does)",
        authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV
    );
    let (event, data_bytes) = kinesis_event_json();
    println!(
        "forwarder benchmark: {RECORDS} records of ~{} bytes per batch ({:.1} MB event JSON), best of {} rounds, one thread",
        data_bytes / RECORDS,
        event.len() as f64 / 1e6,
        rounds()
    );
    if part_runs("transform") {
        transform_figures(&event);
    }
    if part_runs("delivery") {
        delivery_figures(&event);
    }
    if part_runs("spool") {
        spool_figures(&event);
    }
    if part_runs("isolation") {
        isolation_figures(&event);
    }
}

fn transform_figures(event: &[u8]) {
    println!("-- transform (target 150,000 events/s/core) --");
    let t = transform();
    measure(
        "event parse, aws_lambda_events KinesisEvent (not used)",
        || {
            let parsed: KinesisEvent = serde_json::from_slice(event).unwrap();
            parsed.records.len()
        },
    );
    measure("event parse only (KinesisBatch + base64)", || {
        let parsed: KinesisBatch = serde_json::from_slice(event).unwrap();
        parsed.records.len()
    });
    let inputs = serde_json::from_slice::<KinesisBatch>(event)
        .unwrap()
        .records;
    measure("  (step) record parse + classify only", || {
        inputs
            .iter()
            .map(|r| {
                record::parse_classify(&r.data, r.source.arrival_ms)
                    .unwrap()
                    .1
                    .names()
                    .count()
            })
            .sum()
    });
    let classes: Vec<_> = inputs
        .iter()
        .map(|r| {
            let (text, c) = record::parse_classify(&r.data, r.source.arrival_ms).unwrap();
            (text.to_string(), Arc::new(c))
        })
        .collect();
    measure("  (step) filter + hash redaction only", || {
        classes
            .iter()
            .enumerate()
            .map(|(i, (text, c))| t.prepare(i, c.clone(), text).unwrap().json.len())
            .sum()
    });
    measure("parse + classify + filter + redact (hash)", || {
        prepare_all(event, &t).len()
    });
    let url = "https://127.0.0.1/";
    let EmitterSettings::Http(c) = settings(json!({"name": "b", "type": "http", "url": url}))
    else {
        unreachable!()
    };
    let ndjson = HttpEmitter::new("b", &c, &ResolvedAuth::None).unwrap();
    measure("  + format http (NDJSON)", || {
        ndjson.body(&prepare_all(event, &t)).len()
    });
    let EmitterSettings::SplunkHec(c) =
        settings(json!({"name": "b", "type": "splunk-hec", "url": url, "token": "t", "host": "h"}))
    else {
        unreachable!()
    };
    let splunk = SplunkHecEmitter::new("b", &c, &ResolvedAuth::None).unwrap();
    measure("  + format splunk-hec", || {
        splunk.body(&prepare_all(event, &t)).len()
    });
    let EmitterSettings::Elasticsearch(c) =
        settings(json!({"name": "b", "type": "elasticsearch", "url": url, "index": "audit"}))
    else {
        unreachable!()
    };
    let es = ElasticsearchEmitter::new("b", &c, &ResolvedAuth::None).unwrap();
    measure("  + format elasticsearch _bulk", || {
        es.body(&prepare_all(event, &t)).len()
    });
    let EmitterSettings::Syslog(sc) = config().emitters[0].settings.clone() else {
        unreachable!()
    };
    let syslog = SyslogEmitter::new("s", sc).unwrap();
    measure("  + format syslog RFC 5424 (octet-counted)", || {
        prepare_all(event, &t)
            .iter()
            .map(|p| {
                let m = syslog.format(p);
                m.len() + m.len().to_string().len() + 1
            })
            .sum()
    });
    measure("  + format firehose / stdout (JSON lines)", || {
        prepare_all(event, &t)
            .iter()
            .map(|p| p.json.len() + 1)
            .sum()
    });
    measure("  + gzip level 1 of the NDJSON body", || {
        use std::io::Write;
        let body = ndjson.body(&prepare_all(event, &t));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap().len()
    });
}

fn delivery_figures(event: &[u8]) {
    println!(
        "-- delivery to the local HTTPS receiver (target 50,000 events/s from one invocation) --"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("authtrail-bench-{}", std::process::id()));
        let receiver = siem_receiver::Receiver::start(&dir, siem_receiver::ReceiverOptions::default()).await.unwrap();
        let url = receiver.url();
        let ca = receiver.ca_path().display().to_string();
        let inputs = serde_json::from_slice::<KinesisBatch>(event).unwrap().records;
        // A TCP syslog collector that reads and discards (the emitter's one ordered connection).
        let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let syslog_port = collector.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = collector.accept().await {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sock, &mut tokio::io::sink()).await;
                });
            }
        });
        for (label, emitter) in [
            ("syslog TCP (octet-counted, one connection)", json!({"name": "sys", "type": "syslog", "protocol": "TCP", "host": "127.0.0.1", "port": syslog_port})),
            ("http NDJSON, gzip, 1 request at a time", json!({"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "caBundle": ca, "gzip": true, "buffering": {"maxConcurrentRequests": 1}})),
            ("http NDJSON, gzip", json!({"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "caBundle": ca, "gzip": true})),
            ("http NDJSON, no gzip", json!({"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "caBundle": ca})),
            ("splunk-hec, gzip", json!({"name": "splunk", "type": "splunk-hec", "url": url, "token": "test-hec-token", "caBundle": ca})),
            ("elasticsearch _bulk, gzip", json!({"name": "es", "type": "elasticsearch", "url": url, "caBundle": ca})),
        ] {
            let cfg = json!({"emitters": [emitter],
                "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"]}},
                "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username"], "hmacKey": "bench-key"}});
            let cfg = ForwarderConfig::parse(&cfg.to_string()).unwrap();
            let fwd = authtrail_forwarder::build(&cfg, None, Arc::new(NoDlq), "dlq/").await.unwrap();
            let mut best = Duration::MAX;
            for round in 0..=4 {
                let t = Instant::now();
                let r = fwd.process(&inputs, tokio::time::Instant::now() + Duration::from_secs(60)).await;
                let el = t.elapsed();
                assert!(r.failures.is_empty(), "{label}: {:?}", r.emitters);
                if round > 0 {
                    best = best.min(el);
                }
            }
            println!("deliver {label:<50} {:>8.2} ms/batch {:>10.0} events/s", best.as_secs_f64() * 1000.0, RECORDS as f64 / best.as_secs_f64());
        }
        assert!(receiver.rejections().is_empty(), "{:?}", receiver.rejections());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The batch's records as if they had just arrived (the spool's retention counts from arrival).
fn fresh_inputs(event: &[u8]) -> Vec<InputRecord> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut inputs = serde_json::from_slice::<KinesisBatch>(event)
        .unwrap()
        .records;
    for r in &mut inputs {
        r.source.arrival_ms = now_ms;
    }
    inputs
}

/// A forwarder of `emitter` (with the benchmark's filter and hash redaction) spooling into
/// `store`.
async fn spooling_forwarder(
    emitter: Value,
    retry: Value,
    store: Arc<MemorySpool>,
) -> authtrail_forwarder::forward::Forwarder {
    let cfg = json!({"emitters": [emitter], "retry": retry,
        "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"]}},
        "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username"], "hmacKey": "bench-key"}});
    let cfg = ForwarderConfig::parse(&cfg.to_string()).unwrap();
    authtrail_forwarder::build(&cfg, None, Arc::new(NoDlq), "dlq/")
        .await
        .unwrap()
        .with_spool(store, "spool/", cfg.spool)
}

fn spool_figures(event: &[u8]) {
    println!("-- spool: redrive into the local HTTPS receiver; steady-state store requests --");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("authtrail-bench-spool-{}", std::process::id()));
        let options = siem_receiver::ReceiverOptions::default();
        let receiver = siem_receiver::Receiver::start(&dir, options).await.unwrap();
        let url = receiver.url();
        let ca = receiver.ca_path().display().to_string();
        let inputs = fresh_inputs(event);
        let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);
        // A port nobody listens on: the emitter is down, every record is spooled.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down = format!("https://{}", closed.local_addr().unwrap());
        drop(closed);
        for (label, name, up, kind) in [
            ("http NDJSON, gzip", "webhook", format!("{url}/ingest"), "http"),
            ("splunk-hec, gzip", "splunk", url.clone(), "splunk-hec"),
            ("elasticsearch _bulk, gzip", "es", url.clone(), "elasticsearch"),
        ] {
            let emitter = |u: &str| match kind {
                "splunk-hec" => json!({"name": name, "type": kind, "url": u, "caBundle": ca, "token": "test-hec-token"}),
                "http" => json!({"name": name, "type": kind, "url": u, "caBundle": ca, "gzip": true}),
                _ => json!({"name": name, "type": kind, "url": u, "caBundle": ca}),
            };
            // One invocation's worth of records spooled while the emitter is down.
            let store = Arc::new(MemorySpool::new());
            let fill = spooling_forwarder(emitter(&down), json!({"maxAttempts": 1}), store.clone()).await;
            let r = fill.process(&inputs, deadline()).await;
            assert_eq!(r.emitters[0].1.spooled, RECORDS, "{label}: {:?}", r.emitters);
            let objects: Vec<(String, Vec<u8>)> = store
                .objects()
                .into_iter()
                .filter(|(k, _)| k.ends_with(".jsonl"))
                .collect();
            let mut best = Duration::MAX;
            let mut requests = 0;
            for round in 0..=rounds().min(4) {
                let store = Arc::new(MemorySpool::new());
                for (k, body) in &objects {
                    store.insert(k, body.clone());
                }
                let fwd = spooling_forwarder(emitter(&up), json!({}), store.clone()).await;
                let t = Instant::now();
                let r = fwd.redrive_all(deadline(), "bench").await;
                let el = t.elapsed();
                let s = &r.emitters[0].1;
                assert_eq!((s.redriven, s.redrive_failures), (RECORDS, 0), "{label}: {s:?}");
                assert!(
                    store.objects().keys().all(|k| k.ends_with("/.lease")),
                    "{label}: the spool is empty after the redrive"
                );
                if round > 0 {
                    best = best.min(el);
                    requests = store.requests();
                }
            }
            println!(
                "redrive {label:<50} {:>8.2} ms/{RECORDS} {:>10.0} records/s  ({} objects, {requests} store requests)",
                best.as_secs_f64() * 1000.0,
                RECORDS as f64 / best.as_secs_f64(),
                objects.len()
            );
        }
        // The steady state: the spool on, the emitter up, nothing spooled.
        let store = Arc::new(MemorySpool::new());
        let webhook = json!({"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "caBundle": ca, "gzip": true});
        let fwd = spooling_forwarder(webhook, json!({}), store.clone()).await;
        let invocations = rounds().max(4);
        let mut best = Duration::MAX;
        for _ in 0..invocations {
            let t = Instant::now();
            let r = fwd.process(&inputs, deadline()).await;
            best = best.min(t.elapsed());
            assert!(r.failures.is_empty(), "{:?}", r.emitters);
        }
        println!(
            "steady state, spool on, http NDJSON gzip: {:.2} store requests per invocation (target 0) over {invocations} invocations; deliver {:>10.0} events/s",
            store.requests() as f64 / invocations as f64,
            RECORDS as f64 / best.as_secs_f64()
        );
        assert!(receiver.rejections().is_empty(), "{:?}", receiver.rejections());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A receiver that accepts TCP connections and never answers (nor reads); counts them.
async fn stalled_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock);
        }
    });
    (url, count)
}

/// A forwarder of two http emitters (`healthy` and `other`) spooling into `store`.
async fn two_emitters(
    healthy: &str,
    other: &str,
    ca: &str,
    store: Arc<MemorySpool>,
) -> authtrail_forwarder::forward::Forwarder {
    let emitter = |name: &str, url: &str| json!({"name": name, "type": "http", "url": url, "caBundle": ca, "gzip": true, "emitTimeoutInSec": 2});
    let cfg = json!({"emitters": [emitter("healthy", healthy), emitter("other", other)],
        "emitAtLeastOneOf": ["healthy", "other"],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"]}},
        "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username"], "hmacKey": "bench-key"}});
    let cfg = ForwarderConfig::parse(&cfg.to_string()).unwrap();
    authtrail_forwarder::build(&cfg, None, Arc::new(NoDlq), "dlq/")
        .await
        .unwrap()
        .with_spool(store, "spool/", cfg.spool)
}

/// `invocations` Kinesis invocations of `batch`: the healthy emitter's records/s.
async fn healthy_rate(
    fwd: &authtrail_forwarder::forward::Forwarder,
    batch: &[InputRecord],
    invocations: usize,
) -> f64 {
    let t = Instant::now();
    let mut delivered = 0;
    for _ in 0..invocations {
        let r = fwd
            .process(batch, tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
        assert!(r.failures.is_empty(), "{:?}", r.emitters);
        delivered += r.emitters[0].1.delivered;
    }
    assert_eq!(delivered, batch.len() * invocations);
    delivered as f64 / t.elapsed().as_secs_f64()
}

fn isolation_figures(event: &[u8]) {
    const BATCH: usize = 1000;
    let invocations = rounds().max(4) * 2;
    println!(
        "-- isolation: the healthy emitter's records/s with the other stalled (breaker open) vs both up; {invocations} invocations of {BATCH} records (target ratio 0.8) --"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("authtrail-bench-iso-{}", std::process::id()));
        let receiver = siem_receiver::Receiver::start(&dir, siem_receiver::ReceiverOptions::default()).await.unwrap();
        let ingest = format!("{}/ingest", receiver.url());
        let ca = receiver.ca_path().display().to_string();
        let mut inputs = fresh_inputs(event);
        inputs.truncate(BATCH);
        let up = two_emitters(&ingest, &ingest, &ca, Arc::new(MemorySpool::new())).await;
        healthy_rate(&up, &inputs, 1).await;
        let all_up = healthy_rate(&up, &inputs, invocations).await;
        let (stalled, connections) = stalled_receiver().await;
        let store = Arc::new(MemorySpool::new());
        let down = two_emitters(&ingest, &stalled, &ca, store.clone()).await;
        // The first invocation finds the emitter down (its retries time out) and opens the
        // breaker; it is not counted.
        let t = Instant::now();
        healthy_rate(&down, &inputs, 1).await;
        let opening = t.elapsed();
        let before = connections.load(std::sync::atomic::Ordering::SeqCst);
        let (requests, t) = (store.requests(), Instant::now());
        let stalled_rate = healthy_rate(&down, &inputs, invocations).await;
        let took = t.elapsed();
        let probes = connections.load(std::sync::atomic::Ordering::SeqCst) - before;
        let spool_requests = store.requests() - requests;
        // A new instance of the same function: it reads the open breaker at cold start.
        let cold = two_emitters(&ingest, &stalled, &ca, store.clone()).await;
        cold.load_breakers().await;
        let t = Instant::now();
        healthy_rate(&cold, &inputs, 1).await;
        let cold_first = t.elapsed();
        println!("healthy emitter, both up                        {all_up:>10.0} records/s");
        println!(
            "healthy emitter, other stalled (breaker open)   {stalled_rate:>10.0} records/s  ratio {:.3}  ({probes} connections to the stalled receiver, {} spool requests in {:.1} s; the invocation that opened the breaker took {:.1} s)",
            stalled_rate / all_up,
            spool_requests,
            took.as_secs_f64(),
            opening.as_secs_f64()
        );
        println!(
            "a new instance (breaker read at cold start): first invocation {:.1} ms",
            cold_first.as_secs_f64() * 1000.0
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
